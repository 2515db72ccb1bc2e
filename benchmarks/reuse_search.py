#!/usr/bin/env python
"""Speed of ``--reuse-plan auto`` on a 12-block model, and of its pruned search alone.

1. The full auto search on zoo DeiT-Small (12 blocks, 224², 197 tokens, seeded random weights,
   synthetic calibration) on the NeuroSim-like preset with attention products on crossbars
   with writes: pair fits, cost model, search, onnxruntime + backend verification of the
   frontier — wall time per phase.
2. The search alone on that model's damage matrix: branch and bound (nodes visited) against
   brute force over all 2¹¹ reuse sets (same optimum per reuse count), and on synthetic 24-
   and 48-block damage matrices, where brute force (2²³, 2⁴⁷ sets) is out of reach.

    python benchmarks/reuse_search.py [--samples 32] [--tb ln-linear-gelu] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
HW = ROOT / "benchmarks" / "reuse_neurosim_xbar_write.toml"


def synthetic_damage(L: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = np.full((L, L), np.inf)
    for i in range(L):
        for j in range(i + 1, L):
            d[i, j] = rng.uniform(0.5, 1.5) * 0.01 * (j - i) ** 1.3 * (1 + 0.5 * np.sin(j))
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=32, help="synthetic calibration images")
    ap.add_argument("--tb", default="ln-linear-gelu")
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args()

    from vitc.pipeline import compile_model
    from vitc.compiler.zoo import build_vit
    from vitc.passes.reuse_search import branch_and_bound, count_plans, exhaustive

    out: dict = {}
    model = build_vit("deit-small", img_size=224, patch=16)
    t = time.perf_counter()
    res = compile_model(model, passes="reuse", target="xbar", hw=str(HW), calib_samples=args.samples,
                        options={"reuse_plan": "auto", "tb": args.tb, "max_drop": args.max_drop})
    wall = time.perf_counter() - t
    s = res.compiled.records[0].details["search"]
    out["deit_small_auto"] = {"wall_s_compile": round(wall, 2), "phases_s": s["seconds"], "nodes": s["nodes"],
                              "reuse_sets": s["reuse_sets"], "plans_in_space": s["plans_in_space"],
                              "frontier": s["frontier_size"], "chosen": s["chosen"], "method": s["method"]}
    print(f"DeiT-Small auto search: {wall:.1f} s for the whole compile; phases {s['seconds']}")
    print(f"  branch and bound visited {s['nodes']} nodes for {s['reuse_sets']} reuse sets "
          f"({s['plans_in_space']} plans with source choices); frontier {s['frontier_size']}; chosen {s['chosen']}")
    # surrogate accuracy on the verified frontier
    errs = [abs(r["surrogate_edap"] / r["edap"] - 1) for r in s["frontier"] if r["k"] > 0 and r.get("verified")]
    out["surrogate_edap_rel_error_max"] = max(errs) if errs else 0.0
    print(f"  surrogate EDAP vs backend on the frontier: max relative error {100 * out['surrogate_edap_rel_error_max']:.2f} %")

    damage = np.array([[np.inf if v is None else v for v in row] for row in s["pair_damage"]])
    t = time.perf_counter()
    bnb, nodes, done = branch_and_bound(damage)
    t_bnb = time.perf_counter() - t
    t = time.perf_counter()
    brute = exhaustive(damage)
    t_brute = time.perf_counter() - t
    same = all(abs(bnb[k][0][0] - brute[k][0]) < 1e-12 and bnb[k][0][1] == brute[k][1] for k in brute)
    out["deit_small_search_only"] = {"bnb_s": t_bnb, "bnb_nodes": nodes, "brute_force_s": t_brute,
                                     "brute_force_sets": 2 ** 11, "same_optimum_per_k": same}
    print(f"  search alone: branch and bound {1e3 * t_bnb:.1f} ms ({nodes} nodes), brute force over 2048 sets "
          f"{1e3 * t_brute:.1f} ms; same least-damage plan for every k: {same}")
    for L in (24, 48):
        d = synthetic_damage(L, L)
        t = time.perf_counter()
        _, nodes, done = branch_and_bound(d)
        dt = time.perf_counter() - t
        out[f"synthetic_{L}"] = {"bnb_s": dt, "nodes": nodes, "completed": done, "reuse_sets": 2 ** (L - 1),
                                 "plans_in_space": count_plans(L)}
        print(f"  synthetic {L} blocks: branch and bound {dt:.2f} s, {nodes} nodes of 2^{L - 1} sets "
              f"({'complete' if done else 'stopped: beam fallback'})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
