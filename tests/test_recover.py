"""Trained recovery (passes/recover.py), its torch mirror, and output-kind-aware metrics."""
from __future__ import annotations

import hashlib
import importlib.util
import sys

import numpy as np
import onnx
import pytest

from conftest import EXPORTERS, REFERENCE
from vitc.core.errors import VitcInputError
from vitc.pipeline import compile_model
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.output_kinds import embedding_metrics, hidden_widths, output_kind, token_cosines
from vitc.runtime.session import open_session
from vitc.runtime.validate import validate_models

P4 = REFERENCE / "vit_digits_p4.onnx"
CALIB = REFERENCE / "digits_calib.npz"
BERT = EXPORTERS / "hf_bert_eager_legacy_op17.onnx"


def test_output_kinds_follow_the_graph_not_names():
    model = onnx.load(str(BERT))
    widths = hidden_widths(model)
    assert widths and all(w > 2 for w in widths)
    logits = np.zeros((4, 2), np.float32)
    assert output_kind(logits, widths) == "logits"
    width = max(widths)
    assert output_kind(np.zeros((4, width), np.float32), widths) == "embedding"
    assert output_kind(np.zeros((4, 7, width), np.float32), widths) == "hidden"
    assert output_kind(np.zeros((4, 7), np.int64), widths) == "other"


def test_embedding_metrics_measure_neighbours_and_rank_order():
    rng = np.random.RandomState(0)
    ref = rng.randn(40, 16)
    same = embedding_metrics(ref, ref * 3.0)           # scale does not matter
    assert same["cosine_mean"] == pytest.approx(1.0) and same["nn_agreement"] == 1.0
    assert same["spearman"] == pytest.approx(1.0)
    noisy = embedding_metrics(ref, ref + 2.0 * rng.randn(40, 16))
    assert noisy["cosine_mean"] < 0.6 and noisy["nn_agreement"] < 0.5 and 0.0 < noisy["spearman"] < 0.6
    shuffled = embedding_metrics(ref, ref[rng.permutation(40)])
    assert abs(shuffled["spearman"]) < 0.2


def test_token_cosines_skip_padding():
    ref = np.ones((2, 3, 4))
    cand = ref.copy()
    cand[:, 2] = -1.0                                   # only the padded position differs
    mask = np.array([[1, 1, 0], [1, 1, 0]])
    assert token_cosines(ref, cand, mask).min() == pytest.approx(1.0)
    assert token_cosines(ref, cand, None).min() == pytest.approx(-1.0)


def test_validate_reports_embedding_metrics_for_pooled_outputs(tmp_path):
    """A pooled [N, hidden] output gets neighbour and rank metrics, not a top-1 over dimensions."""
    from onnx import TensorProto, helper
    model = onnx.load(str(BERT))
    g = model.graph
    last = next(n for n in reversed(g.node) if n.op_type == "LayerNormalization").output[0]
    g.node.append(helper.make_node("ReduceMean", [last], ["pooled"], axes=[1], keepdims=0))
    g.output.append(helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", "hidden"]))
    path = tmp_path / "bert_pooled.onnx"
    onnx.save(model, str(path))
    res = validate_models(path, path, samples=8, input_shapes={"input_ids": (8, 12), "attention_mask": (8, 12),
                                                               "token_type_ids": (8, 12)})
    by = {o.name: o for o in res.outputs}
    assert by["logits"].kind == "logits" and by["logits"].top1_agreement == 1.0
    assert by["pooled"].kind == "embedding" and by["pooled"].top1_agreement is None
    assert by["pooled"].nn_agreement == 1.0 and by["pooled"].spearman == pytest.approx(1.0)
    assert "nearest-neighbour agreement 100.00 %" in res.format()


needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs the [distill] extra")


@needs_torch
@pytest.mark.parametrize("path,passes,options", [(P4, "taylor", {}), (P4, "taylor", {"variant": "order2"}),
                                                  (BERT, "none", {})], ids=["p4-taylor", "p4-taylor-order2", "bert"])
def test_torch_mirror_equals_onnxruntime(path, passes, options):
    import torch
    from vitc.passes.torch_mirror import TorchMirror
    res = compile_model(path, passes=passes, target="none", options=options)
    mirror = TorchMirror(res.light, res.held)
    feeds = synthetic_inputs(res.light, batch=3, seq_len=9, seed=1)
    ref = open_session(res.light, held=res.held).run(None, feeds)
    with torch.no_grad():
        got = mirror({k: torch.from_numpy(v) for k, v in feeds.items()})
    for r, g in zip(ref, got.values()):
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-4, atol=2e-5)


MIRRORED = sorted(EXPORTERS.glob("*.onnx")) + sorted((EXPORTERS.parent / "families").glob("*.onnx"))


@needs_torch
@pytest.mark.parametrize("path", MIRRORED, ids=[p.stem for p in MIRRORED])
def test_torch_mirror_runs_every_exported_family_like_onnxruntime(path):
    """The teacher (the original export) and the canonical graph, mirrored: timm/transformers
    exports of every exporter and opset (ONNX Attention, IsNaN guards, antialiased bicubic Resize of
    dynamic-size exports, onnxruntime's com.microsoft fused ops) and the architecture families
    (Pad, BatchNormalization, InstanceNormalization, HardSwish, Sin/Cos, ...)."""
    import torch
    from vitc.passes.torch_mirror import TorchMirror
    res = compile_model(path, passes="none", target="none")
    for model, held in ((res.compiled.original, res.compiled.original_held), (res.light, res.held)):
        feeds = synthetic_inputs(model, seed=1)
        ref = open_session(model, held=held).run(None, feeds)
        with torch.no_grad():
            got = TorchMirror(model, held)({k: torch.from_numpy(v) for k, v in feeds.items()})
        assert list(got) == [o.name for o in model.graph.output]
        for r, g in zip(ref, got.values()):
            np.testing.assert_allclose(g.numpy(), r, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(r).max())))


def _one_node_model(node, inputs: dict[str, np.ndarray], consts: dict[str, np.ndarray], opset: int):
    """A model of one ``node``: ``inputs`` as graph inputs, ``consts`` as initializers, float outputs."""
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph(
        [node], "one", [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                        for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in node.output],
        [numpy_helper.from_array(v, k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@needs_torch
@pytest.mark.parametrize("attrs,sizes", [
    ({"mode": "cubic", "antialias": 1, "cubic_coeff_a": -0.5, "exclude_outside": 1}, [2, 3, 4, 5]),   # torch's aa bicubic
    ({"mode": "cubic", "antialias": 1, "cubic_coeff_a": -0.5, "exclude_outside": 1}, [2, 3, 14, 11]),
    ({"mode": "cubic"}, [2, 3, 5, 13]),
    ({"mode": "linear", "antialias": 1, "exclude_outside": 1}, [2, 3, 4, 5]),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [2, 3, 12, 4]),
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, [2, 3, 14, 18]),
], ids=["cubic-aa-shrink", "cubic-aa-grow", "cubic", "linear-aa-shrink", "linear-corners", "nearest"])
def test_torch_mirror_resize_samples_like_onnxruntime(attrs, sizes):
    import torch
    from onnx import helper
    from vitc.passes.torch_mirror import TorchMirror
    x = np.random.RandomState(0).randn(2, 3, 7, 9).astype(np.float32)
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], **attrs)
    model = _one_node_model(node, {"x": x}, {"sizes": np.array(sizes, np.int64)}, 19)
    ref = open_session(model).run(None, {"x": x})[0]
    got = TorchMirror(model)({"x": torch.from_numpy(x)})["y"].numpy()
    assert got.shape == tuple(sizes)
    np.testing.assert_allclose(got, ref, atol=1e-5)


@needs_torch
@pytest.mark.parametrize("mode,pads,axes", [("constant", [1, 0, 2, -1], [2, 3]), ("reflect", [0, 0, 2, 1, 0, 0, 1, 2], None),
                                             ("edge", [0, 0, 1, 3, 0, 0, 2, 0], None), ("wrap", [2, 1], [-1])])
def test_torch_mirror_pad_like_onnxruntime(mode, pads, axes):
    import torch
    from onnx import helper
    from vitc.passes.torch_mirror import TorchMirror
    x = np.random.RandomState(0).randn(2, 3, 5, 6).astype(np.float32)
    consts = {"pads": np.array(pads, np.int64), "value": np.array(0.5, np.float32)}
    names = ["x", "pads", "value"] + (["axes"] if axes else [])
    if axes:
        consts["axes"] = np.array(axes, np.int64)
    if mode != "constant":
        names[2] = ""
    model = _one_node_model(helper.make_node("Pad", names, ["y"], mode=mode), {"x": x}, consts, 19)
    ref = open_session(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(TorchMirror(model)({"x": torch.from_numpy(x)})["y"].numpy(), ref, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("three_d,causal,mask", [(True, 1, None), (False, 0, "bool"), (False, 0, "float"), (True, 0, "bool")])
def test_torch_mirror_onnx_attention_like_onnxruntime(three_d, causal, mask):
    """Opset 23 Attention: grouped key/value heads (4 query, 2 key/value), causal flag, masks."""
    import torch
    from onnx import helper
    from vitc.passes.torch_mirror import TorchMirror
    rng = np.random.RandomState(0)
    b, s, d = 2, 5, 8
    if three_d:
        feeds = {"q": rng.randn(b, s, 4 * d), "k": rng.randn(b, s, 2 * d), "v": rng.randn(b, s, 2 * d)}
    else:
        feeds = {"q": rng.randn(b, 4, s, d), "k": rng.randn(b, 2, s, d), "v": rng.randn(b, 2, s, d)}
    feeds = {k: v.astype(np.float32) for k, v in feeds.items()}
    names = ["q", "k", "v"]
    if mask == "bool":
        feeds["m"] = rng.rand(s, s) > 0.3
        feeds["m"][:, 0] = True
    elif mask == "float":
        feeds["m"] = np.where(rng.rand(b, 1, s, s) > 0.3, 0.0, -1e4).astype(np.float32)
    if mask:
        names.append("m")
    heads = {"q_num_heads": 4, "kv_num_heads": 2} if three_d else {}
    model = _one_node_model(helper.make_node("Attention", names, ["y"], is_causal=causal, **heads), feeds, {}, 23)
    ref = open_session(model).run(None, feeds)[0]
    got = TorchMirror(model)({k: torch.from_numpy(v) for k, v in feeds.items()})["y"].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_torch_mirror_names_a_resize_it_cannot_reproduce():
    pytest.importorskip("torch")
    import torch
    from vitc.passes.torch_mirror_ops import _resize
    with pytest.raises(VitcInputError, match="cubic_coeff_a -0.75, exclude_outside 0, antialias 1"):
        _resize({"mode": b"cubic", "antialias": 1}, torch.zeros(1, 1, 4, 4), None, None, torch.tensor([1, 1, 2, 2]))


@needs_torch
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_torch_mirror_lstm_equals_onnxruntime(direction):
    """The ONNX LSTM (gates i, o, f, c; packed by sequence_lens) in the mirror, gradients included."""
    import torch
    from onnx import TensorProto, helper, numpy_helper
    from vitc.passes.torch_mirror import TorchMirror
    rng = np.random.RandomState(0)
    d, I, H, T, B = (2 if direction == "bidirectional" else 1), 5, 4, 7, 3
    inits = [numpy_helper.from_array(rng.randn(d, 4 * H, I).astype(np.float32), "W"),
             numpy_helper.from_array(rng.randn(d, 4 * H, H).astype(np.float32), "R"),
             numpy_helper.from_array(rng.randn(d, 8 * H).astype(np.float32), "B")]
    node = helper.make_node("LSTM", ["x", "W", "R", "B", "lens"], ["y", "yh", "yc"], hidden_size=H, direction=direction)
    graph = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, B, I]),
                                               helper.make_tensor_value_info("lens", TensorProto.INT32, [B])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "yh", "yc")],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": rng.randn(T, B, I).astype(np.float32), "lens": np.array([7, 3, 5], np.int32)}
    ref = open_session(model).run(None, feeds)
    mirror = TorchMirror(model, trainable={"W", "R", "B"})
    got = mirror({k: torch.from_numpy(v) for k, v in feeds.items()})
    for r, g in zip(ref, got.values()):
        np.testing.assert_allclose(g.detach().numpy(), r, rtol=1e-4, atol=1e-5)
    got["y"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mirror.named_weights.values())


@needs_torch
def test_torch_mirror_runs_bilstm_blocks_on_padded_text():
    """A BERT with a BiLSTM block (packed LSTMs, lengths from the padding mask): mirror = onnxruntime."""
    import torch
    from vitc.passes.torch_mirror import TorchMirror
    res = compile_model(BERT, passes="bilstm", target="none",
                        options={"bilstm_weights": "untrained", "bilstm_blocks": "0"}, backend_options={"seq_len": 9})
    feeds = synthetic_inputs(res.light, batch=3, seq_len=9, seed=1)
    mask = next(k for k in feeds if "mask" in k)
    feeds[mask][0, 5:] = 0              # padded samples
    feeds[mask][2, 2:] = 0
    ref = open_session(res.light, held=res.held).run(None, feeds)
    with torch.no_grad():
        got = TorchMirror(res.light, res.held)({k: torch.from_numpy(v) for k, v in feeds.items()})
    for r, g in zip(ref, got.values()):
        np.testing.assert_allclose(g.numpy(), r, rtol=1e-4, atol=2e-5)


@needs_torch
def test_recover_trains_a_fixed_batch_export_in_slices_of_its_batch(tmp_path):
    """A timm export with batch size 1 baked into its shape constants: the mirror runs any number
    of samples in slices of one (outputs = onnxruntime's, sample by sample) and recovery trains."""
    import torch
    from vitc.passes.torch_mirror import TorchMirror
    path = EXPORTERS / "timm_legacy_eager_op14.onnx"
    res = compile_model(path, passes="none", target="none")
    x = np.random.RandomState(0).randn(5, 3, 32, 32).astype(np.float32)
    sess = open_session(res.light, held=res.held)
    name = sess.get_inputs()[0].name
    ref = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(5)])
    mirror = TorchMirror(res.light, res.held)
    assert mirror.static_batch == 1
    with torch.no_grad():
        got = next(iter(mirror({name: torch.from_numpy(x)}).values())).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    np.savez(tmp_path / "calib.npz", **{name: np.random.RandomState(1).randn(24, 3, 32, 32).astype(np.float32)})
    out = compile_model(path, passes="taylor,recover", calib=tmp_path / "calib.npz", target="none",
                        options={"recover_epochs": 1})
    rec = next(r for r in out.compiled.records if r.name == "recover")
    assert rec.details["epochs_run"] == 1 and rec.details["samples"]["train"] + rec.details["samples"]["holdout"] == 24
    with pytest.raises(VitcInputError, match="no --calib given.*at least 4 samples"):
        compile_model(path, passes="taylor,recover", target="none", options={"recover_epochs": 1})


@needs_torch
def test_recover_trains_writes_back_and_is_deterministic(tmp_path):
    opts = {"epochs": 3, "patience": 3, "batch": 32, "refit": "no"}    # untrained Taylor: a fair "before"
    runs = [compile_model(P4, passes="taylor,recover", calib=CALIB, calib_samples=128, target="none",
                          options=opts, out=tmp_path / f"r{i}") for i in range(2)]
    rec = runs[0].compiled.records[-1]
    assert rec.name == "recover" and rec.weights == "trained" and rec.blocks == list(range(6))
    d = rec.details
    assert d["samples"] == {"train": 102, "holdout": 26} and len(d["curve"]) == 3
    assert d["holdout_after"]["loss"] < d["holdout_before"]["loss"]
    best = min(c["holdout_loss"] for c in d["curve"])
    assert d["holdout_after"]["loss"] == pytest.approx(best, rel=1e-4)      # the best epoch is what is kept
    assert d["tensors"] > 0 and d["parameters"] > 0 and d["losses"] == {"logits": "logits"}
    files = [(tmp_path / f"r{i}" / "vit_digits_p4.vitc.onnx").read_bytes() for i in range(2)]
    assert hashlib.sha256(files[0]).digest() == hashlib.sha256(files[1]).digest()
    assert (tmp_path / "r0" / "blocks.json").read_bytes() == (tmp_path / "r1" / "blocks.json").read_bytes()
    # the written model is the trained one: onnxruntime on it gives the recorded held-out agreement
    if d["best_epoch"]:
        fitted = compile_model(P4, passes="taylor", calib=CALIB, calib_samples=128, target="none")
        a = {t.name for t in onnx.load_from_string(files[0]).graph.initializer}
        assert a and fitted.light.graph.initializer  # trained weights differ from the closed-form fit
        w0 = open_session(fitted.light, held=fitted.held)
        w1 = open_session(onnx.load_from_string(files[0]))
        x = np.load(CALIB)["input"][:8]
        assert not np.allclose(w0.run(None, {"input": x})[0], w1.run(None, {"input": x})[0])


@needs_torch
def test_recover_needs_a_rewritten_block():
    with pytest.raises(VitcInputError, match="no rewritten block"):
        compile_model(P4, passes="recover", calib=CALIB, calib_samples=32, target="none")


def test_recover_without_torch_is_one_clear_error_before_any_work(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(VitcInputError, match="recover needs torch"):
        compile_model(P4, passes="taylor,recover", calib=CALIB, calib_samples=32, target="none")
    monkeypatch.setitem(sys.modules, "torch", None)          # the pass's own guard, if torch breaks later
    from vitc.passes.context import PassContext
    from vitc.passes.recover import RecoverOptions, RecoverPass
    from vitc.pipeline import front_end, plan_compile
    plan = plan_compile(P4, passes="none", target="none")
    ctx = PassContext({"recover": RecoverOptions()})
    with pytest.raises(VitcInputError, match="needs PyTorch"):
        RecoverPass().run(front_end(plan), ctx)


def test_epoch_batches_cover_every_sample_once_in_length_sorted_batches():
    from vitc.passes.recover import epoch_batches
    rng = np.random.RandomState(3)
    lengths = rng.randint(4, 120, size=500)
    train = np.sort(rng.choice(500, 400, replace=False))
    batches = epoch_batches(train, lengths, 16, np.random.RandomState(0), pool=8)
    assert sorted(np.concatenate(batches).tolist()) == train.tolist()
    assert all(len(b) <= 16 for b in batches)
    # cut length of a batch = its longest sample: sorting pools cuts the padded work
    padded = sum(len(b) * lengths[b].max() for b in batches)
    plain = epoch_batches(train, None, 16, np.random.RandomState(0))
    assert sorted(np.concatenate(plain).tolist()) == train.tolist()
    assert padded < 0.75 * sum(len(b) * lengths[b].max() for b in plain)
    again = epoch_batches(train, lengths, 16, np.random.RandomState(0), pool=8)
    assert all((a == b).all() for a, b in zip(batches, again))


@needs_torch
def test_reuse_auto_judges_plans_after_a_short_recovery_when_recover_follows():
    opts = {"reuse_plan": "auto", "max_drop": 1.0, "hw": "rram-128", "reuse_verify": "all", "recover_estimate": 1,
            "epochs": 1, "patience": 1, "batch": 32}
    res = compile_model(P4, passes="reuse,recover", calib=CALIB, calib_samples=64, target="none", options=opts)
    search = res.compiled.records[0].details["search"]
    estimated = [r for r in search["frontier"] if "recovery_estimate" in r]
    # exactly the plans whose fitted TBs miss the budget are trained, and judged on the result
    assert estimated and all(r["fitted_drop"] > 1.0 for r in estimated)
    assert all(r["drop"] <= 1.0 + 1e-9 for r in search["frontier"] if r.get("verified") and "recovery_estimate" not in r)
    assert any(r["drop"] < r["fitted_drop"] for r in estimated)
    assert all(r["recovery_estimate"]["epochs"] == 1 and "holdout_agreement" in r["recovery_estimate"]
               for r in estimated)
    assert all(r["meets_budget"] == (r["drop"] <= 1.0 + 1e-9) for r in search["frontier"] if r.get("verified"))
    table = res.compiled.records[0].sections["reuse_frontier"]["tables"][0]
    assert "drop fitted (pp)" in table["header"] and "1-epoch trained recovery" in table["note"]
    # without recover in the compile nothing is trained
    plain = compile_model(P4, passes="reuse", calib=CALIB, calib_samples=64, target="none",
                          options={k: v for k, v in opts.items() if k not in ("epochs", "patience", "batch")})
    assert not any("recovery_estimate" in r for r in plain.compiled.records[0].details["search"]["frontier"])


@needs_torch
def test_recover_keeps_the_weights_before_training_when_no_epoch_beats_them():
    """A learning rate that wrecks the model in its one epoch (held-out loss many times the fitted
    model's): nothing is written back."""
    from vitc.passes.context import holdout_split
    from vitc.runtime.data import Dataset
    opts = {"epochs": 1, "patience": 1, "batch": 32, "lr": 0.5}
    res = compile_model(P4, passes="taylor,recover", calib=CALIB, calib_samples=64, target="none", options=opts)
    # the Taylor fit of that compile saw only the samples recover trains on: the same fit on them alone
    kept, _ = holdout_split(64, 0.2, 0)
    fit_rows = Dataset({"input": np.load(CALIB)["input"][:64][kept]}, None, str(CALIB))
    fitted = compile_model(P4, passes="taylor", calib=fit_rows, target="none")
    rec = res.compiled.records[-1]
    assert rec.weights == "none" and rec.details["best_epoch"] == 0
    assert "they are kept" in rec.details["stopped"]
    assert rec.details["curve"][0]["holdout_loss"] > rec.details["holdout_before"]["loss"]
    assert rec.details["holdout_after"]["loss"] == pytest.approx(rec.details["holdout_before"]["loss"], rel=1e-6)
    x = np.load(CALIB)["input"][:16]
    a = open_session(res.light, held=res.held).run(None, {"input": x})[0]
    b = open_session(fitted.light, held=fitted.held).run(None, {"input": x})[0]
    np.testing.assert_array_equal(a, b)


@needs_torch
def test_time_budget_ends_training_within_an_epoch():
    opts = {"epochs": 50, "patience": 50, "batch": 8, "time_budget": 1.0}
    rec = compile_model(P4, passes="taylor,recover", calib=CALIB, calib_samples=256, target="none",
                        options=opts).compiled.records[-1]
    d = rec.details
    # cut inside the first epoch, or (a fast first epoch) at the end of the one epoch the plan allows
    assert d["stopped"].startswith(("time budget 1 s", "end of the 1 epoch(s) the time budget allows"))
    assert d["epochs_run"] == len(d["curve"]) <= 1
    assert all(c.get("share_of_epoch", 1.0) <= 1.0 for c in d["curve"])


def test_a_time_budget_plans_the_learning_rate_decay_over_the_epochs_that_fit():
    from vitc.passes.schedule import budgeted_epochs
    # set-up 20 s, first epoch done at 120 s (100 s each): 1 + 880 // 100 = 9 epochs in 1000 s
    assert budgeted_epochs(30, 1000.0, 120.0, 20.0) == 9
    assert budgeted_epochs(5, 1000.0, 120.0, 20.0) == 5          # never more than asked for
    assert budgeted_epochs(30, 100.0, 120.0, 20.0) == 1          # the first epoch already spent it


@needs_torch
def test_time_budget_shortens_the_decay_and_stops_at_its_end():
    opts = {"epochs": 500, "patience": 500, "batch": 32, "time_budget": 20.0}
    rec = compile_model(P4, passes="taylor,recover", calib=CALIB, calib_samples=64, target="none",
                        options=opts).compiled.records[-1]
    d = rec.details
    assert 1 <= d["epochs_planned"] < 500 and d["epochs_run"] <= d["epochs_planned"]
    # normally the planned end; a slower later epoch may still meet the budget first
    assert (d["epochs_run"] == d["epochs_planned"]
            and d["stopped"].startswith(f"end of the {d['epochs_planned']} epoch(s) the time budget allows")) \
        or d["stopped"].startswith("time budget 20 s")


def test_held_out_samples_are_kept_from_every_pass_of_a_training_compile():
    """With recover in the compile, fits and measures see only the samples it trains on; recover
    alone sees all, and holds out exactly the rest — so its "before" figures are of unseen samples."""
    from vitc.passes.context import PassContext
    from vitc.passes.recover import RecoverOptions
    from vitc.pipeline import front_end, plan_compile
    cm = front_end(plan_compile(P4, passes="none", target="none"))
    plain = PassContext({}, calib=CALIB, calib_samples=40)
    ctx = PassContext({"recover": RecoverOptions(holdout=0.25)}, calib=CALIB, calib_samples=40)
    assert plain.held_out(40) is None and plain.calibration(cm).size == 40
    kept, held = ctx.held_out(40)
    assert len(held) == 10 and not set(kept) & set(held) and sorted([*kept, *held]) == list(range(40))
    x_all = ctx.calibration(cm, "all").feeds["input"]
    np.testing.assert_array_equal(ctx.calibration(cm).feeds["input"], x_all[kept])
    out = cm.original.graph.output[0].name
    np.testing.assert_array_equal(ctx.activations(cm, [out])[out], ctx.activations(cm, [out], "all")[out][kept])
    assert len(ctx.model_outputs(cm)[0]) == 30 and len(ctx.model_outputs(cm, "all")[0]) == 40
