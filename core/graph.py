"""Small helpers over onnx-graphsurgeon graphs: producers, constants, scalar tests."""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs
from onnx import numpy_helper
from onnx_graphsurgeon.importers.onnx_importer import get_onnx_tensor_dtype
from onnx_graphsurgeon.ir.tensor import LazyValues


def producer(t: gs.Tensor) -> gs.Node | None:
    """The node that writes ``t`` (None for graph inputs and initializers)."""
    return t.inputs[0] if t.inputs else None


def is_const(t: gs.Tensor | None) -> bool:
    """``t`` is an initializer or a ``Constant`` node's output (its value is not loaded)."""
    if t is None:
        return False
    if isinstance(t, gs.Constant):
        return True
    node = producer(t)
    return node is not None and node.op == "Constant"


def const_value(t: gs.Tensor | None) -> np.ndarray | None:
    """``t``'s value if it is an initializer or a ``Constant`` node's output, else None. An
    initializer still held by its TensorProto is read without caching the array on the tensor, so
    exporting the graph later reuses the proto instead of converting the array back."""
    if t is None:
        return None
    if isinstance(t, gs.Constant):
        lazy = t._values
        if isinstance(lazy, LazyValues):
            return lazy.load()
        return np.asarray(t.values)
    node = producer(t)
    if node is not None and node.op == "Constant":
        for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
            if key in node.attrs:
                v = node.attrs[key]
                return np.asarray(v.values if isinstance(v, gs.Constant) else v)
    return None


class MappedValues(LazyValues):
    """An initializer's values held as an array apart from any proto (a memory-mapped weight of
    the input file, :mod:`vitc.core.mapped`): ``load`` returns the read-only array itself (no
    copy); ``placeholder`` is the data-less TensorProto a light export writes in its place;
    ``tensor`` (what onnx-graphsurgeon exports outside :func:`vitc.compiler.emit.held_weights`)
    builds a full TensorProto on demand."""

    def __init__(self, placeholder, array: np.ndarray):     # noqa: super().__init__ would read .tensor
        self.placeholder, self.array = placeholder, array
        self.shape = list(placeholder.dims)
        self.dtype = get_onnx_tensor_dtype(placeholder)
        self.nbytes = array.nbytes

    @property
    def tensor(self):
        return numpy_helper.from_array(np.asarray(self.array), self.placeholder.name)

    def load(self) -> np.ndarray:
        return self.array


def attach_mapped(graph: gs.Graph, weights: dict) -> None:
    """Back ``graph``'s placeholder initializers named in ``weights`` by those arrays."""
    if not weights:
        return
    for t in graph.tensors().values():
        lazy = getattr(t, "_values", None)
        if isinstance(t, gs.Constant) and isinstance(lazy, LazyValues) and t.name in weights:
            t._values = MappedValues(lazy.tensor, weights[t.name])


def is_shape_derived(t: gs.Tensor, _depth: int = 0) -> bool:
    """True if ``t`` depends on activations only through ``Shape``/``Size`` (a run-time constant)."""
    if const_value(t) is not None:
        return True
    node = producer(t)
    if node is None or _depth > 24:
        return False
    if node.op in ("Shape", "Size"):
        return True
    return all(is_shape_derived(i, _depth + 1) for i in node.inputs if i is not None and i.name)


def numel(t: gs.Tensor) -> int | None:
    """Element count from the (possibly symbolic) static shape, None if unknown."""
    if t.shape is None or any(not isinstance(d, (int, np.integer)) or d < 0 for d in t.shape):
        return None
    return int(np.prod(t.shape, dtype=np.int64))


def is_scalar_like(t: gs.Tensor) -> bool:
    """A single-element tensor that is constant or computed from shapes only."""
    v = const_value(t)
    if v is not None:
        return v.size == 1
    n = numel(t)
    return (n == 1 or n is None) and is_shape_derived(t)


def single_consumer(t: gs.Tensor) -> gs.Node | None:
    return t.outputs[0] if len(t.outputs) == 1 else None


def weight_input(node: gs.Node) -> tuple[gs.Tensor, np.ndarray] | None:
    """For MatMul/Gemm with one constant operand: (activation input, weight [K, N]) else None."""
    if node.op not in ("MatMul", "Gemm") or len(node.inputs) < 2:
        return None
    a, b = node.inputs[0], node.inputs[1]
    wb = const_value(b)
    if wb is None or wb.ndim != 2:
        return None
    if node.op == "Gemm":
        if node.attrs.get("transA", 0):
            return None
        if node.attrs.get("transB", 0):
            wb = wb.T
    return a, wb
