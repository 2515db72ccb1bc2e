"""Attention reuse (TReX): plans, rewrite, TB numerics, fitting, weights files, costs, auto search."""
from __future__ import annotations


import numpy as np
import onnx
import pytest

from vitc.cli import main
from vitc.backends.api import analyse, cost_oracle
from vitc.passes import manager
from vitc.core.errors import VitcInputError
from vitc.compiler.frontend import canonicalize_model
from vitc.pipeline import compile_model
from vitc.compiler.zoo import build_vit
from vitc.passes.fidelity import emit_copy
from vitc.passes.reuse import ReusePass
from vitc.passes.reuse_plan import apply_plan, parse_plan, working_copy
from vitc.passes.reuse_search import branch_and_bound, count_plans, exhaustive
from vitc.passes.reuse_tb import TB, fit_tb, gelu, gelu_inverse, layer_norm
from vitc.runtime.session import run_with_intermediates

from conftest import EXPORTERS, REFERENCE

HW_WRITE = "benchmarks/reuse_neurosim_xbar_write.toml"


@pytest.fixture(scope="module")
def small_vit() -> onnx.ModelProto:
    """DeiT-Tiny width, 4 blocks, 32×32 input (5 tokens): fast to fit, run and cost."""
    return build_vit("deit-tiny", img_size=32, patch=16, depth=4, seed=1)


def _cm(model):
    return canonicalize_model(model, name="vit")


def _run(cm_or_model, names, feeds):
    model = cm_or_model if isinstance(cm_or_model, onnx.ModelProto) else emit_copy(cm_or_model)
    return run_with_intermediates(model, names, feeds)


# ----------------------------------------------------------------------------- plans
def test_plan_forms():
    assert parse_plan("1,3,5,7,9,11", 12) == {1: 0, 3: 2, 5: 4, 7: 6, 9: 8, 11: 10}
    assert parse_plan("1,2,3", 12) == {1: 0, 2: 0, 3: 0}
    assert parse_plan("3:1,5:1", 12) == {3: 1, 5: 1}
    assert parse_plan("5:3,3:1", 12) == {3: 1, 5: 1}      # a removed source resolves to what it reuses
    assert parse_plan("2, 4:1", 6) == {2: 1, 4: 1}
    assert parse_plan("none", 6) == {} and parse_plan([1, (3, 0)], 6) == {1: 0, 3: 0}


@pytest.mark.parametrize("spec, message", [
    ("0,1", "block 0 cannot reuse"), ("12", "block 12 does not exist"), ("1,1", "listed twice"),
    ("3:3", "only reuse an earlier block"), ("3:5", "only reuse an earlier block"),
    ("4:-1", "source block -1"), ("1;2", "cannot read"), ("x", "cannot read")])
def test_plan_errors(spec, message):
    with pytest.raises(VitcInputError, match=message):
        parse_plan(spec, 12)


def test_cli_invalid_plan_is_one_line_error(tmp_path, capsys, small_vit):
    path = tmp_path / "m.onnx"
    onnx.save(small_vit, path)
    rc = main(["compile", str(path), "--passes", "reuse", "--reuse-plan", "0,2", "--target", "none",
               "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "block 0 cannot reuse" in err
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- TB numerics
def test_gelu_inverse_and_fit_recovers_a_gelu_map():
    y = np.linspace(-0.16, 4, 400, dtype=np.float32)
    assert np.abs(gelu(gelu_inverse(y, margin=0.0)) - y).max() < 1e-4
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3000, 24)).astype(np.float32)
    w = rng.standard_normal((24, 24)) / 5
    target = gelu(layer_norm(a) @ w + 0.1).astype(np.float32)
    tb = fit_tb("ln-linear-gelu", None, a, target)
    lin = fit_tb("ln-linear", None, a, target)
    assert tb.stats["cos"] > 0.999 > lin.stats["cos"]
    low = fit_tb("linear", None, a, a @ (w[:, :4] @ w[:4, :]), rank=4)
    assert low.w1.shape == (24, 4) and low.w2.shape == (4, 24) and low.stats["cos"] > 0.9999


def test_rewrite_removes_attention_and_identity_tb_matches_numpy(small_vit):
    cm = _cm(small_vit)
    feeds = {"input": np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)}
    b1, b0 = cm.blocks[1], cm.blocks[0]
    orig = _run(cm, [b1.block_input, b0.attn_output, cm.node(b1.residual).outputs[0].name], feeds)
    rec = ReusePass().run(cm, manager.context(["reuse"], {"reuse_plan": "1,3", "tb": "identity", "reuse_cost": False}))
    assert rec.weights == "identity" and rec.blocks == [1, 3] and rec.details["plan"] == {"1": 0, "3": 2}
    assert [b.reuses for b in cm.blocks] == [None, 0, None, 2]
    model = emit_copy(cm)
    cores = [n for n in model.graph.node if n.domain == "ai.vitc"]
    assert len(cores) == 2
    blocks_left = {dict((p.key, p.value) for p in n.metadata_props).get("vitc.block") for n in cores}
    assert blocks_left == {"0", "2"}
    for n in model.graph.node:   # nothing of block 1/3's attention sub-block survives
        meta = {p.key: p.value for p in n.metadata_props}
        if meta.get("vitc.block") in ("1", "3"):
            assert meta["vitc.role"] not in ("q_proj", "k_proj", "v_proj", "out_proj", "attention", "norm1")
    onnx.checker.check_model(model)
    got = _run(model, [cm.node(b1.residual).outputs[0].name], feeds)
    manual = orig[b1.block_input] + orig[b0.attn_output]       # x + TB(A_0), TB = identity
    np.testing.assert_allclose(list(got.values())[0], manual, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind, rank", [("linear", None), ("ln-linear", 8), ("ln-linear-gelu", None)])
def test_emitted_tb_matches_numpy_forward(small_vit, kind, rank):
    cm = _cm(small_vit)
    c = cm.blocks[0].embed_dim
    rng = np.random.default_rng(2)
    r = rank or c
    tb = TB(kind, rng.standard_normal((c, r)) / np.sqrt(c), None if rank is None else rng.standard_normal((r, c)) / 3,
            rng.standard_normal(c) * 0.1)
    feeds = {"input": rng.standard_normal((2, 3, 32, 32)).astype(np.float32)}
    a0 = _run(cm, [cm.blocks[0].attn_output], feeds)[cm.blocks[0].attn_output]
    outs = apply_plan(cm, {2: 0}, {2: tb})
    tb_out = _run(cm, [outs[2]], feeds)[outs[2]]
    np.testing.assert_allclose(tb_out, tb(a0), rtol=1e-4, atol=1e-4)
    ops = {n.op for n in cm.graph.nodes if cm.node_meta.get(n.name, {}).get("vitc.role") == "reuse_tb"}
    assert ("LayerNormalization" in ops) == kind.startswith("ln") and ("Erf" in ops) == kind.endswith("gelu")


def test_decomposed_layernorm_for_old_opsets():
    path = EXPORTERS / "timm_legacy_eager_op14.onnx"
    if not path.is_file():
        pytest.skip("fixture missing")
    model = onnx.load(path)
    cm = _cm(model)
    assert cm.opset < 17
    c = cm.blocks[0].embed_dim
    tb = TB("ln-linear", np.eye(c) * 2, None, np.zeros(c))
    feeds = {i.name: np.random.default_rng(0).standard_normal(
        [d.dim_value or 2 for d in i.type.tensor_type.shape.dim]).astype(np.float32) for i in model.graph.input}
    a0 = _run(cm, [cm.blocks[0].attn_output], feeds)[cm.blocks[0].attn_output]
    outs = apply_plan(cm, {1: 0}, {1: tb})
    assert not any(n.op == "LayerNormalization" and n.name.startswith("/reuse/") for n in cm.graph.nodes)
    np.testing.assert_allclose(_run(cm, [outs[1]], feeds)[outs[1]], tb(a0), rtol=1e-3, atol=1e-4)


# ----------------------------------------------------------------------------- fitting, records, weights files
def test_fitted_tb_beats_identity_and_weights_round_trip(small_vit, tmp_path):
    res = compile_model(small_vit, passes="reuse", target="none", out=tmp_path / "fit",
                        options={"reuse_plan": "1,3", "tb": "ln-linear", "reuse_cost": False})
    rec = res.compiled.records[0]
    assert rec.weights == "fitted" and rec.details["tb"] == "ln-linear"
    for stats in rec.fidelity["per_layer"].values():
        assert stats["cos_tb"] > stats["cos_identity"] + 0.05
    ident = compile_model(small_vit, passes="reuse", target="none",
                          options={"reuse_plan": "1,3", "tb": "identity", "reuse_cost": False}).compiled.records[0]
    assert rec.fidelity["end_to_end"]["output_cosine"] > ident.fidelity["end_to_end"]["output_cosine"]
    weights = tmp_path / "fit" / "reuse_tb.npz"
    assert weights.is_file() and "tb1.w1" in np.load(weights)
    loaded = compile_model(small_vit, passes="reuse", target="none",
                           options={"reuse_plan": "1,3", "tb_weights": str(weights), "reuse_cost": False})
    assert loaded.compiled.records[0].weights == "loaded"
    feeds = {"input": np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)}
    out_a = run_with_intermediates(res.model, ["logits"], feeds)["logits"]
    out_b = run_with_intermediates(loaded.model, ["logits"], feeds)["logits"]
    np.testing.assert_allclose(out_a, out_b, rtol=1e-5, atol=1e-5)
    with pytest.raises(VitcInputError, match="no TB for block 2"):
        compile_model(small_vit, passes="reuse", target="none",
                      options={"reuse_plan": "1,2", "tb_weights": str(weights), "reuse_cost": False})


def test_teacher_and_sequential_fits(small_vit):
    cm = _cm(small_vit)
    seq = ReusePass().run(working_copy(cm), manager.context(["reuse"], {"reuse_plan": "1,2,3", "tb": "ln-linear-gelu",
                                                         "tb_rank": 16, "reuse_cost": False}))
    tea = ReusePass().run(working_copy(cm), manager.context(["reuse"], {"reuse_plan": "1,2,3", "tb": "ln-linear-gelu",
                                                         "tb_rank": 16, "tb_fit": "teacher", "reuse_cost": False}))
    assert seq.details["tb_fit"]["mode"] == "corrected" and tea.details["tb_fit"]["mode"] == "teacher"
    assert {s["input"] for s in tea.fidelity["per_layer"].values()} == {"original"}
    assert "target" not in tea.fidelity["per_layer"]["2"]
    assert seq.fidelity["per_layer"]["2"]["input"] == "original"  # source 0 precedes every rewrite
    assert seq.fidelity["per_layer"]["2"]["target"] == "corrected"  # block 1 was rewritten before block 2
    for r in (seq, tea):
        assert 0.0 < r.fidelity["end_to_end"]["output_cosine"] <= 1.0


# ----------------------------------------------------------------------------- costs
def test_crossbars_drop_by_exactly_the_removed_projections(small_vit):
    from vitc.core.hardware import load_hw
    cm = _cm(small_vit)
    spec = load_hw(HW_WRITE)
    base = analyse(emit_copy(cm), "xbar", spec)
    ReusePass().run(cm, manager.context(["reuse"], {"reuse_plan": "1,3", "tb": "identity", "reuse_cost": False}))
    rew = analyse(emit_copy(cm), "xbar", spec)
    c = cm.blocks[0].embed_dim
    per_block = 4 * spec.crossbars_for(c, c)            # q, k, v, out projections
    assert base.floorplan["crossbars"] - rew.floorplan["crossbars"] == 2 * per_block
    assert rew.floorplan["crossbars_dynamic"] < base.floorplan["crossbars_dynamic"]


def test_cost_accounting_in_record(small_vit):
    from vitc.core.hardware import load_hw
    spec = load_hw(HW_WRITE)
    res = compile_model(small_vit, passes="reuse", target="xbar", hw=HW_WRITE,
                        options={"reuse_plan": "1,2", "tb": "ln-linear", "tb_rank": 16})
    cost = res.compiled.records[0].details["cost"]
    c = 192
    assert cost["removed"]["crossbars"] == 2 * 4 * spec.crossbars_for(c, c)
    assert cost["tb_added"]["crossbars"] == 2 * (spec.crossbars_for(c, 16) + spec.crossbars_for(16, c))
    assert cost["removed"]["kv_cells_written"] > 0 and cost["removed"]["act_product_macs"] > 0
    assert cost["removed"]["softmax_elements"] == 2 * 3 * 5 * 5          # 2 blocks × heads × N × N
    assert cost["buffer"]["sources"] == {"0": {"held_until_block": 2, "reuses": 2}}
    assert cost["rewritten"]["edap_j_s_mm2"] == pytest.approx(res.report["totals"]["edap_j_s_mm2"], rel=1e-9)
    assert cost["ratios"]["edap_reduction"] > 1.0


def test_plan_cost_surrogate_close_to_backend(small_vit):
    from vitc.core.hardware import load_hw
    from vitc.passes.reuse_cost import PlanCostModel, account
    from vitc.passes.reuse_search import _dummy_tb
    cm = _cm(small_vit)
    spec = load_hw(HW_WRITE)
    cost = cost_oracle("xbar", spec)
    an0 = cost(emit_copy(cm))
    full = working_copy(cm)
    apply_plan(full, {1: 0, 2: 0, 3: 0}, {j: _dummy_tb("ln-linear-gelu", None, 192) for j in (1, 2, 3)})
    pcm = PlanCostModel.build(an0, cost(emit_copy(full)), {1: 0, 2: 0, 3: 0}, 5, 192)
    plan = {2: 1}
    trial = working_copy(cm)
    apply_plan(trial, plan, {2: _dummy_tb("ln-linear-gelu", None, 192)})
    exact = account(an0, cost(emit_copy(trial)), plan, 5, 192)["rewritten_with_buffer"]
    est = pcm.cost(plan)
    # within 0.5 %: on NeuroSim's chip every layer's bus energy follows the tile grid, which the
    # removed layers shrink (the surrogate keeps the other layers' costs as they were)
    assert est.energy_pj == pytest.approx(exact["energy_pj"], rel=5e-3)
    assert est.area_mm2 == pytest.approx(exact["area_mm2"], rel=1e-3)
    assert est.latency_ns == pytest.approx(exact["latency_ns"], rel=0.02)


# ----------------------------------------------------------------------------- search
@pytest.mark.parametrize("L, seed", [(6, 0), (9, 1), (12, 2)])
def test_branch_and_bound_equals_exhaustive(L, seed):
    rng = np.random.default_rng(seed)
    d = np.full((L, L), np.inf)
    for i in range(L):
        for j in range(i + 1, L):
            d[i, j] = rng.uniform(0.5, 1.5) * 0.01 * (j - i) ** 1.3
    d[0, 3] = np.inf                          # a forbidden pair (cos floor)
    best, nodes, done = branch_and_bound(d)
    ref = exhaustive(d)
    assert done and nodes < 2 ** L
    for k, (dmg, plan) in ref.items():
        assert best[k][0][0] == pytest.approx(dmg) and best[k][0][1] == plan
    assert (count_plans(2), count_plans(3)) == (2, 5)   # 3 blocks: 1 computes (3 ways for 2) or reuses 0 (2 ways)


def test_auto_search_meets_budget_and_writes_frontier(small_vit, tmp_path):
    res = compile_model(small_vit, passes="reuse", target="xbar", hw=HW_WRITE, out=tmp_path,
                        options={"reuse_plan": "auto", "tb": "ln-linear", "max_drop": 30, "max_latency": "0.9x"})
    rec = res.compiled.records[0]
    s = rec.details["search"]
    assert s["method"] == "branch-and-bound" and s["frontier_size"] >= 2
    chosen = [r for r in s["frontier"] if r.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["drop"] <= 30 and chosen[0]["latency_ns"] <= 0.9 * s["budget"]["baseline_latency_ns"]
    assert chosen[0]["edap"] == min(r["edap"] for r in s["frontier"] if r["meets_budget"])
    assert rec.blocks == chosen[0]["reusing"] and rec.blocks
    sec = res.report["sections"]["reuse_frontier"]
    assert len(sec["tables"][0]["rows"]) == s["frontier_size"]
    assert sum("(chosen)" in str(row[1]) for row in sec["tables"][0]["rows"]) == 1
    assert "Frontier plans" in (tmp_path / "report.md").read_text()


def test_reference_vit_fitted_beats_identity():
    model = REFERENCE / "vit_digits_p4.onnx"
    calib = REFERENCE / "digits_calib.npz"
    if not (model.is_file() and calib.is_file()):
        pytest.skip("reference ViT not built")
    res = {}
    for kind in ("identity", "ln-linear"):
        r = compile_model(model, passes="reuse", target="none", calib=calib, calib_samples=128,
                          options={"reuse_plan": "1,3,5", "tb": kind, "reuse_cost": False})
        res[kind] = r.compiled.records[0]
    fit, ident = res["ln-linear"], res["identity"]
    for j in ("1", "3", "5"):
        assert fit.fidelity["per_layer"][j]["cos_tb"] > ident.fidelity["per_layer"][j]["cos_tb"]
    assert fit.fidelity["end_to_end"]["accuracy"] >= ident.fidelity["end_to_end"]["accuracy"]
