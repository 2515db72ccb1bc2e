"""Calibration / evaluation data loading: .npy, .npz, image folders, and one-line errors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from vitc.runtime.data import load_dataset
from vitc.cli import main
from vitc.core.errors import VitcInputError


@pytest.fixture()
def model(tiny_zoo):
    return onnx.load(tiny_zoo)


def test_npy_and_npz_forms(model, tmp_path):
    x = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "named.npz", input=x, labels=np.arange(5))
    np.savez(tmp_path / "single.npz", whatever=x.astype(np.float64))
    for name in ("x.npy", "named.npz", "single.npz"):
        ds = load_dataset(tmp_path / name, model)
        assert ds.size == 5 and ds.feeds["input"].dtype == np.float32
        assert np.allclose(ds.feeds["input"], x)
    assert list(load_dataset(tmp_path / "named.npz", model).labels) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("case,expected", [
    ("missing", "not found"), ("garbage", "cannot read"), ("wrong-shape", "axis 2 is 32"),
    ("wrong-names", "do not match model inputs"), ("label-count", "3 labels for 2 samples")])
def test_bad_calibration_files(model, tmp_path, case, expected):
    x = np.zeros((2, 3, 64, 64), np.float32)
    path = tmp_path / f"{case}.npz"
    if case == "garbage":
        path.write_bytes(b"PK\x03\x04 nonsense")
    elif case == "wrong-shape":
        np.savez(path, input=np.zeros((2, 3, 32, 32), np.float32))
    elif case == "wrong-names":
        np.savez(path, a=x, b=x)
    elif case == "label-count":
        np.savez(path, input=x, labels=np.arange(3))
    with pytest.raises(VitcInputError, match=expected):
        load_dataset(path, model)


def test_validate_with_bad_inputs_is_exit_2(tiny_zoo, tmp_path, capsys):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["validate", str(tiny_zoo), str(tiny_zoo), "--inputs", str(tmp_path / "bad.npz")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "bad.npz" in err


def test_image_folder_with_class_subfolders(model, tmp_path):
    pil = pytest.importorskip("PIL.Image")
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(2):
            pil.new("RGB", (80 + 10 * i, 70), colour).save(tmp_path / "imgs" / cls / f"{i}.png")
    ds = load_dataset(tmp_path / "imgs", model, preset="unit")
    assert ds.feeds["input"].shape == (4, 3, 64, 64) and list(ds.labels) == [0, 0, 1, 1]
    assert np.allclose(ds.feeds["input"][0, 0], 1.0) and np.allclose(ds.feeds["input"][3, 2], 1.0)
    imagenet = load_dataset(tmp_path / "imgs", model, preset="imagenet").feeds["input"]
    assert np.allclose(imagenet[0, 0], (1.0 - 0.485) / 0.229, atol=1e-5)
