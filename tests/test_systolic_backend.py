"""--target systolic / --target hybrid: the compiled graph on the ViTALiTy accelerator."""
from __future__ import annotations

import json

import onnx
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import assert_offline_html
from onnx import TensorProto, helper, numpy_helper

from vitc.backends.api import analyse, prepared
from vitc.report import OUTPUT_FILES, evaluate
from vitc.compiler.emit import emit
from vitc.compiler.frontend import canonicalize_model
from vitc.core.hardware import load_hw, override
from vitc.backends.partition import ACT, FREE, MVM
from vitc.backends.systolic import CORE, SystolicModel, gemm_shapes, systolic_hw
from vitc.backends.vitality_model import (
    softmax_attention_cost, table5_deit_base, taylor_attention_cost, taylor_head_steps, vitality_hw,
)
from vitc.core.errors import VitcInputError
from vitc.pipeline import compile_model
from vitc.compiler.zoo import build_vit
from vitc.runtime.ops import functions_for

FIXTURES = Path(__file__).resolve().parent / "fixtures"
REL = 1e-9


def _cross_attn_model(n=16, m=8, c=32):
    """q from x [B, n, C], k/v from memory [B, m, C], one ai.vitc::Attention (N_q != N_kv: the
    systolic attention model does not cover it, so the target sees its declared steps), out proj."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((c, c)).astype(np.float32), f"W{x}") for x in "qkvo"]
    nodes = [helper.make_node("MatMul", ["x" if x == "q" else "mem", f"W{x}"], [x], name=f"/blocks.0/attn/{x}_proj/MatMul")
             for x in "qkv"]
    nodes += [helper.make_node("Attention", ["q", "k", "v"], ["a"], domain="ai.vitc", name="/blocks.0/attn/Attention",
                               num_heads=2, scale=0.125),
              helper.make_node("MatMul", ["a", "Wo"], ["y"], name="/blocks.0/attn/proj/MatMul")]
    g = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", n, c]),
                                          helper.make_tensor_value_info("mem", TensorProto.FLOAT, ["batch", m, c])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", n, c])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.vitc", 1)],
                              functions=functions_for([("Attention", "")], 17))
    model.ir_version = 10
    return model


def _compiled(name: str, depth: int, passes: str = "none", img: int = 224, **opts):
    options = {"taylor_measure": False, **opts} if "taylor" in passes else None
    return compile_model(build_vit(name, img_size=img, depth=depth), passes=passes, target="none",
                         options=options, name=f"{name}-{passes}").model


@pytest.fixture(scope="module")
def base_taylor():
    return _compiled("deit-base", 2, "taylor")


@pytest.fixture(scope="module")
def tiny_models():
    return _compiled("deit-tiny", 2, "none"), _compiled("deit-tiny", 2, "taylor")


# ----------------------------------------------------------------------------- GEMMs
def test_backend_gemms_in_scalesim_mode_equal_recorded_scalesim_cycles():
    """The backend's GEMM cost (mode scalesim) is SCALE-Sim's "Total Cycles" (+1: cycles, not the last index)."""
    recs = json.loads((FIXTURES / "scalesim" / "recorded_cycles.json").read_text())["records"]
    base = load_hw("vitality")
    checked = 0
    for r in recs:
        spec = override(base, {"systolic.rows": r["rows"], "systolic.cols": r["cols"]})
        m = SystolicModel(systolic_hw(spec), {"gemm_mode": "scalesim", "dataflow": r["dataflow"]})
        busy = m._gemm(r["M"], r["N"], r["K"], 1)[0]
        assert busy - 1 == r["total_cycles"], r["name"]
        checked += 1
    assert checked >= 20


def test_gemm_shapes_of_projection_and_products(tiny_models):
    _, tay = tiny_models
    pg, items, _ = prepared(tay)
    qkv = [it for it in items if it.kind == MVM and it.role == "q_proj"]
    assert gemm_shapes(qkv[0]) == [(197, 192, 192, 1)]
    conv = next(it for it in items if it.op.op_type == "Conv")
    assert gemm_shapes(conv) == [(196, 192, 3 * 16 * 16, 1)]


# ----------------------------------------------------------------------------- cores
@pytest.mark.parametrize("dataflow", ["down-forward", "g-stationary"])
def test_graph_driven_deit_base_cores_equal_vitality_model(base_taylor, dataflow):
    """Every TaylorAttention node of DeiT-Base costs exactly taylor_attention_cost(197, 64, 12); the 12-layer
    sum is vitality_model's Table V figure (2 layers built here, x6)."""
    an = analyse(base_taylor, "systolic", "vitality", model_name="b", options={"attention_dataflow": dataflow})
    sy = an.sections["systolic"]
    cores = sy["attention_cores"]
    assert len(cores) == 2 and {c["kind"] for c in cores} == {"taylor"}
    one = taylor_attention_cost(197, 64, heads=12, layers=1, dataflow=dataflow)
    for c in cores:
        assert (c["n"], c["d"], c["heads"], c["batch"]) == (197, 64, 12, 1)
        assert c["busy_cycles"] == one.busy_cycles and c["latency_cycles"] == one.latency_cycles
        for k, v in one.energy_uj.items():
            assert c["energy_uj"][k] == pytest.approx(v, rel=REL)
    ref = table5_deit_base(dataflow)
    tot = sy["attention_totals"]["taylor"]
    assert {u: 6 * v for u, v in tot["busy_cycles"].items()} == ref.busy_cycles
    assert 6 * tot["latency_cycles"] == ref.latency_cycles
    for k in ("systolic", "other", "data_access", "overall", "dram"):
        assert 6 * tot["energy_uj"][k] == pytest.approx(ref.energy_uj[k], rel=REL)
    # and the flow's op costs carry the same energy (core op = one schedulable unit on the array)
    core_ops = [c for c in an.costs if c.kind == CORE]
    assert len(core_ops) == 2 and all(c.resource == "sa" for c in core_ops)
    e = sum(c.energy_pj for c in core_ops)
    assert e == pytest.approx(2 * (one.energy_uj["overall"] + one.energy_uj["dram"]) * 1e6, rel=REL)
    # the inlined body is not costed op by op
    body = [it for it in an.items if it.op.origin_type == "ai.vitc::TaylorAttention"]
    assert sum(it.kind != FREE for it in body) == 2


def test_table5_reproduced_within_20_percent_through_the_graph(base_taylor):
    from vitc.backends.vitality_model import TABLE5_UJ
    for df in ("down-forward", "g-stationary"):
        an = analyse(base_taylor, "systolic", "vitality", model_name="b", options={"attention_dataflow": df})
        tot = an.sections["systolic"]["attention_totals"]["taylor"]["energy_uj"]
        for cell in ("systolic", "overall"):
            assert 6 * tot[cell] == pytest.approx(TABLE5_UJ["deit-base"][df][cell], rel=0.20)


def test_softmax_costs_more_than_taylor_deit_tiny(tiny_models):
    soft, tay = tiny_models
    a = analyse(soft, "systolic", "vitality", model_name="s")
    b = analyse(tay, "systolic", "vitality", model_name="t")
    cs = a.sections["systolic"]["attention_totals"]["softmax"]
    ct = b.sections["systolic"]["attention_totals"]["taylor"]
    assert cs["cores"] == ct["cores"] == 2
    one_s = softmax_attention_cost(197, 64, heads=3, layers=1)
    assert cs["energy_uj"]["overall"] == pytest.approx(2 * one_s.energy_uj["overall"], rel=REL)
    assert cs["energy_uj"]["overall"] > 2 * ct["energy_uj"]["overall"]          # cores: ~2.8x
    assert cs["latency_cycles"] > 2 * ct["latency_cycles"]
    assert a.totals["energy_pj"] > b.totals["energy_pj"]                      # end to end
    assert a.totals["latency_ns"] > b.totals["latency_ns"]
    # projections, MLP, patch embedding and head are identical GEMMs in both
    ka, kb = a.sections["systolic"]["by_kind"]["mvm"], b.sections["systolic"]["by_kind"]["mvm"]
    assert ka == kb and ka["macs"] == 2 * 12 * 197 * 192 * 192 + 196 * 768 * 192 + 192 * 1000
    # softmax needs the exp array, Taylor only for GELU; steps follow Table II
    steps = {t["kind"]: [s["step"] for s in t["steps"]] for t in a.sections["systolic"]["steps"]
             + b.sections["systolic"]["steps"]}
    assert steps["softmax"][0].startswith("1 S = Q K^T") and steps["taylor"][-1].startswith("6 Z")


def test_taylor_variants_follow_the_node_attributes():
    code = _compiled("deit-tiny", 1, "taylor", img=64, taylor_variant="code")
    an = analyse(code, "systolic", "vitality", model_name="c")
    c = an.sections["systolic"]["attention_cores"][0]
    assert (c["variant"], c["centering"], c["simplified"]) == ("code", "features", False)
    ref = taylor_attention_cost(17, 64, 3, variant="code", centering="features")
    assert c["energy_uj"]["overall"] == pytest.approx(ref.energy_uj["overall"], rel=REL)
    paper = taylor_attention_cost(17, 64, 3)
    assert ref.energy_uj["overall"] < paper.energy_uj["overall"]     # no sums, no t_D, no division
    hw = vitality_hw()
    simp = [s.step for s in taylor_head_steps(197, 64, hw, simplified=True)]
    assert not any(s.startswith("6 Z = T_N") or s.startswith("4 Q k") for s in simp)
    assert taylor_attention_cost(197, 64, 12, simplified=True).busy_cycles["divider_array"] < \
        taylor_attention_cost(197, 64, 12).busy_cycles["divider_array"]


# ----------------------------------------------------------------------------- hybrid
def test_hybrid_static_mvms_on_crossbars_products_on_systolic(tiny_models):
    _, tay = tiny_models
    an = analyse(tay, "hybrid", "rram-128+vitality", model_name="h")
    xb = analyse(tay, "xbar", "rram-128", model_name="x")
    _, orig, _ = prepared(tay)          # every core lowered to its declared steps
    cost = {c.name: c for c in an.costs}
    core_unit = {c.name: c.unit for c in an.costs if c.kind == CORE}
    n_mvm = n_act = 0
    for it in orig:
        if it.kind == MVM:
            assert cost[it.op.name].unit == "xbar" and cost[it.op.name].crossbars > 0
            n_mvm += 1
        elif it.kind == ACT:  # a step of a core costed as a unit on the systolic array, or costed there itself
            c = cost.get(it.op.name)
            assert (c is not None and c.unit == "sa") or core_unit.get(it.op.origin) == "sa"
            n_act += 1
    assert n_mvm == 2 * 6 + 2 and n_act == 2 * 3
    assert {c.unit for c in an.costs} == {"xbar", "sa", "pp"}
    assert an.totals["crossbars"] == xb.totals["crossbars"]
    assert an.sections["systolic"]["by_kind"].keys() == {CORE, "sfu", "vector"}


def test_hybrid_products_outside_cores_go_to_the_systolic_array():
    """An attention the systolic model cannot cost as a unit (N_q != N_kv): its declared products still
    leave the crossbars."""
    an = analyse(_cross_attn_model(), "hybrid", "rram-128+vitality", model_name="a")
    acts = [c for c in an.costs if c.kind == ACT]
    assert len(acts) == 2 and {c.unit for c in acts} == {"sa"}
    assert {c.unit for c in an.costs if c.kind == MVM} == {"xbar"}
    assert any("costed op by op (16 queries but 8 keys)" in w for w in an.warnings)
    assert sum(c.macs for c in acts) == 2 * 16 * 8 * 32      # QKᵀ and S·V: 16 queries x 8 keys x 32


def test_hybrid_hardware_value_and_errors():
    spec = load_hw("vitality+rram-128")
    assert spec.kind == "hybrid" and spec.name == "rram-128+vitality"
    assert spec["crossbar.rows"] == 128 and spec["parts.systolic.systolic.rows"] == 64
    assert "parts.systolic.dram.energy_pj_per_bit" in spec.surrogates
    m = _compiled("deit-tiny", 1, img=64)
    with pytest.raises(VitcInputError, match="one crossbar and one systolic"):
        load_hw("rram-128+rram-64")
    with pytest.raises(VitcInputError, match="target systolic needs systolic hardware"):
        analyse(m, "systolic", "rram-128", model_name="m")
    with pytest.raises(VitcInputError, match="rram-128\\+vitality"):
        analyse(m, "hybrid", "rram-128", model_name="m")
    with pytest.raises(VitcInputError, match="target hybrid"):
        analyse(m, "xbar", "rram-128+vitality", model_name="m")
    with pytest.raises(VitcInputError, match="dataflow must be one of"):
        analyse(m, "systolic", "vitality", model_name="m", options={"dataflow": "xs"})


# ----------------------------------------------------------------------------- options, files
def test_options_from_a_user_preset_and_stalls(tmp_path, tiny_models):
    _, tay = tiny_models
    p = tmp_path / "gs.toml"
    p.write_text('[meta]\nbase = "vitality"\nname = "vitality-gs"\nkind = "systolic"\n'
                 'description = "g-stationary"\n[systolic]\nattention_dataflow = "g-stationary"\n'
                 'dataflow = "auto"\ngemm_mode = "scalesim"\n')
    a = analyse(tay, "systolic", str(p), model_name="t")
    o = a.sections["systolic"]["options"]
    assert (o["attention_dataflow"], o["dataflow"], o["gemm_mode"]) == ("g-stationary", "auto", "scalesim")
    b = analyse(tay, "systolic", "vitality", model_name="t")
    g = b.sections["systolic"]["dataflow_comparison"]
    assert g["gemm"]["auto"]["sa_busy_cycles"] <= min(g["gemm"][d]["sa_busy_cycles"] for d in ("ws", "is", "os"))
    assert g["attention"]["down-forward"]["overall"] < g["attention"]["g-stationary"]["overall"]
    s = analyse(tay, "systolic", "vitality", model_name="t", options={"stalls": True})
    assert s.sections["systolic"]["dram"]["stall_cycles"] > 0
    assert s.totals["latency_ns"] > b.totals["latency_ns"] and s.totals["energy_pj"] == b.totals["energy_pj"]


@pytest.mark.parametrize("target,hw", [("systolic", "vitality"), ("hybrid", "rram-128+vitality")])
def test_report_files_schema_and_determinism(tiny_zoo, tmp_path, target, hw):
    r1 = compile_model(tiny_zoo, out=tmp_path / "o", passes="taylor", target=target, hw=hw,
                       options={"taylor_measure": False})
    recs = [r.to_dict() for r in r1.compiled.records]
    r2 = evaluate(r1.model, target, hw, model_name=r1.compiled.name, pass_records=recs,
                  baseline=emit(canonicalize_model(onnx.load(str(tiny_zoo)), name="tiny")))
    for f in OUTPUT_FILES:
        assert (tmp_path / "o" / f).is_file()
        assert (tmp_path / "o" / f).read_bytes() == r2.files[f], f     # byte-identical
    rep = json.loads(r1.files["report.json"])
    assert (rep["schema"], rep["schema_version"], rep["target"]) == ("vitc.report", 2, target)
    assert rep["hardware"]["kind"] == target
    t = rep["totals"]
    ops_e = sum(o["energy_pj"] for o in rep["ops"])
    assert ops_e == pytest.approx(t["dynamic_energy_pj"], rel=1e-4)
    assert sum(L["energy_pj"] for L in rep["layers"]) + t["energy_by_component_pj"]["leakage"] == \
        pytest.approx(t["energy_pj"], rel=1e-4)
    assert sum(t["area_by_component_mm2"].values()) == pytest.approx(t["area_mm2"], rel=1e-5)
    sy = rep["sections"]["systolic"]
    assert {"preset", "units", "sram", "dram", "attention_cores", "attention_totals", "steps",
            "dataflow_comparison", "options", "by_kind", "surrogates"} <= sy.keys()
    assert "dram.energy_pj_per_bit" in sy["surrogates"]
    assert rep["attention_products"] == "systolic"
    assert {o["kind"] for o in rep["ops"]} >= {CORE}
    sched = json.loads(r1.files["schedule.json"])
    assert sched["schema"] == "vitc.schedule" and "sa" in sched["resources"]
    mp = json.loads(r1.files["mapping.json"])
    assert mp["schema"] == "vitc.mapping" and (len(mp["matrices"]) > 0) == (target == "hybrid")
    html = r1.files["report.html"].decode()
    assert_offline_html(html)
    assert "Table II analogue" in html and "Dataflow comparison" in html
    md = r1.files["report.md"].decode()
    assert "## Attention cores (ViTALiTy Table V cells)" in md
    if target == "systolic":
        assert t["crossbars"] == 0
        assert t["area_mm2"] == pytest.approx(5.223 + 0.562)   # Table III + exp array (GELU)
        comp = t["energy_by_component_pj"]
        assert comp["array"] > 0 and comp["digital"] > 0 and comp["adc"] == 0


def test_systolic_energy_is_power_times_busy_plus_memory(tiny_models):
    _, tay = tiny_models
    an = analyse(tay, "systolic", "vitality", model_name="t")
    sy = an.sections["systolic"]
    hw = vitality_hw()
    for u, v in sy["units"].items():
        assert v["energy_pj"] == pytest.approx(v["busy_cycles"] * hw.unit_pj_per_cycle(u), rel=1e-9)
    assert sy["sram"]["energy_pj"] == pytest.approx(sy["sram"]["words"] * hw.sram_pj_per_word)
    assert sy["dram"]["energy_pj"] == pytest.approx(sy["dram"]["words"] * hw.dram_pj_per_word)
    assert sy["energy_pj"] == pytest.approx(an.totals["energy_pj"], rel=1e-9)
    assert an.totals["energy_by_component_pj"]["interconnect"] == pytest.approx(sy["dram"]["energy_pj"])
    # weights of every MVM come from DRAM once
    _, items, _ = prepared(tay)
    weights = sum(m.K * m.N * m.count for it in items if it.kind == MVM for m in it.matrices)
    assert sy["dram"]["words"] > weights
    assert math.isclose(an.totals["leakage_uw"], 0.0)
