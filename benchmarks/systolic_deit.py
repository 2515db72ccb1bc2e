#!/usr/bin/env python3
"""DeiT on the ViTALiTy accelerator (``--target systolic --hw vitality``): softmax vs Taylor.

    python benchmarks/systolic_deit.py            # DeiT-Tiny 12 layers, DeiT-Small hybrid
    python benchmarks/systolic_deit.py --depth 2  # quicker

Prints, for DeiT-Tiny at 224 px (n = 197 tokens, 3 heads, d = 64; zoo weights, only
shapes matter):

1. end-to-end latency and energy (whole model: patch embedding, Q/K/V/output
   projections, attention cores, MLP, norms, head) and the attention cores alone, for
   softmax attention and Taylor attention (both ViTALiTy dataflows), with ratios;
2. the energy split (systolic arrays / pre-post-processors / SRAM / DRAM) and the
   GEMM dataflow comparison (ws / is / os / auto) of the Taylor model;
3. DeiT-Small on the hybrid target (rram-128 crossbars + vitality), next to the
   crossbar-only and systolic-only targets;
4. DeiT-Base (12 layers, Taylor): the attention cores as costed through the compiled
   graph next to ``vitality_model.table5_deit_base`` and the paper's Table V.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitc.backends.api import analyse  # noqa: E402
from vitc.pipeline import compile_model  # noqa: E402
from vitc.compiler.zoo import build_vit  # noqa: E402


def models(name: str, depth: int):
    m = build_vit(name, depth=depth)
    soft = compile_model(m, passes="none", target="none", name=f"{name}-softmax").model
    tay = compile_model(m, passes="taylor", target="none", options={"taylor_measure": False},
                        name=f"{name}-taylor").model
    return soft, tay


def row(label, an):
    t = an.totals
    sy = an.sections["systolic"]
    core = next(iter(sy["attention_totals"].values()))
    e = t["energy_by_component_pj"]
    dram = e["interconnect"]
    return {"label": label, "lat_us": t["latency_ns"] / 1e3, "e_uj": t["energy_pj"] / 1e6,
            "e_onchip_uj": (t["energy_pj"] - dram) / 1e6, "core_lat_us": core["latency_ns"] / 1e3,
            "core_uj": core["energy_uj"]["overall"], "core_dram_uj": core["energy_uj"]["dram"],
            "macs": t["macs"], "sy": sy, "e": e}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=12)
    ap.add_argument("--no-hybrid", action="store_true")
    ap.add_argument("--no-table5", action="store_true", help="skip the DeiT-Base Table V check (~10 s)")
    args = ap.parse_args()

    soft, tay = models("deit-tiny", args.depth)
    rows = [row("softmax", analyse(soft, "systolic", "vitality", model_name="deit-tiny-softmax"))]
    for df in ("down-forward", "g-stationary"):
        rows.append(row(f"taylor {df}", analyse(tay, "systolic", "vitality", model_name="deit-tiny-taylor",
                                                options={"attention_dataflow": df})))
    print(f"DeiT-Tiny ({args.depth} layers, n=197, 3 heads, d=64) on vitality (systolic target; "
          "GEMMs ws, double-buffered; energy = power x busy cycles + SRAM + DRAM)")
    print(f"{'':22s}{'end-to-end':>34s}{'attention cores':>36s}")
    print(f"{'':22s}{'latency us':>11s}{'energy uJ':>11s}{'on-chip uJ':>12s}"
          f"{'latency us':>12s}{'on-chip uJ':>12s}{'+DRAM uJ':>12s}")
    for r in rows:
        print(f"{r['label']:22s}{r['lat_us']:11.1f}{r['e_uj']:11.1f}{r['e_onchip_uj']:12.1f}"
              f"{r['core_lat_us']:12.2f}{r['core_uj']:12.2f}{r['core_uj'] + r['core_dram_uj']:12.2f}")
    s = rows[0]
    for r in rows[1:]:
        print(f"softmax / {r['label']:17s}  latency {s['lat_us'] / r['lat_us']:.3f}x  energy "
              f"{s['e_uj'] / r['e_uj']:.3f}x (on-chip {s['e_onchip_uj'] / r['e_onchip_uj']:.3f}x);  cores: latency "
              f"{s['core_lat_us'] / r['core_lat_us']:.2f}x  energy {s['core_uj'] / r['core_uj']:.2f}x "
              f"(with DRAM {(s['core_uj'] + s['core_dram_uj']) / (r['core_uj'] + r['core_dram_uj']):.2f}x)")
    core_share = [r["core_uj"] / r["e_onchip_uj"] for r in rows]
    print(f"attention cores' share of on-chip energy: softmax {100 * core_share[0]:.1f} %, "
          f"taylor {100 * core_share[1]:.1f} %")

    r = rows[1]
    print("\nTaylor (down-forward) energy split, uJ: " + ", ".join(
        f"{k} {v / 1e6:.1f}" for k, v in r["e"].items() if v) + "   (array = SA-General + SA-Diag, digital = "
          "pre/post-processors, buffer = SRAM, interconnect = DRAM)")
    print("Energy by work kind, uJ: " + ", ".join(
        f"{k} {v['energy_pj'] / 1e6:.1f} ({v['cycles'] / 500:.1f} us)" for k, v in r["sy"]["by_kind"].items()))
    g = r["sy"]["dataflow_comparison"]["gemm"]
    print("GEMM dataflows (SA-General busy us / SA+SRAM uJ): " + ", ".join(
        f"{df} {g[df]['latency_ns'] / 1e3:.1f}/{g[df]['energy_pj'] / 1e6:.1f}" for df in ("ws", "is", "os", "auto")))
    for tab in r["sy"]["steps"]:
        print(f"\nPer-step busy time, Taylor cores (Table II analogue; {tab['instances']} heads):")
        for st in tab["steps"]:
            print(f"  {st['step']:28s} {st['unit']:18s} {st['latency_ns'] / 1e3:8.2f} us {100 * st['share']:5.1f} %")
        print(f"  {'steps in sequence':47s} {tab['sequential_ns'] / 1e3:8.2f} us; intra-layer pipeline "
              f"{tab['pipelined_ns'] / 1e3:.2f} us")
    for tab in rows[0]["sy"]["steps"]:
        print(f"Per-step busy time, softmax cores ({tab['instances']} heads):")
        for st in tab["steps"]:
            print(f"  {st['step']:28s} {st['unit']:18s} {st['latency_ns'] / 1e3:8.2f} us {100 * st['share']:5.1f} %")

    if not args.no_hybrid:
        soft_s, tay_s = models("deit-small", args.depth)
        print(f"\nDeiT-Small ({args.depth} layers), per image:")
        print(f"{'':34s}{'latency us':>11s}{'interval us':>12s}{'energy uJ':>11s}{'area mm2':>10s}"
              f"{'TOPS/W':>8s}")
        for lab, mdl in (("softmax", soft_s), ("taylor", tay_s)):
            for target, hw in (("xbar", "rram-128"), ("systolic", "vitality"), ("hybrid", "rram-128+vitality")):
                an = analyse(mdl, target, hw, model_name=f"deit-small-{lab}")
                t = an.totals
                print(f"{lab + ' ' + target + ' (' + hw + ')':34s}{t['latency_ns'] / 1e3:11.1f}"
                      f"{t['pipeline_interval_ns'] / 1e3:12.1f}{t['energy_pj'] / 1e6:11.2f}{t['area_mm2']:10.2f}"
                      f"{t['tops_per_w']:8.2f}")

    if not args.no_table5:
        from vitc.backends.vitality_model import TABLE5_UJ, table5_deit_base
        _, tay_b = models("deit-base", 12)
        print("\nDeiT-Base (12 layers) Taylor attention cores through the compiled graph vs vitality_model "
              "vs paper Table V (uJ):")
        for df in ("down-forward", "g-stationary"):
            an = analyse(tay_b, "systolic", "vitality", model_name="deit-base-taylor",
                         options={"attention_dataflow": df})
            got = an.sections["systolic"]["attention_totals"]["taylor"]
            ref = table5_deit_base(df)
            same = got["busy_cycles"] == ref.busy_cycles and got["latency_cycles"] == ref.latency_cycles and all(
                abs(got["energy_uj"][k] - v) <= 1e-9 * abs(v) for k, v in ref.energy_uj.items())
            cells = ", ".join(f"{k} {got['energy_uj'][k]:.2f} (paper {TABLE5_UJ['deit-base'][df][k]:g}, "
                              f"{100 * (got['energy_uj'][k] / TABLE5_UJ['deit-base'][df][k] - 1):+.1f} %)"
                              for k in ("data_access", "other", "systolic", "overall"))
            print(f"  {df:13s} {got['cores']} cores: {cells}; identical to vitality_model: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
