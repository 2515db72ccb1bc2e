"""Crossbar non-ideality simulation: ai.vitc::XbarMatMul vs its numpy twin, ideal limits,
real graphs (zoo DeiT-Tiny, the reference ViT), sweeps and the command line."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from vitc.runtime.nonideal.simulate import simulate_model
from vitc.runtime.nonideal.sweep import parse_bits
from vitc.runtime.nonideal.arith import (SimConfig, adc_convert, ideal_quantized_mvm, input_codes, input_scale,
                                   program_matrix, reference_mvm)
from vitc.runtime.session import open_session

from conftest import REFERENCE


def _matmul_model(W: np.ndarray, opset: int = 17, gemm: dict | None = None) -> onnx.ModelProto:
    K, N = W.shape
    if gemm is None:
        node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "T", K])
        inits = [numpy_helper.from_array(W, "W")]
    else:
        Wt = np.ascontiguousarray(W.T) if gemm.get("transB") else W
        node = helper.make_node("Gemm", ["x", "W", "C"], ["y"], name="gemm", **gemm)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", K])
        inits = [numpy_helper.from_array(Wt, "W"),
                 numpy_helper.from_array(np.linspace(-1, 1, N, dtype=np.float32), "C")]
    g = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _run(model, feeds):
    sess = open_session(model)
    return sess.run(None, feeds)[0]


CASES = {
    "neurosim": {},
    "differential": {"signed": "differential"},
    "offset-digital": {"offset_correction": "digital"},
    "ideal-adc": {"adc_bits": 0},
    "adc-10-bit": {"adc_bits": 10},
    "dac-2": {"dac_bits": 2},
    "dac-3-cell-2": {"dac_bits": 3, "cell_bits": 2},
    "lognormal": {"variation": 0.1},
    "gaussian-onoff": {"variation": 0.05, "variation_model": "gaussian", "on_off_ratio": 17},
    "tile": {"mode": "tile"},
    "tile-differential": {"mode": "tile", "signed": "differential"},
    "input-12-dac-4": {"input_bits": 12, "dac_bits": 4},
    "rows-parallel-48": {"rows_parallel": 48},
    "clipping": {"adc_bits": 6, "adc_fullscale": 0.25},
    "input-5": {"input_bits": 5, "adc_bits": 7},
    "static-input": {"input_scaling": "static"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_xbar_matmul_matches_numpy_twin_bit_for_bit(case):
    """The ONNX function body and the plain-loop numpy reference agree exactly."""
    rng = np.random.default_rng(3)
    K, N = 200, 24
    W = rng.standard_normal((K, N)).astype(np.float32)
    x = rng.standard_normal((2, 5, K)).astype(np.float32)
    cfg = SimConfig.from_hw("neurosim-v14", **CASES[case])
    res = simulate_model(_matmul_model(W), cfg, calib={"x": x})
    assert [n.op_type for n in res.model.graph.node] == ["XbarMatMul"]
    pm = res.programmed["mm"]
    y = _run(res.model, {"x": x})
    ref = reference_mvm(x, pm, cfg)
    assert y.dtype == np.float32 and y.shape == (2, 5, N)
    assert np.array_equal(y, ref), f"max diff {np.abs(y - ref).max()}"


def test_small_mvm_by_hand():
    """Known settings, a 3×2 matrix and two vectors: every conversion spelled out."""
    cfg = SimConfig(rows=2, rows_parallel=2, cell_bits=1, weight_bits=3, input_bits=3, dac_bits=1, adc_bits=2,
                    signed="differential", adc_fullscale=1.0)
    # weights on the 3-bit grid (Qw = 3): column scales 1 → q = W
    W = np.array([[3, -1], [2, 0], [1, 3]], np.float32)
    x = np.array([[3, -2, 1], [0, 1, -3]], np.float32)        # per-row absmax 3 → s_x = 1, x_int = x
    pm = program_matrix(W, cfg, "hand")
    assert np.array_equal(pm.q, W.astype(np.int64)) and np.allclose(pm.w_scale, 1.0)
    # worst-case current per conversion: 2 rows × 1 (DAC) × 1 (level) = 2; 2-bit ADC: Δ = 2/4 = 0.5
    assert pm.fullscale == 2.0 and pm.adc_step(cfg) == 0.5
    u = x.astype(np.int64) + 4                                 # offset-binary inputs, 3 bits
    expect = np.zeros((2, 2))
    for m in range(2):
        for n in range(2):
            total = 0.0
            for g, rows in enumerate(([0, 1], [2])):           # two row groups of the 2-row crossbars
                for j in range(3):                             # bit-planes
                    for p, sign in ((0, 1), (1, -1)):          # differential arrays
                        for s in range(2):                     # 2 magnitude bits, 1 per cell
                            mag = np.maximum(sign * W[:, n], 0).astype(np.int64)
                            P = sum(((u[m, k] >> j) & 1) * ((mag[k] >> s) & 1) for k in rows)
                            code = min(round(P / 0.5), 3)       # ADC: Δ = 0.5, 2 bits → clips at 3·Δ = 1.5
                            total += sign * 2 ** (j + s) * code * 0.5
            expect[m, n] = total - 4 * W[:, n].sum()           # input offset 2^(a-1)·Σ_k q
    got = reference_mvm(x, pm, cfg)
    assert np.array_equal(got, expect.astype(np.float32))
    res = simulate_model(_matmul_model(W), cfg)
    assert np.array_equal(_run(res.model, {"x": x[None]})[0], got)
    # clipping matters here: the ideal product differs
    assert not np.allclose(got, x @ W)


def test_adc_semantics():
    cfg = SimConfig.from_hw("neurosim-v14", adc_bits=4)
    pm = program_matrix(np.eye(4, dtype=np.float32), cfg)
    # FS = 128 rows × 1 × 1 → Δ = 128/16 = 8; codes round half to even and clip at 15
    P = np.array([0, 3, 4, 5, 12, 20, 119, 120, 127, 128, 200])
    codes = adc_convert(P, pm, cfg)
    assert list(codes) == [0, 0, 0, 1, 2, 2, 15, 15, 15, 15, 15]
    assert list(adc_convert(P, pm, cfg.with_(adc_bits=8)))[:4] == [0, 6, 8, 10]
    assert cfg.with_(adc_bits=0).adc_levels == 0


def test_input_quantisation():
    cfg = SimConfig.from_hw("neurosim-v14")
    x = np.array([[1.0, -0.5, 0.25, 0.0], [0, 0, 0, 0]], np.float32)
    s = input_scale(x, cfg)
    assert s[0] == np.float32(1.0 / 127) and s[1] > 0
    u = input_codes(x, s, cfg)
    assert list(u[0]) == [255, 128 - 64, 128 + 32, 128] and list(u[1]) == [128] * 4


def test_ideal_settings_match_float_deit(tiny_zoo):
    """High bits, ideal ADC, no variation: the simulated DeiT (2 blocks) matches the float graph."""
    model = onnx.load(tiny_zoo)
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    ref = _run(model, {"input": x})
    cfg = SimConfig.from_hw("neurosim-v14", adc_bits=0, input_bits=20, dac_bits=8, weight_bits=20, cell_bits=8,
                            signed="differential")
    res = simulate_model(model, cfg)
    y = _run(res.model, {"input": x})
    assert np.abs(y - ref).max() <= 1e-4
    # and the preset's own arithmetic at 8-bit ADC stays close (only 8-bit input/weight rounding)
    res8 = simulate_model(model, SimConfig.from_hw("neurosim-v14", adc_bits=8))
    y8 = _run(res8.model, {"input": x})
    assert np.abs(y8 - ref).max() < 0.05 * np.abs(ref).max()


def test_every_crossbar_mvm_is_replaced(tiny_zoo):
    from vitc.backends.graph import prepare_graph
    from vitc.backends.partition import MVM, partition
    model = onnx.load(tiny_zoo)
    items, _ = partition(prepare_graph(model))
    n_mvm = sum(it.kind == MVM for it in items)
    res = simulate_model(model, SimConfig.from_hw("rram-128"))
    xb = [n for n in res.model.graph.node if n.op_type == "XbarMatMul"]
    assert len(xb) == n_mvm == len(res.layers) == 10 and not res.skipped      # patch conv, 2×4 linears, head
    assert any(l.op_type == "Conv" for l in res.layers)
    left = [n for n in res.model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
    # only the attention products (activation × activation) remain as MatMul
    inits = {t.name for t in res.model.graph.initializer}
    assert all(not (set(n.input[1:2]) & inits) for n in left)
    for fn in res.model.functions:
        if fn.name == "XbarMatMul":
            assert {n.domain for n in fn.node} <= {""}
            assert "QLinearMatMul" in {n.op_type for n in fn.node}
    onnx.checker.check_model(res.model)


def test_variation_is_seeded(tiny_zoo):
    model = onnx.load(tiny_zoo)
    cells = lambda r: {t.name: numpy_helper.to_array(t) for t in r.model.graph.initializer if t.name.endswith(".cells")}
    a = cells(simulate_model(model, SimConfig.from_hw("rram-128", variation=0.1, seed=1)))
    b = cells(simulate_model(model, SimConfig.from_hw("rram-128", variation=0.1, seed=1)))
    c = cells(simulate_model(model, SimConfig.from_hw("rram-128", variation=0.1, seed=2)))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_gemm_forms():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((40, 7)).astype(np.float32)
    x = rng.standard_normal((6, 40)).astype(np.float32)
    cfg = SimConfig.from_hw("rram-64", adc_bits=0, input_bits=16, dac_bits=8, weight_bits=16, cell_bits=8)
    for attrs in ({"transB": 1, "alpha": 0.5, "beta": 2.0}, {"transB": 0}):
        model = _matmul_model(W, gemm=attrs)
        res = simulate_model(model, cfg)
        assert "XbarMatMul" in [n.op_type for n in res.model.graph.node]
        assert np.abs(_run(res.model, {"x": x}) - _run(model, {"x": x})).max() < 1e-3


def test_quantisation_only_limit():
    """Ideal ADC: the chip computes exactly the quantised product x_int·q (dequantised)."""
    rng = np.random.default_rng(7)
    W = rng.standard_normal((300, 9)).astype(np.float32)
    x = rng.standard_normal((11, 300)).astype(np.float32)
    for kw in ({}, {"signed": "differential"}, {"mode": "tile"}):
        cfg = SimConfig.from_hw("neurosim-v14", adc_bits=0, **kw)
        pm = program_matrix(W, cfg)
        assert np.allclose(reference_mvm(x, pm, cfg), ideal_quantized_mvm(x, pm, cfg), rtol=1e-6, atol=1e-5)


def test_parse_bits():
    assert parse_bits("4,5,6,7,8") == [4, 5, 6, 7, 8]
    assert parse_bits("4-6,ideal") == [4, 5, 6, 0]
    with pytest.raises(Exception):
        parse_bits("four")


@pytest.mark.skipif(not (REFERENCE / "vit_digits_p4.onnx").is_file(), reason="reference ViT not built")
def test_reference_vit_accuracy_vs_adc_bits():
    """The trained reference ViT on the NeuroSim preset: 8-bit ADC keeps the float accuracy,
    a 4-bit ADC (full scale = worst-case current) destroys it."""
    from vitc.runtime.data import load_dataset
    from vitc.runtime.nonideal.sweep import adc_sweep
    model = onnx.load(REFERENCE / "vit_digits_p4.onnx")
    data = load_dataset(REFERENCE / "digits_test.npz", model).take(96)
    sweep, _ = adc_sweep({"ref": model}, SimConfig.from_hw("neurosim-v14"), [4, 8], data)
    assert sweep.float_accuracy["ref"] > 0.9
    assert sweep.accuracy["ref"][8] >= sweep.float_accuracy["ref"] - 0.03
    assert sweep.agreement["ref"][8] >= 0.97
    assert sweep.accuracy["ref"][4] < sweep.float_accuracy["ref"] - 0.3


def test_cli_simulate_sweep_and_compile_emit_sim(tiny_zoo, tmp_path):
    from vitc.cli import main
    x = np.random.default_rng(1).standard_normal((6, 3, 64, 64)).astype(np.float32)
    y = _run(onnx.load(tiny_zoo), {"input": x})
    data = tmp_path / "d.npz"
    np.savez(data, input=x, labels=y.argmax(1))
    out = tmp_path / "sim"
    assert main(["simulate", str(tiny_zoo), "--hw", "neurosim-v14", "--sim-mode", "tile", "--adc-bits", "6,8",
                 "--inputs", str(data), "--labels", "--write-models", "-o", str(out)]) == 0
    report = json.loads((out / "nonideal.json").read_text())
    assert report["bits"] == [6, 8] and report["float_accuracy"]["tiny"] == 1.0
    assert set(report["accuracy"]["tiny"]) == {"6", "8"}
    assert (out / "tiny.sim-adc8.onnx").is_file()
    page = (out / "nonideal.html").read_text()
    assert page.count("class='plot'") == 1 and "ADC bits" in page
    md = (out / "nonideal.md").read_text()
    assert "| 6 |" in md and "| 8 |" in md
    # a simulated model validates against the float one (the candidate's accuracy is the non-ideal accuracy)
    from vitc.runtime.validate import validate_models
    v = validate_models(tiny_zoo, out / "tiny.sim-adc8.onnx", inputs=data, labels=True)
    assert v.outputs[0].cand_accuracy is not None
    # compile --emit-sim: simulated graph next to the compiled one, table appended to report.md
    cout = tmp_path / "comp"
    assert main(["compile", str(tiny_zoo), "--hw", "neurosim-v14", "--emit-sim", "--sim-mode", "tile",
                 "--sim-inputs", str(data), "-o", str(cout)]) == 0
    assert (cout / "tiny.sim.onnx").is_file()
    assert "Non-ideal accuracy vs ADC bits" in (cout / "report.md").read_text()
    assert "Non-ideal accuracy vs ADC bits" in (cout / "report.html").read_text()
    assert json.loads((cout / "report.json").read_text())["sections"]["nonideal"]["bits"] == [4]
    assert main(["simulate", str(tiny_zoo), "--hw", "vitality", "-o", str(tmp_path / "bad")]) == 2
    # without --write-models: the agreement table on synthetic inputs, no models; an OUTDIR works as input
    assert main(["simulate", str(cout), "--hw", "neurosim-v14", "--sim-mode", "tile", "--adc-bits", "4,8",
                 "-o", str(tmp_path / "s2")]) == 0
    files = sorted(f.name for f in (tmp_path / "s2").iterdir())
    assert files == [".vitc-outputs", "nonideal.html", "nonideal.json", "nonideal.md"]
    assert json.loads((tmp_path / "s2" / "nonideal.json").read_text())["data"] == "synthetic"


def test_lstm_input_projection_simulated():
    """BiLSTM (the FAR rewrite's op): X·Wᵀ hoisted onto crossbars, R kept ideal and reported."""
    rng = np.random.default_rng(0)
    I, H, D = 12, 5, 2
    W = rng.standard_normal((D, 4 * H, I)).astype(np.float32)
    R = (0.3 * rng.standard_normal((D, 4 * H, H))).astype(np.float32)
    B = (0.1 * rng.standard_normal((D, 8 * H))).astype(np.float32)
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], name="lstm", hidden_size=H, direction="bidirectional")
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [7, 3, I])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(a, n) for a, n in ((W, "W"), (R, "R"), (B, "B"))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = rng.standard_normal((7, 3, I)).astype(np.float32)
    ref = _run(model, {"x": x})
    ideal = SimConfig.from_hw("rram-64", adc_bits=0, input_bits=20, dac_bits=8, weight_bits=20, cell_bits=8)
    res = simulate_model(model, ideal)
    assert [n.op_type for n in res.model.graph.node] == ["XbarMatMul", "LSTM"]
    assert res.skipped and "kept ideal" in res.skipped[0][1]
    assert np.abs(_run(res.model, {"x": x}) - ref).max() < 1e-4
    noisy = simulate_model(model, SimConfig.from_hw("rram-64", adc_bits=4))
    assert np.abs(_run(noisy.model, {"x": x}) - ref).max() > 1e-2
