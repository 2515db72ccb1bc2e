"""Every committed exporter form: blocks, heads, head dim, forms, and an exact round trip."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from conftest import EXPORTERS, exporter_manifest
from vitc.pipeline import compile_model
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.session import open_session

MANIFEST = exporter_manifest().get("fixtures", [])
COMPARABLE = {"qkv": {"packed-split", "packed-slice", "separate"},
              "scale": {"q-and-k", "q-and-k-runtime", "q-only", "scores-mul", "scores-div"},
              "k_transpose": {"transpose-0132", "transpose-0231", "reshape-transpose-reshape"},
              "layernorm": {"op", "decomposed"}, "gelu": {"erf", "op"}}


def _shapes(entry: dict, batch: int) -> dict:
    """Concrete input shapes for the round trip: a batch of ``batch`` at the exported size."""
    out = {}
    for name, spec in entry["inputs"].items():
        shape = [d if isinstance(d, int) else None for d in spec["shape"]]
        shape[0] = batch
        for axis, d in enumerate(shape):
            if d is None:
                shape[axis] = entry["tokens"] if len(shape) == 2 else 32
        out[name] = tuple(shape)
    return out


@pytest.mark.skipif(not MANIFEST, reason="exporter fixtures not generated")
@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_fixture_recognised_and_round_trips(entry):
    path = EXPORTERS / entry["file"]
    dynamic_batch = any(a.endswith(":0") for a in entry["dynamic_axes"])
    batch = 2 if dynamic_batch else 1
    shapes = _shapes(entry, 1)
    res = compile_model(path, target="none", input_shapes=shapes if entry["dynamic_axes"] else None)
    cm = res.compiled
    assert len(cm.blocks) == entry["num_blocks"] and not cm.unrecognised
    for b in cm.blocks:
        assert (b.num_heads, b.head_dim, b.embed_dim) == (entry["num_heads"], entry["head_dim"], entry["embed_dim"])
        assert b.pre_ln == entry["pre_ln"] and b.has_mask == (entry["has_mask"] or b.forms["mask"] != "none")
        assert b.tokens == entry["tokens"]
        for key, allowed in COMPARABLE.items():
            if entry["forms"].get(key) in allowed:
                assert b.forms[key] == entry["forms"][key], key
    assert sum(n.domain == "ai.vitc" for n in res.model.graph.node) == entry["num_blocks"]
    # round trip on fresh inputs (padding masks included), at a different batch size when dynamic
    feeds = synthetic_inputs(onnx.load(path), batch=batch, seq_len=entry["tokens"], seed=7,
                             shapes=_shapes(entry, batch))
    if entry["has_mask"]:
        mask_name = next(n for n in feeds if "mask" in n)
        feeds[mask_name][-1, entry["tokens"] // 2:] = 0
    ref = open_session(str(path)).run(None, feeds)
    got = open_session(res.model).run(None, feeds)
    for r, g in zip(ref, got):
        assert np.abs(r - g).max() <= 1e-4


def test_contrib_attention_mapped_with_mask():
    path = EXPORTERS / "hf_bert_ort_optimized.onnx"
    if not path.is_file():
        pytest.skip("fixture missing")
    cm = compile_model(path, target="none").compiled
    assert [b.forms["qkv"] for b in cm.blocks] == ["packed-fused-op"] * 2
    assert all(b.has_mask and b.forms["layernorm"] == "skip-layernorm" for b in cm.blocks)


def test_dynamic_models_compile_without_shape_flags():
    """Symbolic image sizes default to 224×224; symbolic sequences are costed at the probe length."""
    img = EXPORTERS / "timm_dynamo_sdpa_op18_dynimg.onnx"
    bert = EXPORTERS / "hf_bert_eager_legacy_op17.onnx"
    if not (img.is_file() and bert.is_file()):
        pytest.skip("fixtures missing")
    default = compile_model(img, target="xbar")
    assert [(b.tokens, b.tokens_dynamic) for b in default.compiled.blocks] == [(785, True)] * 2  # (224/8)² + 1
    small = compile_model(img, target="xbar", input_shapes={"pixel_values": (1, 3, 32, 32)})
    assert default.report["totals"]["latency_ns"] > 10 * small.report["totals"]["latency_ns"]
    res = compile_model(bert, target="xbar")
    assert res.report["totals"]["crossbars"] > 0
