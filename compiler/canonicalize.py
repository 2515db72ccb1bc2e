"""Rewrite every recognised attention site into the canonical form:

    x_in ─┬─ MatMul W_q ─ Add b_q ─┐
          ├─ MatMul W_k ─ Add b_k ─┼─ ai.vitc::Attention(num_heads, scale) ─ out_proj
          └─ MatMul W_v ─ Add b_v ─┘        (+ mask input, overload "masked")

Packed projections are split into three; the layout ops, run-time scale computations and
the exported core become dead and are removed by ``cleanup``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from vitc.compiler.blocks import describe_mlp, norm_form, normalisation, residual_of
from vitc.core.ir import EncoderBlock, Projection
from vitc.core.graph import const_value, producer
from vitc.compiler.probe import CoreSpec
from vitc.compiler.recognize import SHAPE_READERS, AttentionSite, NotRecognised
from vitc.runtime.function_builder import DOMAIN


@dataclass
class _SourceProjection:
    matmul: gs.Node
    add: gs.Node | None
    x: gs.Tensor
    weight: np.ndarray      # [K, N]
    bias: np.ndarray | None
    bias_first: bool


def source_projection(src: gs.Tensor) -> _SourceProjection:
    """The ``MatMul(x, W) [+ b]`` that writes ``src`` (bias Add in either operand order)."""
    node = producer(src)
    add, bias, bias_first = None, None, False
    if node is not None and node.op == "Add":
        a, b = node.inputs
        if const_value(b) is not None and producer(a) is not None and producer(a).op == "MatMul":
            add, bias, node = node, const_value(b), producer(a)
        elif const_value(a) is not None and producer(b) is not None and producer(b).op == "MatMul":
            add, bias, node, bias_first = node, const_value(a), producer(b), True
    if node is None or node.op != "MatMul" or const_value(node.inputs[1]) is None:
        raise NotRecognised(f"q/k/v source '{src.name}' is not a MatMul(+Add) projection with constant weights")
    w = const_value(node.inputs[1])
    if w.ndim != 2 or (bias is not None and bias.reshape(-1).shape[0] != w.shape[1]):
        raise NotRecognised(f"projection weight of '{src.name}' has shape {w.shape}, expected [K, N]")
    return _SourceProjection(node, add, node.inputs[0], w, None if bias is None else bias.reshape(-1), bias_first)


def _new_projection(graph: gs.Graph, x: gs.Tensor, w: np.ndarray, b: np.ndarray | None, prefix: str,
                    out_shape) -> tuple[gs.Tensor, Projection]:
    wc = gs.Constant(f"{prefix}.weight", np.ascontiguousarray(w, np.float32))
    mm_out = gs.Variable(f"{prefix}/MatMul_output_0", dtype=np.float32, shape=out_shape)
    mm = gs.Node("MatMul", f"{prefix}/MatMul", inputs=[x, wc], outputs=[mm_out])
    graph.nodes.append(mm)
    if b is None:
        return mm_out, Projection(mm.name, None, wc.name, None, w.shape[0], w.shape[1])
    bc = gs.Constant(f"{prefix}.bias", np.ascontiguousarray(b, np.float32))
    out = gs.Variable(f"{prefix}/Add_output_0", dtype=np.float32, shape=out_shape)
    add = gs.Node("Add", f"{prefix}/Add", inputs=[mm_out, bc], outputs=[out])
    graph.nodes.append(add)
    return out, Projection(mm.name, add.name, wc.name, bc.name, w.shape[0], w.shape[1])


def _existing_projection(p: _SourceProjection) -> Projection:
    if p.add is not None and p.bias_first:
        p.add.inputs[0], p.add.inputs[1] = p.add.inputs[1], p.add.inputs[0]
    return Projection(p.matmul.name, p.add.name if p.add else None, p.matmul.inputs[1].name,
                      p.add.inputs[1].name if p.add else None, p.weight.shape[0], p.weight.shape[1])


def _canonical_projections(graph, site: AttentionSite, spec: CoreSpec, prefix: str):
    """Three [B, N, C] projection outputs and their records."""
    outs, recs = [], []
    identity = np.arange(spec.num_heads * spec.head_dim)
    srcs = {}
    for role, src, cols in (("q", site.q_src, spec.q_cols), ("k", site.k_src, spec.k_cols),
                            ("v", site.v_src, spec.v_cols)):
        p = srcs.setdefault(src.name, source_projection(src))
        if not site.packed and len(cols) == p.weight.shape[1] and np.array_equal(cols, identity):
            outs.append(src)
            recs.append(_existing_projection(p))
        else:
            b = None if p.bias is None else p.bias[cols]
            out, rec = _new_projection(graph, p.x, p.weight[:, cols], b, f"{prefix}/{role}_proj", site.out.shape)
            outs.append(out)
            recs.append(rec)
    return outs, recs


def _mask_input(graph: gs.Graph, site: AttentionSite, spec: CoreSpec, prefix: str) -> gs.Tensor | None:
    if site.mask is None:
        return None
    if not spec.mask_is_bool:
        return site.mask
    zero = gs.Constant(f"{prefix}.mask_zero", np.array(0, np.float32))
    neg = gs.Constant(f"{prefix}.mask_neg", np.array(-3.4028234663852886e38, np.float32))
    out = gs.Variable(f"{prefix}/mask_additive", dtype=np.float32)
    graph.nodes.append(gs.Node("Where", f"{prefix}/MaskWhere", inputs=[site.mask, zero, neg], outputs=[out]))
    return out


def rewrite_site(graph: gs.Graph, site: AttentionSite, spec: CoreSpec, index: int) -> EncoderBlock:
    """Replace ``site`` by projections + ``ai.vitc::Attention``; returns the block record."""
    prefix = f"/block{index}/attn"
    projections = [source_projection(s) for s in {site.q_src.name: site.q_src, site.k_src.name: site.k_src,
                                                   site.v_src.name: site.v_src}.values()]
    x_in = projections[0].x
    if any(p.x is not x_in for p in projections):
        raise NotRecognised("q, k and v projections read different tensors (cross-attention?)")
    out_w = site.out_proj.inputs[1]
    # all checks passed: mutate the graph
    (q, k, v), (qr, kr, vr) = _canonical_projections(graph, site, spec, prefix)
    mask = _mask_input(graph, site, spec, prefix)
    core_out = gs.Variable(f"{prefix}/Attention_output_0", dtype=np.float32, shape=site.out.shape)
    core = gs.Node("Attention", f"{prefix}/Attention", domain=DOMAIN,
                   attrs={"num_heads": int(spec.num_heads), "scale": float(spec.scale)},
                   inputs=[q, k, v] + ([mask] if mask is not None else []), outputs=[core_out])
    graph.nodes.append(core)
    site.out_proj.inputs[0] = core_out
    for reader in site.walked:      # Shape readers of the merged output read the core's instead
        if reader.op in SHAPE_READERS and reader.inputs[0] is site.out:
            reader.inputs[0] = core_out
    out_add = next((c for c in site.out_proj.outputs[0].outputs if c.op == "Add"
                    and any(const_value(i) is not None for i in c.inputs)), None)
    if out_add is not None and const_value(out_add.inputs[0]) is not None:
        out_add.inputs[0], out_add.inputs[1] = out_add.inputs[1], out_add.inputs[0]
    out_w_val = const_value(out_w)
    out_rec = Projection(site.out_proj.name, out_add.name if out_add else None, out_w.name,
                         out_add.inputs[1].name if out_add else None, out_w_val.shape[0], out_w_val.shape[1])
    attn_output = out_add.outputs[0] if out_add is not None else site.out_proj.outputs[0]
    residual, partner = residual_of(attn_output)
    norm1, norm1_form, _ = normalisation(x_in)
    # pre-LN: the residual adds the un-normalised stream; post-LN: it adds x_in itself
    pre_ln = norm1 is not None and partner is not None and partner is not x_in
    fused_residual = residual is not None and residual.op.startswith("Skip")  # residual + LayerNorm in one op
    after = residual.outputs[0] if residual is not None else attn_output
    if fused_residual and not pre_ln:
        norm1, norm1_form = residual.name, "skip-layernorm"
    elif not pre_ln:  # post-LN: the block's first norm follows the attention residual
        post = after.outputs[0] if len(after.outputs) == 1 else None
        norm1, norm1_form = (None, "none") if post is None else norm_form(post.outputs[0])
        if norm1 is not None and not residual.op.startswith("Skip"):
            after = post.outputs[0]
    mlp = describe_mlp(after, post_ln=not pre_ln)
    if fused_residual and pre_ln:
        mlp["norm2"] = residual.name
    forms = dict(site.forms, layernorm=norm1_form, gelu=mlp["gelu"])
    static_n = site.out.shape[1] if site.out.shape and isinstance(site.out.shape[1], int) else None
    return EncoderBlock(
        index=index, num_heads=spec.num_heads, head_dim=spec.head_dim, embed_dim=spec.num_heads * spec.head_dim,
        tokens=static_n or spec.tokens, tokens_dynamic=static_n is None, pre_ln=pre_ln, x_in=x_in.name, block_input=partner.name if partner is not None else None,
        q_proj=qr, k_proj=kr, v_proj=vr, attention=core.name, attention_output_core=core_out.name,
        out_proj=out_rec, attn_output=attn_output.name, residual=residual.name if residual is not None else None,
        norm1=norm1, norm2=mlp["norm2"], mlp_fc1=mlp["mlp_fc1"], mlp_fc2=mlp["mlp_fc2"],
        block_output=mlp["output"], forms=forms, has_mask=mask is not None, probe_rel_error=spec.rel_error)
