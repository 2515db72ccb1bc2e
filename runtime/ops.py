"""Definitions of the ``ai.vitc`` custom ops as ONNX functions.

Each op is a standard-ONNX function body built for the model's default-domain opset, so
onnxruntime (or any ONNX runtime) inlines and runs it with no registration. An op may have
overloads (ONNX IR ≥ 10), used here for optional inputs: ``Attention`` (q, k, v) and
``Attention`` overload ``masked`` (q, k, v, mask).

Passes add ops to :data:`REGISTRY` with :func:`custom_op`; :func:`functions_for` returns the
FunctionProtos a graph needs.
"""
from __future__ import annotations

from typing import Callable, Iterable

from onnx import FunctionProto

from vitc.runtime.function_builder import DOMAIN, FunctionBuilder, merge_heads, split_heads

# (op_type, overload) -> builder(opset) -> FunctionProto
REGISTRY: dict[tuple[str, str], Callable[[int], FunctionProto]] = {}
# (op_type, number of inputs) -> overload, for ops whose optional inputs select an overload
ARITY_OVERLOADS: dict[tuple[str, int], str] = {}
# op_type -> selector(NodeProto) -> overload, for ops whose attributes select the overload
NODE_OVERLOADS: dict[str, Callable] = {}


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


def _softmax_attention(masked: bool, opset: int) -> FunctionProto:
    """softmax(q·kᵀ·scale [+ mask])·v per head.

    Inputs: q, k, v [B, N, C] (heads packed, C = num_heads·d); mask (optional) additive,
    broadcastable to [B, H, N, N] (e.g. [B, 1, 1, N]). Output [B, N, C].
    Attributes: num_heads (int), scale (float, usually 1/√d).
    """
    inputs = ["q", "k", "v"] + (["mask"] if masked else [])
    b = FunctionBuilder("Attention", inputs, ["num_heads", "scale"], opset,
                        overload="masked" if masked else "", doc=_softmax_attention.__doc__)
    heads = b.attr_int("num_heads")
    qh = split_heads(b, "q", heads, [0, 2, 1, 3])
    kt = split_heads(b, "k", heads, [0, 2, 3, 1])
    vh = split_heads(b, "v", heads, [0, 2, 1, 3])
    scores = b.op("Mul", b.op("MatMul", qh, kt), b.attr_float("scale"))
    if masked:
        scores = b.op("Add", scores, "mask")
    probs = b.op("Softmax", scores, axis=-1)
    b.output(merge_heads(b, b.op("MatMul", probs, vh)), "y")
    return b.build()


custom_op("Attention")(lambda opset: _softmax_attention(False, opset))
custom_op("Attention", "masked", arity=4)(lambda opset: _softmax_attention(True, opset))

from vitc.runtime import taylor_ops  # noqa: E402,F401 - registers ai.vitc::TaylorAttention

__all__ = ["DOMAIN", "REGISTRY", "custom_op", "functions_for", "overload_for"]
