"""Attention forms beyond the plain encoder block, on small committed exports of real families
(``tests/fixtures/families``, written by ``tools/export_family_fixtures.py``): what the front end
finds in each, that every rewrite reproduces the export in onnxruntime, and what each pass and
backend does with the cores (taylor linearises or declines with a reason, never drops a bias)."""
from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from vitc.cli import main
from vitc.compiler.emit import emit
from vitc.compiler.frontend import read_model
from vitc.runtime.validate import validate_models

FIX = Path(__file__).parent / "fixtures" / "families"
MANIFEST = json.loads((FIX / "manifest.json").read_text())

#: name -> (encoder blocks, cores by kind, bias classes of the softmax cores, words of each decline)
EXPECT = {
    "swin_windows": (1, {"softmax": 1}, {"additive"}, []),
    "pvt_spatial_reduction": (0, {"softmax": 2}, {"none"}, []),
    "gpt2_causal": (0, {"softmax": 2}, {"causal"}, []),
    "llama_rope_gqa": (0, {"softmax": 1}, {"causal"}, []),
    "yolos_shape_readers": (2, {}, set(), []),
    "xcit_temperature": (0, {"softmax": 2}, {"none"}, []),
    "cait_talking_heads": (0, {"softmax": 1}, {"none"}, ["talking heads"]),
    "coat_factorized": (0, {"factorized": 4}, set(), []),
    "mobilevitv2_separable": (0, {"separable": 9}, set(), []),
    "efficientvit_relu_linear": (0, {"linear": 1}, set(), []),
    "levit_hardswish": (0, {"softmax": 3}, {"additive"}, []),
}


def test_every_fixture_has_an_expectation():
    assert set(EXPECT) == {k for k in MANIFEST if not k.startswith("_")}


@pytest.fixture(scope="module")
def canonical():
    return {name: read_model(FIX / f"{name}.onnx", require_rewritable=False) for name in EXPECT}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_recognition(canonical, name):
    cm = canonical[name]
    blocks, kinds, biases, declines = EXPECT[name]
    assert len(cm.blocks) == blocks
    assert dict(collections.Counter(c.kind for c in cm.cores)) == kinds
    assert {c.bias for c in cm.cores if c.kind == "softmax"} == biases
    assert len(cm.unrecognised) == len(declines)
    for words, u in zip(declines, cm.unrecognised):
        assert words in u.reason
    # every attention module torch ran is a block, a core or a named decline
    assert blocks + sum(kinds.values()) + len(declines) == MANIFEST[name]["torch_attention_modules"]
    for c in cm.cores:
        assert c.probe_rel_error <= 1e-4 and c.index >= len(cm.blocks) and c.why_not_block


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_rewrite_reproduces_the_export(canonical, name):
    res = validate_models(FIX / f"{name}.onnx", emit(canonical[name]), samples=2, seed=1)
    assert res.passed and max(o.max_abs for o in res.outputs) <= 1e-4


def test_core_ops_and_geometry(canonical):
    swin = canonical["swin_windows"].cores[0]
    assert (swin.heads, swin.q_tokens, swin.kv_tokens, swin.groups) == (2, 16, 16, 8)   # 4 windows × 2 heads
    pvt = canonical["pvt_spatial_reduction"].cores
    assert pvt[0].q_tokens == 64 and pvt[0].kv_tokens == 4                            # K/V from 4×-reduced tokens
    levit = canonical["levit_hardswish"].cores[0]
    assert levit.value_dim == 2 * levit.head_dim                                        # attn_ratio 2: d_v = 2·d_k
    ops = {n.op for n in canonical["efficientvit_relu_linear"].graph.nodes if n.domain == "ai.vitc"}
    assert ops == {"LinearAttention"}


@pytest.mark.parametrize("name,selected,declined", [
    ("pvt_spatial_reduction", [0, 1], 0),     # N_q != N_kv: linearised
    ("xcit_temperature", [0, 1], 0),          # per-head temperature folded into q
    ("gpt2_causal", [], 2),                   # causal: declined, not dropped
    ("levit_hardswish", [], 3),               # relative-position bias: declined, not dropped
    ("coat_factorized", [], 4),               # already linear
])
def test_taylor_on_cores(tmp_path, name, selected, declined):
    assert main(["-q", "compile", str(FIX / f"{name}.onnx"), "-o", str(tmp_path), "--passes", "taylor",
                 "--target", "xbar", "--taylor-no-measure"]) == 0
    rec = json.loads((tmp_path / "blocks.json").read_text())["passes"][0]
    assert rec["blocks"] == selected and len(rec["details"]["declined"]) == declined
    if not selected:     # nothing linearised: the model still computes exactly what the export does
        res = validate_models(FIX / f"{name}.onnx", next(tmp_path.glob("*.vitc.onnx")), samples=2)
        assert max(o.max_abs for o in res.outputs) <= 1e-5


@pytest.mark.parametrize("target", ["xbar", "systolic", "hybrid"])
@pytest.mark.parametrize("name", ["swin_windows", "coat_factorized", "mobilevitv2_separable", "llama_rope_gqa"])
def test_every_backend_costs_the_cores(tmp_path, name, target):
    assert main(["-q", "compile", str(FIX / f"{name}.onnx"), "-o", str(tmp_path), "--target", target]) == 0
    rep = json.loads((tmp_path / "report.json").read_text())
    core = rep["rollups"]["by_kind"]["attention_core"]
    assert core["macs"] > 0 and core["energy_pj"] > 0
    assert not [w for w in rep["warnings"] if "costed as free" in w]


def test_inspect_lists_every_decline_and_core(capsys):
    assert main(["inspect", str(FIX / "cait_talking_heads.onnx"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["cores"]) == 1 and len(out["unrecognised"]) == 1
    assert "talking heads" in out["unrecognised"][0]["reason"]


def test_reuse_names_a_core_in_its_plan(tmp_path, capsys):
    assert main(["compile", str(FIX / "swin_windows.onnx"), "-o", str(tmp_path), "--passes", "reuse",
                 "--reuse-plan", "1"]) == 2
    assert "attention core without a canonical encoder block" in capsys.readouterr().err


def test_linear_ops_keep_the_tokens_linear():
    """No tensor with two token axes in the linear-attention ops' declared work."""
    from vitc.runtime.ops import work
    g, n, dk, dv = 6, 50, 8, 12
    for op, attrs, shapes in (("FactorizedAttention", {"scale": 0.5}, [(g, n, dk), (g, n, dk), (g, n, dv)]),
                              ("LinearAttention", {"eps": 1e-6}, [(g, n, dk), (g, n, dk), (g, n, dv)]),
                              ("SeparableAttention", {}, [(2, 1, 3, n), (2, dk, 3, n), (2, dk, 3, n)])):
        steps = work(op, attrs, shapes)
        assert all(sorted(s.out_shape).count(n) <= 1 for s in steps), (op, [s.out_shape for s in steps])
