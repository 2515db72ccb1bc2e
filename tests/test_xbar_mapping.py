"""Crossbar mapping: crossbar counts equal the hand count from weight shapes; mapping.json
locates every weight cell exactly once."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from onnx import helper, numpy_helper, TensorProto

from vitc.backends.api import analyse
from vitc.report import evaluate
from vitc.core.hardware import load_hw
from vitc.compiler.zoo import build_vit

PRESETS = ["rram-128", "isaac-128", "rram-64", "neurosim-v14"]


def hand_count(model, rows, cols, cells_per_weight, novel_conv=False):
    """Σ over static MatMul/Conv weights of ⌈K/rows⌉·⌈N·cells/cols⌉, from the initializers;
    ``novel_conv``: NeuroSim's novel mapping of the (only) convolution, a PE per kernel position
    holding its C_in rows: kH·kW·⌈C_in/rows⌉·⌈N·cells/cols⌉."""
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    total = 0
    for n in model.graph.node:
        if n.op_type == "MatMul" and n.input[1] in inits:
            k, nn = inits[n.input[1]]
        elif n.op_type == "Conv" and n.input[1] in inits:
            cout, cin, kh, kw = inits[n.input[1]]
            k, nn = cin * kh * kw, cout
            if novel_conv:
                total += kh * kw * math.ceil(cin / rows) * math.ceil(nn * cells_per_weight / cols)
                continue
        else:
            continue
        total += math.ceil(k / rows) * math.ceil(nn * cells_per_weight / cols)
    return total


@pytest.fixture(scope="module")
def deits():
    return {n: build_vit(n) for n in ("deit-tiny", "deit-small", "deit-base")}


# hand counts written out for rram-128 (128×128, 8 one-bit slices, offset):
# DeiT-Tiny C=192: patch 6·12=72; per block qkv 2·36 + proj 2·12 + fc1 2·48 + fc2 6·12 = 264; head 2·63=126
EXPECTED_RRAM128 = {"deit-tiny": 72 + 12 * 264 + 126,
                    "deit-small": 6 * 24 + 12 * (3 * 72 + 3 * 24 + 3 * 96 + 12 * 24) + 3 * 63,
                    "deit-base": 6 * 48 + 12 * (6 * 144 + 6 * 48 + 6 * 192 + 24 * 48) + 6 * 63}


@pytest.mark.parametrize("name", ["deit-tiny", "deit-small", "deit-base"])
@pytest.mark.parametrize("preset", PRESETS)
def test_deit_crossbars_equal_hand_count(deits, name, preset):
    model = deits[name]
    spec = load_hw(preset)
    an = analyse(model, "xbar", spec, model_name=name)
    novel = spec["mapping.floorplan"] == "neurosim"     # the patch embedding is NeuroSim's one novel-mapped layer
    expect = hand_count(model, spec["crossbar.rows"], spec["crossbar.cols"], spec.columns_per_weight, novel)
    assert an.totals["crossbars"] == expect
    if preset == "rram-128":
        assert expect == EXPECTED_RRAM128[name]
        assert an.totals["crossbars_with_replicas"] == expect  # no replication on rram-128
    if preset == "neurosim-v14":
        assert an.totals["crossbars_with_replicas"] >= expect


def test_mapping_json_covers_every_cell():
    model = build_vit("deit-tiny", depth=1)
    res = evaluate(model, "xbar", "rram-64", model_name="t", options={"plots": False})
    mp = json.loads(res.files["mapping.json"])
    f = {k: i for i, k in enumerate(mp["block_fields"])}
    cpw = mp["crossbar"]["columns_per_weight"]
    assert cpw == 16  # 8 slices × differential
    ids = []
    for m in mp["matrices"]:
        blocks = np.array([b[:-1] for b in m["blocks"]])
        assert len(blocks) == m["crossbars"]
        # every physical cell of the matrix is covered exactly once
        assert int((blocks[:, f["rows"]] * blocks[:, f["cols"]]).sum()) == m["K"] * m["N"] * cpw * m["count"]
        assert blocks[:, f["rows"]].max() <= mp["crossbar"]["rows"]
        assert blocks[:, f["weight_col1"]].max() == m["N"]
        assert m["weight"]  # initializer name
        ids.extend(blocks[:, f["crossbar"]].tolist())
    assert sorted(ids) == list(range(len(ids)))  # unique, dense crossbar ids
    assert mp["totals"]["crossbars"] == len(ids)


def _model(nodes, inits, inputs, outputs, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_gemm_conv_groups_and_const_left_operand():
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((300, 200)).astype(np.float32), "Wt"),  # Gemm transB: N=300,K=200
             numpy_helper.from_array(rng.standard_normal((64, 8, 3, 3)).astype(np.float32), "Wc"),  # group 4
             numpy_helper.from_array(rng.standard_normal((50, 300)).astype(np.float32), "A")]       # A·X
    nodes = [helper.make_node("Gemm", ["x", "Wt"], ["y"], transB=1, name="gemm"),
             helper.make_node("Conv", ["img", "Wc"], ["c"], group=4, pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("MatMul", ["A", "xt"], ["z"], name="leftconst")]
    m = _model(nodes, inits,
               [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 200]),
                helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 32, 8, 8]),
                helper.make_tensor_value_info("xt", TensorProto.FLOAT, [300, 7])],
               [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "c", "z")])
    an = analyse(m, "xbar", "rram-128", model_name="g")
    by = {c.name: c for c in an.costs}
    assert by["gemm"].crossbars == math.ceil(200 / 128) * math.ceil(300 * 8 / 128)
    assert by["conv"].crossbars == 4 * math.ceil(72 / 128) * math.ceil(16 * 8 / 128)
    assert by["leftconst"].crossbars == math.ceil(300 / 128) * math.ceil(50 * 8 / 128)
    assert by["gemm"].macs == 4 * 200 * 300 and by["conv"].macs == 64 * 64 * 72
    mats = {mm.op: mm for mm in an.xbar.maps}
    assert (mats["leftconst"].K, mats["leftconst"].N) == (300, 50)


def test_replication_balances_pipeline(tmp_path):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("build_vgg8", Path(__file__).parent.parent / "tools" / "build_vgg8.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.build_vgg8()
    from vitc.core.hardware import load_hw, override
    hw = override(load_hw("neurosim-v14"), {"mapping.floorplan": "vitc"})   # vitc's balancing, not NeuroSim's plan
    an = analyse(model, "xbar", hw, model_name="vgg8")
    reps = {c.name: c.extra.get("replication", 1) for c in an.costs if c.unit == "xbar"}
    assert reps["/conv1/Conv"] == 8 and reps["/conv2/Conv"] == 8 and reps["/fc1/Gemm"] == 1
    assert an.totals["crossbars"] == 6344
    assert an.totals["crossbars_with_replicas"] > an.totals["crossbars"]


def test_bert_with_runtime_shapes_maps_every_projection():
    """HF BERT's shapes flow through run-time Shape/Expand arithmetic; costing must still see them."""
    from conftest import EXPORTERS
    from vitc.pipeline import compile_model
    path = EXPORTERS / "hf_bert_eager_legacy_op17.onnx"
    if not path.is_file():
        pytest.skip("fixture missing")
    res = compile_model(path, target="xbar", hw="rram-128", backend_options={"seq_len": 16})
    totals = res.report["totals"]
    # 2 layers × (q, k, v, out 64×64 → 4 each; fc1 64×128 → 8; fc2 128×64 → 4) + pooler 64×64 → 4 + classifier
    assert totals["crossbars"] >= 2 * (4 * 4 + 8 + 4)
