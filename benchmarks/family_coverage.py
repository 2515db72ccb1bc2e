#!/usr/bin/env python
"""Front-end coverage of attention-bearing model families (project issue 14).

Every family of ``tools/families.py`` (timm and transformers, random init, tiny configs) is
exported with the legacy TorchScript exporter (opset 17) and with dynamo (opset 20). For each
file vitc's front end runs (``--target none``), the rewritten model is validated against the
export in onnxruntime (seeded synthetic inputs, max abs error), and ``--passes taylor --target
xbar`` is run through the CLI (exit status and its one-line message). Printed per file:

    sites      attention modules torch ran (innermost modules whose class name says attention;
               counted independently of vitc)
    found      attention anchors vitc reported (rewritten + declined)
    rewritten  sites rewritten to a canonical ai.vitc op
    max|err|   rewritten model vs export (goal <= 1e-4)
    taylor     CLI exit status of --passes taylor --target xbar (0 ran, 2 declined cleanly)
    declined   each distinct decline reason

Needs the export extra (torch, timm, transformers, onnxscript); exports are cached.

    python benchmarks/family_coverage.py [--only vit,swin] [--exporters legacy,dynamo]
        [--cache DIR] [--markdown docs/family_coverage.md] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

ATTENTION_CLASS = re.compile(r"(Attention|Attn|XCA|LiteMLA|GPSA|MHSA|MultiHead|Outlook)", re.I)
EXPORTERS = {"legacy": 17, "dynamo": 20}


def count_sites(model, args) -> int:
    """Innermost attention modules called in one forward pass (by class name)."""
    import torch
    mods = [m for m in model.modules() if ATTENTION_CLASS.search(type(m).__name__)]
    inner = [m for m in mods if not any(c is not m and ATTENTION_CLASS.search(type(c).__name__)
                                        for c in m.modules())]
    calls = []
    hooks = [m.register_forward_hook(lambda mod, i, o: calls.append(mod)) for m in inner]
    with torch.no_grad():
        model(*args)
    for h in hooks:
        h.remove()
    return len(calls)


def export(model, args, names, exporter: str, path: Path, opset: int | None = None) -> None:
    import onnx
    import torch
    opset = opset or EXPORTERS[exporter]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset, input_names=names,
                              output_names=["output"], do_constant_folding=True)
        else:
            prog = torch.onnx.export(model, args, dynamo=True, opset_version=opset, input_names=names,
                                     output_names=["output"], verbose=False)
            prog.save(str(path), external_data=False)
    m = onnx.load(str(path))
    onnx.save(m, str(path))   # one file, no external data


def run_vitc(path: Path) -> dict:
    from vitc.cli import main
    from vitc.compiler.emit import emit
    from vitc.compiler.frontend import read_model
    from vitc.core.errors import VitcError
    from vitc.runtime.validate import validate_models
    out: dict = {"rewritten": 0, "found": 0, "declined": [], "max_abs": None, "error": None}
    try:
        cm = read_model(path)
    except VitcError as exc:
        out["error"] = str(exc)
        return out
    out["rewritten"] = len(cm.blocks) + len(cm.cores)
    out["blocks"], out["cores"] = len(cm.blocks), len(cm.cores)
    out["core_bias"] = sorted({c.bias for c in cm.cores})
    out["declined"] = [f"{u.op}: {u.reason}" for u in cm.unrecognised]
    out["found"] = out["rewritten"] + len(cm.unrecognised)
    cand = emit(cm)
    import onnx
    try:
        res = validate_models(onnx.load(str(path)), cand, samples=2, seed=0)
        out["max_abs"] = max(float(o.max_abs) for o in res.outputs)
    except Exception as exc:  # noqa: BLE001 - report, do not stop the table
        out["error"] = f"validation: {type(exc).__name__}: {str(exc)[:200]}"
    with tempfile.TemporaryDirectory() as td:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = main(["-q", "compile", str(path), "--passes", "taylor", "--target", "xbar", "-o", td,
                       "--taylor-no-measure"])
        out["taylor_rc"] = rc
        out["taylor_msg"] = (err.getvalue().strip().splitlines() or [""])[0][:300]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated family names")
    ap.add_argument("--exporters", default="legacy,dynamo")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/vitc-families"))
    ap.add_argument("--markdown", help="write the table as Markdown here")
    ap.add_argument("--json", help="write all results as JSON here")
    args = ap.parse_args()
    from families import FAMILIES
    import torch
    torch.set_num_threads(2)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    exporters = args.exporters.split(",")
    rows = []
    for fam in FAMILIES:
        if only and fam.name not in only:
            continue
        try:
            model, margs, names = fam.build()
            sites = count_sites(model, margs)
        except Exception as exc:  # noqa: BLE001
            print(f"{fam.name}: build failed: {type(exc).__name__}: {exc}")
            continue
        for ex in exporters:
            path = cache / f"{fam.name}_{ex}_op{EXPORTERS[ex]}.onnx"
            t0 = time.perf_counter()
            row = {"family": fam.name, "source": fam.source, "exporter": ex, "opset": EXPORTERS[ex],
                   "patterns": fam.patterns, "sites": sites}
            if not path.is_file() and (cache / f"{fam.name}_{ex}_op18.onnx").is_file():
                path, row["opset"] = cache / f"{fam.name}_{ex}_op18.onnx", 18
            if not path.is_file() and (cache / f"{fam.name}_{ex}_eager_op17.onnx").is_file():
                path, row["note"] = cache / f"{fam.name}_{ex}_eager_op17.onnx", "legacy export of the eager attention path"
            if not path.is_file():
                try:
                    export(model, margs, names, ex, path)
                except Exception as exc:  # noqa: BLE001
                    row["export_error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}"
                    if path.exists():
                        path.unlink()
            if not path.is_file() and ex == "legacy" and "scaled_dot_product_attention" in row.get("export_error", ""):
                # timm's fused SDPA path does not trace with the legacy exporter: export its eager path
                path = cache / f"{fam.name}_{ex}_eager_op{EXPORTERS[ex]}.onnx"
                try:
                    if not path.is_file():
                        for mod in model.modules():
                            if hasattr(mod, "fused_attn"):
                                mod.fused_attn = False
                        export(model, margs, names, ex, path)
                    row["note"] = "legacy export of the eager attention path (fused SDPA does not trace)"
                    row.pop("export_error", None)
                except Exception:  # noqa: BLE001
                    pass
            if not path.is_file() and ex == "legacy" and "version 18" in row.get("export_error", ""):
                path = cache / f"{fam.name}_{ex}_op18.onnx"     # the exporter asks for opset 18 (e.g. col2im)
                row["opset"] = 18
                try:
                    if not path.is_file():
                        export(model, margs, names, ex, path, opset=18)
                    row.pop("export_error", None)
                except Exception:  # noqa: BLE001
                    pass
            if path.is_file():
                row.update(run_vitc(path))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            rows.append(row)
            _print_row(row)
    _summary(rows, exporters)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, sort_keys=True))
    if args.markdown:
        Path(args.markdown).write_text(_markdown(rows, exporters))


def _ok(r) -> bool:
    return r.get("max_abs") is not None and r["max_abs"] <= 1e-4


def _print_row(r: dict) -> None:
    if "export_error" in r:
        print(f"{r['family']:18s} {r['exporter']:7s} export failed: {r['export_error']}")
        return
    err = "–" if r.get("max_abs") is None else f"{r['max_abs']:.1e}"
    print(f"{r['family']:18s} {r['exporter']:7s} sites {r['sites']:3d} found {r['found']:3d} rewritten "
          f"{r['rewritten']:3d} ({r.get('blocks', 0)} blocks, {r.get('cores', 0)} cores) max|err| {err:8s} taylor rc {r.get('taylor_rc', '–')} "
          f"{'' if not r.get('error') else 'ERROR ' + r['error'][:120]}")
    for reason in sorted(set(r.get("declined", [])))[:6]:
        print(f"{'':27s}declined: {reason[:150]}")
    if r.get("taylor_rc") not in (0, None):
        print(f"{'':27s}taylor: {r.get('taylor_msg', '')[:150]}")


def _summary(rows: list[dict], exporters: list[str]) -> None:
    print()
    for ex in exporters:
        rs = [r for r in rows if r["exporter"] == ex and "export_error" not in r]
        sites = sum(r["sites"] for r in rs)
        done = sum(r["rewritten"] for r in rs if _ok(r))
        internal = sum("internal error" in (r.get("taylor_msg") or "") for r in rs)
        print(f"{ex}: {len(rs)} exports, {sites} attention sites, {done} rewritten and validated "
              f"({100 * done / max(sites, 1):.1f} %), taylor internal errors {internal}; "
              f"{sum('export_error' in r for r in rows if r['exporter'] == ex)} exports failed")


def _markdown(rows: list[dict], exporters: list[str]) -> str:
    lines = ["# Front-end coverage of model families", "",
             "Generated by `benchmarks/family_coverage.py` (random init, tiny configs; legacy exporter at "
             "opset 17, dynamo at opset 20). *sites*: attention modules torch ran; *rewritten*: sites vitc "
             "rewrote to a canonical op (encoder blocks, and cores without a canonical block: docs/frontend.md); "
             "*max err*: rewritten vs export in onnxruntime; *taylor*: exit "
             "status of `--passes taylor --target xbar` (0 ran, 2 declined with a one-line reason).", "",
             "| family | patterns | exporter | sites | rewritten | max err | taylor | declined (reasons) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "export_error" in r:
            lines.append(f"| {r['family']} | {', '.join(r['patterns'])} | {r['exporter']} | {r['sites']} | – | – | – | "
                         f"export failed: {r['export_error'][:100]} |")
            continue
        err = "–" if r.get("max_abs") is None else f"{r['max_abs']:.1e}"
        reasons = "; ".join(sorted(set(x[:120] for x in r.get("declined", []))))[:400] or (r.get("error") or "")
        lines.append(f"| {r['family']} | {', '.join(r['patterns'])} | {r['exporter']} | {r['sites']} | "
                     f"{r['rewritten']} ({r.get('blocks', 0)} blocks, {r.get('cores', 0)} cores) | {err} | "
                     f"{r.get('taylor_rc', '–')} | {reasons.replace('|', '/')} |")
    lines.append("")
    for ex in exporters:
        rs = [r for r in rows if r["exporter"] == ex and "export_error" not in r]
        sites = sum(r["sites"] for r in rs)
        done = sum(r["rewritten"] for r in rs if _ok(r))
        lines.append(f"- {ex}: {done} of {sites} sites rewritten and validated ({100 * done / max(sites, 1):.1f} %) "
                     f"in {len(rs)} exports.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
