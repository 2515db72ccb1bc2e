#!/usr/bin/env python
"""Acceptance figures of the reports (project issue 19).

A. Zoo DeiT-Small (224², 12 blocks) with ``--passes reuse --reuse-plan 1,3,5,7,9,11`` on
   ``rram-128`` and, separately, without passes: the comparison inside the first report
   (baseline and rewritten EDAP, their ratio, attention share before/after) against the two
   compiles' EDAPs (must agree to 1e-9).
B. A 24-block model's report.html: time to render and lay out in headless Chromium (goal < 3 s),
   console errors (goal none), plotly figures drawn; the screenshot is written next to the output.
   Reported twice: the whole Chromium run (process start included) and, from the page's own
   performance timing, load-event end.

    python benchmarks/report_acceptance.py [--out DIR] [--skip-deit] [--skip-chromium]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def deit(out: Path) -> None:
    from vitc.cli import main
    from vitc.compiler.zoo import build_vit
    from vitc.core.io import model_bytes, write_outputs
    write_outputs(out / "model", model_bytes(build_vit("deit-small", img_size=224, patch=16), "deit_small.onnx",
                                             False))
    src = str(out / "model" / "deit_small.onnx")
    t0 = time.perf_counter()
    assert main(["-q", "compile", src, "-o", str(out / "reuse"), "--target", "xbar", "--hw", "rram-128",
                 "--passes", "reuse", "--reuse-plan", "1,3,5,7,9,11"]) == 0
    t1 = time.perf_counter()
    assert main(["-q", "compile", src, "-o", str(out / "plain"), "--target", "xbar", "--hw", "rram-128"]) == 0
    t2 = time.perf_counter()
    b = json.loads((out / "reuse" / "report.json").read_text())
    a = json.loads((out / "plain" / "report.json").read_text())
    rows = {r["metric"]: r for r in b["comparison"]["totals"]}
    e = rows["edap_j_s_mm2"]
    separate = a["totals"]["edap_j_s_mm2"] / b["totals"]["edap_j_s_mm2"]
    share = b["comparison"]["attention_share"]
    print("A. DeiT-Small 224, reuse 1,3,5,7,9,11 on rram-128")
    print(f"   compile with passes {t1 - t0:.1f} s (baseline costed inside), without {t2 - t1:.1f} s")
    print(f"   EDAP baseline {e['baseline']:.6g}  rewritten {e['rewritten']:.6g}  ratio {e['improvement']:.12g}")
    print(f"   two separate compiles: {a['totals']['edap_j_s_mm2']:.6g} / {b['totals']['edap_j_s_mm2']:.6g} = "
          f"{separate:.12g}; |difference| / ratio = {abs(e['improvement'] - separate) / separate:.2e} (goal <= 1e-9)")
    for m in ("energy", "latency", "area"):
        print(f"   attention share of {m:7s}: {100 * share['baseline'][m]:.1f} % -> {100 * share['rewritten'][m]:.1f} %")
    print("   headline in report.md:", (out / "reuse" / "report.md").read_text().split("## What the rewrite bought")[1]
          .strip().splitlines()[0])


def chromium(out: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        print("B. chromium is not installed; skipped")
        return
    from vitc.compiler.zoo import build_vit
    from vitc.pipeline import compile_model
    t0 = time.perf_counter()
    compile_model(build_vit("deit-tiny", img_size=64, depth=24), out=out / "deep", passes="taylor", target="xbar",
                  options={"taylor_measure": False}, name="deit-tiny-24")
    page = out / "deep" / "report.html"
    print(f"B. 24-block report: compiled and rendered in {time.perf_counter() - t0:.1f} s; "
          f"report.html {page.stat().st_size / 1e6:.2f} MB")
    with tempfile.TemporaryDirectory() as prof:
        png = out / "report_24_blocks.png"
        t0 = time.perf_counter()
        p = subprocess.run([exe, *FLAGS, f"--user-data-dir={prof}/a", "--enable-logging=stderr", "--v=0",
                            f"--screenshot={png}", "--window-size=1300,2200", "--virtual-time-budget=10000",
                            page.as_uri()], capture_output=True, text=True, timeout=300)
        shot = time.perf_counter() - t0
        console = [x for x in p.stderr.splitlines() if ":CONSOLE" in x]
        probe = out / "deep" / "timing.html"
        probe.write_text(page.read_text().replace(
            "</body></html>", "<script>window.addEventListener('load',()=>setTimeout(()=>{document.title="
            "'LOADED '+Math.round(performance.timing.loadEventEnd-performance.timing.navigationStart)+' '+"
            "document.querySelectorAll('.main-svg').length},0));</script></body></html>"))
        t0 = time.perf_counter()
        dom = subprocess.run([exe, *FLAGS, f"--user-data-dir={prof}/b", "--virtual-time-budget=10000", "--dump-dom",
                              probe.as_uri()], capture_output=True, text=True, timeout=300).stdout
        dump = time.perf_counter() - t0
    title = dom.split("<title>")[1].split("</title>")[0] if "<title>" in dom else ""
    load_ms, svgs = (title.split()[1:3] + ["?", "?"])[:2] if title.startswith("LOADED") else ("?", "?")
    print(f"   Chromium screenshot run (process start included): {shot:.2f} s; --dump-dom run {dump:.2f} s "
          f"(goal < 3 s)")
    print(f"   page load event after {load_ms} ms; plotly SVG layers drawn: {svgs}; console errors: {len(console)}")
    print(f"   screenshot: {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for the outputs (default: a temporary folder)")
    ap.add_argument("--skip-deit", action="store_true")
    ap.add_argument("--skip-chromium", action="store_true")
    args = ap.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="vitc-report-"))
    out.mkdir(parents=True, exist_ok=True)
    if not args.skip_deit:
        deit(out)
    if not args.skip_chromium:
        chromium(out)


if __name__ == "__main__":
    main()
