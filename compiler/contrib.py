"""onnxruntime contrib ops (what ``onnxruntime.transformers.optimizer`` emits).

``com.microsoft.Attention(x, W_qkv, b_qkv[, mask_index])`` packs the q/k/v projection, the
core and a raw mask into one op. It is mapped by materialising its pieces as standard ops
next to it — ``qkv = x·W + b`` ([B, N, 3C], part-major q|k|v) and the additive mask
[B, 1, 1, N] built from ``mask_index`` (2-D 0/1 mask, or 1-D valid lengths with right
padding) — and handing them to the ordinary site machinery, whose numeric probe confirms the
interpretation before anything is rewritten. Variants with unequal ``qkv_hidden_sizes``,
``unidirectional``, past state or attention bias are declined with the reason.
``SkipLayerNormalization``/``BiasGelu``/``EmbedLayerNormalization`` stay in place (run by
onnxruntime; costed as digital vector ops).
"""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from vitc.core.graph import const_value
from vitc.compiler.recognize import AttentionSite, NotRecognised, walk_out


def _additive_mask(graph: gs.Graph, node: gs.Node, mask_index: gs.Tensor, x: gs.Tensor) -> gs.Tensor:
    prefix = f"{node.name}/vitc_mask"
    fill = np.float32(node.attrs.get("mask_filter_value", -10000.0))
    rank = len(mask_index.shape) if mask_index.shape is not None else None
    if rank is None and mask_index.inputs and mask_index.inputs[0].op == "EmbedLayerNormalization":
        rank = 1  # its mask_index output holds the valid length of each sequence

    def add(op, inputs, attrs=None, dtype=np.float32):
        out = gs.Variable(f"{prefix}/{op}_{len(graph.nodes)}", dtype=dtype)
        graph.nodes.append(gs.Node(op, f"{prefix}/{op}_{len(graph.nodes)}", attrs=attrs or {}, inputs=inputs,
                                   outputs=[out]))
        return out

    axes12 = gs.Constant(f"{prefix}/axes12", np.array([1, 2], np.int64))
    if rank == 2:
        m = add("Cast", [mask_index], {"to": 1})
        keep_neg = add("Mul", [add("Sub", [gs.Constant(f"{prefix}/one", np.array(1, np.float32)), m]),
                               gs.Constant(f"{prefix}/fill", np.array(fill))])
        return add("Unsqueeze", [keep_neg, axes12])
    if rank == 1:
        n = add("Gather", [add("Shape", [x], dtype=np.int64), gs.Constant(f"{prefix}/ax1", np.array(1, np.int64))],
                {"axis": 0}, dtype=np.int64)
        pos = add("Range", [gs.Constant(f"{prefix}/zero", np.array(0, np.int64)), n, gs.Constant(f"{prefix}/step", np.array(1, np.int64))],
                  dtype=np.int64)
        lengths = add("Cast", [mask_index], {"to": 7}, dtype=np.int64)
        valid = add("Less", [add("Unsqueeze", [pos, gs.Constant(f"{prefix}/ax0", np.array([0], np.int64))],
                                 dtype=np.int64),
                             add("Unsqueeze", [lengths, gs.Constant(f"{prefix}/ax1b", np.array([1], np.int64))],
                                 dtype=np.int64)], dtype=bool)
        additive = add("Where", [valid, gs.Constant(f"{prefix}/zerof", np.array(0, np.float32)),
                                 gs.Constant(f"{prefix}/fill", np.array(fill))])
        return add("Unsqueeze", [additive, axes12])
    raise NotRecognised(f"mask_index of rank {rank} is not supported (only [B] lengths or [B, N] masks)")


def match_ms_attention(node: gs.Node, graph: gs.Graph) -> AttentionSite:
    """Map ``com.microsoft.Attention`` onto a site over materialised standard ops."""
    if node.attrs.get("unidirectional", 0):
        raise NotRecognised("com.microsoft.Attention with unidirectional=1 is causal, not an encoder attention")
    sizes = node.attrs.get("qkv_hidden_sizes")
    if sizes is not None and len(set(sizes)) > 1:
        raise NotRecognised(f"com.microsoft.Attention with unequal qkv_hidden_sizes {list(sizes)}")
    if any(i.name for i in node.inputs[4:]):
        raise NotRecognised("com.microsoft.Attention with past state or attention bias")
    x, w, b = node.inputs[0], node.inputs[1], node.inputs[2]
    if const_value(w) is None or const_value(b) is None:
        raise NotRecognised("com.microsoft.Attention whose qkv weights are not constants")
    out, out_proj = walk_out(node.outputs[0], [node])
    prefix = f"{node.name}/vitc_qkv"
    mm = gs.Variable(f"{prefix}/MatMul_output_0", dtype=np.float32)
    qkv = gs.Variable(f"{prefix}/Add_output_0", dtype=np.float32)
    graph.nodes.append(gs.Node("MatMul", f"{prefix}/MatMul", inputs=[x, w], outputs=[mm]))
    graph.nodes.append(gs.Node("Add", f"{prefix}/Add", inputs=[mm, b], outputs=[qkv]))
    mask = _additive_mask(graph, node, node.inputs[3], x) if len(node.inputs) > 3 and node.inputs[3].name else None
    site = AttentionSite(node, "ms-attention", qkv, qkv, qkv, out, out_proj, q_in=None, mask=mask,
                         fixed_scale=node.attrs.get("scale") or None, num_heads=node.attrs["num_heads"],
                         walked=[node])
    site.forms = {"qkv": "packed-fused-op", "scale": "fused-op", "k_transpose": "fused-op",
                  "mask": "mask-index" if mask is not None else "none"}
    return site
