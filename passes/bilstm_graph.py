"""The ONNX graph of a FAR BiLSTM block: per-head ``LSTM`` ops (ONNX gate order i, o, f, c) between a
pre-projection and per-head output projections, spliced into the canonical graph in place of a
block's q/k/v projections and attention core (see :mod:`vitc.passes.bilstm`)."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from vitc.core.ir import CompiledModel
from vitc.passes.bilstm_weights import BlockLstm, LstmDirection

TORCH_TO_ONNX_GATES = (0, 3, 1, 2)   # PyTorch (i, f, g, o) → ONNX (i, o, f, c)


def onnx_gate_order(a: np.ndarray, hidden: int) -> np.ndarray:
    """Rows of a [4h, …] (or [4h]) PyTorch-ordered stack in ONNX gate order (i, o, f, c)."""
    return np.concatenate([a[g * hidden:(g + 1) * hidden] for g in TORCH_TO_ONNX_GATES], axis=0)


def onnx_lstm_weights(dirs: list[LstmDirection]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W [D, 4h, in], R [D, 4h, h], B [D, 8h] for directions of equal hidden size."""
    h = dirs[0].hidden
    W = np.stack([onnx_gate_order(d.w_ih, h) for d in dirs]).astype(np.float32)
    R = np.stack([onnx_gate_order(d.w_hh, h) for d in dirs]).astype(np.float32)
    B = np.stack([np.concatenate([onnx_gate_order(d.b_ih, h), onnx_gate_order(d.b_hh, h)]) for d in dirs])
    return W, R, B.astype(np.float32)


# --------------------------------------------------------------------------- graph rewrite


class _Builder:
    """Appends nodes to a gs graph under one name prefix; remembers (node, role) for tagging."""

    def __init__(self, graph: gs.Graph, prefix: str, opset: int):
        self.graph, self.prefix, self.opset = graph, prefix, opset
        self.tagged: list[tuple[str, str]] = []

    def const(self, name: str, value) -> gs.Constant:
        arr = np.asarray(value)
        arr = arr.astype(np.float32) if arr.dtype.kind == "f" else arr.astype(np.int64)
        return gs.Constant(f"{self.prefix}/{name}", np.ascontiguousarray(arr))

    def node(self, op: str, name: str, inputs, n_out: int = 1, role: str | None = None, out_dtype=np.float32,
             **attrs):
        outs = [gs.Variable(f"{self.prefix}/{name}_output_{i}", dtype=out_dtype) for i in range(n_out)]
        node = gs.Node(op, f"{self.prefix}/{name}", attrs=attrs, inputs=list(inputs), outputs=outs)
        self.graph.nodes.append(node)
        if role:
            self.tagged.append((node.name, role))
        return outs[0] if n_out == 1 else outs

    def linear(self, x, w_out_in: np.ndarray, b: np.ndarray, name: str, role: str):
        """x @ Wᵀ + b with W in [out, in] layout (emitted as MatMul [in, out] + Add)."""
        y = self.node("MatMul", f"{name}/MatMul", [x, self.const(f"{name}.weight", w_out_in.T)], role=role)
        return self.node("Add", f"{name}/Add", [y, self.const(f"{name}.bias", b)], role=role + "_bias")

    def split(self, x, sizes: list[int], axis: int, name: str):
        if self.opset >= 13:
            return self.node("Split", name, [x, self.const(f"{name}.split", sizes)], n_out=len(sizes), axis=axis)
        return self.node("Split", name, [x], n_out=len(sizes), axis=axis, split=list(sizes))


def build_block(graph: gs.Graph, x_in: gs.Tensor, b: BlockLstm, prefix: str, opset: int,
                force_split_directions: bool = False,
                seq_lens: gs.Tensor | None = None) -> tuple[gs.Tensor, list[tuple[str, str]]]:
    """Append the BiLSTM replacement of one block reading ``x_in`` [B, N, C]; returns the
    [B, N, C] tensor the output projection should read, and (node name, role) pairs.
    ``seq_lens`` (int32 [B]): real tokens per sample — every LSTM runs over those only (ONNX
    ``sequence_lens``: the reverse direction starts at each sample's last real token; outputs
    past it are zero)."""
    bd = _Builder(graph, prefix, opset)
    lens = [seq_lens] if seq_lens is not None else []
    d = b.head_dim
    p = bd.linear(x_in, b.pre_w, b.pre_b, "pre_proj", "pre_proj")
    p_t = bd.node("Transpose", "to_seq_major", [p], perm=[1, 0, 2], role="lstm_layout")          # [N, B, C]
    heads_in = bd.split(p_t, [d] * b.num_heads, 2, "split_heads")
    heads_in = heads_in if isinstance(heads_in, list) else [heads_in]
    flat = bd.const("shape_nb_flat", [0, 0, -1])
    outs = []
    for hd, (xh, head) in enumerate(zip(heads_in, b.heads)):
        hp = f"head{hd}"
        hf, hr = head.hidden
        if hf == hr and not force_split_directions:
            W, R, B = onnx_lstm_weights([head.fwd, head.rev])
            y = bd.node("LSTM", f"{hp}/LSTM", [xh, bd.const(f"{hp}/lstm.W", W), bd.const(f"{hp}/lstm.R", R),
                                                bd.const(f"{hp}/lstm.B", B), *lens],
                        role="lstm", hidden_size=int(hf), direction="bidirectional")             # [N, 2, B, h]
            y = bd.node("Transpose", f"{hp}/dirs_last", [y], perm=[0, 2, 1, 3], role="lstm_layout")  # [N, B, 2, h]
            y = bd.node("Reshape", f"{hp}/merge_dirs", [y, flat], role="lstm_layout")            # [N, B, 2h]
        else:
            ys = []
            for name, dr, direction in (("fwd", head.fwd, "forward"), ("rev", head.rev, "reverse")):
                W, R, B = onnx_lstm_weights([dr])
                yd = bd.node("LSTM", f"{hp}/LSTM_{name}", [xh, bd.const(f"{hp}/lstm_{name}.W", W),
                                                            bd.const(f"{hp}/lstm_{name}.R", R),
                                                            bd.const(f"{hp}/lstm_{name}.B", B), *lens],
                             role="lstm", hidden_size=int(dr.hidden), direction=direction)      # [N, 1, B, h]
                shape = bd.const(f"{hp}/shape_{name}", [0, -1, dr.hidden])
                ys.append(bd.node("Reshape", f"{hp}/squeeze_{name}", [yd, shape], role="lstm_layout"))  # [N, B, h]
            y = bd.node("Concat", f"{hp}/concat_dirs", ys, axis=2, role="lstm_layout")          # [N, B, hf+hr]
        outs.append(bd.linear(y, head.proj_w, head.proj_b, f"{hp}/head_proj", "head_proj"))     # [N, B, d]
    cat = bd.node("Concat", "concat_heads", outs, axis=2, role="lstm_layout")                   # [N, B, C]
    out = bd.node("Transpose", "to_batch_major", [cat], perm=[1, 0, 2], role="lstm_layout")     # [B, N, C]
    out.name = f"{prefix}/output"
    return out, bd.tagged


def sequence_lengths(cm: CompiledModel, index: int, rank: int) -> tuple[gs.Tensor, list[tuple[str, str]]]:
    """int32 [B]: real tokens per sample, from block ``index``'s key-padding attention mask of
    ``rank`` dims ([B, N], [B, 1, 1, N], or [B, 1, N, N] with equal rows; additive — 0 keeps,
    large negative drops — or boolean). Built once per mask tensor: blocks sharing a mask share
    the lengths (no nodes, no tags the second time)."""
    blk = cm.blocks[index]
    mask = cm.node(blk.attention).inputs[3]
    bd = _Builder(cm.graph, f"/bilstm_seq_lens/{mask.name}", cm.opset)
    built = cm.graph.tensors().get(f"{bd.prefix}/count_output_0")
    if built is not None:
        return built, []
    if rank > 2:                          # one query row: [B, 1, ..., 1, N]
        mask = bd.node("Slice", "first_query", [mask, bd.const("starts", [0] * (rank - 2)),
                                                bd.const("ends", [1] * (rank - 2)),
                                                bd.const("slice_axes", list(range(1, rank - 1)))],
                       role="lstm_layout", out_dtype=mask.dtype or np.float32)
    keep = mask
    if mask.dtype is None or np.dtype(mask.dtype) != np.bool_:
        keep = bd.node("Greater", "keep", [mask, bd.const("minus_one", np.float32(-1.0))], role="lstm_layout",
                       out_dtype=np.bool_)
    flat = bd.node("Reshape", "flat", [keep, bd.const("shape", [0, -1])], role="lstm_layout",
                   out_dtype=np.bool_)                                                                   # [B, N]
    ints = bd.node("Cast", "to_int", [flat], role="lstm_layout", out_dtype=np.int32, to=onnx.TensorProto.INT32)
    lens = bd.node("ReduceSum", "count", [ints, bd.const("sum_axes", [1])], role="lstm_layout", out_dtype=np.int32,
                   keepdims=0)                                                                           # [B]
    return lens, bd.tagged


def replace_block(cm: CompiledModel, index: int, b: BlockLstm, force_split_directions: bool = False,
                  packed: int = 0) -> str:
    """Rewire block ``index`` of ``cm`` to ``b``; the q/k/v projections and the core become dead
    (removed by cleanup). ``packed`` (the mask's rank, 0: no): the LSTMs run over each sample's
    real tokens, counted from the block's attention mask (:func:`sequence_lengths`). Returns the name of the new
    pre-output-projection tensor."""
    blk = cm.blocks[index]
    b.check(blk.embed_dim, blk.num_heads, f"block {index}")
    tensors = cm.graph.tensors()
    x_in = tensors[blk.x_in]
    lens, len_tags = sequence_lengths(cm, index, packed) if packed else (None, [])
    out, tagged = build_block(cm.graph, x_in, b, f"/block{index}/bilstm", cm.opset, force_split_directions, lens)
    tagged = len_tags + tagged
    proj = cm.node(blk.out_proj.matmul)
    proj.inputs[0] = out
    for name, role in tagged:
        cm.tag(name, index, role)
    return out.name


def block_model(b: BlockLstm, opset: int = 17, force_split_directions: bool = False):
    """A stand-alone ONNX model of one replacement block: ``x`` [B, N, C] → ``y`` [B, N, C]
    (batch and N dynamic), for parity checks against torch / :func:`numpy_forward`."""
    C = b.embed_dim
    x = gs.Variable("x", dtype=np.float32, shape=["batch", "tokens", C])
    graph = gs.Graph(inputs=[x], opset=opset, name="bilstm_block")
    y, _ = build_block(graph, x, b, "/bilstm", opset, force_split_directions)
    y.name, y.shape = "y", ["batch", "tokens", C]
    graph.outputs = [y]
    graph.cleanup().toposort()
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = 8                    # standard ops only
    onnx.checker.check_model(model)
    return model


