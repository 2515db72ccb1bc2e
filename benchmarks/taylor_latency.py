#!/usr/bin/env python
"""onnxruntime CPU latency: original ViT vs ``--passes taylor`` (and taylor,reorder --reorder-simplify).

Zoo DeiT-Tiny (seeded random weights; latency does not depend on the values) at
224/16 (197 tokens) and 448/8 (3137 tokens), batch 1, fixed intra-op thread count, sequential
execution, intra-op threads that block rather than spin (``--spin`` for onnxruntime's default),
warm-up runs, then the median of timed runs; the variants' runs are interleaved so that all
see the same machine load. Prints the speed-up ratios original/compiled.

Variants: original (the exported graph), canonical (vitc with no pass: ai.vitc::Attention
softmax function), taylor, taylor+reorder (--reorder-simplify: constant denominator).

    python benchmarks/taylor_latency.py                       # both sizes, 2 threads
    python benchmarks/taylor_latency.py --sizes 224/16 --runs 20 --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import onnxruntime as ort

from vitc.pipeline import compile_model
from vitc.compiler.zoo import build_vit


SPIN = True


def session(model, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    if not SPIN:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def bench_size(name: str, img: int, patch: int, threads: int, warmup: int, runs: int, depth: int | None,
               cpu_time: bool = False) -> dict:
    original = build_vit(name, img_size=img, patch=patch, depth=depth)
    tokens = (img // patch) ** 2 + 1
    variants = {"original": original}
    t0 = time.perf_counter()
    variants["canonical"] = compile_model(original, passes="none", target="none", name=name).model
    variants["taylor"] = compile_model(original, passes="taylor", target="none", name=name,
                                       options={"taylor_measure": False}).model
    variants["taylor+reorder"] = compile_model(original, passes="taylor,reorder", target="none", name=name,
                                               options={"taylor_measure": False, "reorder_simplify": True,
                                                        "reorder_measure": False}).model
    compile_s = time.perf_counter() - t0
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, img, img)).astype(np.float32)}
    row = {"model": name, "img": img, "patch": patch, "tokens": tokens, "threads": threads, "runs": runs,
           "compile_s": round(compile_s, 2), "latency_ms": {}, "all_ms": {}}
    sessions = {key: session(model, threads) for key, model in variants.items()}
    outs = {key: sess.run(None, feeds)[0] for key, sess in sessions.items()}
    ref = outs["original"]
    row["canonical_max_rel"] = float(np.abs(outs["canonical"] - ref).max() / np.abs(ref).max())
    for sess in sessions.values():
        for _ in range(warmup):
            sess.run(None, feeds)
    times = {key: [] for key in sessions}
    clock = time.process_time if cpu_time else time.perf_counter
    row["clock"] = "process CPU time" if cpu_time else "wall clock"
    for _ in range(runs):          # interleaved, so every variant sees the same machine load
        for key, sess in sessions.items():
            t0 = clock()
            sess.run(None, feeds)
            times[key].append(clock() - t0)
    row["min_ms"] = {}
    for key, ts in times.items():
        row["latency_ms"][key] = round(1e3 * statistics.median(ts), 2)
        row["min_ms"][key] = round(1e3 * min(ts), 2)
        row["all_ms"][key] = [round(1e3 * t, 2) for t in ts]
    lat = row["latency_ms"]
    row["speedup"] = {k: round(lat["original"] / lat[k], 3) for k in ("canonical", "taylor", "taylor+reorder")}
    mn = row["min_ms"]
    row["speedup_min"] = {k: round(mn["original"] / mn[k], 3) for k in ("canonical", "taylor", "taylor+reorder")}
    try:
        row["loadavg_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deit-tiny")
    p.add_argument("--sizes", default="224/16,448/8", help="comma-separated IMG/PATCH")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--depth", type=int, help="blocks (default: the model's 12)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with process CPU time instead of wall clock (use with --threads 1 on a shared, "
                        "busy machine: CPU time is insensitive to other processes' load)")
    p.add_argument("--spin", action="store_true",
                   help="let onnxruntime's intra-op threads spin-wait (its default). Off by default here: on a "
                        "busy shared machine spinning threads steal the CPU their partner needs and the "
                        "timings become contention noise")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    global SPIN
    SPIN = args.spin
    rows = []
    for spec in args.sizes.split(","):
        img, patch = (int(x) for x in spec.split("/"))
        row = bench_size(args.model, img, patch, args.threads, args.warmup, args.runs, args.depth, args.cpu_time)
        rows.append(row)
        lat, sp = row["latency_ms"], row["speedup"]
        print(f"{args.model} {img}/{patch} ({row['tokens']} tokens, {args.threads} threads, {row['clock']}, "
              f"median of {args.runs}): "
              f"original {lat['original']:.1f} ms, canonical {lat['canonical']:.1f} ms, "
              f"taylor {lat['taylor']:.1f} ms, taylor+reorder {lat['taylor+reorder']:.1f} ms  →  "
              f"speed-up taylor {sp['taylor']:.2f}×, taylor+reorder {sp['taylor+reorder']:.2f}× "
              f"(min-based: {row['speedup_min']['taylor']:.2f}×, {row['speedup_min']['taylor+reorder']:.2f}×; "
              f"load avg {row.get('loadavg_1min', float('nan')):.1f})", flush=True)
    info = {"benchmark": "taylor_latency", "spinning": SPIN, "onnxruntime": ort.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "results": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
