"""--passes reorder: exact MatMul-chain reassociation and the proven-constant Taylor denominator."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
from onnx import TensorProto, helper, numpy_helper

from vitc.core.io import load_model
from vitc.pipeline import compile_model
from vitc.compiler.zoo import build_vit
from vitc.passes.reorder import reorder_graph
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.session import open_session

from conftest import EXPORTERS, exporter_manifest

FIXTURES = sorted(EXPORTERS.glob("*.onnx"))


def _input_shapes(path) -> dict | None:
    """Concrete shapes for fixtures with symbolic non-batch dims, from the manifest's input shapes."""
    model = load_model(path).model
    entry = next((f for f in exporter_manifest().get("fixtures", []) if f.get("file") == path.name), {})
    shapes = {}
    for vi in model.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if len(dims) == 4 and any(d is None for d in dims[1:]):
            given = entry.get("inputs", {}).get(vi.name, {}).get("shape") or []
            shapes[vi.name] = tuple(g if isinstance(g, int) else s for g, s in zip(given, (2, 3, 48, 40))) \
                if len(given) == 4 else (2, 3, 32, 32)
    return shapes or None


def _max_rel(ref: list[np.ndarray], cand: list[np.ndarray]) -> float:
    return max(float(np.abs(r - c).max() / max(np.abs(r).max(), 1e-30)) for r, c in zip(ref, cand))


def _run(model, feeds):
    sess = open_session(model)
    return sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_reorder_alone_is_exact_on_fixtures(path):
    shapes = _input_shapes(path)
    try:
        res = compile_model(path, passes="reorder", target="none", input_shapes=shapes)
    except Exception as exc:  # noqa: BLE001 - fixtures the front end declines are not reorder's business
        from vitc.core.errors import VitcInputError
        if isinstance(exc, VitcInputError):
            pytest.skip(f"front end declines: {exc}")
        raise
    original = load_model(path).model
    feeds = synthetic_inputs(original, batch=2, seed=0, shapes=shapes)
    assert _max_rel(_run(original, feeds), _run(res.model, feeds)) <= 1e-5
    assert res.compiled.records[0].name == "reorder"
    assert res.compiled.records[0].fidelity["measured"] == "graph unchanged"


@pytest.mark.parametrize("img,patch,depth", [(64, 16, 2), (224, 16, 1)])
def test_reorder_alone_is_exact_on_zoo(img, patch, depth):
    model = build_vit("deit-tiny", img_size=img, patch=patch, depth=depth)
    res = compile_model(model, passes="reorder", target="none", name="zoo")
    feeds = synthetic_inputs(model, batch=2, seed=1)
    assert _max_rel(_run(model, feeds), _run(res.model, feeds)) <= 1e-5


def _chain_model(n: int = 197, d: int = 64, sym: bool = True) -> onnx.ModelProto:
    """Linear attention written naively, (Q·Kᵀ)·V, then three weight MatMuls in a row."""
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((d, 256)).astype(np.float32) / 8
    w2 = rng.standard_normal((256, 16)).astype(np.float32) / 16
    w3 = rng.standard_normal((16, d)).astype(np.float32) / 4
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 1, 3, 2]),
             helper.make_node("MatMul", ["q", "kt"], ["s"], name="qk"),
             helper.make_node("MatMul", ["s", "v"], ["z"], name="sv"),
             helper.make_node("MatMul", ["z", "w1"], ["z1"], name="m1"),
             helper.make_node("MatMul", ["z1", "w2"], ["z2"], name="m2"),
             helper.make_node("MatMul", ["z2", "w3"], ["y"], name="m3")]
    dims = ["B", 3, "N" if sym else n, d]
    ins = [helper.make_tensor_value_info(x, TensorProto.FLOAT, dims) for x in "qkv"]
    graph = helper.make_graph(nodes, "chain", ins, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, f"w{i + 1}") for i, w in enumerate((w1, w2, w3))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)


def test_chain_reassociated_exactly():
    model = _chain_model()
    graph = gs.import_onnx(model)
    report = reorder_graph(graph, rep=197)
    assert len(report) == 1 and report[0]["rewritten"] and report[0]["operands"] == 6
    assert report[0]["mul_after"] < report[0]["mul_before"] / 10
    # Q·(Kᵀ·(V·W)) with the two constants folded: no product of two token axes remains
    assert report[0]["order"] == "((q · (kt · (v · const[w1·w2]))) · w3)"
    new = gs.export_onnx(graph)
    onnx.checker.check_model(new)
    rng = np.random.default_rng(1)
    feeds = {x: (0.3 * rng.standard_normal((2, 3, 197, 64))).astype(np.float32) for x in "qkv"}
    assert _max_rel(_run(model, feeds), _run(new, feeds)) <= 1e-5
    assert sum(n.op_type == "MatMul" for n in new.graph.node) == 4       # 5 run-time products → 4


def test_representative_size_decides_symbolic_chains():
    """A[N,64]·B[64,N]·C[N,64]: A·(B·C) when N > 64, (A·B)·C when N < 64 (N symbolic)."""
    small = reorder_graph(gs.import_onnx(_chain_model()), rep=16)[0]
    assert small["rewritten"] and small["order"] == "(((q · kt) · (v · const[w1·w2])) · w3)"
    large = reorder_graph(gs.import_onnx(_chain_model()), rep=4096)[0]
    assert large["order"] == "((q · (kt · (v · const[w1·w2]))) · w3)"
    # static shapes: the given size is ignored
    static = reorder_graph(gs.import_onnx(_chain_model(n=197, sym=False)), rep=4)[0]
    assert static["order"] == "((q · (kt · (v · const[w1·w2]))) · w3)"


def test_already_cheapest_chain_untouched():
    model = _chain_model()
    graph = gs.import_onnx(model)
    reorder_graph(graph, rep=197)
    again = reorder_graph(graph, rep=197)
    assert len(again) == 1 and not again[0]["rewritten"] and again[0]["reason"] == "already cheapest"


def test_simplify_taylor_constant_denominator(tiny_zoo):
    base = compile_model(tiny_zoo, passes="taylor", target="none", options={"taylor_measure": False})
    simp = compile_model(tiny_zoo, passes="taylor,reorder", target="none",
                         options={"taylor_measure": False, "reorder_simplify": True})
    rec = simp.compiled.records[1]
    assert rec.details["taylor_constant_denominator_blocks"] == [0, 1]
    assert rec.fidelity["max_rel"] <= 1e-5 and rec.fidelity["measured_on"].startswith("8 calibration samples")
    overloads = {n.overload for n in simp.model.graph.node if n.op_type == "TaylorAttention"}
    assert overloads == {"paper-tokens-const"}
    feeds = synthetic_inputs(base.model, batch=2, seed=3)
    assert _max_rel(_run(base.model, feeds), _run(simp.model, feeds)) <= 1e-5
    oc = rec.details["opcount"]["per_block"][0]
    general = base.compiled.records[0].details["opcount"]["per_block"][0]
    assert oc["taylor"]["div"] < general["taylor"]["div"] / 10
    from vitc.compiler.opcount import taylor_attention_counts
    assert taylor_attention_counts(197, 64, simplified=True).mul < taylor_attention_counts(197, 64).mul
    # without --reorder-simplify the general form stays
    plain = compile_model(tiny_zoo, passes="taylor,reorder", target="none", options={"taylor_measure": False})
    assert {n.overload for n in plain.model.graph.node if n.op_type == "TaylorAttention"} == {""}


def test_simplify_leaves_feature_centring_alone(tiny_zoo):
    res = compile_model(tiny_zoo, passes="taylor,reorder", target="none",
                        options={"taylor_measure": False, "reorder_simplify": True, "taylor_centering": "features"})
    assert res.compiled.records[1].details["taylor_constant_denominator_blocks"] == []


@pytest.mark.skipif(not (EXPORTERS / "hf_bert_eager_legacy_op17.onnx").is_file(), reason="BERT fixture missing")
def test_simplify_masked_bert_exact():
    path = EXPORTERS / "hf_bert_eager_legacy_op17.onnx"
    base = compile_model(path, passes="taylor", target="none", options={"taylor_measure": False})
    simp = compile_model(path, passes="taylor,reorder", target="none",
                         options={"taylor_measure": False, "reorder_simplify": True})
    assert {n.overload for n in simp.model.graph.node if n.op_type == "TaylorAttention"} == {
        "paper-tokens-const-masked"}
    ids = np.random.default_rng(0).integers(1, 50, size=(2, 16)).astype(np.int64)
    mask = np.ones((2, 16), np.int64)
    mask[1, 10:] = 0
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    assert _max_rel(_run(base.model, feeds), _run(simp.model, feeds)) <= 1e-5
