"""The registry of ``ai.vitc`` custom ops: function bodies and declared work.

Every op registers, per overload, a builder of its ONNX function body (a standard-ONNX
``FunctionProto`` built for the model's default-domain opset, so onnxruntime inlines and
runs it with no registration) and one **work function** that states, from the node's
attributes and input shapes, the arithmetic the op performs: a list of :class:`Step` s —
primitive ONNX operations with concrete shapes, which operands are compile-time constants,
and which earlier steps (or op inputs) each reads. Backends cost a core from this list (or
as a whole, from its attributes) and never inline the body; :mod:`vitc.compiler.opcount`
counts operations from it. ``tests/test_op_work.py`` checks every work list against the
function body it describes.

Overloads (ONNX IR ≥ 10) serve optional inputs and attribute-selected variants:
``Attention`` (q, k, v) and ``Attention`` overload ``masked`` (q, k, v, mask).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from onnx import FunctionProto

from vitc.runtime.function_builder import DOMAIN, DOMAIN_VERSION

# (op_type, overload) -> builder(opset) -> FunctionProto
REGISTRY: dict[tuple[str, str], Callable[[int], FunctionProto]] = {}
# (op_type, number of inputs) -> overload, for ops whose optional inputs select an overload
ARITY_OVERLOADS: dict[tuple[str, int], str] = {}
# op_type -> selector(NodeProto) -> overload, for ops whose attributes select the overload
NODE_OVERLOADS: dict[str, Callable] = {}
# op_type -> work(attrs, in_shapes, opset) -> list[Step]
WORK: dict[str, Callable] = {}


def custom_op(op_type: str, overload: str = "", arity: int | None = None):
    """Decorator registering a function-body builder for ``ai.vitc::op_type[overload]``.

    ``arity``: nodes of ``op_type`` with this many inputs use this overload.
    """
    def register(builder: Callable[[int], FunctionProto]):
        REGISTRY[(op_type, overload)] = builder
        if arity is not None:
            ARITY_OVERLOADS[(op_type, arity)] = overload
        return builder
    return register


def register_node_overload(op_type: str, selector: Callable) -> None:
    """Nodes of ``op_type`` take the overload ``selector(node_proto)`` (attributes and arity)."""
    NODE_OVERLOADS[op_type] = selector


def register_work(op_type: str, work: Callable) -> None:
    """``work(attrs: dict, in_shapes: list[tuple[int, ...]], opset: int) -> list[Step]`` for ``op_type``."""
    WORK[op_type] = work


def overload_for(op_type: str, n_inputs: int, node=None) -> str:
    if node is not None and op_type in NODE_OVERLOADS:
        return NODE_OVERLOADS[op_type](node)
    return ARITY_OVERLOADS.get((op_type, n_inputs), "")


def functions_for(used: Iterable[tuple[str, str]], opset: int) -> list[FunctionProto]:
    """FunctionProtos for the (op_type, overload) pairs ``used``, sorted for determinism."""
    out = []
    for key in sorted(set(used)):
        if key not in REGISTRY:
            raise KeyError(f"no function body registered for ai.vitc::{key[0]} overload '{key[1]}'")
        out.append(REGISTRY[key](opset))
    return out


# --------------------------------------------------------------------------- declared work
@dataclass(frozen=True)
class Value:
    """A tensor inside a work list: its shape, whether it is a compile-time constant, and
    where it comes from (``("input", i)`` for the op's i-th input, ``("step", j)``, or None
    for constants)."""

    shape: tuple[int, ...]
    static: bool = False
    source: tuple[str, int] | None = None


@dataclass(frozen=True)
class Step:
    """One primitive operation of a custom op: ONNX ``op_type`` on operands of ``in_shapes``
    (``static_in``: compile-time constants) giving ``out_shape``; ``reads`` gives, per operand,
    the op input (``("input", i)``) or earlier step (``("step", j)``) it is, None for constants."""

    op_type: str
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]
    static_in: tuple[bool, ...]
    reads: tuple[tuple[str, int] | None, ...]
    attrs: dict = field(default_factory=dict, hash=False, compare=False)


class WorkList:
    """Builds a list of :class:`Step` s the way a function body is written:

        w = WorkList([q_shape, k_shape, v_shape])
        s = w.op("MatMul", w.inputs[0], kt, out=(b, h, n, n))
    """

    def __init__(self, in_shapes: list[tuple[int, ...]], opset: int = 17):
        self.opset = opset
        self.inputs = [Value(tuple(int(d) for d in s), False, ("input", i)) for i, s in enumerate(in_shapes)]
        self.steps: list[Step] = []

    def const(self, shape: tuple[int, ...] = ()) -> Value:
        return Value(tuple(shape), True, None)

    def op(self, op_type: str, *operands: Value, out: tuple[int, ...], **attrs) -> Value:
        static = all(v.static for v in operands)
        self.steps.append(Step(op_type, tuple(v.shape for v in operands), tuple(int(d) for d in out),
                               tuple(v.static for v in operands),
                               tuple(v.source for v in operands), dict(attrs)))
        return Value(tuple(int(d) for d in out), static, None if static else ("step", len(self.steps) - 1))

    def reduce(self, op_type: str, x: Value, axes: list[int], out: tuple[int, ...]) -> Value:
        """A reduction written as the body writes it: axes as an input from opset 18 (ReduceSum: 13),
        as an attribute before (:func:`vitc.runtime.opset.reduce_node`)."""
        if self.opset >= 18 or op_type == "ReduceSum":
            return self.op(op_type, x, self.const((len(axes),)), out=out)
        return self.op(op_type, x, out=out, axes=list(axes))

    @staticmethod
    def view(v: Value, shape: tuple[int, ...]) -> Value:
        """A layout change (Reshape/Transpose): no work, same source."""
        return Value(tuple(int(d) for d in shape), v.static, v.source)


def head_views(w: WorkList, heads: int) -> tuple[Value, Value, Value]:
    """q, kᵀ, v of an attention-like op over [B, N, C] inputs, as per-head views
    [B, H, N_q, d], [B, H, d, N_kv], [B, H, N_kv, d_v] (what ``split_heads`` makes in the body)."""
    (bq, nq, c), (_, nk, _), (_, _, cv) = (w.inputs[i].shape for i in range(3))
    d, dv = c // heads, cv // heads
    return (w.view(w.inputs[0], (bq, heads, nq, d)), w.view(w.inputs[1], (bq, heads, d, nk)),
            w.view(w.inputs[2], (bq, heads, nk, dv)))


def work(op_type: str, attrs: dict, in_shapes: list, opset: int = 17) -> list[Step]:
    """The declared work of ``ai.vitc::op_type`` at ``opset`` (raises KeyError if none is registered)."""
    return WORK[op_type](attrs, in_shapes, opset)


__all__ = ["DOMAIN", "DOMAIN_VERSION", "REGISTRY", "WORK", "custom_op", "register_node_overload", "register_work",
           "overload_for", "functions_for", "Step", "Value", "WorkList", "head_views", "work"]
