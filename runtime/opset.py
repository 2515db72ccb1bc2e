"""Helpers that emit standard ONNX nodes whose signature changed across opsets 13–23.

Function bodies and rewrites are written once and adapt to the default-domain opset of
the model they are inserted into.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def const_node(name: str, value) -> onnx.NodeProto:
    """A ``Constant`` node producing ``value`` (numpy array or python scalar/list)."""
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(arr, name))


def reduce_node(op: str, x: str, y: str, axes: list[int], keepdims: int, opset: int, axes_name: str):
    """``ReduceSum``/``ReduceMean``/``ReduceMax`` with ``axes`` as attribute (< opset 18) or input.

    ReduceSum takes axes as an input from opset 13. Returns a list of nodes.
    """
    takes_input = opset >= 18 or op == "ReduceSum"
    if takes_input:
        return [const_node(axes_name, np.asarray(axes, np.int64)),
                helper.make_node(op, [x, axes_name], [y], keepdims=keepdims)]
    return [helper.make_node(op, [x], [y], axes=axes, keepdims=keepdims)]
