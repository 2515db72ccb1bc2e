"""Front end on the built-in zoo graph: recognition, round trip, determinism, CLI errors."""
from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest

from vitc.cli import main
from vitc.core.errors import VitcInputError
from vitc.compiler.frontend import read_model
from vitc.pipeline import compile_model
from vitc.runtime.validate import validate_models


def test_zoo_blocks_recognised(tiny_zoo):
    cm = read_model(tiny_zoo)
    assert len(cm.blocks) == 2 and not cm.unrecognised
    for b in cm.blocks:
        assert (b.num_heads, b.head_dim, b.embed_dim, b.tokens, b.pre_ln) == (3, 64, 192, 17, True)
        assert b.forms["qkv"] == "packed-split" and b.forms["scale"] == "q-and-k-runtime"
        assert b.forms["layernorm"] == "op" and b.forms["gelu"] == "erf"
        assert b.mlp_fc1 and b.mlp_fc2 and b.norm1 and b.norm2 and b.residual


def test_round_trip_canonical_graph(tiny_zoo, tmp_path):
    res = compile_model(tiny_zoo, out=tmp_path, target="none")
    model = res.model
    cores = [n for n in model.graph.node if n.domain == "ai.vitc"]
    assert [n.op_type for n in cores] == ["Attention", "Attention"]
    assert {a.name: onnx.helper.get_attribute_value(a) for a in cores[0].attribute}["num_heads"] == 3
    assert not [n for n in model.graph.node if n.op_type == "Softmax"]  # the exported core is gone
    onnx.checker.check_model(model)
    v = validate_models(tiny_zoo, tmp_path / "tiny.vitc.onnx", samples=3)
    assert v.passed and v.outputs[0].max_abs <= 1e-4 and v.outputs[0].top1_agreement == 1.0


def test_compile_is_deterministic_and_input_untouched(tiny_zoo, tmp_path):
    before = hashlib.sha256(tiny_zoo.read_bytes()).hexdigest()
    compile_model(tiny_zoo, out=tmp_path / "a", target="none")
    compile_model(tiny_zoo, out=tmp_path / "b", target="none")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [".vitc-outputs", "blocks.json", "tiny.vitc.onnx"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert hashlib.sha256(tiny_zoo.read_bytes()).hexdigest() == before


def test_external_data_round_trip(tiny_zoo, tmp_path):
    src = tmp_path / "ext"
    src.mkdir()
    onnx.save(onnx.load(tiny_zoo), src / "m.onnx", save_as_external_data=True, location="m.onnx.data")
    res = compile_model(src / "m.onnx", out=tmp_path / "out", target="none")
    assert sorted(p.name for p in res.written) == ["blocks.json", "m.vitc.onnx", "m.vitc.onnx.data"]
    assert validate_models(tiny_zoo, tmp_path / "out" / "m.vitc.onnx", samples=2).passed


def _bad_files(tmp_path, tiny_zoo):
    (tmp_path / "text.onnx").write_text("not a model")
    (tmp_path / "trunc.onnx").write_bytes(tiny_zoo.read_bytes()[:50000])
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", 1, [1, 4])],
                               [onnx.helper.make_tensor_value_info("y", 1, [1, 4])])
    onnx.save(onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)]), tmp_path / "relu.onnx")
    esc = tmp_path / "esc"
    esc.mkdir()
    onnx.save(onnx.load(tiny_zoo), esc / "m.onnx", save_as_external_data=True, location="m.data")
    m = onnx.load(esc / "m.onnx", load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../outside.data"
    onnx.save(m, esc / "escape.onnx")
    return {
        "missing": (["compile", str(tmp_path / "nope.onnx")], "not found"),
        "text": (["compile", str(tmp_path / "text.onnx")], "not a readable ONNX model"),
        "truncated": (["compile", str(tmp_path / "trunc.onnx")], "truncated"),
        "no-attention": (["compile", str(tmp_path / "relu.onnx")], "no attention found"),
        "escape": (["compile", str(esc / "escape.onnx")], "escapes the model folder"),
        "unknown-pass": (["compile", str(tiny_zoo), "--passes", "bogus"], "unknown pass 'bogus'"),
    }


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "no-attention", "escape", "unknown-pass"])
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, tiny_zoo, capsys):
    argv, expected = _bad_files(tmp_path, tiny_zoo)[case]
    out = tmp_path / "out"
    assert main(argv + ["--target", "none", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err
    assert not out.exists()


def test_validate_exit_1_beyond_tolerance(tiny_zoo, tmp_path, capsys):
    m = onnx.load(tiny_zoo)
    for t in m.graph.initializer:
        if t.name == "head.bias":
            arr = onnx.numpy_helper.to_array(t).copy() + 0.5
            t.CopyFrom(onnx.numpy_helper.from_array(arr, t.name))
    onnx.save(m, tmp_path / "shifted.onnx")
    assert main(["validate", str(tiny_zoo), str(tmp_path / "shifted.onnx"), "--samples", "2"]) == 1
    assert main(["validate", str(tiny_zoo), str(tiny_zoo), "--samples", "2", "--json"]) == 0
    assert '"passed": true' in capsys.readouterr().out


def test_inspect_model_and_outdir(tiny_zoo, tmp_path, capsys):
    assert main(["inspect", str(tiny_zoo)]) == 0
    text = capsys.readouterr().out
    assert "2 encoder blocks recognised" in text and "packed-split" in text and "q-and-k-runtime" in text
    compile_model(tiny_zoo, out=tmp_path, target="none")
    assert main(["inspect", str(tmp_path)]) == 0
    assert "2 encoder blocks recognised" in capsys.readouterr().out


def test_zoo_configs_and_errors():
    from vitc.compiler.zoo import build_vit
    m = build_vit("deit-small", img_size=32, patch=16, depth=1)
    shapes = {t.name: tuple(t.dims) for t in m.graph.initializer}
    assert shapes["blocks.0.attn.qkv.weight_T"] == (384, 1152)
    assert shapes["pos_embed"] == (1, 5, 384)
    with pytest.raises(VitcInputError):
        build_vit("deit-huge")
    with pytest.raises(VitcInputError):
        build_vit("deit-tiny", img_size=30, patch=16)


def test_python_api_mirrors_cli(tiny_zoo, tmp_path):
    import vitc
    res = vitc.compile(tiny_zoo, out=tmp_path, target="none")
    assert len(res.compiled.blocks) == 2
    v = vitc.validate(tiny_zoo, res.model, samples=2)
    assert v.passed and np.isclose(v.outputs[0].cosine_min, 1.0, atol=1e-6)


@pytest.mark.parametrize("argv", [
    ["--passes", "taylor", "--max-drop", "50"],
    ["--passes", "taylor,reorder", "--reorder-simplify", "--target", "systolic"],
    ["--passes", "reuse", "--reuse-plan", "auto", "--max-drop", "50"],
    ["--passes", "bilstm", "--bilstm-weights", "untrained", "--prune-ratio", "0.25"],
    ["--emit-sim", "--adc-bits", "4,6"],
], ids=["taylor", "taylor-reorder-systolic", "reuse-auto", "bilstm", "emit-sim"])
def test_every_pass_gives_byte_identical_outdirs(tiny_zoo, tmp_path, argv):
    """Same inputs and seed → the same bytes in every output file (wall times only on stdout)."""
    from vitc.cli import main
    for d in ("a", "b"):
        assert main(["compile", str(tiny_zoo), *argv, "-q", "-o", str(tmp_path / d)]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and "report.json" in names
    differ = [n for n in names if (tmp_path / "a" / n).read_bytes() != (tmp_path / "b" / n).read_bytes()]
    assert differ == []
    text = (tmp_path / "a" / "blocks.json").read_text()
    assert "seconds" not in text and "wall" not in text
