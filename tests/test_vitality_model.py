"""ViTALiTy accelerator model: Table V reproduction (DeiT-Base Taylor attention)."""
from __future__ import annotations

import tomllib

import pytest

from vitc.backends.vitality_model import (
    HW_DIR, TABLE5_UJ, load_preset, sa_layer_cycles_taylor, softmax_attention_cost,
    table5_deit_base, taylor_attention_cost, vitality_hw,
)

PAPER = TABLE5_UJ["deit-base"]


@pytest.fixture(scope="module")
def df():
    return table5_deit_base("down-forward")


@pytest.fixture(scope="module")
def gs():
    return table5_deit_base("g-stationary")


@pytest.mark.parametrize("dataflow", ["down-forward", "g-stationary"])
@pytest.mark.parametrize("cell", ["systolic", "overall"])
def test_table5_within_20_percent(dataflow, cell):
    ours = table5_deit_base(dataflow).energy_uj[cell]
    assert ours == pytest.approx(PAPER[dataflow][cell], rel=0.20)


@pytest.mark.parametrize("dataflow", ["down-forward", "g-stationary"])
def test_table5_data_access(dataflow):
    # derived SRAM energy/word (Table III power / 4 buffers / 64 words / 500 MHz)
    ours = table5_deit_base(dataflow).energy_uj["data_access"]
    assert ours == pytest.approx(PAPER[dataflow]["data_access"], rel=0.02)


def test_ordering(df, gs):
    assert df.energy_uj["systolic"] < gs.energy_uj["systolic"]
    assert df.energy_uj["overall"] < gs.energy_uj["overall"]
    assert gs.energy_uj["data_access"] < df.energy_uj["data_access"]  # G stays in the PEs
    assert df.energy_uj["other"] == pytest.approx(gs.energy_uj["other"])


def test_busy_cycles_deit_base(df, gs):
    # per head: 4 V folds x 64 + QG 197 = 453, + per layer 64 load + 190 bubble + 126 drain
    assert df.busy_cycles["sa_general"] == 12 * (64 + 12 * 453 + 190 + 126)
    # per head: os(G) 64+64+197-2 = 323, ws(QG) without the G load 387-64 = 323
    assert gs.busy_cycles["sa_general"] == 12 * 12 * (323 + 323)
    assert df.busy_cycles["sa_diag"] == 12 * (64 + 12 * 197 + 63)
    assert df.ops["sa_general"] == 144 * 2 * 197 * 64 * 64


def test_steps_follow_algorithm_1(df, gs):
    steps = {s.step: s for s in df.steps}
    assert len(df.steps) == 10
    assert steps["2 G = K_hat^T V"].cycles == 4 * (2 * 64 + 64 + 64 - 2)   # 4 ws folds
    assert steps["5 Q G"].cycles == 2 * 64 + 64 + 197 - 2
    assert {s.step: s for s in gs.steps}["2 G = K_hat^T V"].cycles == 64 + 64 + 197 - 2
    for unit in ("accumulator_array", "adder_array", "divider_array"):
        per_head = sum(s.cycles for s in df.steps if s.unit == unit)
        assert df.busy_cycles[unit] == 144 * per_head
    for unit, ops in df.ops.items():
        assert ops == 144 * sum(s.ops for s in df.steps if s.unit == unit)


def test_isolated_schedules_do_not_reproduce_ordering():
    # without the intra-layer pipeline G-stationary wins (1 os fold vs 4 ws folds)
    for sched in ("scalesim", "double-buffered"):
        a = sa_layer_cycles_taylor(197, 64, 12, 64, 64, "down-forward", sched)
        b = sa_layer_cycles_taylor(197, 64, 12, 64, 64, "g-stationary", sched)
        assert b < a


def test_activity_model(df):
    act = table5_deit_base("down-forward", energy="activity")
    act_gs = table5_deit_base("g-stationary", energy="activity")
    hw = vitality_hw()
    e_mac = hw.unit_pj_per_cycle("sa_general") / (64 * 64)
    assert e_mac == pytest.approx(0.6235, rel=1e-3)
    assert act.unit_energy_uj["sa_general"] == pytest.approx(act.ops["sa_general"] * e_mac * 1e-6)
    assert act.energy_uj["systolic"] == pytest.approx(act_gs.energy_uj["systolic"])
    assert act.energy_uj["systolic"] < df.energy_uj["systolic"]  # idle PEs are free here


def test_batch_and_layers_scale():
    one = taylor_attention_cost(197, 64, heads=12, layers=1)
    two = taylor_attention_cost(197, 64, heads=12, layers=2)
    assert two.energy_uj["overall"] == pytest.approx(2 * one.energy_uj["overall"])
    b2 = taylor_attention_cost(197, 64, heads=12, layers=1, batch=2)
    assert b2.ops == {k: 2 * v for k, v in one.ops.items()}
    assert one.energy_uj["overall"] < b2.energy_uj["overall"] < 2.01 * one.energy_uj["overall"]


def test_softmax_baseline_costs_more(df):
    sm = softmax_attention_cost(197, 64, heads=12, layers=12)
    assert sm.energy_uj["overall"] > 2 * df.energy_uj["overall"]
    assert sm.latency_cycles > df.latency_cycles
    assert sm.ops["sa_general"] == 144 * 2 * 197 * 197 * 64


def test_preset_matches_table3():
    t = load_preset("vitality")
    with open(HW_DIR / "vitality.toml", "rb") as fh:
        assert tomllib.load(fh) == t
    assert t["meta"]["kind"] == "systolic"
    units = t["units"]
    table3 = ("accumulator_array", "adder_array", "divider_array", "sa_general", "sa_diag")
    area = sum(units[u]["area_mm2"] for u in table3) + t["sram"]["area_mm2"]
    power = sum(units[u]["power_mw"] for u in table3) + t["sram"]["power_mw"]
    assert area == pytest.approx(t["total"]["area_mm2"], abs=1e-9)
    assert power == pytest.approx(t["total"]["power_mw"], abs=1.0)
    for key in t["meta"]["surrogates"]:
        node = t
        for part in key.split("."):
            node = node[part]
    hw = vitality_hw()
    assert hw.sram_pj_per_word == pytest.approx(22.9 / 500 * 1e3 / (4 * 64))


def test_bad_arguments():
    with pytest.raises(ValueError):
        taylor_attention_cost(197, 64, 12, dataflow="weight-stationary")
    with pytest.raises(ValueError):
        taylor_attention_cost(197, 64, 12, energy="magic")
