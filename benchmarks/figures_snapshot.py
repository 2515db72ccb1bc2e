#!/usr/bin/env python3
"""Record the figures vitc reports for a fixed set of compiles, and compare two records.

Refactors must not move figures; this is how that is checked:

    python benchmarks/figures_snapshot.py -o before.json          # on the old code
    python benchmarks/figures_snapshot.py -o after.json           # on the new code
    python benchmarks/figures_snapshot.py --compare before.json after.json

Each case compiles a model (zoo DeiT-Tiny, the exporter fixtures, the reference ViT with
passes on its calibration split, VGG-8) and keeps the report totals, crossbar counts,
per-pass fidelity and the number of recognised blocks. ``--compare`` prints every figure
whose relative difference exceeds ``--rtol`` (default 1e-9) and exits 1 if there is one.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT / "models" / "reference"
FIX = ROOT / "tests" / "fixtures" / "exporters"

_VOLATILE = ("seconds", "time", "elapsed")


def _clean(obj):
    """Drop wall-clock fields; keep numbers and strings."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not any(s in k for s in _VOLATILE)}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def _vgg8():
    spec = importlib.util.spec_from_file_location("build_vgg8", ROOT / "tools" / "build_vgg8.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build_vgg8()


def cases():
    """(name, kwargs for vitc.compile) of every recorded compile."""
    import onnx

    from vitc.compiler.zoo import build_vit
    tiny = build_vit("deit-tiny")
    out = []
    for hw in ("rram-128", "neurosim-v14", "isaac-128", "rram-64"):
        out.append((f"deit-tiny/xbar/{hw}", dict(model=tiny, target="xbar", hw=hw, name="deit_tiny")))
    out.append(("deit-tiny/systolic", dict(model=tiny, target="systolic", hw="vitality", name="deit_tiny")))
    out.append(("deit-tiny/taylor/systolic", dict(model=tiny, target="systolic", hw="vitality", passes="taylor",
                                                   options={"taylor_measure": False}, name="deit_tiny")))
    out.append(("deit-tiny/hybrid", dict(model=tiny, target="hybrid", hw="rram-128+vitality", name="deit_tiny")))
    out.append(("vgg8/neurosim-v14", dict(model=_vgg8(), target="xbar", hw="neurosim-v14", name="vgg8",
                                          allow_no_attention=True)))
    for f in sorted(FIX.glob("*.onnx")):
        out.append((f"fixture/{f.stem}", dict(model=str(f), target="xbar", hw="rram-128")))
    p4 = str(REF / "vit_digits_p4.onnx")
    calib = str(REF / "digits_calib.npz")
    out.append(("p4/taylor-maxdrop1", dict(model=p4, passes="taylor", calib=calib, options={"max_drop": 1.0})))
    out.append(("p4/taylor-all-refit", dict(model=p4, passes="taylor", calib=calib)))
    out.append(("p4/reuse-135", dict(model=p4, passes="reuse", calib=calib, options={"reuse_plan": "1,3,5"})))
    out.append(("p4/taylor-reorder", dict(model=p4, passes="taylor,reorder", calib=calib,
                                          options={"reorder_simplify": True})))
    _ = onnx
    return out


def record(name: str, kw: dict) -> dict:
    import vitc
    kw = dict(kw)
    allow = kw.pop("allow_no_attention", False)
    if allow:   # VGG-8 has no attention: cost it through the backend only
        from vitc.backends.api import analyse
        an = analyse(kw["model"], kw["target"], kw["hw"], model_name=kw["name"])
        return {"totals": _clean(an.totals)}
    res = vitc.compile(**kw)
    rep = res.report or {}
    return {"blocks": len(res.compiled.blocks),
            "totals": _clean(rep.get("totals", {})),
            "passes": [_clean({"name": r.name, "blocks": r.blocks, "weights": r.weights, "fidelity": r.fidelity})
                       for r in res.compiled.records]}


def _flatten(prefix: str, obj, out: dict) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _flatten(f"{prefix}[{i}]", v, out)
    else:
        out[prefix] = obj


def compare(a_path: str, b_path: str, rtol: float) -> int:
    a, b = {}, {}
    _flatten("", json.loads(Path(a_path).read_text()), a)
    _flatten("", json.loads(Path(b_path).read_text()), b)
    bad = 0
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and not isinstance(va, bool):
            if va == vb or (math.isfinite(va) and abs(va - vb) <= rtol * max(abs(va), abs(vb))):
                continue
        elif va == vb:
            continue
        bad += 1
        print(f"{k}: {va} -> {vb}")
    print(f"{len(set(a) | set(b))} figures compared, {bad} differ (rtol {rtol:g})")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", help="write the record here (JSON)")
    ap.add_argument("--only", help="substring: record only matching cases")
    ap.add_argument("--compare", nargs=2, metavar=("A", "B"))
    ap.add_argument("--rtol", type=float, default=1e-9)
    args = ap.parse_args()
    if args.compare:
        return compare(*args.compare, args.rtol)
    warnings.filterwarnings("ignore")
    data = {}
    for name, kw in cases():
        if args.only and args.only not in name:
            continue
        print(name, file=sys.stderr, flush=True)
        data[name] = record(name, kw)
    text = json.dumps(data, indent=1, sort_keys=True)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
