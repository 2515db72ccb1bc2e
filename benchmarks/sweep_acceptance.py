#!/usr/bin/env python
"""Acceptance figures of ``vitc sweep`` (project issue 18), on the zoo DeiT-Small (224²).

A. One full ``vitc compile --target xbar`` (front end, costing, all reports) vs a sweep of 100
   hardware points (5 ADC precisions × 5 array sizes × 4 cell precisions): the sweep's time
   over the compile's (goal < 10).
B. The 4 × 3 × 2 grid locally and on a ``distributed.LocalCluster`` with 2 workers: identical tables.
C. Kill the 100-point sweep half way (SIGKILL of the CLI process), rerun: points computed by the
   rerun = points missing after the kill; the table equals an uninterrupted run's.

    python benchmarks/sweep_acceptance.py [--work DIR]
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GRID100 = """[hardware]
base = "rram-128"
"crossbar.adc_bits" = [4, 5, 6, 7, 8]
"crossbar.rows" = [32, 64, 128, 256, 512]
"crossbar.cell_bits" = [1, 2, 4, 8]
"""
GRID24 = """[hardware]
base = "rram-128"
"crossbar.adc_bits" = [4, 5, 6, 8]
"crossbar.rows" = [64, 128, 256]
"crossbar.cell_bits" = [1, 2]
"""


def vitc(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitc.cli", *args], capture_output=True, text=True, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work")
    args = ap.parse_args()
    import pandas as pd
    work = Path(args.work or tempfile.mkdtemp(prefix="vitc-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "deit_small.onnx"
    if not model.is_file():
        vitc("zoo", "deit-small", "-o", str(model))
    (work / "g100.toml").write_text(GRID100)
    (work / "g24.toml").write_text(GRID24)

    t0 = time.perf_counter()
    vitc("-q", "compile", str(model), "-o", str(work / "one"), "--target", "xbar")
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = vitc("-q", "sweep", str(model), "--grid", str(work / "g100.toml"), "-o", str(work / "s100")).stdout
    sweep = time.perf_counter() - t0
    print(f"A. one compile {one:.1f} s; 100-point sweep {sweep:.1f} s = {sweep / one:.2f}× (goal < 10)")
    print("   " + out.strip().splitlines()[0])

    from distributed import LocalCluster
    from vitc.sweep import run_sweep
    local = run_sweep(model, work / "g24.toml", work / "s24_local")
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc:
        dask = run_sweep(model, work / "g24.toml", work / "s24_dask", cluster=lc.scheduler_address)
    print(f"B. 24 points locally and on a 2-worker LocalCluster: identical tables = {local.table.equals(dask.table)}; "
          f"front end runs {local.front_end_runs} and {dask.front_end_runs}")

    killed = work / "s100_killed"
    p = subprocess.Popen([sys.executable, "-m", "vitc.cli", "-q", "sweep", str(model), "--grid",
                          str(work / "g100.toml"), "-o", str(killed), "--workers", "1"])
    while len(list((killed / "points").glob("*.json"))) < 50 if (killed / "points").is_dir() else True:
        time.sleep(0.05)
        if p.poll() is not None:
            break
    p.send_signal(signal.SIGKILL)
    p.wait()
    have = len(list((killed / "points").glob("*.json")))
    res = run_sweep(model, work / "g100.toml", killed, workers=1)
    full = pd.read_parquet(work / "s100" / "results.parquet")
    print(f"C. killed with {have}/100 points written; the rerun computed {res.computed} (missing: {100 - have}), "
          f"reused {res.reused}; table equals the uninterrupted run's = {res.table.equals(full)}")


if __name__ == "__main__":
    main()
