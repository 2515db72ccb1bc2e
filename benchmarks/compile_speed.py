#!/usr/bin/env python
"""Front-end speed and memory against onnxruntime's transformers optimizer (project issue 17).

Measured side by side in one run, each command in a fresh process (wall time and peak RSS from
``os.wait4``), on zoo models written once (seeded random weights):

A. ``vitc compile M --passes none --target none`` vs ``onnxruntime.transformers.optimizer``
   (``optimize_model`` + ``save_model_to_file``; ``opt_level=0`` when torch is absent, which
   the optimizer's onnxruntime stage imports) on DeiT-Small and DeiT-Base: ratio (goal ≤ 0.5)
   and vitc's peak RSS over the file size (goal ≤ 2.5).
B. ``vitc compile M --target xbar`` (all reports) on DeiT-Base over the optimizer (goal ≤ 1).
C. Scaling: compile time of DeiT-Tiny (``--passes none --target none``) at depth 4/8/16/24 and at
   197/577/1025/3137 tokens (224/384/512/896 px), with the least-squares line and its R² (linear
   growth: R² ≈ 1) — for the compile's own stages (``--timings``: load, front end, emit, write;
   best of ``--repeat``) and, for reference, the whole process (which adds ~1 s of interpreter
   start and imports, constant in the model).

    python benchmarks/compile_speed.py [--work DIR] [--skip-scaling] [--repeat 2]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OPTIMIZER = """
import sys
from onnxruntime.transformers import optimizer
level = None if {torch} else 0
m = optimizer.optimize_model(sys.argv[1], model_type="vit", num_heads={heads}, hidden_size={hidden}, opt_level=level)
m.save_model_to_file(sys.argv[2])
"""


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one command in its own process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"failed: {' '.join(cmd)}: {p.stderr.read().decode()[-400:]}")
    return wall, usage.ru_maxrss / 1024


def vitc(*args) -> list[str]:
    return [sys.executable, "-m", "vitc.cli", "-q", *args]


def zoo(work: Path, name: str, **kw) -> Path:
    tag = "_".join(f"{k}{v}" for k, v in sorted(kw.items()))
    path = work / f"{name}{'_' + tag if tag else ''}.onnx"
    if not path.is_file():
        extra = [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", str(v))]
        subprocess.run(vitc("zoo", name, "-o", str(path), *extra), check=True)
    return path


def best(cmd, repeat: int) -> tuple[float, float]:
    runs = [measure(cmd) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def staged(model: Path, out: Path, repeat: int) -> tuple[float, float]:
    """(sum of the compile's stage times, process wall time), best of ``repeat``."""
    stages, walls = [], []
    for _ in range(repeat):
        timings = out.with_suffix(".timings.json")
        walls.append(measure(vitc("compile", str(model), "-o", str(out), "--passes", "none", "--target", "none",
                                  "--timings", str(timings)))[0])
        stages.append(sum(v for k, v in json.loads(timings.read_text()).items() if k.startswith("stage.")))
    return min(stages), min(walls)


def fit(x, y) -> str:
    a, b = np.polyfit(x, y, 1)
    pred = a * np.asarray(x) + b
    r2 = 1 - np.sum((np.asarray(y) - pred) ** 2) / np.sum((np.asarray(y) - np.mean(y)) ** 2)
    return f"t ≈ {a:.4g}·x + {b:.3g} s, R² = {r2:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-scaling", action="store_true")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="vitc-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    torch = importlib.util.find_spec("torch") is not None
    print(f"onnxruntime transformers optimizer: opt_level {'default' if torch else '0 (torch not installed)'}")
    rss = {}
    for name, heads, hidden in (("deit-small", 6, 384), ("deit-base", 12, 768)):
        model = zoo(work, name)
        size_mb = model.stat().st_size / 2 ** 20
        script = work / f"opt_{name}.py"
        script.write_text(OPTIMIZER.format(torch=torch, heads=heads, hidden=hidden))
        t_opt, m_opt = best([sys.executable, str(script), str(model), str(work / f"{name}_opt.onnx")], args.repeat)
        t_fe, m_fe = best(vitc("compile", str(model), "-o", str(work / f"{name}_fe"), "--passes", "none",
                               "--target", "none"), args.repeat)
        print(f"A. {name} ({size_mb:.0f} MB): vitc front end {t_fe:.2f} s, optimizer {t_opt:.2f} s → "
              f"{t_fe / t_opt:.2f}× (goal ≤ 0.5); vitc peak RSS {m_fe:.0f} MB = {m_fe / size_mb:.2f}× the file "
              f"(goal ≤ 2.5; optimizer {m_opt:.0f} MB)")
        rss[name] = (size_mb, m_fe)
        if name == "deit-base":
            t_full, m_full = best(vitc("compile", str(model), "-o", str(work / f"{name}_xbar"), "--target", "xbar"),
                                  args.repeat)
            print(f"B. {name} --target xbar with reports: {t_full:.2f} s → {t_full / t_opt:.2f}× the optimizer "
                  f"(goal ≤ 1); peak RSS {m_full:.0f} MB")
    (s_small, m_small), (s_base, m_base) = rss["deit-small"], rss["deit-base"]
    print(f"A. memory growth with the model: (RSS_base − RSS_small) / (file_base − file_small) = "
          f"{(m_base - m_small) / (s_base - s_small):.2f} (fixed part ≈ {m_small - s_small * (m_base - m_small) / (s_base - s_small):.0f} MB: "
          "interpreter, numpy/onnx/onnxruntime, one onnxruntime session)")
    if args.skip_scaling:
        return
    for label, xs, kw in (("depth", [4, 8, 16, 24], lambda x: {"depth": x}),
                          ("tokens", [224, 384, 512, 896], lambda x: {"img_size": x})):
        stage, wall = zip(*(staged(zoo(work, "deit-tiny", **kw(x)), work / f"{label}{x}", args.repeat) for x in xs))
        if label == "tokens":
            xs = [(x // 16) ** 2 + 1 for x in xs]
        print(f"C. {label} " + ", ".join(f"{x}: {t:.3f} s" for x, t in zip(xs, stage)) +
              f"; stages {fit(xs, stage)}; whole process {fit(xs, wall)}")


if __name__ == "__main__":
    main()
