#!/usr/bin/env python
"""Acceptance figures of ``--passes reuse`` (project issue 7).

A. Zoo DeiT-Small (224², 12 blocks, seeded random weights) on the NeuroSim-like preset with
   attention products on crossbars written per inference (``reuse_neurosim_xbar_write.toml``)
   and, for contrast, on digital units (``neurosim-v14``): EDAP and TOPS/mm² of reuse plans vs
   the baseline (TReX reports 2.3× EDAP and 1.86× TOPS/mm² for its best DeiT-S plan).
B. The trained reference ViT (sklearn digits, 6 blocks): test accuracy of the original, of plan
   1,3,5 with the identity TB, with fitted TBs, and of the ``auto`` plan at ``--max-drop 1``
   (calibration: ``digits_calib.npz``; test: ``digits_test.npz``), with the EDAP of each.

    python benchmarks/reuse_acceptance.py [--json out.json] [--skip-deit] [--skip-reference]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HW_WRITE = str(ROOT / "benchmarks" / "reuse_neurosim_xbar_write.toml")
REF = ROOT / "models" / "reference"


def deit(out: dict) -> None:
    from vitc.pipeline import compile_model
    from vitc.compiler.zoo import build_vit
    model = build_vit("deit-small", img_size=224, patch=16)
    cases = [
        ("xbar-write", HW_WRITE, "1,3,5,7,9,11", "ln-linear-gelu", None),
        ("xbar-write", HW_WRITE, "1,3,5,7,9,11", "ln-linear-gelu", 64),
        ("xbar-write", HW_WRITE, "1,3,5,7,9,11", "identity", None),
        ("xbar-write", HW_WRITE, "1,3,4,5,6,7,8,9,11", "ln-linear-gelu", None),
        ("digital", "neurosim-v14", "1,3,5,7,9,11", "ln-linear-gelu", None),
        ("digital", "neurosim-v14", "1,3,4,5,6,7,8,9,11", "ln-linear-gelu", None),
    ]
    rows = []
    print("A. zoo DeiT-Small 224, costs (TReX: 2.3x EDAP, 1.86x TOPS/mm2)")
    print(f"{'products':10s} {'plan':22s} {'TB':16s} {'EDAP red.':>9s} {'TOPS/mm2':>9s} {'equiv':>7s} "
          f"{'lat.eq.':>7s} {'energy':>7s} {'latency':>7s} {'area':>6s} {'xbars -':>7s} {'xbars +':>7s}")
    for products, hw, plan, tb, rank in cases:
        t = time.perf_counter()
        opts = {"reuse_plan": plan, "tb": tb, "reuse_measure": False}
        if rank:
            opts["tb_rank"] = rank
        res = compile_model(model, passes="reuse", target="xbar", hw=hw, calib_samples=4, options=opts)
        cost = res.compiled.records[0].details["cost"]
        r = cost["ratios"]
        row = {"products": products, "plan": plan, "tb": tb + (f" r{rank}" if rank else ""),
               "edap_reduction": r["edap_reduction"], "tops_per_mm2_gain": r["tops_per_mm2_gain"],
               "tops_per_mm2_equivalent_gain": r["tops_per_mm2_equivalent_gain"],
               "tops_per_mm2_latency_equivalent_gain": r["tops_per_mm2_latency_equivalent_gain"],
               "energy_reduction": r["energy_reduction"], "latency_reduction": r["latency_reduction"],
               "area_reduction": r["area_reduction"], "throughput_gain": r["throughput_gain"],
               "crossbars_removed": cost["removed"]["crossbars"], "crossbars_added": cost["tb_added"]["crossbars"],
               "kv_cells_written_removed": cost["removed"]["kv_cells_written"],
               "act_product_macs_removed": cost["removed"]["act_product_macs"],
               "softmax_elements_removed": cost["removed"]["softmax_elements"],
               "buffer_bits_peak": cost["buffer"]["bits_peak"], "buffer_area_mm2": cost["buffer"]["area_mm2"],
               "bottleneck": cost["pipeline_bottleneck"],
               "baseline": cost["baseline"], "rewritten": cost["rewritten_with_buffer"],
               "energy_removed_by_role_pj": cost["removed"]["energy_by_role_pj"],
               "seconds": round(time.perf_counter() - t, 1)}
        rows.append(row)
        print(f"{products:10s} {plan:22s} {row['tb']:16s} {r['edap_reduction']:9.3f} {r['tops_per_mm2_gain']:9.3f} "
              f"{r['tops_per_mm2_equivalent_gain']:7.3f} {r['tops_per_mm2_latency_equivalent_gain']:7.3f} "
              f"{r['energy_reduction']:7.3f} {r['latency_reduction']:7.3f} {r['area_reduction']:6.3f} "
              f"{row['crossbars_removed']:7d} {row['crossbars_added']:7d}")
    out["deit_small"] = rows


def reference(out: dict) -> None:
    from vitc.pipeline import compile_model
    from vitc.runtime.validate import validate_models
    model, calib, test = REF / "vit_digits_p4.onnx", REF / "digits_calib.npz", REF / "digits_test.npz"
    if not model.is_file():
        print("B. reference ViT not built (models/reference/vit_digits_p4.onnx): skipped")
        return

    def test_metrics(candidate) -> dict:
        o = validate_models(model, candidate, inputs=test, labels=True).outputs[0]
        return {"test_accuracy": 100 * o.cand_accuracy, "test_agreement": 100 * o.top1_agreement,
                "original_test_accuracy": 100 * o.ref_accuracy}

    cases = [
        ("plan 1,3,5, identity TB", {"reuse_plan": "1,3,5", "tb": "identity"}),
        ("plan 1,3,5, fitted ln-linear-gelu (default, corrected fit)", {"reuse_plan": "1,3,5"}),
        ("plan 1,3,5, fitted ln-linear-gelu, sequential fit", {"reuse_plan": "1,3,5", "tb_fit": "sequential"}),
        ("plan 1,3,5, fitted ln-linear-gelu, teacher fit", {"reuse_plan": "1,3,5", "tb_fit": "teacher"}),
        ("plan 1,3,5, fitted ln-linear (corrected fit)", {"reuse_plan": "1,3,5", "tb": "ln-linear"}),
        ("auto, --max-drop 1 (ln-linear-gelu)", {"reuse_plan": "auto", "max_drop": 1.0}),
        ("auto, --max-drop 1 (ln-linear)", {"reuse_plan": "auto", "max_drop": 1.0, "tb": "ln-linear"}),
    ]
    rows = []
    first = True
    print("\nB. reference ViT (digits, 6 blocks): accuracy on digits_test.npz (540 images)")
    for label, opts in cases:
        t = time.perf_counter()
        res = compile_model(model, passes="reuse", target="xbar", hw=HW_WRITE, calib=calib, options=opts)
        rec = res.compiled.records[0]
        m = test_metrics(res.model)
        if first:
            print(f"  original: test accuracy {m['original_test_accuracy']:.2f} %")
            out["reference_original_test_accuracy"] = m["original_test_accuracy"]
            first = False
        e2e = rec.fidelity.get("end_to_end", {})
        cost = rec.details.get("cost", {})
        row = {"case": label, "plan": rec.details["plan_text"], "weights": rec.weights, **m,
               "calib_accuracy": e2e.get("accuracy"), "calib_accuracy_original": e2e.get("accuracy_original"),
               "edap_reduction": cost.get("ratios", {}).get("edap_reduction"),
               "per_layer": rec.fidelity["per_layer"], "seconds": round(time.perf_counter() - t, 1)}
        if "search" in rec.details:
            s = rec.details["search"]
            row["search"] = {k: s[k] for k in ("method", "nodes", "frontier_size", "verification", "seconds")}
            row["frontier"] = [{k: r.get(k) for k in ("k", "plan", "drop", "accuracy", "edap_reduction", "verified")}
                               for r in s["frontier"]]
        rows.append(row)
        print(f"  {label:58s} plan {row['plan']:16s} weights {rec.weights:8s} test acc {m['test_accuracy']:6.2f} % "
              f"(calib {row['calib_accuracy']} %), EDAP reduction "
              f"{row['edap_reduction'] if row['edap_reduction'] is None else round(row['edap_reduction'], 3)}")
    out["reference"] = rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--skip-deit", action="store_true")
    ap.add_argument("--skip-reference", action="store_true")
    args = ap.parse_args()
    out: dict = {}
    if not args.skip_deit:
        deit(out)
    if not args.skip_reference:
        reference(out)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
