"""Memory-mapped loading (vitc.core.mapped): same weights as onnx.load, no copies, safe fallbacks."""
from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from conftest import EXPORTERS
from vitc.core.errors import VitcInputError
from vitc.core.io import load_model, model_bytes, write_outputs
from vitc.core.mapped import HELD_LOCATION, MAP_MIN_BYTES, NotMappable, map_model
from vitc.pipeline import compile_model

FIXTURES = sorted(p for p in EXPORTERS.glob("*.onnx"))


@pytest.mark.parametrize("path", FIXTURES[:4], ids=lambda p: p.name)
def test_mapped_weights_equal_onnx_load(path):
    full = onnx.load(str(path))
    light, weights = map_model(path)
    expected = {t.name: numpy_helper.to_array(t) for t in full.graph.initializer
                if t.HasField("raw_data") and len(t.raw_data) >= MAP_MIN_BYTES}
    assert expected and set(weights) == set(expected)
    for name, arr in weights.items():
        np.testing.assert_array_equal(arr, expected[name])
        assert arr.dtype == expected[name].dtype and not arr.flags.writeable
    placeholders = {t.name: t for t in light.graph.initializer if t.name in weights}
    assert all(not t.raw_data and t.external_data[0].value == HELD_LOCATION for t in placeholders.values())
    # everything but the mapped data is the same message
    for t in full.graph.initializer:
        if t.name in weights:
            t.ClearField("raw_data")
    for t in light.graph.initializer:
        if t.name in weights:
            t.ClearField("data_location")
            del t.external_data[:]
    assert light.SerializeToString(deterministic=True) == full.SerializeToString(deterministic=True)


def test_written_model_equals_ordinary_path(tiny_zoo, tmp_path):
    """A compile from the mapped file writes the same bytes as one from the parsed model."""
    before = hashlib.sha256(tiny_zoo.read_bytes()).hexdigest()
    mapped = compile_model(tiny_zoo, out=tmp_path / "a", passes="taylor", target="none")
    parsed = compile_model(onnx.load(str(tiny_zoo)), out=tmp_path / "b", passes="taylor", target="none",
                           name="tiny")
    assert mapped.held and any(isinstance(v, np.ndarray) for v in mapped.held.values())
    assert (tmp_path / "a" / "tiny.vitc.onnx").read_bytes() == (tmp_path / "b" / "tiny.vitc.onnx").read_bytes()
    assert hashlib.sha256(tiny_zoo.read_bytes()).hexdigest() == before


def test_external_data_falls_back(tmp_path):
    loaded = load_model(EXPORTERS / "external" / "timm_legacy_sdpa_op17_external.onnx", mapped=True)
    assert loaded.external_data and loaded.weights == {}


def test_corrupt_files_fall_back_to_the_ordinary_errors(tiny_zoo, tmp_path):
    data = tiny_zoo.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(NotMappable):
        map_model(cut)
    with pytest.raises(VitcInputError, match="truncated or not ONNX"):
        load_model(cut, mapped=True)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(VitcInputError):
        load_model(empty, mapped=True)


def test_arrays_from_passes_are_held_not_copied(tiny_zoo, tmp_path):
    """emit_light holds weights the front end made (the split q/k/v projections) as arrays and the
    streamed file holds them exactly."""
    res = compile_model(tiny_zoo, passes="none", target="none")
    made = [n for n, v in res.held.items() if isinstance(v, np.ndarray) and v.flags.owndata]
    assert made, "the q/k/v split weights should be held arrays"
    write_outputs(tmp_path, model_bytes(res.light, "m.onnx", False, res.held))
    written = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "m.onnx")).graph.initializer}
    for n in made:
        np.testing.assert_array_equal(written[n], res.held[n])
