"""Structural recognition of attention cores in exported graphs.

A *site* is one attention core found by walking from an anchor — a ``Softmax`` over the last
axis, the standard ONNX ``Attention`` op (opset 23), or onnxruntime's ``com.microsoft.Attention``
— to its boundary tensors:

    q_src, k_src, v_src   projection outputs [B, N, C] (one packed [B, N, 3C] tensor if shared)
    mask                  additive mask added to the scores (or None)
    scale factors         scalar Mul/Div operands met on the q, kᵀ and score paths
    out                   merged-heads tensor [B, N, C] read by the output projection

Walks pass through layout ops (Reshape, Transpose, Split, Slice, Squeeze, Gather, ...) and
scalar scalings only. What those layout ops mean (part order of a packed projection, head
layout) is *not* trusted from structure: :mod:`vitc.compiler.probe` confirms it numerically.
Each site records which exporter form was met (for ``vitc inspect``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx_graphsurgeon as gs

from vitc.core.graph import const_value, is_scalar_like, producer, single_consumer, weight_input

LAYOUT_OPS = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Split", "Slice", "Gather", "Flatten",
              "Identity", "Cast", "Dropout"}
PASS_FORWARD = {"Transpose", "Reshape", "Flatten", "Identity", "Cast", "Dropout"}


class NotRecognised(Exception):
    """Raised with a human-readable reason when a walk leaves the supported forms."""


@dataclass
class Factor:
    """A scalar multiplier ``tensor ** power`` met on a path (power +1 for Mul, -1 for Div)."""
    tensor: gs.Tensor
    power: int
    path: str  # "q", "k", "scores"

    @property
    def constant(self) -> bool:
        return const_value(self.tensor) is not None


@dataclass
class AttentionSite:
    anchor: gs.Node
    kind: str                      # softmax | onnx-attention | ms-attention
    q_src: gs.Tensor
    k_src: gs.Tensor
    v_src: gs.Tensor
    out: gs.Tensor
    out_proj: gs.Node
    q_in: gs.Tensor | None = None  # tensor entering the QK product (its last dim is d)
    mask: gs.Tensor | None = None
    factors: list[Factor] = field(default_factory=list)
    fixed_scale: float | None = None
    num_heads: int | None = None   # when an attribute states it
    forms: dict[str, str] = field(default_factory=dict)
    walked: list[gs.Node] = field(default_factory=list)

    @property
    def packed(self) -> bool:
        return self.q_src is self.k_src and self.k_src is self.v_src


def _scalar_operand(node: gs.Node) -> tuple[gs.Tensor, gs.Tensor, int] | None:
    """For Mul/Div with one scalar-like operand: (data, scalar, power)."""
    if node.op not in ("Mul", "Div") or len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if is_scalar_like(b) and not is_scalar_like(a):
        return a, b, (1 if node.op == "Mul" else -1)
    if node.op == "Mul" and is_scalar_like(a) and not is_scalar_like(b):
        return b, a, 1
    return None


def walk_back(t: gs.Tensor, path: str, site_ops: list[gs.Node], factors: list[Factor]) -> gs.Tensor:
    """Follow ``t`` back through layout ops and scalar scalings to its source tensor."""
    for _ in range(64):
        node = producer(t)
        if node is None:
            return t
        if node.op in LAYOUT_OPS:
            if node.op == "Cast" and node.attrs.get("to") not in (1, None):
                raise NotRecognised(f"{path}: Cast to dtype {node.attrs.get('to')} on the {path} path")
            if node.op == "Gather" and (const_value(node.inputs[1]) is None or const_value(node.inputs[1]).size != 1):
                return t
            site_ops.append(node)
            t = node.inputs[0]
            continue
        scal = _scalar_operand(node)
        if scal is not None:
            data, scalar, power = scal
            factors.append(Factor(scalar, power, path))
            site_ops.append(node)
            t = data
            continue
        return t
    raise NotRecognised(f"{path}: layout chain longer than 64 ops")


def _leads_to_product(t: gs.Tensor) -> bool:
    for _ in range(8):
        node = producer(t)
        if node is None:
            return False
        if node.op == "MatMul":
            return const_value(node.inputs[1]) is None and const_value(node.inputs[0]) is None
        if node.op in ("Cast", "Identity"):
            t = node.inputs[0]
        elif _scalar_operand(node) is not None:
            t = _scalar_operand(node)[0]
        else:
            return False
    return False


def _walk_scores(t: gs.Tensor, site_ops, factors) -> tuple[gs.Node, gs.Tensor | None, list[str]]:
    """From the Softmax input back to the QKᵀ MatMul: returns (matmul, mask, ops met)."""
    mask, met = None, []
    for _ in range(16):
        node = producer(t)
        if node is None:
            break
        if node.op == "MatMul":
            if const_value(node.inputs[1]) is not None:
                raise NotRecognised("Softmax input is a product with a constant (not QKᵀ)")
            return node, mask, met
        if node.op in ("Cast", "Identity"):
            site_ops.append(node)
            t = node.inputs[0]
            continue
        scal = _scalar_operand(node)
        if scal is not None:
            factors.append(Factor(scal[1], scal[2], "scores"))
            met.append(node.op)
            site_ops.append(node)
            t = scal[0]
            continue
        if node.op == "Add":
            a, b = node.inputs
            score_side = a if _leads_to_product(a) else b if _leads_to_product(b) else None
            if score_side is None:
                break
            if mask is not None:
                raise NotRecognised("more than one additive term on the scores (relative position bias?)")
            mask = b if score_side is a else a
            met.append("Add(mask)")
            site_ops.append(node)
            t = score_side
            continue
        if node.op == "Where":
            raise NotRecognised("scores masked with Where (masked_fill); only additive masks are supported")
        break
    raise NotRecognised("Softmax input is not produced by an activation×activation MatMul (QKᵀ)")


SHAPE_READERS = ("Shape", "Size")


def walk_out(t: gs.Tensor, site_ops) -> tuple[gs.Tensor, gs.Node]:
    """From the attention-times-V product forward to the output projection's input. ``Shape``/
    ``Size`` readers (older exporters build the merge Reshape's target from them) are not data
    consumers; they join ``site_ops``."""
    for _ in range(16):
        readers = [c for c in t.outputs if c.op in SHAPE_READERS]
        data = [c for c in t.outputs if c.op not in SHAPE_READERS]
        site_ops.extend(readers)
        consumer = data[0] if len(data) == 1 else None
        if consumer is None:
            raise NotRecognised(f"attention output '{t.name}' has {len(data)} data consumers")
        if weight_input(consumer) is not None and consumer.inputs[0] is t:
            return t, consumer
        if consumer.op in PASS_FORWARD:
            site_ops.append(consumer)
            t = consumer.outputs[0]
            continue
        raise NotRecognised(f"attention output feeds {consumer.op} '{consumer.name}', not an output projection")
    raise NotRecognised("no output projection found after the attention core")


def _kt_form(ops: list[gs.Node]) -> str:
    kinds = [n.op for n in ops if n.op in ("Transpose", "Reshape")]
    perms = [tuple(n.attrs.get("perm", ())) for n in ops if n.op == "Transpose"]
    if (0, 1, 3, 2) in perms:
        return "transpose-0132"
    if (0, 2, 3, 1) in perms:
        return "transpose-0231"
    if kinds[:3] == ["Reshape", "Transpose", "Reshape"]:
        return "reshape-transpose-reshape"
    return ">".join(reversed(kinds)) or "none"


def _scale_form(factors: list[Factor]) -> str:
    paths = {f.path for f in factors}
    runtime = any(not f.constant for f in factors)
    suffix = "-runtime" if runtime else ""
    if {"q", "k"} <= paths:
        return "q-and-k" + suffix
    if paths == {"q"}:
        return "q-only" + suffix
    if paths == {"scores"}:
        ops = {("mul" if f.power > 0 else "div") for f in factors}
        return "scores-" + "-".join(sorted(ops)) + suffix
    return "+".join(sorted(paths)) + suffix if paths else "none"


def _qkv_form(site_ops_q: list[gs.Node], packed: bool) -> str:
    if not packed:
        return "separate"
    ops = {n.op for n in site_ops_q}
    for op, label in (("Split", "packed-split"), ("Slice", "packed-slice"), ("Gather", "packed-gather")):
        if op in ops:
            return label
    return "packed"


def _nan_guard(t: gs.Tensor) -> list[gs.Node] | None:
    """``Where(IsNaN(p), 0, p)`` after Softmax (dynamo's guard for fully masked rows): [IsNaN, Where]."""
    if len(t.outputs) != 2:
        return None
    isnan = next((c for c in t.outputs if c.op == "IsNaN"), None)
    where = next((c for c in t.outputs if c.op == "Where"), None)
    if isnan is None or where is None or where.inputs[0] is not isnan.outputs[0] or where.inputs[2] is not t:
        return None
    zero = const_value(where.inputs[1])
    if zero is None or zero.size != 1 or float(zero.reshape(-1)[0]) != 0.0:
        return None
    return [isnan, where]


def match_softmax(softmax: gs.Node) -> AttentionSite:
    """Recognise the attention core around ``softmax`` or raise :class:`NotRecognised`."""
    axis = softmax.attrs.get("axis", -1)
    rank = len(softmax.inputs[0].shape) if softmax.inputs[0].shape is not None else None
    if axis != -1 and (rank is None or axis != rank - 1):
        raise NotRecognised(f"Softmax over axis {axis}, not the key axis")
    ops, factors = [softmax], []
    qk, mask, score_ops = _walk_scores(softmax.inputs[0], ops, factors)
    ops.append(qk)
    t = softmax.outputs[0]
    while True:
        if (c := single_consumer(t)) is not None and c.op in ("Cast", "Identity", "Dropout"):
            ops.append(c)
            t = c.outputs[0]
        elif (guard := _nan_guard(t)) is not None:
            ops.extend(guard)
            t = guard[-1].outputs[0]
        else:
            break
    av = single_consumer(t)
    if av is None or av.op != "MatMul" or av.inputs[0] is not t:
        raise NotRecognised("attention probabilities are not multiplied by V in a MatMul")
    ops.append(av)
    q_ops, k_ops, v_ops = [], [], []
    q_src = walk_back(qk.inputs[0], "q", q_ops, factors)
    k_src = walk_back(qk.inputs[1], "k", k_ops, factors)
    v_src = walk_back(av.inputs[1], "v", v_ops, [])
    out, out_proj = walk_out(av.outputs[0], ops)
    site = AttentionSite(softmax, "softmax", q_src, k_src, v_src, out, out_proj, q_in=qk.inputs[0],
                         mask=mask, factors=factors, walked=ops + q_ops + k_ops + v_ops)
    site.forms = {"qkv": _qkv_form(q_ops, site.packed), "scale": _scale_form(factors),
                  "k_transpose": _kt_form(k_ops), "mask": "additive" if mask is not None else "none"}
    return site


def match_onnx_attention(node: gs.Node) -> AttentionSite:
    """The standard ONNX ``Attention`` op (opset 23) → site (3-D or 4-D q/k/v)."""
    if node.attrs.get("is_causal", 0):
        raise NotRecognised("causal Attention is not an encoder attention")
    if node.attrs.get("softcap", 0.0):
        raise NotRecognised("Attention with softcap is not supported")
    if any(o.outputs for o in node.outputs[1:]):
        raise NotRecognised("Attention op with KV-cache outputs in use")
    if len(node.inputs) > 4 and any(i.name for i in node.inputs[4:]):
        raise NotRecognised("Attention op with past key/value inputs")
    ops, factors = [node], []
    q_ops, k_ops, v_ops = [], [], []
    q_src = walk_back(node.inputs[0], "q", q_ops, [])
    k_src = walk_back(node.inputs[1], "k", k_ops, [])
    v_src = walk_back(node.inputs[2], "v", v_ops, [])
    out, out_proj = walk_out(node.outputs[0], ops)
    mask = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3].name else None
    site = AttentionSite(node, "onnx-attention", q_src, k_src, v_src, out, out_proj, q_in=node.inputs[0],
                         mask=mask, factors=factors, walked=ops + q_ops + k_ops + v_ops,
                         fixed_scale=node.attrs.get("scale"), num_heads=node.attrs.get("q_num_heads"))
    site.forms = {"qkv": _qkv_form(q_ops, site.packed), "scale": "fused-op", "k_transpose": "fused-op",
                  "mask": "fused-op" if mask is not None else "none"}
    return site
