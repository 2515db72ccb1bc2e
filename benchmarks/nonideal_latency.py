#!/usr/bin/env python
"""Latency of the non-ideal (crossbar-simulated) graph vs the float graph in onnxruntime.

    python benchmarks/nonideal_latency.py                       # zoo DeiT-Tiny 224, neurosim-v14
    python benchmarks/nonideal_latency.py --batch 8 --threads 2 --repeat 7 --hw rram-128 isaac-128

For each preset and mode (``bitserial``: the preset as is; ``tile``: the fast approximation)
it builds the simulated graph with :func:`vitc.runtime.nonideal.simulate.simulate_model`, opens
both sessions with the same thread count, and times them interleaved (float, sim, float,
sim, ...) so machine-load drift hits both alike; it reports the median and the minimum of
the per-run ratio. Writes a JSON summary with ``--json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import onnxruntime as ort


def _session(model, threads):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def time_pair(ref, sim, feeds, repeat: int) -> dict:
    ref.run(None, feeds)
    sim.run(None, feeds)
    tr, ts = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        ref.run(None, feeds)
        tr.append(time.perf_counter() - t)
        t = time.perf_counter()
        sim.run(None, feeds)
        ts.append(time.perf_counter() - t)
    tr, ts = np.array(tr), np.array(ts)
    return {"float_ms_median": 1e3 * float(np.median(tr)), "float_ms_min": 1e3 * float(tr.min()),
            "sim_ms_median": 1e3 * float(np.median(ts)), "sim_ms_min": 1e3 * float(ts.min()),
            "ratio_median": float(np.median(ts / tr)), "ratio_of_minima": float(ts.min() / tr.min())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="deit-tiny", help="zoo name or an ONNX file")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--hw", nargs="+", default=["neurosim-v14"])
    ap.add_argument("--modes", nargs="+", default=["tile", "bitserial"])
    ap.add_argument("--adc-bits", type=int, default=None, help="override the preset's ADC bits")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: onnxruntime default)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", help="write results here")
    args = ap.parse_args(argv)

    import onnx
    from vitc.runtime.nonideal.simulate import simulate_model
    from vitc.compiler.zoo import CONFIGS, build_vit
    from vitc.runtime.nonideal.arith import SimConfig
    if args.model in CONFIGS:
        model = build_vit(args.model, img_size=args.img_size, depth=args.depth)
        label = f"zoo {args.model} img {args.img_size}" + (f" depth {args.depth}" if args.depth else "")
    else:
        model = onnx.load(args.model)
        label = args.model
    inp = model.graph.input[0]
    shape = [d.dim_value if d.dim_value > 0 else args.batch for d in inp.type.tensor_type.shape.dim]
    feeds = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    ref = _session(model, args.threads)
    rows = []
    cpu = platform.processor() or platform.machine()
    print(f"{label}, batch {args.batch}, threads {args.threads or 'default'} on {cpu}"
          f" ({os.cpu_count()} CPUs), onnxruntime {ort.__version__}")
    for hw in args.hw:
        for mode in args.modes:
            cfg = SimConfig.from_hw(hw, mode=mode, adc_bits=args.adc_bits)
            t0 = time.perf_counter()
            res = simulate_model(model, cfg)
            build_s = time.perf_counter() - t0
            sim = _session(res.model, args.threads)
            r = time_pair(ref, sim, feeds, args.repeat)
            r.update(hw=hw, mode=mode, adc_bits=cfg.adc_bits, conversions_per_output=cfg.conversions_per_output,
                     layers=len(res.layers), simulate_s=build_s, sim_model_mb=res.model.ByteSize() / 2**20)
            rows.append(r)
            print(f"  {hw:13s} {mode:9s} ({cfg.conversions_per_output:3d} conversions/output/row group): "
                  f"float {r['float_ms_median']:8.1f} ms, simulated {r['sim_ms_median']:9.1f} ms, "
                  f"ratio {r['ratio_median']:6.2f}x (of minima {r['ratio_of_minima']:6.2f}x); "
                  f"built in {build_s:.1f} s, {r['sim_model_mb']:.0f} MB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": label, "batch": args.batch, "threads": args.threads, "cpus": os.cpu_count(),
                       "onnxruntime": ort.__version__, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
