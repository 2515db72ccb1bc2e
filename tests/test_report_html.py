"""report.html is self-contained and renders in headless Chromium; report.md/json are complete."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest

from vitc.report import evaluate
from vitc.inspect import format_mapping_table
from vitc.compiler.zoo import build_vit


@pytest.fixture(scope="module")
def outdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("xbar_out")
    res = evaluate(build_vit("deit-tiny", img_size=96, depth=2), "xbar", "rram-128", model_name="deit-tiny",
                   pass_records=[{"name": "taylor", "blocks": [0, 1], "weights": "untrained",
                                  "fidelity": {"cosine": 0.31}}])
    for name, data in res.files.items():
        (d / name).write_bytes(data)
    return d


def test_html_is_self_contained(outdir):
    html = (outdir / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html
    assert html.count("<svg") >= 5  # latency, energy, breakdown, utilisation, Gantt
    for title in ("Per-layer latency by component", "Per-layer energy by component", "Component breakdown",
                  "Crossbar utilisation", "Schedule timeline", "Surrogate figures", "Critical path"):
        assert title in html


def test_report_sections(outdir):
    rep = json.loads((outdir / "report.json").read_text())
    assert rep["pass_records"][0]["fidelity"] == {"cosine": 0.31}  # verbatim
    assert rep["surrogates"]["passes"][0]["pass"] == "taylor"
    assert "adc.energy_pj" in rep["surrogates"]["hardware"]
    md = (outdir / "report.md").read_text()
    for section in ("## Totals", "## Energy by component", "## Layers", "## Critical path", "## Pass records",
                    "## Surrogate figures"):
        assert section in md
    table = format_mapping_table(outdir)
    assert "block1.mlp_fc1" in table and "crossbars" in table and "TOPS/W" in table


def test_html_renders_in_headless_chromium(outdir, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium); cannot screenshot report.html")
    png = tmp_path / "shot.png"
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1200,2000",
           (outdir / "report.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    assert png.is_file() and png.stat().st_size > 10_000
    import matplotlib.image as mpimg
    img = mpimg.imread(str(png))
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    px = img[..., :3].reshape(-1, 3)
    assert float(np.ptp(px, axis=0).max()) > 0.5  # not a uniform page
    # a good part of the page is drawn (plots, tables), not blank
    assert float((px.sum(axis=1) < 2.7).mean()) > 0.02
