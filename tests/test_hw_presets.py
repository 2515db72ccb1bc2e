"""Hardware presets: every number has a source, the schema is enforced, errors name the field."""
from __future__ import annotations

import tomllib

import pytest

from vitc.core.hardware import HW_DIR, SCHEMA, describe, list_presets, load_hw
from vitc.core.errors import VitcInputError

XBAR_PRESETS = ["rram-128", "isaac-128", "rram-64", "neurosim-v14"]


def _leaves(prefix, node):
    for k, v in node.items():
        if isinstance(v, dict):
            yield from _leaves(f"{prefix}.{k}" if prefix else k, v)
        else:
            yield f"{prefix}.{k}" if prefix else k, v


def test_presets_listed():
    listed = {n: (kind, desc) for n, kind, desc in list_presets()}
    for p in XBAR_PRESETS:
        assert listed[p][0] == "xbar" and listed[p][1]
    assert listed["vitality"][0] == "systolic"


@pytest.mark.parametrize("name", XBAR_PRESETS)
def test_every_number_has_a_source(name):
    path = HW_DIR / f"{name}.toml"
    raw = tomllib.loads(path.read_text())
    spec = load_hw(name)
    for key, value in _leaves("", raw):
        if key.startswith("meta."):
            continue
        assert key in spec.sources and len(spec.sources[key]) > 5, f"{name}: {key} has no source comment"
    assert spec.data["meta"]["sources"], f"{name}: [meta].sources is empty"
    for s in spec.surrogates:
        sec, _, k = s.rpartition(".")
        assert k in SCHEMA[sec]


@pytest.mark.parametrize("name", XBAR_PRESETS)
def test_describe_shows_every_parameter(name):
    spec = load_hw(name)
    text = describe(spec)
    for sec in SCHEMA:
        if sec == "meta":
            continue
        for key in spec.section(sec):
            assert f"  {key} " in text or f"  {key}=" in text, f"{sec}.{key} missing in describe()"
    assert "[surrogate]" in text


def test_seeded_figures_match_reference():
    ns = load_hw("neurosim-v14")
    assert (ns["crossbar.rows"], ns["crossbar.cols"], ns["crossbar.cell_bits"]) == (128, 128, 1)
    assert (ns["crossbar.cols_per_adc"], ns["crossbar.adc_bits"], ns["crossbar.input_bits"]) == (8, 4, 8)
    assert ns["technology.node_nm"] == 22 and ns["mapping.max_replication"] == 8
    isaac = load_hw("isaac-128")
    assert isaac.slices == 8 and isaac["crossbar.adc_bits"] == 8 and isaac["crossbar.cell_bits"] == 2
    assert isaac["adc.energy_pj"] == pytest.approx(2e-3 / 1.28e9 * 1e12)
    small = load_hw("rram-64")
    assert small["crossbar.rows"] == 64 and small.columns_per_weight == 16
    assert small["adc.energy_pj"] == 2.03 and small["periphery.mux_energy_pj_per_conversion"] == 0.094
    rram = load_hw("rram-128")
    assert rram["mapping.replicate"] is False and rram["units.mac.area_mm2"] == 3.595


def _write(tmp_path, text, name="my.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_user_file_with_base_overrides(tmp_path):
    p = _write(tmp_path, '[meta]\nbase = "rram-128"\nname = "mine"\nkind = "xbar"\ndescription = "x"\n'
                         '[crossbar]\nrows = 256  # my macro\nadc_bits = 6\n')
    spec = load_hw(p)
    assert spec.name == "mine" and spec["crossbar.rows"] == 256 and spec["crossbar.cols"] == 128
    assert spec.sources["crossbar.rows"] == "my macro"
    assert "from rram-128" in spec.sources["crossbar.cols"]


@pytest.mark.parametrize("body,field", [
    ("[crossbar]\nrows = -3\n", "[crossbar].rows"),
    ("[crossbar]\nrowz = 3\n", "[crossbar].rowz"),
    ("[crossbar]\nsigned = \"twos\"\n", "[crossbar].signed"),
    ("[adc]\nenergy_pj = \"big\"\n", "[adc].energy_pj"),
    ("[attention_products]\nmode = \"analog\"\n", "[attention_products].mode"),
    ("[units.gpu]\ncount = 1\n", "[units.gpu]"),
    ("[crossbar]\ncols_per_adc = 1024\n", "[crossbar].cols_per_adc"),
])
def test_invalid_field_is_named(tmp_path, body, field):
    p = _write(tmp_path, '[meta]\nbase = "rram-128"\nname = "bad"\nkind = "xbar"\ndescription = "x"\n' + body)
    with pytest.raises(VitcInputError) as e:
        load_hw(p)
    msg = str(e.value)
    assert field in msg and "my.toml" in msg and "\n" not in msg


def test_missing_field_and_bad_toml(tmp_path):
    p = _write(tmp_path, '[meta]\nname = "x"\nkind = "xbar"\ndescription = "x"\n', "partial.toml")
    with pytest.raises(VitcInputError, match=r"partial.toml: missing section \[technology\]"):
        load_hw(p)
    p = _write(tmp_path, "[crossbar\nrows=1", "broken.toml")
    with pytest.raises(VitcInputError, match="broken.toml: not valid TOML"):
        load_hw(p)
    with pytest.raises(VitcInputError, match="unknown hardware preset or file"):
        load_hw("no-such-chip")


def test_exact_error_message(tmp_path):
    p = _write(tmp_path, '[meta]\nbase = "rram-128"\nname = "bad"\nkind = "xbar"\ndescription = "x"\n'
                         "[crossbar]\nrows = -3\n")
    with pytest.raises(VitcInputError) as e:
        load_hw(str(p))
    assert str(e.value) == f"invalid hardware file {p}: [crossbar].rows must be an integer in 1..4096 (got -3)"
