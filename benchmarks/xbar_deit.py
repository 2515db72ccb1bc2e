#!/usr/bin/env python3
"""Time map + cost + report of the zoo DeiT-Tiny/Small/Base on crossbar presets, and the
full ``compile_model`` (front end + backend) of DeiT-Base (issue target: < 20 s).

    python benchmarks/xbar_deit.py                      # rram-128, all three, + full compile of DeiT-Base
    python benchmarks/xbar_deit.py --hw rram-128 isaac-128 rram-64 --no-compile

Prints seconds per model (first evaluation, then a second preset reusing the parsed graph)
and the totals: crossbars, latency, throughput, energy, area, EDAP, TOPS/W, TOPS/mm².
"""
from __future__ import annotations

import argparse
import time

from vitc.backends.api import _CACHE
from vitc.report import evaluate
from vitc.compiler.zoo import build_vit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hw", nargs="+", default=["rram-128"])
    ap.add_argument("--models", nargs="+", default=["deit-tiny", "deit-small", "deit-base"])
    ap.add_argument("--no-compile", action="store_true", help="skip the full compile_model timing")
    args = ap.parse_args()
    header = (f"{'model':<11} {'hw':<13} {'s':>6} {'crossbars':>9} {'latency ms':>10} {'img/s':>8} "
              f"{'energy uJ':>10} {'area mm2':>9} {'EDAP J.s.mm2':>12} {'TOPS/W':>7} {'TOPS/mm2':>8}")
    print(header)
    for name in args.models:
        t0 = time.perf_counter()
        model = build_vit(name)
        t_build = time.perf_counter() - t0
        _CACHE.clear()
        for hw in args.hw:
            t0 = time.perf_counter()
            res = evaluate(model, "xbar", hw, model_name=name)
            dt = time.perf_counter() - t0
            t = res.report["totals"]
            print(f"{name:<11} {hw:<13} {dt:6.2f} {t['crossbars']:9d} {t['latency_ns'] / 1e6:10.4g} "
                  f"{t['throughput_ips']:8.4g} {t['energy_pj'] / 1e6:10.4g} {t['area_mm2']:9.4g} "
                  f"{t['edap_j_s_mm2']:12.4g} {t['tops_per_w']:7.4g} {t['tops_per_mm2']:8.4g}")
        print(f"{'':<11} (zoo build {t_build:.2f} s, not included)")
    if not args.no_compile:
        from vitc.pipeline import compile_model
        model = build_vit("deit-base")
        t0 = time.perf_counter()
        res = compile_model(model, passes="none", target="xbar", hw=args.hw[0], name="deit_base")
        dt = time.perf_counter() - t0
        print(f"\nfull compile_model(deit-base, passes=none, xbar, {args.hw[0]}): {dt:.2f} s (target < 20 s)")
        print(res.summary)


if __name__ == "__main__":
    main()
