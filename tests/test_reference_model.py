"""The trained reference ViTs: recognised block by block, accuracy kept exactly by the round trip."""
from __future__ import annotations

import json

import pytest

from conftest import REFERENCE
from vitc.pipeline import compile_model
from vitc.runtime.validate import validate_models

METRICS = json.loads((REFERENCE / "metrics.json").read_text()) if (REFERENCE / "metrics.json").is_file() else None


@pytest.mark.skipif(METRICS is None, reason="reference models not present")
@pytest.mark.parametrize("variant,tokens,min_acc", [("p4", 65, 0.97), ("p2", 257, 0.95)])
def test_reference_round_trip_keeps_accuracy(variant, tokens, min_acc):
    info = METRICS["models"][variant]
    path = REFERENCE / info["onnx"]
    res = compile_model(path, target="none")
    blocks = res.compiled.blocks
    assert len(blocks) == info["depth"] == 6 and not res.compiled.unrecognised
    assert all((b.num_heads, b.head_dim, b.pre_ln) == (4, 16, True) for b in blocks)
    assert {(b.tokens, b.tokens_dynamic) for b in blocks} == {(tokens, False)}
    v = validate_models(path, res.model, inputs=REFERENCE / "digits_test.npz", labels=True)
    out = v.outputs[0]
    assert v.samples == 540 and v.passed
    assert out.ref_accuracy == pytest.approx(info["test_acc_ort"], abs=1e-6) and out.ref_accuracy >= min_acc
    assert out.cand_accuracy == out.ref_accuracy and out.top1_agreement == 1.0
