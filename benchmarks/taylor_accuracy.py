#!/usr/bin/env python
"""Reference-ViT test accuracy: original vs Taylor attention (drop-in, refit, selective + refit).

Rows, for each model:
  original                       the trained softmax ViT
  drop-in taylor, all layers     untrained replacement (no refit)
  refit taylor, all layers       every block linearised, output projections ridge-refitted on --calib
  selective + refit, --max-drop  layers chosen greedily on the calibration split (accuracy drop ≤ P pp),
                                 output projections refitted

Calibration uses ``digits_calib.npz`` (from the training split); accuracy is measured on the
held-out ``digits_test.npz`` only.

    python benchmarks/taylor_accuracy.py                              # models/reference/vit_digits_p{4,2}.onnx
    python benchmarks/taylor_accuracy.py --models m.onnx --max-drop 1 --json out.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from vitc.runtime.data import load_dataset
from vitc.core.io import load_model
from vitc.pipeline import compile_model
from vitc.runtime.batching import run_batched
from vitc.runtime.session import open_session

REF = Path("models/reference")


def accuracy(model, data) -> float:
    sess = open_session(model)
    feeds = {i.name: data.feeds[i.name] for i in sess.get_inputs()}
    logits = run_batched(sess, feeds, [sess.get_outputs()[0].name], batch_size=64)[0]
    return 100.0 * float((logits.argmax(1) == data.labels).mean())


def evaluate(path: Path, calib: Path, test: Path, max_drop: float, variant: str) -> dict:
    original = load_model(path).model
    data = load_dataset(test, original)
    rows = {"original": {"test_accuracy": round(accuracy(original, data), 2)}}
    runs = {
        "drop-in taylor, all layers": {"taylor_refit": "no"},
        "refit taylor, all layers": {"taylor_refit": "yes"},
        f"selective + refit, --max-drop {max_drop:g}": {"max_drop": max_drop},
    }
    for label, opts in runs.items():
        t0 = time.perf_counter()
        res = compile_model(path, passes="taylor", target="none", calib=calib,
                            options={**opts, "taylor_variant": variant})
        rec = res.compiled.records[0]
        rows[label] = {"test_accuracy": round(accuracy(res.model, data), 2), "layers": rec.blocks,
                       "weights": rec.weights, "compile_s": round(time.perf_counter() - t0, 1),
                       "calib_end_to_end": rec.fidelity.get("end_to_end"),
                       "per_layer": rec.fidelity.get("per_layer"),
                       "mul_M": rec.details["opcount"]["total_M"]["rewritten"]["mul"],
                       "baseline_mul_M": rec.details["opcount"]["total_M"]["baseline"]["mul"]}
    return {"model": str(path), "test_samples": data.size, "variant": variant, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=[str(REF / "vit_digits_p4.onnx"), str(REF / "vit_digits_p2.onnx")])
    p.add_argument("--calib", default=str(REF / "digits_calib.npz"))
    p.add_argument("--test", default=str(REF / "digits_test.npz"))
    p.add_argument("--max-drop", type=float, default=1.0)
    p.add_argument("--variant", default="paper", choices=["paper", "code"])
    p.add_argument("--json")
    args = p.parse_args(argv)
    results = []
    for m in args.models:
        if not Path(m).is_file():
            print(f"skip {m}: not found (build it with tools/train_reference.py)")
            continue
        r = evaluate(Path(m), Path(args.calib), Path(args.test), args.max_drop, args.variant)
        results.append(r)
        print(f"{Path(m).name} ({r['test_samples']} test images, variant {args.variant}):")
        for label, row in r["rows"].items():
            extra = ""
            if "layers" in row:
                e2e = row["calib_end_to_end"] or {}
                extra = (f"  layers {row['layers']}  weights {row['weights']}  attention mul "
                         f"{row['baseline_mul_M']:.2f} M → {row['mul_M']:.2f} M  (calib acc "
                         f"{e2e.get('accuracy_original')} → {e2e.get('accuracy')})  {row['compile_s']} s")
            print(f"  {label:38s} {row['test_accuracy']:6.2f} %{extra}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
