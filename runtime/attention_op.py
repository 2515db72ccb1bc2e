"""``ai.vitc::Attention`` — softmax attention, the canonical core every recognised site becomes.

    y = softmax(q·kᵀ·scale [+ mask])·v   per head

Inputs: q, k, v [B, N, C] (heads packed, C = num_heads·d); mask (optional, overload
``masked``) additive, broadcastable to [B, H, N, N] (e.g. [B, 1, 1, N]). Output [B, N, C].
Attributes: num_heads (int), scale (float, usually 1/√d).
"""
from __future__ import annotations

from onnx import FunctionProto

from vitc.runtime.function_builder import FunctionBuilder, merge_heads, split_heads
from vitc.runtime.op_registry import Step, WorkList, custom_op, head_views, register_work

OP_TYPE = "Attention"
_BODY_DOC = """softmax(q·kᵀ·scale [+ mask])·v per head.

    Inputs: q, k, v [B, N, C] (heads packed, C = num_heads·d); mask (optional) additive,
    broadcastable to [B, H, N, N] (e.g. [B, 1, 1, N]). Output [B, N, C].
    Attributes: num_heads (int), scale (float, usually 1/√d).
    """


def _softmax_attention(masked: bool, opset: int) -> FunctionProto:
    inputs = ["q", "k", "v"] + (["mask"] if masked else [])
    b = FunctionBuilder(OP_TYPE, inputs, ["num_heads", "scale"], opset,
                        overload="masked" if masked else "", doc=_BODY_DOC)
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


def attention_work(attrs: dict, in_shapes: list, opset: int = 17) -> list[Step]:
    """QKᵀ, scale, (mask), softmax, S·V — the body's arithmetic, per head."""
    heads = int(attrs["num_heads"])
    w = WorkList(in_shapes, opset)
    qh, kt, vh = head_views(w, heads)
    b, h, nq, _ = qh.shape
    nk, dv = kt.shape[3], vh.shape[3]
    scores = w.op("MatMul", qh, kt, out=(b, h, nq, nk))
    scores = w.op("Mul", scores, w.const(), out=(b, h, nq, nk))
    if len(in_shapes) > 3:
        scores = w.op("Add", scores, w.inputs[3], out=(b, h, nq, nk))
    probs = w.op("Softmax", scores, out=(b, h, nq, nk), axis=-1)
    w.op("MatMul", probs, vh, out=(b, h, nq, dv))
    return w.steps


custom_op(OP_TYPE)(lambda opset: _softmax_attention(False, opset))
custom_op(OP_TYPE, "masked", arity=4)(lambda opset: _softmax_attention(True, opset))
register_work(OP_TYPE, attention_work)
