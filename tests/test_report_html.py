"""Reports a hardware researcher reads: the comparison first, rollups per block and op kind, the
pipeline, surrogate sensitivity; report.html self-contained and rendering in headless Chromium
without console errors; report.md/json carrying the same rollups and comparison."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import assert_offline_html
from vitc.compiler.zoo import build_vit
from vitc.inspect import format_mapping_table
from vitc.pipeline import compile_model

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """A 24-block model with a rewrite (taylor on every block): the report must stay readable."""
    d = tmp_path_factory.mktemp("deep")
    res = compile_model(build_vit("deit-tiny", img_size=64, depth=24), out=d / "o", passes="taylor", target="xbar",
                        options={"taylor_measure": False}, name="deit-tiny-24")
    return d / "o", res


def test_report_json_has_rollups_comparison_and_sensitivity(deep):
    out, res = deep
    rep = json.loads((out / "report.json").read_text())
    assert (rep["schema"], rep["schema_version"]) == ("vitc.report", 2)
    ro = rep["rollups"]
    assert [b["block"] for b in ro["by_block"]] == list(range(24)) + [None]
    kinds = ro["by_kind"]
    assert {"qkv_projection", "attention_core", "output_projection", "mlp", "patch_embedding", "head"} <= set(kinds)
    # rollups add up to the totals
    assert sum(k["energy_pj"] for k in kinds.values()) == pytest.approx(rep["totals"]["dynamic_energy_pj"], rel=1e-4)
    assert sum(b["energy_pj"] for b in ro["by_block"]) == pytest.approx(rep["totals"]["dynamic_energy_pj"], rel=1e-4)
    assert 0 < ro["attention_share"]["energy"] < 1
    cmp = rep["comparison"]
    assert cmp["labels"] == ["baseline", "rewritten"] and len(cmp["per_block"]) == 25
    share = cmp["attention_share"]
    assert share["rewritten"]["energy"] != share["baseline"]["energy"]
    sens = rep["sensitivity"]
    assert len(sens["rows"]) >= 20 and sens["rows"][0]["x1.5"]["edap_j_s_mm2"] is not None
    worst = [max(abs(r[f"x{f:g}"]["edap_j_s_mm2"]) for f in sens["factors"]) for r in sens["rows"]]
    assert worst == sorted(worst, reverse=True)
    assert rep["pipeline"]["bottleneck"] == rep["totals"]["pipeline_bottleneck"]


def test_markdown_carries_the_same(deep):
    out, _ = deep
    md = (out / "report.md").read_text()
    for section in ("## What the rewrite bought", "## By op kind", "## By encoder block", "## Pipeline",
                    "## Surrogate figures", "## Layers", "## Critical path by layer"):
        assert section in md
    assert "| block23." not in md.split("## Layers")[0]            # per-layer detail only in its own section
    table = format_mapping_table(out)
    assert "block23.mlp_fc1" in table and "TOPS/W" in table


def test_html_is_one_offline_file(deep):
    out, _ = deep
    html = (out / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert_offline_html(html)
    assert html.count("vitcPlot('fig") >= 8 and html.count("plotly.js v") <= 2   # one bundle, inlined
    first_screen = html[:html.index("<h2>")]
    assert "What the rewrite bought." in first_screen and "EDAP" in first_screen


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_html_renders_in_headless_chromium_without_console_errors(deep, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium); cannot render report.html")
    out, _ = deep
    art = Path(os.environ.get("VITC_TEST_ARTIFACTS", tmp_path))
    art.mkdir(parents=True, exist_ok=True)
    png = art / "report_24_blocks.png"
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=10000", f"--screenshot={png}", "--window-size=1300,2200",
           (out / "report.html").as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    w, h = _png_size(png)
    assert (w, h) == (1300, 2200) and png.stat().st_size > 100_000       # drawn, not a blank page
    dom = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                          "--virtual-time-budget=10000", "--window-size=1300,2200", "--dump-dom",
                          (out / "report.html").as_uri()], capture_output=True, text=True, timeout=180).stdout
    drawn = {m for m in re.findall(r"<div id=\"(fig\d+)\" class=\"plot[^>]*>\s*<div", dom)}
    # figures on the first screens are drawn; those further down (or in closed <details>) wait until seen
    assert {"fig1", "fig2", "fig3", "fig4"} <= drawn and "fig12" not in drawn, sorted(drawn)


def test_comparison_equals_two_separate_compiles_and_vitc_compare(tmp_path, tiny_zoo):
    """The baseline inside a compile with passes is the same costing as a compile without them;
    ``vitc compare`` of the two folders gives the same ratios and writes its three files."""
    from vitc.cli import main
    assert main(["-q", "compile", str(tiny_zoo), "-o", str(tmp_path / "b"), "--target", "xbar",
                 "--passes", "reuse", "--reuse-plan", "1", "--reuse-no-measure"]) == 0
    assert main(["-q", "compile", str(tiny_zoo), "-o", str(tmp_path / "a"), "--target", "xbar"]) == 0
    a = json.loads((tmp_path / "a" / "report.json").read_text())
    b = json.loads((tmp_path / "b" / "report.json").read_text())
    rows = {r["metric"]: r for r in b["comparison"]["totals"]}
    for key in ("edap_j_s_mm2", "energy_pj", "latency_ns", "area_mm2"):
        assert rows[key]["baseline"] == a["totals"][key]
        assert rows[key]["improvement"] == pytest.approx(a["totals"][key] / b["totals"][key], rel=1e-9)
    assert rows["edap_j_s_mm2"]["improvement"] != pytest.approx(1.0, abs=1e-3)    # the rewrite moved EDAP
    assert b["comparison"]["attention_share"]["baseline"] == a["rollups"]["attention_share"]
    assert main(["-q", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c"),
                 "--labels", "plain,reuse"]) == 0
    c = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert c["labels"] == ["plain", "reuse"]
    got = {r["metric"]: r["improvement"] for r in c["totals"]}
    assert got["edap_j_s_mm2"] == pytest.approx(rows["edap_j_s_mm2"]["improvement"], rel=1e-9)
    assert [r["block"] for r in c["per_block"]] == [0, 1, None]
    assert c["per_block"][1]["energy_pj"]["delta"] != 0 and c["per_block"][0]["energy_pj"]["delta"] == 0
    assert "reuse vs plain: EDAP" in (tmp_path / "c" / "compare.md").read_text()
    assert_offline_html((tmp_path / "c" / "compare.html").read_text())
    assert main(["-q", "compare", str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
