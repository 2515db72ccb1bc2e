#!/usr/bin/env python
"""Accuracy of the reference ViT vs ADC bits under crossbar non-idealities (docs/nonideal.md).

    python benchmarks/nonideal_accuracy.py                   # the docs' tables (several minutes)
    python benchmarks/nonideal_accuracy.py --samples 128 --settings fixed -o /tmp/nonideal

Compiles the reference ViT (``models/reference/vit_digits_p4.onnx``) with the Taylor pass,
drop-in and with the output-projection refit on the calibration split, then sweeps ADC
bits 4..8 (and an ideal ADC) on the NeuroSim-like preset for the original and both
rewritten variants, under several settings (fixed / calibrated ADC range, a differential
64-row preset, conductance variation, the fast tile mode). Writes each sweep's
``nonideal.{json,md}`` and plot under ``-o`` and prints the tables.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT / "models" / "reference"

SETTINGS = {
    "fixed": ("rram-128", {}),
    "calibrated": ("rram-128", {"adc_range": "calibrated"}),
    "rram-64": ("rram-64", {}),
    "variation-0.1": ("rram-128", {"variation": 0.1}),
    "tile-calibrated": ("rram-128", {"mode": "tile", "adc_range": "calibrated"}),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--bits", default="4,5,6,7,8,ideal")
    ap.add_argument("--samples", type=int, default=None, help="first N test images (default all 540)")
    ap.add_argument("-o", "--output", default="nonideal_accuracy")
    args = ap.parse_args(argv)

    import onnx
    from vitc.runtime.data import load_dataset
    from vitc.core.io import write_outputs
    from vitc.pipeline import compile_model
    from vitc.runtime.nonideal.sweep import adc_sweep, parse_bits
    from vitc.simulation import sweep_files
    from vitc.runtime.nonideal.arith import SimConfig

    model_path, test, calib = REF / "vit_digits_p4.onnx", REF / "digits_test.npz", REF / "digits_calib.npz"
    if not model_path.is_file():
        print(f"reference model missing: {model_path} (tools/train_reference.py)", file=sys.stderr)
        return 2
    original = onnx.load(model_path)
    variants = {"original": original,
                "taylor": compile_model(model_path, passes="taylor", target="none").model,
                "taylor-refit": compile_model(model_path, passes="taylor", target="none", calib=str(calib)).model}
    data = load_dataset(test, original).take(args.samples)
    bits = parse_bits(args.bits)
    for name in args.settings:
        hw, kw = SETTINGS[name]
        cfg = SimConfig.from_hw(hw, **kw)
        t0 = time.perf_counter()
        sweep, _ = adc_sweep(variants, cfg, bits, data, calib=str(calib))
        files = sweep_files(sweep)
        write_outputs(Path(args.output) / name, files)
        print(f"### {name} ({hw}, {time.perf_counter() - t0:.0f} s)\n")
        print(files["nonideal.md"].decode().split("Top-1 agreement")[0].split("\n\n", 2)[2].strip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
