"""``ai.vitc::Attention`` — softmax attention, the canonical core every recognised site becomes.

    y = softmax(q·kᵀ·scale [+ mask])·v   per head

Inputs: q, k, v [B, N, C] (heads packed, C = num_heads·d); mask (optional, overload
``masked``) additive, broadcastable to [B, H, N, N] (e.g. [B, 1, 1, N]). Output [B, N, C].
Attributes: num_heads (int), scale (float, usually 1/√d).
"""
from __future__ import annotations

from onnx import FunctionProto

from vitc.runtime.function_builder import FunctionBuilder, merge_heads, split_heads
from vitc.runtime.op_registry import Step, Value, WorkList, custom_op, head_views, register_work

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
    b.output(merge_heads(b, softmax_heads(b, qh, kt, vh, b.attr_float("scale"), "mask" if masked else None)), "y")
    return b.build()


def softmax_heads(b: FunctionBuilder, qh: str, kt: str, vh: str, scale: str, mask: str | None) -> str:
    """softmax(Q·Kᵀ·scale [+ mask])·V of Q [B, h, N, d], Kᵀ [B, h, d, N], V [B, h, N, dv] → [B, h, N, dv]
    (also the exact heads of a hybrid ``TaylorAttention``)."""
    scores = b.op("Mul", b.op("MatMul", qh, kt), scale)
    if mask is not None:
        scores = b.op("Add", scores, mask)
    return b.op("MatMul", b.op("Softmax", scores, axis=-1), vh)


def attention_work(attrs: dict, in_shapes: list, opset: int = 17) -> list[Step]:
    """QKᵀ, scale, (mask), softmax, S·V — the body's arithmetic, per head."""
    w = WorkList(in_shapes, opset)
    softmax_steps(w, *head_views(w, int(attrs["num_heads"])), w.inputs[3] if len(in_shapes) > 3 else None)
    return w.steps


def softmax_steps(w: WorkList, qh: Value, kt: Value, vh: Value, mask: Value | None) -> None:
    """The steps of :func:`softmax_heads` for views Q [B, h, N, d], Kᵀ [B, h, d, N], V."""
    b, h, nq, _ = qh.shape
    nk, dv = kt.shape[3], vh.shape[3]
    scores = w.op("MatMul", qh, kt, out=(b, h, nq, nk))
    scores = w.op("Mul", scores, w.const(), out=(b, h, nq, nk))
    if mask is not None:
        scores = w.op("Add", scores, mask, out=(b, h, nq, nk))
    probs = w.op("Softmax", scores, out=(b, h, nq, nk), axis=-1)
    w.op("MatMul", probs, vh, out=(b, h, nq, dv))


custom_op(OP_TYPE)(lambda opset: _softmax_attention(False, opset))
custom_op(OP_TYPE, "masked", arity=4)(lambda opset: _softmax_attention(True, opset))
register_work(OP_TYPE, attention_work)
