#!/usr/bin/env python3
"""Print vitc's ViTALiTy model next to the paper's Table V (DeiT-Base Taylor attention).

    python benchmarks/vitality_table5.py

Workload: DeiT-Base attention cores, 12 layers x 12 heads, n = 197 tokens, d = 64,
batch 1, on the Table III accelerator (core/hw/vitality.toml).  The first table
is the default model (intra-layer pipeline, power x busy cycles); the second shows
the alternatives and why they were rejected; the third the softmax baseline.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitc.backends.vitality_model import (  # noqa: E402
    TABLE5_UJ, softmax_attention_cost, table5_deit_base,
)

CELLS = (("data_access", "Data Access"), ("other", "Other Processors"),
         ("systolic", "Systolic Array"), ("overall", "Overall"))
DFS = (("g-stationary", "GS"), ("down-forward", "Ours/DF"))


def main() -> int:
    paper = TABLE5_UJ["deit-base"]
    res = {df: table5_deit_base(df) for df, _ in DFS}
    print("ViTALiTy Table V, DeiT-Base Taylor attention, energy in uJ "
          "(schedule=pipelined, energy=busy)")
    print(f"{'':18s}" + "".join(f"{lbl:>26s}" for _, lbl in DFS))
    print(f"{'':18s}" + "".join(f"{'vitc':>9s}{'paper':>8s}{'dev':>9s}" for _ in DFS))
    for key, label in CELLS:
        row = f"{label:18s}"
        for df, _ in DFS:
            o, p = res[df].energy_uj[key], paper[df][key]
            row += f"{o:9.2f}{p:8.2f}{(o - p) / p * 100:+8.1f}%"
        print(row)
    for df, lbl in DFS:
        c = res[df]
        print(f"  {lbl}: SA-General busy {c.busy_cycles['sa_general']} cycles, "
              f"SA-Diag {c.busy_cycles['sa_diag']}, accumulator "
              f"{c.busy_cycles['accumulator_array']}, adder {c.busy_cycles['adder_array']}, "
              f"divider {c.busy_cycles['divider_array']}; SRAM {c.sram_words} words; "
              f"latency {c.latency_us:.1f} us; DRAM (not in Table V) "
              f"{c.energy_uj['dram']:.1f} uJ")

    print("\nPer head (n=197, d=64), down-forward: step, unit, ops, busy cycles "
          "(arrays: product in isolation, SCALE-Sim)")
    for st in res["down-forward"].steps:
        print(f"  {st.step:28s} {st.unit:18s} {st.ops:9d} {st.cycles:6d}")

    print("\nAlternatives (systolic / overall uJ; paper GS 215/222, DF 191/198):")
    for sched in ("pipelined", "double-buffered", "scalesim"):
        for energy in ("busy", "activity"):
            cells = []
            for df, lbl in DFS:
                e = table5_deit_base(df, schedule=sched, energy=energy).energy_uj
                cells.append(f"{lbl} {e['systolic']:7.1f}/{e['overall']:7.1f}")
            print(f"  schedule={sched:16s} energy={energy:9s} " + "   ".join(cells))

    sm = softmax_attention_cost(197, 64, heads=12, layers=12)
    tay = res["down-forward"]
    print("\nSoftmax baseline on the same array (+ exp unit surrogate), DeiT-Base:")
    print(f"  energy {sm.energy_uj['overall']:.1f} uJ (SA {sm.energy_uj['systolic']:.1f}, "
          f"other {sm.energy_uj['other']:.1f}, data {sm.energy_uj['data_access']:.2f}); "
          f"latency {sm.latency_us:.1f} us")
    print(f"  Taylor/DF: {tay.energy_uj['overall']:.1f} uJ, {tay.latency_us:.1f} us  ->  "
          f"{sm.energy_uj['overall'] / tay.energy_uj['overall']:.2f}x energy, "
          f"{sm.latency_us / tay.latency_us:.2f}x latency")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
