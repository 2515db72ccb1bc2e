"""Canonical ops for attention that is already linear in the tokens (no n×n tensor anywhere).

Three forms users export, each one ``ai.vitc`` op with a function body and declared work:

``FactorizedAttention(q, k, v; scale)`` — CoaT's factorised attention. q, k [G, N, d_k],
v [G, N, d_v] (G = batch × heads)::

    y = scale · q · (softmax_over_tokens(k)ᵀ · v)           [G, N, d_v]

``SeparableAttention(s, k, v)`` — MobileViTv2's separable self-attention. ``s`` holds one
context logit per token on the last axis (e.g. [B, 1, P, N]); k and v broadcast with it
(e.g. [B, d, P, N])::

    y = v ⊙ Σ_j softmax(s)_j · k_j                          (sum over the last axis, kept)

``LinearAttention(q, k, v; eps)`` — kernel ("ReLU") linear attention as EfficientViT's LiteMLA
writes it; the feature map (ReLU) is applied before the op. q, k [G, N, d_k], v [G, N, d_v]::

    y = (q · (kᵀ v)) / (q · (kᵀ 1) + eps)                   [G, N, d_v]
"""
from __future__ import annotations

import numpy as np
from onnx import FunctionProto

from vitc.runtime.function_builder import FunctionBuilder
from vitc.runtime.op_registry import Step, WorkList, custom_op, register_work

FACTORIZED, SEPARABLE, LINEAR = "FactorizedAttention", "SeparableAttention", "LinearAttention"
OP_TYPES = (FACTORIZED, SEPARABLE, LINEAR)


# --------------------------------------------------------------------------- bodies
def _factorized(opset: int) -> FunctionProto:
    b = FunctionBuilder(FACTORIZED, ["q", "k", "v"], ["scale"], opset, doc=__doc__.split("\n\n")[2])
    ks = b.op("Softmax", "k", axis=1)
    kv = b.op("MatMul", b.op("Transpose", ks, perm=[0, 2, 1]), "v")
    b.output(b.op("Mul", b.op("MatMul", "q", kv), b.attr_float("scale")), "y")
    return b.build()


def _separable(opset: int) -> FunctionProto:
    """The token sum Σ_j k_j·p_j as a product (it is multiply-accumulate work): k [.., N] as
    [.., 1, N] times p [.., N] as [.., N, 1]."""
    b = FunctionBuilder(SEPARABLE, ["s", "k", "v"], [], opset, doc=__doc__.split("\n\n")[3])
    p = b.op("Softmax", "s", axis=-1)
    ctx = b.op("MatMul", b.op("Unsqueeze", "k", b.const(np.array([-2], np.int64))),
               b.op("Unsqueeze", p, b.const(np.array([-1], np.int64))))          # [.., 1, 1]
    ctx = b.op("Squeeze", ctx, b.const(np.array([-1], np.int64)))              # [.., 1]
    b.output(b.op("Mul", "v", ctx), "y")
    return b.build()


def _linear(opset: int) -> FunctionProto:
    b = FunctionBuilder(LINEAR, ["q", "k", "v"], ["eps"], opset, doc=__doc__.split("\n\n")[4])
    kt = b.op("Transpose", "k", perm=[0, 2, 1])
    num = b.op("MatMul", "q", b.op("MatMul", kt, "v"))
    ksum = b.reduce("ReduceSum", kt, [2], keepdims=1)                    # kᵀ·1  [G, d_k, 1]
    den = b.op("Add", b.op("MatMul", "q", ksum), b.attr_float("eps"))
    b.output(b.op("Div", num, den), "y")
    return b.build()


# --------------------------------------------------------------------------- declared work
def factorized_work(attrs: dict, in_shapes: list, opset: int = 17) -> list[Step]:
    w = WorkList(in_shapes, opset)
    q, k, v = w.inputs
    g, n, dk = k.shape
    dv = v.shape[2]
    ks = w.op("Softmax", k, out=(g, n, dk), axis=1)
    kv = w.op("MatMul", w.view(ks, (g, dk, n)), v, out=(g, dk, dv))
    y = w.op("MatMul", q, kv, out=(g, q.shape[1], dv))
    w.op("Mul", y, w.const(), out=(g, q.shape[1], dv))
    return w.steps


def separable_work(attrs: dict, in_shapes: list, opset: int = 17) -> list[Step]:
    w = WorkList(in_shapes, opset)
    s, k, v = w.inputs
    p = w.op("Softmax", s, out=s.shape, axis=-1)
    lead = tuple(int(x) for x in np.broadcast_shapes(k.shape[:-1], s.shape[:-1]))
    n = k.shape[-1]
    prod = w.op("MatMul", w.view(k, k.shape[:-1] + (1, n)), w.view(p, s.shape[:-1] + (n, 1)), out=lead + (1, 1))
    ctx = w.view(prod, lead + (1,))
    w.op("Mul", v, ctx, out=tuple(int(x) for x in np.broadcast_shapes(v.shape, ctx.shape)))
    return w.steps


def linear_work(attrs: dict, in_shapes: list, opset: int = 17) -> list[Step]:
    w = WorkList(in_shapes, opset)
    q, k, v = w.inputs
    g, n, dk = k.shape
    nq, dv = q.shape[1], v.shape[2]
    kt = w.view(k, (g, dk, n))
    num = w.op("MatMul", q, w.op("MatMul", kt, v, out=(g, dk, dv)), out=(g, nq, dv))
    ksum = w.reduce("ReduceSum", kt, [2], out=(g, dk, 1))
    den = w.op("Add", w.op("MatMul", q, ksum, out=(g, nq, 1)), w.const(), out=(g, nq, 1))
    w.op("Div", num, den, out=(g, nq, dv))
    return w.steps


custom_op(FACTORIZED)(_factorized)
custom_op(SEPARABLE)(_separable)
custom_op(LINEAR)(_linear)
register_work(FACTORIZED, factorized_work)
register_work(SEPARABLE, separable_work)
register_work(LINEAR, linear_work)
