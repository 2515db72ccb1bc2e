"""--passes taylor: function bodies vs an n×n numpy reference, no n×n intermediate, op counts,
masked keys, layer selection, ridge refit, pass records."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from opgraph import core_feeds, largest_intermediate, single_core_model
from vitc.compiler.opcount import (softmax_attention_counts,
                                   taylor_attention_counts)
from vitc.pipeline import compile_model
from vitc.compiler.zoo import build_vit
from vitc.passes.options import parse_block_list as parse_layers
from vitc.passes.taylor import ridge_fit
from vitc.runtime.session import open_session, run_with_intermediates
from vitc.runtime.taylor_ops import taylor_attention_np

from conftest import EXPORTERS, REFERENCE

CONFIGS = [("paper", "tokens", False), ("paper", "tokens", True), ("paper", "features", False),
           ("paper", "none", False), ("code", "features", False), ("code", "tokens", False),
           ("order2", "tokens", False), ("order2", "none", False)]


def nxn_reference(q, k, v, heads, scale, variant, centering, mask=None):
    """Taylor attention computed the slow way, forming the n×n matrix 1 + s·q·k̂ᵀ (order2: + (s·q·k̂ᵀ)²/2)
    (test only)."""
    b, n, c = q.shape
    d = c // heads
    qh, kh, vh = (np.asarray(x, np.float64).reshape(b, n, heads, d).transpose(0, 2, 1, 3) for x in (q, k, v))
    w = np.ones((b, 1, 1, n)) if mask is None else (np.asarray(mask) > -1e3).astype(np.float64).min(2, keepdims=True)
    if centering == "tokens":
        kh = kh - (kh * np.swapaxes(w, 2, 3)).sum(2, keepdims=True) / w.sum(-1, keepdims=True)
    elif centering == "features":
        kh = kh - kh.mean(3, keepdims=True)
    s = scale * qh @ np.swapaxes(kh, 2, 3)                        # [B, H, n, n]
    if variant in ("paper", "order2"):
        p = (1.0 + s + (s * s / 2 if variant == "order2" else 0.0)) * w
        z = (p @ vh) / p.sum(-1, keepdims=True)
    else:
        z = (s * w) @ vh
    return z.transpose(0, 2, 1, 3).reshape(b, n, c)


def _attrs(variant, centering, simplified, heads=3, scale=0.125):
    return {"num_heads": heads, "scale": scale, "variant": variant, "centering": centering,
            "simplified": int(simplified)}


@pytest.mark.parametrize("variant,centering,simplified", CONFIGS)
@pytest.mark.parametrize("masked", [False, True])
def test_body_matches_nxn_reference(variant, centering, simplified, masked):
    heads, n, c = 3, 41, 48
    scale = (c // heads) ** -0.5
    model = single_core_model("TaylorAttention", _attrs(variant, centering, simplified, heads, scale),
                              4 if masked else 3, 17)
    onnx.checker.check_model(model, full_check=True)
    rng = np.random.default_rng(1)
    feeds = {x: rng.standard_normal((2, n, c)).astype(np.float32) for x in "qkv"}
    mask = None
    if masked:
        mask = np.zeros((2, 1, 1, n), np.float32)
        mask[0, ..., 30:] = np.finfo(np.float32).min       # transformers-style
        mask[1, ..., 17:] = -10000.0                       # old BERT-style
        feeds["mask"] = mask
    y = open_session(model).run(None, feeds)[0]
    ref = nxn_reference(feeds["q"], feeds["k"], feeds["v"], heads, scale, variant, centering, mask)
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5
    twin = taylor_attention_np(feeds["q"], feeds["k"], feeds["v"], heads, scale, variant, centering, mask, simplified)
    assert np.abs(twin - ref).max() / np.abs(ref).max() < 1e-10


@pytest.mark.parametrize("opset", [14, 18, 23])
def test_default_body_across_opsets(opset):
    model = single_core_model("TaylorAttention", _attrs("paper", "tokens", False), 3, opset)
    feeds = core_feeds(23, 48, 3, seed=2)
    y = open_session(model).run(None, feeds)[0]
    ref = nxn_reference(feeds["q"], feeds["k"], feeds["v"], 3, 0.125, "paper", "tokens")
    assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-5


def _two_token_axes(shapes: dict, n: int) -> list[str]:
    return [name for name, s in shapes.items() if sum(1 for d in s if d == n) >= 2]


@pytest.mark.parametrize("variant,centering,simplified", CONFIGS)
def test_body_never_forms_nxn(variant, centering, simplified):
    n, c = 197, 192
    for arity in (3, 4):
        model = single_core_model("TaylorAttention", _attrs(variant, centering, simplified), arity, 17)
        shapes = largest_intermediate(model, core_feeds(n, c, arity))
        assert len(shapes) > 10
        assert _two_token_axes(shapes, n) == []
    # the check does catch the softmax core's n×n scores
    soft = largest_intermediate(single_core_model("Attention", {"num_heads": 3, "scale": 0.125}, 3, 17),
                                core_feeds(n, c, 3))
    assert _two_token_axes(soft, n)


@pytest.fixture(scope="module")
def zoo2():
    """DeiT-Tiny geometry, 2 blocks, 224/16 (197 tokens)."""
    return build_vit("deit-tiny", img_size=224, patch=16, depth=2, seed=3)


def test_compiled_model_is_linear_and_exact(zoo2):
    res = compile_model(zoo2, passes="taylor", target="none", name="dt2", options={"taylor_measure": False})
    cm, model = res.compiled, res.model
    rec = cm.records[0]
    assert rec.blocks == [0, 1] and rec.weights == "untrained"
    assert [n.op_type for n in model.graph.node if n.domain == "ai.vitc"] == ["TaylorAttention"] * 2
    feeds = {"input": np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)}
    # no tensor with two token axes anywhere in the (inlined) compiled model
    assert _two_token_axes(largest_intermediate(model, feeds), 197) == []
    # block 1's core output == n×n reference on the q/k/v the compiled model computes
    b = cm.blocks[1]
    core = next(n for n in model.graph.node if n.name == b.attention)
    vals = run_with_intermediates(model, list(core.input) + [core.output[0]], feeds)
    ref = nxn_reference(vals[core.input[0]], vals[core.input[1]], vals[core.input[2]], 3, 0.125, "paper", "tokens")
    got = vals[core.output[0]]
    assert np.abs(got - ref).max() / np.abs(ref).max() < 1e-5


def test_opcounts_deit_tiny():
    """Full DeiT-Tiny (12 blocks, 197 tokens): QKᵀ+SV 178.8 M mul; Taylor ≈ 58.3 M (paper Table I) within 1 %."""
    res = compile_model(build_vit("deit-tiny"), passes="taylor", target="none", name="deit-tiny",
                        options={"taylor_measure": False})
    oc = res.compiled.records[0].details["opcount"]
    assert len(oc["per_block"]) == 12
    base, new = oc["total_M"]["baseline"], oc["total_M"]["rewritten"]
    assert base["mul"] == pytest.approx(178.8, rel=1e-3)
    assert base["exp"] == pytest.approx(1.4, rel=0.01) and base["div"] == pytest.approx(1.4, rel=0.01)
    assert base["add"] == pytest.approx(180.2, rel=1e-3)
    assert new["mul"] == pytest.approx(58.3, rel=0.01)
    assert new["add"] == pytest.approx(61.0, rel=0.01)
    assert new["exp"] == 0 and new["div"] == pytest.approx(0.5, abs=0.05)
    assert oc["total_M"]["ratio"]["mul"] == pytest.approx(3.07, rel=0.01)
    # counted from the emitted function bodies: same figures within 1 %
    g = oc["graph_total_M"]
    assert g["baseline"]["mul"] == pytest.approx(178.8, rel=0.01)   # + the n² scale multiplies
    assert g["rewritten"]["mul"] == pytest.approx(58.3, rel=0.01)
    assert g["rewritten"]["exp"] == 0 and g["baseline"]["exp"] == pytest.approx(1.4, rel=0.01)
    # analytical formulas = paper's Eq. (1): 2n²d vs 2nd² + nd per head
    n, d = 197, 64
    assert softmax_attention_counts(n, d).mul == 2 * n * n * d
    assert taylor_attention_counts(n, d).mul == 2 * n * d * d + n * d
    assert taylor_attention_counts(n, d).div == n * d + d


def test_layers_option_and_pass_record(tiny_zoo):
    res = compile_model(tiny_zoo, passes="taylor", target="none", options={"taylor_layers": "1"})
    rec = res.compiled.records[0]
    ops = {n.name: n.op_type for n in res.model.graph.node if n.domain == "ai.vitc"}
    assert ops[res.compiled.blocks[0].attention] == "Attention"
    assert ops[res.compiled.blocks[1].attention] == "TaylorAttention"
    assert rec.blocks == [1] and rec.weights == "untrained"
    assert rec.fidelity["calibration"] == "synthetic"
    assert 0 < rec.fidelity["per_layer"]["1"]["cos_before"] <= 1
    assert "agreement" in rec.fidelity["end_to_end"]
    assert rec.details["opcount"]["per_block"][0]["rewritten"] is False
    assert parse_layers("0-2,5", 6) == [0, 1, 2, 5] and parse_layers(None, 3) == [0, 1, 2]
    with pytest.raises(Exception):
        parse_layers("7", 6)


def test_max_drop_selection_respects_budget(tiny_zoo):
    # random weights and synthetic data: linearising either block flips > 10 % of the top-1 labels
    res = compile_model(tiny_zoo, passes="taylor", target="none", options={"max_drop": 10.0})
    rec = res.compiled.records[0]
    assert rec.details["selection"] == "max-drop"
    trials = rec.details["trials"]
    assert [(t["add"], t["kept"]) for t in trials] == [(1, False), (0, False)]   # least cosine damage first
    assert all(t["drop"] > 10.0 for t in trials)
    assert (rec.blocks, rec.weights, rec.fidelity["end_to_end"]["agreement"]) == ([], "none", 100.0)
    assert set(rec.fidelity["per_layer"]) == {"0", "1"}
    # a budget that anything meets keeps every layer, each trial measured end to end
    loose = compile_model(tiny_zoo, passes="taylor", target="none", options={"max_drop": 100.0}).compiled.records[0]
    assert loose.blocks == [0, 1] and [t["kept"] for t in loose.details["trials"]] == [True, True]
    assert loose.details["trials"][-1]["layers"] == [0, 1]


def test_ridge_fit_recovers_linear_map():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 12))
    w, b = rng.standard_normal((12, 5)), rng.standard_normal(5)
    wf, bf = ridge_fit(x, x @ w + b, 1e-8)
    assert np.allclose(wf, w, atol=1e-5) and np.allclose(bf, b, atol=1e-5)


def test_refit_replaces_out_projection_without_touching_shared_weights(tiny_zoo):
    res = compile_model(tiny_zoo, passes="taylor", target="none", options={"taylor_refit": "yes"})
    cm, rec = res.compiled, res.compiled.records[0]
    inits = {t.name for t in res.model.graph.initializer}
    for i in rec.blocks:
        fit = rec.fidelity["per_layer"][str(i)]
        assert "cos_after" in fit and "cos_after_fit" in fit
        if rec.details["block_weights"][str(i)] == "fitted":
            assert cm.blocks[i].out_proj.weight.endswith("weight_fitted") and cm.blocks[i].out_proj.weight in inits
            assert fit["cos_after"] >= fit["cos_before_holdout"] and fit["ridge"] > 0
    original = {t.name for t in cm.original.graph.initializer}
    assert any(n in inits for n in original)   # untouched initializers keep their names


def _bert_feeds(rng, batch=2, seq=16, valid=(16, 9)):
    ids = rng.integers(1, 50, size=(batch, seq)).astype(np.int64)
    mask = np.zeros((batch, seq), np.int64)
    for i, v in enumerate(valid):
        mask[i, :v] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros((batch, seq), np.int64)}


@pytest.mark.skipif(not (EXPORTERS / "hf_bert_eager_legacy_op17.onnx").is_file(), reason="BERT fixture missing")
def test_masked_keys_excluded_bert():
    path = EXPORTERS / "hf_bert_eager_legacy_op17.onnx"
    res = compile_model(path, passes="taylor", target="none", options={"taylor_measure": False})
    model, cm = res.model, res.compiled
    assert all(cm.blocks[i].has_mask for i in res.compiled.records[0].blocks)
    assert {n.overload for n in model.graph.node if n.op_type == "TaylorAttention"} == {"masked"}
    rng = np.random.default_rng(0)
    feeds = _bert_feeds(rng)
    last = cm.blocks[-1].block_output                      # [B, N, C] hidden states after the last block
    out = run_with_intermediates(model, [last], feeds)[last]
    # change the padded tokens' ids: unpadded positions must not move (masked keys excluded)
    changed = dict(feeds, input_ids=feeds["input_ids"].copy())
    changed["input_ids"][1, 9:] = rng.integers(50, 100, size=7)
    out2 = run_with_intermediates(model, [last], changed)[last]
    assert out.shape[:2] == (2, 16)
    assert np.abs(out2[1, :9] - out[1, :9]).max() <= 1e-5 * np.abs(out[1, :9]).max()
    assert np.abs(out2[1, 9:] - out[1, 9:]).max() > 1e-3      # the padded positions themselves do change
    # block 0 core vs the n×n reference, mask included
    b = cm.blocks[0]
    core = next(n for n in model.graph.node if n.name == b.attention)
    vals = run_with_intermediates(model, list(core.input) + [core.output[0]], feeds)
    q, k, v, m = (vals[x] for x in core.input)
    assert m.ndim == 4 and (m[1, ..., 9:] < -1e3).all() and (m[1, ..., :9] > -1e3).all()
    ref = nxn_reference(q, k, v, b.num_heads, float(1 / np.sqrt(b.head_dim)), "paper", "tokens", m)
    assert np.abs(vals[core.output[0]] - ref).max() / np.abs(ref).max() < 1e-5


def test_cli_compile_taylor(tiny_zoo, tmp_path):
    from vitc.cli import main
    out = tmp_path / "out"
    assert main(["compile", str(tiny_zoo), "--passes", "taylor", "--target", "none", "--layers", "0",
                 "--taylor-variant", "code", "-o", str(out)]) == 0
    summary = json.loads((out / "blocks.json").read_text())
    rec = summary["passes"][0]
    assert rec["name"] == "taylor" and rec["blocks"] == [0] and rec["details"]["variant"] == "code"
    assert rec["details"]["centering"] == "features" and rec["weights"] == "untrained"
    row = rec["details"]["opcount"]["per_block"][0]
    assert row["rewritten"] and row["tokens"] == 17 and row["taylor"]["exp"] == 0
    assert row["taylor"]["mul"] == 3 * 2 * 17 * 64 * 64          # code variant: 2nd² per head
    assert main(["compile", str(tiny_zoo), "--passes", "taylor", "--target", "none", "--layers", "9",
                 "-o", str(tmp_path / "bad")]) == 2


def test_cli_compile_taylor_second_order_counts_its_cost(tiny_zoo, tmp_path):
    """order2: the quadratic term's 2nd³ + 3nd² multiplications per head are in the record, which says
    that at 17 tokens (break-even beyond d² = 4096) linearisation does not pay."""
    from vitc.cli import main
    out = tmp_path / "out"
    assert main(["compile", str(tiny_zoo), "--passes", "taylor", "--target", "none", "--layers", "0",
                 "--taylor-variant", "order2", "-o", str(out)]) == 0
    rec = json.loads((out / "blocks.json").read_text())["passes"][0]
    assert rec["details"]["variant"] == "order2" and rec["details"]["centering"] == "tokens"
    row = rec["details"]["opcount"]["per_block"][0]
    n, d = 17, 64
    first = taylor_attention_counts(n, d, 3, "paper", "tokens")
    assert row["taylor"]["mul"] == first.mul + 3 * (2 * n * d ** 3 + 3 * n * d * d)
    assert row["break_even_tokens"] > d * d
    assert "does not pay" in rec["details"]["opcount"]["note"]


REF_P4 = REFERENCE / "vit_digits_p4.onnx"


@pytest.mark.skipif(not (REF_P4.is_file() and (REFERENCE / "digits_calib.npz").is_file()),
                    reason="reference ViT not built (tools/train_reference.py)")
def test_reference_vit_selective_refit():
    """Trained reference ViT: refit improves the layers' cosines; --max-drop 1 holds on calibration."""
    from vitc.runtime.data import load_dataset
    from vitc.core.io import load_model
    calib = load_dataset(REFERENCE / "digits_calib.npz", load_model(REF_P4).model).take(96)
    res = compile_model(REF_P4, passes="taylor", target="none", calib=calib, options={"max_drop": 1.0})
    rec = res.compiled.records[0]
    assert rec.fidelity["calibration"].endswith("digits_calib.npz") and rec.fidelity["samples"] == 96
    e2e = rec.fidelity["end_to_end"]
    assert e2e["accuracy_original"] - e2e["accuracy"] <= 1.0
    assert rec.blocks and rec.weights.startswith("fitted")
    assert len(rec.details["trials"]) == 6
    per_layer = rec.fidelity["per_layer"].values()
    assert np.mean([f["cos_after"] for f in per_layer]) > np.mean([f["cos_before_holdout"] for f in per_layer]) + 0.02
    # drop-in on all layers is much worse end to end than the selective, refitted model
    drop_in = compile_model(REF_P4, passes="taylor", target="none", calib=calib, options={"taylor_refit": "no"})
    assert drop_in.compiled.records[0].weights == "untrained"
    assert drop_in.compiled.records[0].fidelity["end_to_end"]["accuracy"] < e2e["accuracy"] - 5


def test_taylor_counts_real_tokens_and_says_when_linearisation_cannot_pay():
    """Text calibration: op counts at the median real sentence length (not the probe's), each
    rewritten block's break-even token count, and a note when Taylor costs more than softmax."""
    from conftest import EXPORTERS, FIXTURES
    from vitc.compiler import opcount
    from vitc.passes.taylor import break_even_tokens
    from vitc.pipeline import compile_model
    res = compile_model(EXPORTERS / "hf_bert_eager_legacy_op17.onnx", passes="taylor", target="none",
                        calib=FIXTURES / "text" / "sentences.txt", tokenizer=FIXTURES / "text" / "vocab.txt")
    rec = res.compiled.records[0]
    oc = rec.details["opcount"]
    assert oc["tokens"].startswith("median real tokens")
    row = next(r for r in oc["per_block"] if r["rewritten"])
    n, b = row["tokens"], row["break_even_tokens"]
    attrs = next(n_.attrs for n_ in res.compiled.graph.nodes if n_.op == "TaylorAttention")
    count = lambda k, f: f(k).mul  # noqa: E731
    taylor = lambda k: opcount.taylor_attention_counts(k, row["head_dim"], row["heads"], attrs["variant"],  # noqa: E731
                                                       attrs["centering"], bool(attrs["simplified"]), True)
    soft = lambda k: opcount.softmax_attention_counts(k, row["head_dim"], row["heads"], True)  # noqa: E731
    assert count(b, taylor) <= count(b, soft) and count(b - 1, taylor) > count(b - 1, soft)
    assert b == break_even_tokens(row["head_dim"], row["heads"], attrs, True)
    if n < b:
        assert any("does not pay" in t for t in rec.details["notes"])
    else:
        assert not any("does not pay" in t for t in rec.details.get("notes", []))


@pytest.mark.parametrize("tokens", [4, 4096])
def test_taylor_when_pays_keeps_softmax_where_linearisation_costs_more(tokens):
    from conftest import EXPORTERS
    from vitc.pipeline import compile_model
    res = compile_model(EXPORTERS / "hf_bert_eager_legacy_op17.onnx", passes="taylor", target="none",
                        options={"when": "pays", "taylor_tokens": tokens})
    rec = res.compiled.records[0]
    if tokens == 4:       # a few tokens: softmax's n² is cheaper than Taylor's n·d² everywhere
        assert rec.blocks == [] and all("does not pay at 4 tokens" in r for r in rec.details["declined"].values())
    else:
        assert rec.blocks and not rec.details["declined"]


def test_head_cos_floor_keeps_unfaithful_heads_exact_in_a_hybrid_core():
    """Trained reference ViT: per-head Taylor cosines decide which heads stay softmax; the emitted
    hybrid core runs in onnxruntime, costs between Taylor and softmax, and is closer to the original."""
    from vitc.runtime.data import load_dataset
    from vitc.core.io import load_model
    calib = load_dataset(REFERENCE / "digits_calib.npz", load_model(REF_P4).model).take(96)
    floor = 0.9
    res = compile_model(REF_P4, passes="taylor", target="none", calib=calib, options={"head_cos_floor": floor})
    rec = res.compiled.records[0]
    plain = compile_model(REF_P4, passes="taylor", target="none", calib=calib).compiled.records[0]
    for i in range(6):
        cos = (rec.fidelity["per_layer"].get(str(i)) or {}).get("head_cosines")
        if i in rec.blocks:       # exactly the heads under the floor are exact
            assert rec.details["softmax_heads"].get(str(i), []) == [h for h, c in enumerate(cos) if c < floor]
            assert max(cos) >= floor
        else:                     # a block with no head at the floor keeps softmax, with the reason
            assert "no head reaches the head cosine floor" in rec.details["declined"][str(i)]
    assert rec.details["softmax_heads"] and set(rec.details["softmax_heads"]) <= {str(i) for i in rec.blocks}
    nodes = {n.name: n for n in res.model.graph.node if n.op_type == "TaylorAttention"}
    assert len(nodes) == len(rec.blocks) and any(n.overload.endswith("hybrid") for n in nodes.values())
    total = rec.details["opcount"]["total_M"]
    assert plain.details["opcount"]["total_M"]["rewritten"]["mul"] < total["rewritten"]["mul"] < total["baseline"]["mul"]
    assert rec.fidelity["end_to_end"]["output_cosine"] > plain.fidelity["end_to_end"]["output_cosine"] + 0.02
    # the exact heads of a hybrid core are the softmax heads' outputs
    b = res.compiled.blocks[int(next(iter(rec.details["softmax_heads"])))]
    core = nodes[b.attention]
    soft = rec.details["softmax_heads"][str(b.index)]
    x = calib.feeds["input"][:4]
    vals = run_with_intermediates(res.model, list(core.input) + [core.output[0]], {"input": x})
    q, k, v = (vals[t] for t in core.input[:3])
    hd, scale = b.head_dim, float(1 / np.sqrt(b.head_dim))
    taylor = nxn_reference(q, k, v, b.num_heads, scale, "paper", "tokens", None)
    got = vals[core.output[0]]
    for h in range(b.num_heads):
        cut = slice(h * hd, (h + 1) * hd)
        e = np.exp(scale * q[..., cut] @ np.swapaxes(k[..., cut], 1, 2))
        exact = (e / e.sum(-1, keepdims=True)) @ v[..., cut]          # softmax attention of head h
        want = exact if h in soft else taylor[..., cut]
        assert np.abs(got[..., cut] - want).max() < 1e-4 * np.abs(want).max()
