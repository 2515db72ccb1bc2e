"""Bad input, as a user brings it: a seeded fuzz suite generated at test time from a tiny model.

Every case runs the real command line (``vitc.cli.main``) and must end with exit status 2 (1
for a validation that ran and failed), exactly one line on stderr starting with ``vitc:``, no
traceback and no "internal error", nothing written, and the input files unchanged. Byte flips
that happen to leave a valid model may compile (exit 0) — then the flipped file must really
be valid: the ONNX checker accepts it and onnxruntime runs it to finite outputs.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from vitc.cli import main
from vitc.compiler.zoo import build_vit
from vitc.core.io import model_bytes, write_outputs

SEED = 20261129
N_TRUNCATIONS = 40
N_FLIPS = 120


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    write_outputs(d, model_bytes(build_vit("deit-tiny", img_size=32, patch=16, depth=1), "m.onnx", False),
                  manifest=False)
    return d / "m.onnx"


def _digest(paths) -> dict:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths if p.is_file()}


def run_cli(argv: list[str], inputs: list[Path], out: Path | None) -> tuple[int, str, str]:
    """Run the CLI in-process; check the invariants every bad-input case shares."""
    before = _digest(inputs)
    existed = out is not None and out.exists()
    listing = sorted(os.listdir(out)) if existed and out.is_dir() else None
    err, std = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(std):
        rc = main(argv)
    e = err.getvalue()
    assert "Traceback" not in e and "internal error" not in e, e
    assert _digest(inputs) == before, "an input file was modified"
    if rc != 0 and out is not None:
        if existed:
            assert (sorted(os.listdir(out)) if out.is_dir() else None) == listing, "output folder changed"
        else:
            assert not out.exists(), "output written although the run failed"
    return rc, e, std.getvalue()


def assert_refused(rc: int, err: str, code: int = 2, where: str = "") -> None:
    assert rc == code, f"{where}: exit {rc}, expected {code}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitc:"), f"{where}: {err}"


def really_valid(path: Path) -> bool:
    """The file is a model the checker accepts and onnxruntime runs to finite outputs."""
    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
        return all(np.isfinite(o).all() for o in sess.run(None, {sess.get_inputs()[0].name: x}))
    except Exception:  # noqa: BLE001 - anything that fails means "not valid"
        return False


# --------------------------------------------------------------------------- corrupted files
def _file_cases(raw: bytes):
    rng = np.random.default_rng(SEED)
    yield "empty", b""
    yield "text", b"this is not an onnx model\n" * 8
    yield "zeros", bytes(4096)
    yield "png-header", b"\x89PNG\r\n\x1a\n" + bytes(rng.integers(0, 256, 200, dtype=np.uint8))
    for k in range(6):
        yield f"random-{k}", bytes(rng.integers(0, 256, int(rng.integers(16, 20000)), dtype=np.uint8))
    for k, cut in enumerate(np.unique(np.linspace(1, len(raw) - 1, N_TRUNCATIONS).astype(int))):
        yield f"truncated-{k}-at-{cut}", raw[:cut]
    head = min(len(raw), 4000)        # structure lives in the first bytes; weights fill the rest
    for k in range(N_FLIPS):
        data = bytearray(raw)
        n = int(rng.integers(1, 4))
        where = rng.integers(0, head if k % 2 == 0 else len(raw), n)
        for w in where:
            data[w] ^= int(rng.integers(1, 256))
        yield f"flip-{k}", bytes(data)


def test_corrupted_model_files(base, tmp_path):
    raw = base.read_bytes()
    counts = {"refused": 0, "valid": 0}
    for name, data in _file_cases(raw):
        p = tmp_path / f"{name}.onnx"
        p.write_bytes(data)
        out = tmp_path / f"out-{name}"
        rc, err, _ = run_cli(["compile", str(p), "--target", "none", "-o", str(out)], [p], out)
        if rc == 0:
            assert name.startswith("flip-") and really_valid(p), f"{name}: accepted an invalid model"
            counts["valid"] += 1
        else:
            assert_refused(rc, err, where=name)
            counts["refused"] += 1
    assert counts["refused"] >= 100 and counts["refused"] + counts["valid"] == 170


# --------------------------------------------------------------------------- invalid graphs
def _edited(base: Path):
    """(name, model) pairs: valid protobuf, invalid or unusable ONNX."""
    m0 = onnx.load(str(base))

    def copy():
        m = onnx.ModelProto()
        m.CopyFrom(m0)
        return m

    m = copy(); m.opset_import[0].version = 13; yield "opset-13", m                            # noqa: E702
    m = copy(); m.opset_import[0].version = 24; yield "opset-24", m                            # noqa: E702
    m = copy(); del m.opset_import[:]; yield "no-opset", m                                     # noqa: E702
    m = copy(); m.ir_version = 0; yield "ir-0", m                                              # noqa: E702
    m = copy(); del m.graph.node[:]; yield "no-nodes", m                                       # noqa: E702
    m = copy(); m.graph.node[3].input[0] = "undefined_tensor"; yield "dangling-input", m       # noqa: E702
    m = copy(); m.graph.node[4].output[0] = m.graph.node[3].output[0]; yield "ssa-violation", m  # noqa: E702
    m = copy(); m.graph.node[2].op_type = "NoSuchOp"; yield "unknown-op", m                    # noqa: E702
    m = copy(); m.graph.node[2].domain = "com.example"; yield "unknown-domain", m              # noqa: E702
    m = copy(); m.graph.input[0].type.tensor_type.elem_type = 0; yield "input-elem-type-0", m  # noqa: E702
    m = copy(); m.graph.input[0].type.tensor_type.elem_type = 8; yield "input-string", m       # noqa: E702
    big = max(m0.graph.initializer, key=lambda t: len(t.raw_data))
    m = copy(); t = next(x for x in m.graph.initializer if x.name == big.name)                 # noqa: E702
    t.raw_data = t.raw_data[:-4]; yield "short-initializer", m                                 # noqa: E702
    for label, value in (("nan", np.nan), ("inf", np.inf)):
        m = copy(); t = next(x for x in m.graph.initializer if x.name == big.name)             # noqa: E702
        arr = numpy_helper.to_array(t).copy(); arr.flat[::7] = value                           # noqa: E702
        t.CopyFrom(numpy_helper.from_array(arr, t.name)); yield f"{label}-weights", m          # noqa: E702
    m = copy(); m.graph.node[1].input[0] = m.graph.node[5].output[0]; yield "cycle", m          # noqa: E702
    m = copy()
    dim = m.graph.input[0].type.tensor_type.shape.dim
    dim[2].dim_value, dim[3].dim_value = 1 << 20, 1 << 20
    yield "absurd-input-shape", m
    # an MLP, no attention at all
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    w = numpy_helper.from_array(np.ones((8, 4), np.float32), "w")
    mlp = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mlp", [x], [y], [w]),
                            opset_imports=[helper.make_opsetid("", 17)])
    mlp.ir_version = 8
    yield "no-attention", mlp


def test_invalid_graphs(base, tmp_path):
    n = 0
    for name, model in _edited(base):
        p = tmp_path / f"{name}.onnx"
        p.write_bytes(model.SerializeToString())
        for extra in (["--target", "none"], ["--target", "xbar"]):
            out = tmp_path / f"out-{name}-{extra[1]}"
            rc, err, _ = run_cli(["compile", str(p), *extra, "-o", str(out)], [p], out)
            assert_refused(rc, err, where=f"{name} {extra}")
            n += 1
    assert n >= 34


def test_external_data_escapes_and_breakage(base, tmp_path):
    m = onnx.load(str(base))
    big = max(m.graph.initializer, key=lambda t: len(t.raw_data)).name
    d = tmp_path / "m"
    d.mkdir()
    (d / "w.bin").write_bytes(bytes(10))
    (tmp_path / "outside.bin").write_bytes(bytes(1 << 20))
    cases = {"escape-dotdot": "../outside.bin", "absolute": str(tmp_path / "outside.bin"), "missing": "nope.bin",
             "truncated": "w.bin", "nul-byte": "w\x00.bin", "folder": "."}
    n = 0
    for name, loc in cases.items():
        mm = onnx.ModelProto()
        mm.CopyFrom(m)
        t = next(x for x in mm.graph.initializer if x.name == big)
        length = len(t.raw_data)
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", loc), ("offset", "0"), ("length", str(length))):
            t.external_data.add(key=k, value=v)
        p = d / f"{name}.onnx"
        p.write_bytes(mm.SerializeToString())
        out = tmp_path / f"out-{name}"
        rc, err, _ = run_cli(["compile", str(p), "--target", "none", "-o", str(out)],
                             [p, d / "w.bin", tmp_path / "outside.bin"], out)
        assert_refused(rc, err, where=name)
        n += 1
    assert n == len(cases)


# --------------------------------------------------------------------------- bad options and data
def _data_files(tmp: Path) -> dict[str, Path]:
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    files = {}
    for name, arr in (("nan", np.where(rng.random(x.shape) < 0.01, np.nan, x)), ("inf", np.full_like(x, np.inf)),
                      ("wrong-shape", x[:, :, :16]), ("wrong-rank", x[0]), ("empty", x[:0])):
        files[name] = tmp / f"{name}.npz"
        np.savez(files[name], input=arr.astype(np.float32))
    files["object"] = tmp / "object.npy"
    np.save(files["object"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    files["text"] = tmp / "text.npz"
    files["text"].write_text("not numpy")
    files["strings"] = tmp / "strings.npz"
    np.savez(files["strings"], input=np.array(["a", "b"]))
    files["bad-labels"] = tmp / "bad-labels.npz"
    np.savez(files["bad-labels"], input=x, labels=np.array([0.5, 1, 2, 3]))
    files["missing"] = tmp / "missing.npz"
    return files


def _hw_files(tmp: Path) -> dict[str, Path]:
    files = {}
    head = '[meta]\nbase = "rram-128"\nname = "x"\nkind = "xbar"\ndescription = "x"\n'
    for name, body in (("inf", "[adc]\nenergy_pj = inf\n"), ("nan", "[adc]\nenergy_pj = nan\n"),
                       ("adc-64", "[crossbar]\nadc_bits = 64\n"), ("rows-2e40", "[crossbar]\nrows = 1099511627776\n"),
                       ("unknown-field", "[crossbar]\nrowz = 3\n"), ("negative", "[crossbar]\ncols = -1\n"),
                       ("string", '[adc]\nenergy_pj = "big"\n'), ("section", "[gpu]\ncores = 1\n"),
                       ("bad-toml", "[crossbar\nrows = 1\n")):
        files[name] = tmp / f"hw-{name}.toml"
        files[name].write_text(head + body)
    files["binary"] = tmp / "hw-binary.toml"
    files["binary"].write_bytes(bytes(np.random.default_rng(SEED).integers(0, 256, 300, dtype=np.uint8)))
    files["cycle"] = tmp / "hw-cycle.toml"
    files["cycle"].write_text('base = "hw-cycle.toml"\n[meta]\nname = "c"\nkind = "xbar"\ndescription = "c"\n')
    files["empty"] = tmp / "hw-empty.toml"
    files["empty"].write_text("")
    return files


def _option_cases(model: Path, tmp: Path):
    data = _data_files(tmp)
    hw = _hw_files(tmp)
    c = ["compile", str(model)]
    for v in ("0", "-2", "x"):
        yield f"batch {v}", c + ["--batch", v]
    yield "seq-len 0", c + ["--seq-len", "0"]
    yield "calib-samples 0", c + ["--passes", "taylor", "--calib-samples", "0"]
    yield "seed -1", c + ["--seed", "-1"]
    for name, p in data.items():
        yield f"calib {name}", c + ["--passes", "taylor", "--calib", str(p)]
    for v in ("typo:1x3x32x32", "input:1x3x32", "input:1x3x0x32", "input:abc", "input", ":1x3",
              "input:1x3x99999x99999", "input:1x3x64x64", "input:1x4x32x32"):
        yield f"input-shape {v}", c + ["--input-shape", v]
    for v in ("", ",", "none,taylor", "taylor,taylor", "reorder,taylor", "bogus", "taylor,,reorder"):
        yield f"passes {v!r}", c + ["--passes", v]
    for v in ("3-1", "x", "9", "", "0,,1", "-7"):
        yield f"taylor-layers {v!r}", c + ["--passes", "taylor", "--taylor-layers", v]
    for flag, v in (("--max-drop", "-5"), ("--max-drop", "nan"), ("--max-drop", "inf"), ("--cos-floor", "2"),
                    ("--taylor-ridge", "0"), ("--taylor-tokens", "0"), ("--taylor-variant", "fast")):
        yield f"{flag} {v}", c + ["--passes", "taylor", flag, v]
    for flag, v in (("--reuse-plan", "0"), ("--reuse-plan", "a,b"), ("--reuse-plan", "5"), ("--reuse-plan", "1:3"),
                    ("--tb-rank", "0"), ("--tb-weights", str(tmp / "none.npz")), ("--max-latency", "-1"),
                    ("--max-latency", "fast"), ("--reuse-beam", "0")):
        yield f"reuse {flag} {v}", c + ["--passes", "reuse", flag, v]
    for flag, v in (("--prune-ratio", "1.5"), ("--bilstm-weights", str(tmp / "none.npz")), ("--lr", "0"),
                    ("--bilstm-blocks", "2-0"), ("--epochs", "0")):
        yield f"bilstm {flag} {v}", c + ["--passes", "bilstm", flag, v]
    for name, p in hw.items():
        yield f"hw {name}", c + ["--hw", str(p)]
    for v in ("no-such-chip", "", "rram-128+rram-64", "+vitality", "vitality"):
        yield f"hw {v!r}", c + ["--hw", v]
    yield "target systolic hw rram-128", c + ["--target", "systolic", "--hw", "rram-128"]
    yield "target bogus", c + ["--target", "bogus"]
    for v in ("99", "x", "-1", "4,,6"):
        yield f"adc-bits {v}", c + ["--emit-sim", "--adc-bits", v]
    yield "sim variation -1", c + ["--emit-sim", "--variation", "-1"]
    yield "output is a file", c + ["-o", str(model)]
    yield "output under a file", c + ["-o", str(model / "sub")]
    yield "config missing", c + ["--config", str(tmp / "nope.toml")]
    bad_cfg = tmp / "bad.toml"
    bad_cfg.write_text("[gpu]\nx = 1\n")
    yield "config unknown section", c + ["--config", str(bad_cfg)]
    bad_cfg2 = tmp / "bad2.toml"
    bad_cfg2.write_text("[passes.taylor]\nmax_drop = -1\n[compile]\npasses = \"taylor\"\n")
    yield "config bad pass option", c + ["--config", str(bad_cfg2)]
    yield "unknown flag", c + ["--frobnicate"]
    yield "missing model", ["compile", str(tmp / "absent.onnx")]
    yield "model is a folder", ["compile", str(tmp)]
    yield "nul in path", ["compile", str(model) + "\x00x"]
    s = ["simulate", str(model)]
    yield "simulate labels without inputs", s + ["--labels"]
    yield "simulate hw systolic", s + ["--hw", "vitality"]
    yield "simulate adc 30", s + ["--adc-bits", "30"]
    yield "simulate bad folder", ["simulate", str(tmp)]
    yield "simulate samples 0", s + ["--samples", "0"]
    yield "validate missing candidate", ["validate", str(model), str(tmp / "absent.onnx")]
    yield "validate nan inputs", ["validate", str(model), str(model), "--inputs", str(data["nan"])]
    yield "validate labels without labels", ["validate", str(model), str(model), "--labels"]
    yield "inspect bogus folder", ["inspect", str(tmp)]
    yield "inspect not onnx", ["inspect", str(data["text"])]
    yield "hw show bogus", ["hw", "show", "bogus"]
    yield "hw show binary", ["hw", "show", str(hw["binary"])]
    yield "zoo bad depth", ["zoo", "deit-tiny", "-o", str(tmp / "z.onnx"), "--depth", "0"]


def test_bad_options_and_data(base, tmp_path):
    n = 0
    for name, argv in _option_cases(base, tmp_path):
        out = tmp_path / f"out-{n}"
        if argv[0] in ("compile", "simulate") and "-o" not in argv:
            argv = argv + ["-o", str(out)]
        inputs = [base] + [Path(a) for a in argv[1:] if Path(a).is_file()]
        rc, err, _ = run_cli(argv, inputs, out if "-o" in argv and argv[argv.index("-o") + 1] == str(out) else None)
        assert_refused(rc, err, where=name)
        n += 1
    assert n >= 100


def test_fuzz_suite_size(base, tmp_path):
    """The suite above runs well over 300 corrupted inputs (counted, not timed)."""
    files = sum(1 for _ in _file_cases(base.read_bytes()))
    graphs = 2 * sum(1 for _ in _edited(base))
    options = sum(1 for _ in _option_cases(base, tmp_path))
    assert files + graphs + options + 6 >= 300


# --------------------------------------------------------------------------- what must work
def test_nan_candidate_fails_validation(base, tmp_path):
    m = onnx.load(str(base))
    big = max(m.graph.initializer, key=lambda t: len(t.raw_data))
    arr = numpy_helper.to_array(big).copy()
    arr[:] = np.nan
    big.CopyFrom(numpy_helper.from_array(arr, big.name))
    p = tmp_path / "nan.onnx"
    p.write_bytes(m.SerializeToString())
    rc, err, out = run_cli(["validate", str(base), str(p), "--json"], [base, p], None)
    assert_refused(rc, err, code=1)
    res = json.loads(out)
    assert res["passed"] is False and res["outputs"][0]["cosine_mean"] is None or \
        np.isnan(res["outputs"][0]["cosine_mean"])


def test_broken_pipe_is_quiet(base, monkeypatch, capsys):
    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError

    monkeypatch.setattr("sys.stdout", Closed())
    assert main(["hw", "list"]) == 0
    assert "internal error" not in capsys.readouterr().err


def test_reused_output_folder_holds_only_this_run(base, tmp_path):
    out = tmp_path / "o"
    assert main(["compile", str(base), "--passes", "taylor", "-q", "-o", str(out)]) == 0
    (out / "notes.txt").write_text("mine")                           # a user's file stays
    (out / ".vitc-tmp-killed").mkdir()                               # a killed run's temp folder goes
    assert main(["compile", str(base), "--target", "none", "-q", "-o", str(out)]) == 0
    assert sorted(os.listdir(out)) == [".vitc-outputs", "blocks.json", "m.vitc.onnx", "notes.txt"]
