"""gemm_cycles against SCALE-Sim v3.0.0 results recorded by tools/scalesim_crosscheck.py.

The JSON fixture is committed; SCALE-Sim itself is not needed to run these tests.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vitc.backends.gemm_cycles import gemm_cost, gemm_cycles

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "scalesim" / "recorded_cycles.json"
DOC = json.loads(FIXTURE.read_text())
RECORDS = DOC["records"]


def _id(r):
    return f"{r['name']}-{r['rows']}x{r['cols']}-{r['dataflow']}"


def test_fixture_is_broad():
    assert DOC["scalesim_version"] == "3.0.0"
    shapes = {(r["M"], r["N"], r["K"]) for r in RECORDS}
    arrays = {(r["rows"], r["cols"]) for r in RECORDS}
    assert len(shapes) >= 24
    assert {(8, 8), (32, 32), (16, 8)} <= arrays
    assert {r["dataflow"] for r in RECORDS} == {"ws", "is", "os"}
    assert all(r["stall_cycles"] == 0 for r in RECORDS)


def _mismatches(r) -> list[str]:
    """What differs between our GEMM model and one recorded SCALE-Sim run (empty: all equal)."""
    out = []
    args = (r["M"], r["N"], r["K"], r["rows"], r["cols"], r["dataflow"])
    ss = gemm_cycles(*args, mode="scalesim")
    if ss != r["total_cycles"]:
        out.append(f"cycles {ss} != {r['total_cycles']}")
    c = gemm_cost(*args)
    s = c.scalesim_sram_counts()
    for ours, theirs in (("ifmap_reads", "sram_ifmap_reads"), ("filter_reads", "sram_filter_reads"),
                         ("ofmap_writes", "sram_ofmap_writes")):
        if s[ours] != r[theirs]:
            out.append(f"{ours} {s[ours]} != {r[theirs]}")
    if not math.isclose(c.utilization * 100, r["overall_util_pct"], rel_tol=1e-9):
        out.append(f"utilisation {c.utilization * 100} != {r['overall_util_pct']}")
    if not math.isclose(c.mapping_efficiency * 100, r["mapping_eff_pct"], rel_tol=1e-9):
        out.append(f"mapping efficiency {c.mapping_efficiency * 100} != {r['mapping_eff_pct']}")
    db = gemm_cost(*args, mode="double-buffered")
    if not (math.ceil(db.macs / (r["rows"] * r["cols"])) <= db.cycles <= ss) or not 0 < db.utilization <= 1:
        out.append(f"double-buffered cycles {db.cycles} outside [macs/PEs, scalesim {ss}]")
    if db.folds == 1 and db.cycles != ss:
        out.append(f"single fold: double-buffered {db.cycles} != scalesim {ss}")
    return out


def test_every_recorded_scalesim_run_matches():
    """One test, every recorded run (cycles, SRAM counts, utilisation, mapping efficiency, and the
    double-buffered mode's bounds); the failure lists every run that differs."""
    bad = {_id(r): m for r in RECORDS if (m := _mismatches(r))}
    assert not bad, f"{len(bad)} of {len(RECORDS)} runs differ: " + "; ".join(f"{k}: {v}" for k, v in list(bad.items())[:10])
    assert len(RECORDS) >= 372


def test_formulas_by_hand():
    # WS: ceil(K/R) ceil(N/C) (2R + C + M - 2) - 1
    assert gemm_cycles(20, 12, 30, 8, 8, "ws") == 4 * 2 * (16 + 8 + 20 - 2) - 1
    # IS: ceil(K/R) ceil(M/C) (2R + C + N - 2) - 1
    assert gemm_cycles(20, 12, 30, 8, 8, "is") == 4 * 3 * (16 + 8 + 12 - 2) - 1
    # OS: ceil(M/R) ceil(N/C) (R + C + K - 2) - 1
    assert gemm_cycles(20, 12, 30, 8, 8, "os") == 3 * 2 * (8 + 8 + 30 - 2) - 1
    # double-buffered: first fold in full, then max(T, R) per fold
    assert gemm_cycles(20, 12, 30, 8, 8, "ws", "double-buffered") == (16 + 8 + 20 - 2) + 7 * 20 - 1


def test_psum_and_sram_traffic():
    c = gemm_cost(64, 64, 197, 64, 64, "ws")       # G = K_hat^T V, V stationary
    assert c.folds == 4
    assert c.sram_reads == {"A": 64 * 197, "B": 197 * 64, "C": 3 * 64 * 64}
    assert c.sram_writes == {"C": 4 * 64 * 64}
    o = gemm_cost(64, 64, 197, 64, 64, "os")
    assert o.sram_reads["C"] == 0 and o.sram_writes == {"C": 64 * 64}


def test_stall_bound():
    base = gemm_cost(197, 64, 64, 64, 64, "ws")
    assert gemm_cost(197, 64, 64, 64, 64, "ws", dram_bw=1e9).stall_cycles == 0
    slow = gemm_cost(197, 64, 64, 64, 64, "ws", dram_bw=1.0)
    words = 197 * 64 + 64 * 64 + 197 * 64
    assert slow.stall_cycles == words - base.fold_cycles   # one fold: DRAM-bound
    assert slow.cycles == base.cycles + slow.stall_cycles
    # an A buffer too small forces A to be re-read from DRAM once per column fold
    tiny = gemm_cost(197, 128, 64, 64, 64, "ws", sram_words={"A": 100}, dram_bw=1.0)
    assert tiny.dram_reads["A"] == 2 * 197 * 64
    assert tiny.stall_cycles > 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        gemm_cycles(0, 1, 1, 8, 8, "ws")
    with pytest.raises(ValueError):
        gemm_cycles(1, 1, 1, 8, 8, "xs")
    with pytest.raises(ValueError):
        gemm_cycles(1, 1, 1, 8, 8, "ws", mode="fast")
