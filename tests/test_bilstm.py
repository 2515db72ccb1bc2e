"""bilstm (FAR) pass without torch: ONNX LSTM emission, gate order, weight files, pruning,
the one-line error when distillation would need torch."""
from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest

from vitc.core.errors import VitcInputError
from vitc.passes.bilstm_graph import block_model
from vitc.passes.bilstm_weights import (BlockLstm, choose_units, from_far_packed, group_norms, keep_units,
                                        load_weights, numpy_forward, random_block, save_npz)
from vitc.runtime.session import open_session


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return open_session(model).run(None, {"x": x})[0]


def _x(b: int, n: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, n, c)).astype(np.float32)


def _far_packed(block: BlockLstm) -> dict[str, np.ndarray]:
    """Pack per-head weights (equal hidden h) into FAR MultiHeadLstm arrays (block-diagonal)."""
    C, H, d = block.embed_dim, block.num_heads, block.head_dim
    h = block.heads[0].fwd.hidden
    HH = H * h
    sd = {"pre_proj.weight": block.pre_w, "pre_proj.bias": block.pre_b,
          "head_proj.weight": np.zeros((C, 2 * HH), np.float32),
          "head_proj.bias": np.concatenate([hd.proj_b for hd in block.heads])}
    for di, suffix in enumerate(("", "_reverse")):
        w_ih, w_hh = np.zeros((4 * HH, C), np.float32), np.zeros((4 * HH, HH), np.float32)
        b_ih, b_hh = np.zeros(4 * HH, np.float32), np.zeros(4 * HH, np.float32)
        for hi, head in enumerate(block.heads):
            dr = head.fwd if di == 0 else head.rev
            for g in range(4):
                rows = g * HH + hi * h + np.arange(h)
                w_ih[np.ix_(rows, np.arange(hi * d, (hi + 1) * d))] = dr.w_ih[g * h:(g + 1) * h]
                w_hh[np.ix_(rows, np.arange(hi * h, (hi + 1) * h))] = dr.w_hh[g * h:(g + 1) * h]
                b_ih[rows], b_hh[rows] = dr.b_ih[g * h:(g + 1) * h], dr.b_hh[g * h:(g + 1) * h]
            sd["head_proj.weight"][hi * d:(hi + 1) * d, di * HH + hi * h + np.arange(h)] = \
                head.proj_w[:, di * h:(di + 1) * h]
        sd.update({f"lstm.weight_ih_l0{suffix}": w_ih, f"lstm.weight_hh_l0{suffix}": w_hh,
                   f"lstm.bias_ih_l0{suffix}": b_ih, f"lstm.bias_hh_l0{suffix}": b_hh})
    return sd


def _onnx_order_reference(block: BlockLstm, x: np.ndarray) -> np.ndarray:
    """The ONNX LSTM equations written out with ONNX's gate order (i, o, f, c) on the emitted
    W/R/B initializers — independent of the PyTorch-order numpy reference."""
    model = block_model(block)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    p = x.astype(np.float64) @ block.pre_w.T + block.pre_b
    d, outs = block.head_dim, []
    for hi, head in enumerate(block.heads):
        W = inits[f"/bilstm/head{hi}/lstm.W"]
        R = inits[f"/bilstm/head{hi}/lstm.R"]
        B = inits[f"/bilstm/head{hi}/lstm.B"]
        h = R.shape[-1]
        ys = []
        for di in range(2):
            hs, cs = np.zeros((x.shape[0], h)), np.zeros((x.shape[0], h))
            y = np.zeros(x.shape[:2] + (h,))
            for t in (range(x.shape[1]) if di == 0 else range(x.shape[1] - 1, -1, -1)):
                z = p[:, t, hi * d:(hi + 1) * d] @ W[di].T + hs @ R[di].T + B[di, :4 * h] + B[di, 4 * h:]
                i, o, f, c = (z[:, k * h:(k + 1) * h] for k in range(4))
                cs = sig(f) * cs + sig(i) * np.tanh(c)
                hs = sig(o) * np.tanh(cs)
                y[:, t] = hs
            ys.append(y)
        outs.append(np.concatenate(ys, -1) @ head.proj_w.T + head.proj_b)
    return np.concatenate(outs, -1)


def test_block_matches_reference_with_dynamic_batch_and_length():
    block = random_block(32, 4, np.random.default_rng(1))
    model = block_model(block)
    assert [n.op_type for n in model.graph.node].count("LSTM") == 4
    lstm = next(n for n in model.graph.node if n.op_type == "LSTM")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lstm.attribute}
    assert attrs["direction"] == b"bidirectional" and attrs["hidden_size"] == 8
    for b, n in ((1, 5), (3, 17), (2, 1)):
        x = _x(b, n, 32, seed=n)
        y = _run(model, x)
        assert y.shape == (b, n, 32)
        assert np.abs(y - numpy_forward(block, x)).max() < 1e-5


def test_gate_order_is_onnx_iofc():
    block = random_block(16, 2, np.random.default_rng(2))
    x = _x(2, 7, 16)
    ref = _onnx_order_reference(block, x)
    assert np.abs(ref - numpy_forward(block, x)).max() < 1e-9   # permutation is the right one
    assert np.abs(_run(block_model(block), x) - ref).max() < 1e-5


def test_pruned_block_emits_separate_directions_with_own_sizes():
    block = random_block(32, 4, np.random.default_rng(3))
    keep = choose_units(group_norms(block), ratio=0.4)
    pruned = keep_units(block, keep)
    sizes = pruned.hidden_sizes()
    assert sum(map(sum, sizes)) == 64 - 26
    model = block_model(pruned)
    lstms = [n for n in model.graph.node if n.op_type == "LSTM"]
    dirs = sorted(onnx.helper.get_attribute_value(a) for n in lstms for a in n.attribute if a.name == "direction")
    assert b"bidirectional" not in dirs or any(a != b for a, b in sizes)
    split = [n for n in lstms if any(a.name == "direction" and a.s != b"bidirectional" for a in n.attribute)]
    assert split, "pruned heads with unequal sizes must use forward/reverse LSTMs"
    x = _x(2, 9, 32)
    assert np.abs(_run(model, x) - numpy_forward(pruned, x)).max() < 1e-5
    # removing a unit == zeroing its whole weight group
    zeroed = keep_units(block, [[np.arange(8), np.arange(8)] for _ in range(4)])
    for head, (kf, kr) in zip(zeroed.heads, keep):
        for dr, k, off in ((head.fwd, kf, 0), (head.rev, kr, 8)):
            gone = np.setdiff1d(np.arange(8), k)
            rows = dr.unit_rows(gone)
            dr.w_ih[rows] = 0
            dr.w_hh[rows] = 0
            dr.b_ih[rows] = 0
            dr.b_hh[rows] = 0
            dr.w_hh[:, gone] = 0
            head.proj_w[:, off + gone] = 0
    assert np.abs(numpy_forward(zeroed, x) - numpy_forward(pruned, x)).max() < 1e-9


def test_prune_threshold_and_minimum_units():
    norms = [[np.array([1.0, 0.01, 0.5]), np.array([0.001, 0.002, 0.003])]]
    keep = choose_units(norms, threshold=0.1)
    assert keep[0][0].tolist() == [0, 2]
    assert keep[0][1].tolist() == [2]          # all below threshold: the largest unit stays


def test_far_packed_state_dict_round_trip_and_block_diagonal_check():
    block = random_block(24, 3, np.random.default_rng(4))
    sd = _far_packed(block)
    back = from_far_packed(sd, 3)
    x = _x(2, 6, 24)
    assert np.abs(numpy_forward(back, x) - numpy_forward(block, x)).max() < 1e-9
    bad = dict(sd)
    bad["lstm.weight_ih_l0"] = sd["lstm.weight_ih_l0"].copy()
    bad["lstm.weight_ih_l0"][0, -1] = 0.5     # head 0 gate row reading head 2's channel
    with pytest.raises(VitcInputError, match="block-diagonal"):
        from_far_packed(bad, 3)
    # units FAR zeroed are dropped
    z = {k: v.copy() for k, v in sd.items()}
    HH = 24
    for suffix in ("", "_reverse"):
        for g in range(4):
            for key in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
                z[f"lstm.{key}{suffix}"][g * HH + 3] = 0
        z[f"lstm.weight_hh_l0{suffix}"][:, 3] = 0
    z["head_proj.weight"][:, [3, HH + 3]] = 0
    assert from_far_packed(z, 3).hidden_sizes()[0] == [7, 7]


@pytest.fixture(scope="module")
def tiny_weights(tiny_zoo, tmp_path_factory):
    from vitc.compiler.frontend import read_model
    cm = read_model(tiny_zoo)
    rng = np.random.default_rng(5)
    blocks = {b.index: random_block(b.embed_dim, b.num_heads, rng, hidden=8) for b in cm.blocks}
    blocks[1] = keep_units(blocks[1], choose_units(group_norms(blocks[1]), ratio=0.5))
    path = tmp_path_factory.mktemp("w") / "tiny_bilstm.npz"
    save_npz(path, blocks)
    return path, blocks


def test_compile_with_npz_weights_runs_in_onnxruntime(tiny_zoo, tiny_weights):
    from vitc.pipeline import compile_model
    path, blocks = tiny_weights
    res = compile_model(tiny_zoo, passes="bilstm", target="none", options={"bilstm_weights": str(path)})
    ops = [n.op_type for n in res.model.graph.node]
    expected = 3 + sum(1 if f == r else 2 for f, r in blocks[1].hidden_sizes())   # unequal → fwd + rev LSTMs
    assert "Attention" not in ops and ops.count("LSTM") == expected > 3 + 3
    rec = res.compiled.records[0]
    assert rec.weights == "loaded" and rec.blocks == [0, 1]
    assert rec.details["blocks"]["1"]["hidden"] == blocks[1].hidden_sizes()
    assert rec.details["hidden_units"]["removed_fraction"] > 0.2
    assert "block0_cosine" in rec.fidelity
    roles = {m.value for n in res.model.graph.node for m in n.metadata_props if m.key == "vitc.role"}
    assert {"lstm", "pre_proj", "head_proj", "out_proj"} <= roles
    sess = open_session(res.model)
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 64, 64)).astype(np.float32)
        assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (batch, 1000)


def test_load_weights_reads_far_npz_with_block_prefix(tiny_zoo):
    from vitc.compiler.frontend import read_model
    cm = read_model(tiny_zoo)
    block = random_block(192, 3, np.random.default_rng(6), hidden=4)
    arrays = {f"module.blocks.1.attn.{k}": v for k, v in _far_packed(block).items()}
    arrays["module.blocks.1.attn.post_proj.weight"] = np.zeros((192, 192), np.float32)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        np.savez(f"{d}/far.npz", **arrays)
        loaded, fmt = load_weights(f"{d}/far.npz", cm)
    assert fmt == "far-state-dict-npz" and list(loaded) == [1]
    x = _x(1, 5, 192)
    assert np.abs(numpy_forward(loaded[1], x) - numpy_forward(block, x)).max() < 1e-9


def test_without_torch_and_without_weights_is_a_one_line_error(tiny_zoo, monkeypatch, capsys):
    from vitc.cli import main
    from vitc.pipeline import compile_model
    monkeypatch.setitem(sys.modules, "torch", None)     # "import torch" now raises ImportError
    with pytest.raises(VitcInputError, match=r"vitc\[distill\]"):
        compile_model(tiny_zoo, passes="bilstm", target="none")
    assert main(["compile", str(tiny_zoo), "--passes", "bilstm", "--target", "none", "-o", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "vitc[distill]" in err


def test_untrained_weights_and_cli_flags(tiny_zoo, tmp_path, capsys):
    from vitc.cli import main
    out = tmp_path / "o"
    save = tmp_path / "w.npz"
    assert main(["compile", str(tiny_zoo), "--passes", "bilstm", "--target", "none", "--bilstm-weights",
                 "untrained", "--prune-ratio", "0.25", "--bilstm-save", str(save), "-o", str(out)]) == 0
    assert (out / "tiny.vitc.onnx").is_file() and save.is_file()
    text = capsys.readouterr().out
    assert "bilstm" in text and "untrained" in text


def test_masked_attention_is_packed_or_refused_with_the_reason(tmp_path):
    """A right-padded key mask becomes LSTM sequence lengths; a mask LSTMs cannot apply (here:
    left padding) is refused naming the reason, unless --bilstm-ignore-mask."""
    from pathlib import Path

    from vitc.pipeline import compile_model
    bert = Path(__file__).parent / "fixtures" / "exporters" / "hf_bert_eager_legacy_op17.onnx"
    if not bert.is_file():
        pytest.skip("BERT fixture missing")
    ids = np.random.default_rng(0).integers(4, 100, size=(8, 10))
    right = (np.arange(10)[None, :] < np.array([10, 8, 6, 9, 4, 10, 7, 5])[:, None]).astype(np.int64)
    for name, mask in (("right", right), ("left", right[:, ::-1].copy())):
        np.savez(tmp_path / f"{name}.npz", input_ids=ids, attention_mask=mask, token_type_ids=np.zeros_like(ids))
    res = compile_model(bert, passes="bilstm", target="none", calib=tmp_path / "right.npz",
                        options={"bilstm_weights": "untrained"})
    lstms = [n for n in res.model.graph.node if n.op_type == "LSTM"]
    assert lstms and all(len(n.input) >= 5 and n.input[4] for n in lstms)
    with pytest.raises(VitcInputError, match="padding is not at the end"):
        compile_model(bert, passes="bilstm", target="none", calib=tmp_path / "left.npz",
                      options={"bilstm_weights": "untrained"})
    res = compile_model(bert, passes="bilstm", target="none", calib=tmp_path / "left.npz",
                        options={"bilstm_weights": "untrained", "bilstm_ignore_mask": True})
    lstms = [n for n in res.model.graph.node if n.op_type == "LSTM"]
    assert lstms and all(len(n.input) == 4 for n in lstms)


def test_bilstm_on_a_model_without_canonical_blocks_is_one_clear_error():
    """CaiT's talking heads are attention cores without a canonical encoder block: nothing for the
    BiLSTM to replace — a clear input error, not a failure inside the distillation."""
    from conftest import FIXTURES
    from vitc.pipeline import compile_model
    with pytest.raises(VitcInputError, match="no canonical encoder blocks"):
        compile_model(FIXTURES / "families" / "cait_talking_heads.onnx", passes="bilstm", target="none")
