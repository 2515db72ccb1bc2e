"""``vitc sweep``: a grid evaluated locally and on a Dask LocalCluster gives identical tables,
the front end runs once, an interrupted sweep only computes what is missing, pass configurations
are compiled once each, and sweep.html is one offline page."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

from conftest import assert_offline_html  # noqa: E402
from vitc.cli import main  # noqa: E402
from vitc.compiler.zoo import build_vit  # noqa: E402
from vitc.core.errors import VitcInputError  # noqa: E402
from vitc.core.io import model_bytes, write_outputs  # noqa: E402
from vitc.sweep import parse_grid, pareto, points, run_sweep  # noqa: E402

GRID = """
[hardware]
base = "rram-128"
"crossbar.adc_bits" = [4, 5, 6, 8]
"crossbar.rows" = [64, 128, 256]
"crossbar.cell_bits" = [1, 2]
"""


@pytest.fixture(scope="module")
def deit_small(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    write_outputs(d, model_bytes(build_vit("deit-small", img_size=224), "deit_small.onnx", False))
    (d / "grid.toml").write_text(GRID)
    return d


@pytest.fixture(scope="module")
def local(deit_small):
    return run_sweep(deit_small / "deit_small.onnx", deit_small / "grid.toml", deit_small / "local", workers=2)


def test_grid_runs_locally_once_through_the_front_end(local):
    t = local.table
    assert len(t) == 24 and local.computed == 24 and local.front_end_runs == 1
    assert list(t["point"]) == list(range(24))
    # every hardware field is a column, and the figures move with the array size
    assert {"hw.crossbar.adc_bits", "hw.crossbar.rows", "hw.crossbar.cell_bits", "edap_j_s_mm2"} <= set(t.columns)
    by_rows = t.groupby("hw.crossbar.rows")["crossbars"].mean()
    assert by_rows[64] > by_rows[128] > by_rows[256]


def test_dask_local_cluster_gives_the_identical_table(deit_small, local):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        res = run_sweep(deit_small / "deit_small.onnx", deit_small / "grid.toml", deit_small / "dask",
                        cluster=lc.scheduler_address)
    assert res.front_end_runs == 1 and res.computed == 24
    assert res.table.equals(local.table)
    assert (deit_small / "dask" / "results.csv").read_bytes() == (deit_small / "local" / "results.csv").read_bytes()


def test_resume_computes_only_missing_points(deit_small, local):
    out = deit_small / "resume"
    shutil.copytree(deit_small / "local", out)
    gone = sorted((out / "points").glob("*.json"))[::5]
    for f in gone:
        f.unlink()
    res = run_sweep(deit_small / "deit_small.onnx", deit_small / "grid.toml", out, workers=1)
    assert (res.computed, res.reused, res.front_end_runs) == (len(gone), 24 - len(gone), 0)
    assert res.table.equals(local.table)


def test_pass_configurations_are_compiled_once_each(tmp_path, tiny_zoo):
    grid = tmp_path / "g.toml"
    grid.write_text('[hardware]\n"crossbar.adc_bits" = [4, 8]\n[compile]\npasses = ["none", "taylor"]\n'
                    '[passes.taylor]\nlayers = ["all", "0"]\nmeasure = false\n')
    res = run_sweep(tiny_zoo, grid, tmp_path / "o", workers=1)
    t = res.table
    assert len(t) == 6 and res.front_end_runs == 1
    assert len(list((tmp_path / "o" / "cache").glob("*.onnx"))) == 3
    taylor = t[t["passes"] == "taylor"]
    assert set(taylor["opt.taylor.layers"]) == {"all", "0"}
    # linearising all blocks changes the cost; both layer sets are distinct rows
    e = taylor.groupby("opt.taylor.layers")["energy_pj"].mean()
    assert e["all"] != e["0"] != t[t["passes"] == "none"]["energy_pj"].mean()


def test_grid_errors_come_before_any_work(tmp_path, tiny_zoo):
    for text, words in (("[hardware]\n\"crossbar.adc_bits\" = []\n", "empty list"),
                        ("[hardwar]\nx = 1\n", "unknown section"),
                        ("[compile]\ntarget = \"gpu\"\n", "target 'gpu'"),
                        ("[hardware]\n\"crossbar.adc_bits\" = [4, 99]\n", "adc_bits")):
        g = tmp_path / "bad.toml"
        g.write_text(text)
        with pytest.raises(VitcInputError, match=words):
            run_sweep(tiny_zoo, g, tmp_path / "never", workers=1)
        assert not (tmp_path / "never").exists()


def test_points_are_deterministic_and_pareto_is_right():
    g = parse_grid({"hardware": {"crossbar.adc_bits": [4, 6], "crossbar.rows": [64, 128]}})
    a, b = points(g), points(g)
    assert [p["id"] for p in a] == [p["id"] for p in b] and len({p["id"] for p in a}) == 4
    rows = [{"x": 1, "y": 5}, {"x": 2, "y": 3}, {"x": 3, "y": 4}, {"x": 4, "y": 1}, {"x": 2, "y": 6}]
    assert [(r["x"], r["y"]) for r in pareto(rows, "x", "y")] == [(1, 5), (2, 3), (4, 1)]


def test_cli_and_page(deit_small, local, tmp_path, capsys):
    assert main(["-q", "sweep", str(deit_small / "deit_small.onnx"), "--grid", str(deit_small / "grid.toml"),
                 "-o", str(deit_small / "local")]) == 0
    assert "24 points (0 computed, 24 from an earlier run)" in capsys.readouterr().out
    page = (deit_small / "local" / "sweep.html").read_text()
    assert_offline_html(page)
    assert page.count("vitcPlot('fig") == 2 and "Pareto front" in page
    meta = json.loads((deit_small / "local" / "sweep.json").read_text())
    assert meta["varied"] == ["hw.crossbar.adc_bits", "hw.crossbar.cell_bits", "hw.crossbar.rows"]
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed; the page was checked offline only")
    proc = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=8000", "--dump-dom",
                           Path(deit_small / "local" / "sweep.html").as_uri()], capture_output=True, text=True,
                          timeout=180)
    assert [x for x in proc.stderr.splitlines() if ":CONSOLE" in x] == []
    assert 'class="main-svg"' in proc.stdout


def test_nonideal_accuracy_per_point(tmp_path, tiny_zoo):
    import numpy as np
    np.savez(tmp_path / "x.npz", pixel_values=np.random.default_rng(0).standard_normal((4, 3, 64, 64))
             .astype(np.float32))
    grid = tmp_path / "g.toml"
    grid.write_text('[hardware]\n"crossbar.adc_bits" = [3, 8]\n[accuracy]\ninputs = "x.npz"\nsamples = 4\n')
    t = run_sweep(tiny_zoo, grid, tmp_path / "o", workers=1).table
    cos = dict(zip(t["hw.crossbar.adc_bits"], t["sim_output_cosine"]))
    assert cos[8] > cos[3] and 0 < cos[3] < 1 and cos[8] > 0.9
