"""Time `vitc zoo deit-base` + `vitc compile --passes none` (front end only, and with the xbar backend).

Usage: python benchmarks/frontend_deit_base.py [--model deit-base] [--target none|xbar]
Prints seconds per stage and the total; the issue's goal is < 20 s on a 2-core machine.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from vitc.core.io import model_bytes, write_outputs
from vitc.pipeline import compile_model
from vitc.compiler.zoo import build_vit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="deit-base")
    ap.add_argument("--target", default="none")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = build_vit(args.model)
        write_outputs(tmp, model_bytes(model, "m.onnx", False))
        t1 = time.perf_counter()
        res = compile_model(Path(tmp) / "m.onnx", out=Path(tmp) / "out", target=args.target)
        t2 = time.perf_counter()
        size = sum(p.stat().st_size for p in (Path(tmp) / "out").iterdir()) / 1e6
    print(f"{args.model}: zoo build+write {t1 - t0:.2f} s; compile --passes none --target {args.target} "
          f"{t2 - t1:.2f} s ({len(res.compiled.blocks)} blocks, {size:.0f} MB written); total {t2 - t0:.2f} s")


if __name__ == "__main__":
    main()
