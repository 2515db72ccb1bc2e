"""The command line as users drive it: per-image figures with --batch, defaults per target, the
config file, inspect --json, hw list, reuse on every target, --version."""
from __future__ import annotations

import json

import pytest

from vitc.cli import main
from vitc.core.hardware import load_hw


def _run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_batch_figures_are_per_image(tiny_zoo, tmp_path, capsys):
    for b in (1, 4):
        assert main(["compile", str(tiny_zoo), "--batch", str(b), "-q", "-o", str(tmp_path / f"b{b}")]) == 0
    t1 = json.loads((tmp_path / "b1" / "report.json").read_text())["totals"]
    t4 = json.loads((tmp_path / "b4" / "report.json").read_text())["totals"]
    assert t4["batch"] == 4 and t4["macs"] == t1["macs"]
    assert t4["energy_pj"] == pytest.approx(t1["energy_pj"], rel=0.02)
    assert t4["latency_ns"] == pytest.approx(t1["latency_ns"], rel=0.02)
    assert t4["throughput_ips"] >= 0.99 * t1["throughput_ips"]
    assert t4["batch_latency_ns"] == pytest.approx(4 * t4["latency_ns"], rel=1e-5)   # report figures: 6 significant digits
    md = (tmp_path / "b4" / "report.md").read_text()
    assert "| batch (costed together) | 4 |" in md and f"| MACs per image | {t1['macs']:,} |" in md


def test_input_shape_batch_is_the_costed_batch(tiny_zoo, tmp_path, capsys):
    assert main(["compile", str(tiny_zoo), "--input-shape", "input:2x3x64x64", "-q", "-o", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "report.json").read_text())["totals"]["batch"] == 2
    rc, _, err = _run(capsys, "compile", str(tiny_zoo), "--input-shape", "input:2x3x64x64", "--batch", "3",
                      "-o", str(tmp_path / "p"))
    assert rc == 2 and "batch 2 but --batch is 3" in err


@pytest.mark.parametrize("target,kind", [("systolic", "systolic"), ("hybrid", "hybrid")])
def test_target_without_hw_takes_its_preset_and_reuse_runs(tiny_zoo, tmp_path, capsys, target, kind):
    rc, out, err = _run(capsys, "compile", str(tiny_zoo), "--target", target, "--passes", "reuse",
                        "--reuse-plan", "1", "-q", "-o", str(tmp_path / target))
    assert rc == 0, err
    rep = json.loads((tmp_path / target / "report.json").read_text())
    assert rep["hardware"]["kind"] == kind
    rec = rep["pass_records"][0]
    assert rec["blocks"] == [1] and rec["details"]["cost"]["hardware"] == "rram-128"
    assert any("accounted on the crossbar target" in n for n in rec["details"]["cost"]["notes"])


def test_config_file_sets_passes_hardware_and_options(tiny_zoo, tmp_path, capsys):
    cfg = tmp_path / "vitc.toml"
    cfg.write_text('[compile]\npasses = ["taylor"]\noutput = "cfg-out"\n[hardware]\n"crossbar.adc_bits" = 6\n'
                   '[passes.taylor]\nlayers = "1"\nmeasure = false\n')
    assert main(["compile", str(tiny_zoo), "--config", str(cfg), "-q"]) == 0
    out = tmp_path / "cfg-out"
    rep = json.loads((out / "report.json").read_text())
    assert rep["hardware"]["parameters"]["crossbar"]["adc_bits"] == 6
    assert rep["hardware"]["name"] == "rram-128[crossbar.adc_bits=6]"
    rec = rep["pass_records"][0]
    assert rec["blocks"] == [1] and "measured" in rec["fidelity"]
    # a flag beats the file
    assert main(["compile", str(tiny_zoo), "--config", str(cfg), "--taylor-layers", "0", "-q", "-o",
                 str(tmp_path / "o2")]) == 0
    assert json.loads((tmp_path / "o2" / "blocks.json").read_text())["passes"][0]["blocks"] == [0]


def test_inspect_outdir_json_has_the_mapping(tiny_zoo, tmp_path, capsys):
    assert main(["compile", str(tiny_zoo), "-q", "-o", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    rc, out, _ = _run(capsys, "inspect", str(tmp_path / "o"), "--json")
    data = json.loads(out)
    assert rc == 0 and data["schema"] == "vitc.blocks/2"
    m = data["mapping"]
    assert m["totals"]["crossbars"] == sum(x["crossbars"] for x in m["matrices"]) > 0
    assert {L["layer"] for L in m["layers"]} >= {"block0.q_proj", "block1.mlp_fc2"}


def test_hw_list_and_user_file_with_top_level_base(tmp_path, capsys):
    rc, out, _ = _run(capsys, "hw", "list")
    assert rc == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "xbar" in rows["rram-128"] and "[default for --target xbar]" in rows["rram-128"]
    assert "systolic" in rows["vitality"] and "[default for --target systolic]" in rows["vitality"]
    p = tmp_path / "big.toml"
    p.write_text('base = "rram-128"\n[crossbar]\nrows = 256\ncols = 256\n')
    spec = load_hw(p)
    assert (spec.name, spec["crossbar.rows"], spec["crossbar.cols"]) == ("big", 256, 256)
    assert "rram-128 modified by big.toml: crossbar.rows=256, crossbar.cols=256" == spec.description


def test_version_and_usage_errors(capsys):
    rc, out, _ = _run(capsys, "--version")
    assert rc == 0 and out.startswith("vitc ")
    rc, _, err = _run(capsys, "compile")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and err.startswith("vitc: error:")
