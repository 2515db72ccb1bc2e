"""A small builder for ONNX function bodies written as straight-line code.

    b = FunctionBuilder("Attention", inputs=["q", "k", "v"], attributes=["num_heads", "scale"], opset=17)
    qk = b.op("MatMul", "q", "kt")
    b.output(qk, "y")
    fn = b.build()

Every intermediate gets a unique, readable name. Attribute references (``@num_heads``)
are made with :meth:`attr_int` / :meth:`attr_float`.
"""
from __future__ import annotations

import numpy as np
from onnx import FunctionProto, helper

from vitc.runtime.opset import const_node, reduce_node

DOMAIN = "ai.vitc"
DOMAIN_VERSION = 1


class FunctionBuilder:
    def __init__(self, name: str, inputs: list[str], attributes: list[str], opset: int,
                 overload: str = "", doc: str = ""):
        self.name, self.inputs, self.attributes = name, list(inputs), list(attributes)
        self.opset, self.overload, self.doc = opset, overload, doc
        self.nodes: list = []
        self.outputs: list[str] = []
        self._count = 0

    def _fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs) -> str:
        """Append ``op_type(*inputs, **attrs)``; returns the output name."""
        y = out or self._fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [y], **attrs))
        return y

    def ops(self, op_type: str, *inputs: str, n_out: int, **attrs) -> list[str]:
        ys = [self._fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), ys, **attrs))
        return ys

    def const(self, value, hint: str = "c") -> str:
        y = self._fresh(hint)
        self.nodes.append(const_node(y, value))
        return y

    def attr_int(self, attr: str) -> str:
        """A scalar int64 tensor holding the function attribute ``attr``."""
        y = self._fresh(attr)
        node = helper.make_node("Constant", [], [y], value_int=0)
        node.attribute[0].ref_attr_name = attr
        self.nodes.append(node)
        return y

    def attr_ints(self, attr: str) -> str:
        """A 1-D int64 tensor holding the function's list attribute ``attr``."""
        y = self._fresh(attr)
        node = helper.make_node("Constant", [], [y], value_ints=[0])
        node.attribute[0].ref_attr_name = attr
        self.nodes.append(node)
        return y

    def attr_float(self, attr: str) -> str:
        """A scalar float tensor holding the function attribute ``attr``."""
        y = self._fresh(attr)
        node = helper.make_node("Constant", [], [y], value_float=0.0)
        node.attribute[0].ref_attr_name = attr
        self.nodes.append(node)
        return y

    def reduce(self, op: str, x: str, axes: list[int], keepdims: int = 1) -> str:
        y = self._fresh(op.lower())
        self.nodes.extend(reduce_node(op, x, y, axes, keepdims, self.opset, self._fresh("axes")))
        return y

    def output(self, value: str, name: str) -> None:
        self.nodes.append(helper.make_node("Identity", [value], [name]))
        self.outputs.append(name)

    def build(self) -> FunctionProto:
        fn = helper.make_function(
            DOMAIN, self.name, self.inputs, self.outputs, self.nodes,
            [helper.make_opsetid("", self.opset)], attributes=self.attributes, doc_string=self.doc)
        if self.overload:
            fn.overload = self.overload
        return fn


def split_heads(b: FunctionBuilder, x: str, heads: str, perm: list[int]) -> str:
    """[B, N, C] → Reshape [B, N, H, C/H] → Transpose ``perm`` (e.g. [0,2,1,3] → [B,H,N,d])."""
    shape = b.op("Concat", b.const(np.array([0, 0], np.int64)), b.op("Unsqueeze", heads, b.const(np.array([0], np.int64))),
                 b.const(np.array([-1], np.int64)), axis=0)
    return b.op("Transpose", b.op("Reshape", x, shape), perm=perm)


def merge_heads(b: FunctionBuilder, x: str) -> str:
    """[B, H, N, d] → [B, N, H·d]."""
    t = b.op("Transpose", x, perm=[0, 2, 1, 3])
    return b.op("Reshape", t, b.const(np.array([0, 0, -1], np.int64)))
