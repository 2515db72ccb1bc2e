"""Loading and saving ONNX models safely.

``load_model`` rejects, with one clear message each: a missing path, a file that is not ONNX,
a truncated file, external data that points outside the model's folder or is missing, a
model the ONNX checker refuses, and opsets outside 14–23. It never modifies the input.
Shapes are not inferred here (:mod:`vitc.runtime.shapes` does that).
``write_outputs`` writes a set of files atomically (temp files, then renames).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, helper

from vitc.core.errors import VitcInputError

MIN_OPSET, MAX_OPSET = 14, 23
_TWO_GB = 2**31 - 1


def approx_size(model: onnx.ModelProto) -> int:
    """Serialised size estimate in bytes from initializer shapes (``ByteSize`` costs ~0.4 s at 300 MB)."""
    total = 1 << 20
    for t in model.graph.initializer:
        itemsize = helper.tensor_dtype_to_np_dtype(t.data_type).itemsize if t.data_type else 4
        total += int(np.prod(t.dims, dtype=np.int64)) * itemsize
    return total


def fits_in_protobuf(model: onnx.ModelProto) -> bool:
    """True if ``model`` can be serialised as one protobuf (< 2 GB), with a safety margin."""
    return approx_size(model) < _TWO_GB - (64 << 20)


@dataclass
class LoadedModel:
    model: onnx.ModelProto
    path: Path
    opset: int
    external_data: bool


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise VitcInputError("model imports no default-domain opset")


def _check_external_data(model: onnx.ModelProto, base: Path) -> bool:
    """Validate every external-data reference against ``base``; True if any exist."""
    found = False
    root = base.resolve()
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        found = True
        info = external_data_helper.ExternalDataInfo(tensor)
        loc = info.location
        target = (base / loc).resolve()
        if os.path.isabs(loc) or not target.is_relative_to(root):
            raise VitcInputError(f"external data path '{loc}' of tensor '{tensor.name}' escapes the model folder")
        if not target.is_file():
            raise VitcInputError(f"external data file '{loc}' of tensor '{tensor.name}' is missing")
        end = (info.offset or 0) + (info.length or 0)
        if end > target.stat().st_size:
            raise VitcInputError(f"external data file '{loc}' is truncated (tensor '{tensor.name}' needs {end} bytes)")
    return found


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Read, check and shape-infer the model at ``path``."""
    p = Path(path)
    if not p.exists():
        raise VitcInputError(f"model file not found: {p}")
    if not p.is_file():
        raise VitcInputError(f"not a file: {p}")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, OSError) as exc:
        raise VitcInputError(f"not a readable ONNX model (truncated or not ONNX): {p} ({type(exc).__name__})") from None
    if model.ir_version == 0 or not model.HasField("graph") or len(model.graph.node) == 0:
        raise VitcInputError(f"not an ONNX model (no graph found): {p}")
    external = _check_external_data(model, p.parent)
    if external:
        onnx.load_external_data_for_model(model, str(p.parent))
    opset = default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise VitcInputError(f"unsupported opset {opset} in {p.name} (vitc reads opsets {MIN_OPSET}-{MAX_OPSET})")
    try:
        if fits_in_protobuf(model):
            onnx.checker.check_model(model)
        else:
            onnx.checker.check_model(str(p))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VitcInputError(f"invalid ONNX model {p.name}: {first}") from None
    return LoadedModel(model, p, opset, external)


def model_bytes(model: onnx.ModelProto, name: str, external: bool) -> dict[str, bytes]:
    """Serialised files for ``model`` saved as ``name``: one file, or two with external data."""
    if not external and fits_in_protobuf(model):
        return {name: model.SerializeToString(deterministic=True)}
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # onnx.save with external data rewrites the tensors it is given
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(copy, os.path.join(tmp, name), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=name + ".data", size_threshold=1024)
        return {f: Path(tmp, f).read_bytes() for f in sorted(os.listdir(tmp))}


MANIFEST = ".vitc-outputs"       # names of the files the last run wrote into an output folder
_TMP_PREFIX = ".vitc-tmp-"


def check_outdir(outdir: str | os.PathLike) -> Path:
    """Check (before any work, creating nothing) that ``outdir`` is a writable folder or can be made one."""
    out = Path(outdir)
    if "\x00" in str(outdir) or not str(outdir).strip():
        raise VitcInputError(f"bad output folder name {str(outdir)!r}")
    if out.exists():
        if not out.is_dir():
            raise VitcInputError(f"output path {out} exists and is not a folder")
        if not os.access(out, os.W_OK | os.X_OK):
            raise VitcInputError(f"output folder {out} is not writable")
        return out
    parent = out.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise VitcInputError(f"cannot create output folder {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise VitcInputError(f"cannot create output folder {out}: {parent} is not writable")
    return out


def prepare_outdir(outdir: str | os.PathLike) -> Path:
    """Check (before any work) that ``outdir`` is, or can be made, a writable folder; creates it."""
    out = Path(outdir)
    if "\x00" in str(outdir):
        raise VitcInputError("output folder name contains a NUL byte")
    if out.exists() and not out.is_dir():
        raise VitcInputError(f"output path {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VitcInputError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise VitcInputError(f"output folder {out} is not writable")
    return out


def write_outputs(outdir: str | os.PathLike, files: dict[str, bytes], manifest: bool = True) -> list[Path]:
    """Write ``files`` into ``outdir`` atomically: every file goes to a private temp folder first,
    then all are renamed into place. With ``manifest``, files an earlier run wrote into the same
    folder and this one does not are removed (the folder then holds exactly this run's output),
    and temp folders a killed run left behind are cleared. Other files are never touched."""
    out = prepare_outdir(outdir)
    for stale in out.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    previous = _read_manifest(out) if manifest else []
    umask = os.umask(0)
    os.umask(umask)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=out))
    try:
        for name, data in files.items():
            if "/" in name or "\\" in name or name in ("", ".", "..", MANIFEST):
                raise VitcInputError(f"refusing to write output file named {name!r}")
            (tmp / name).write_bytes(data)
            os.chmod(tmp / name, 0o666 & ~umask)
        if manifest:
            (tmp / MANIFEST).write_text("".join(f"{n}\n" for n in sorted(files)))
        written = []
        for name in files:
            os.replace(tmp / name, out / name)
            written.append(out / name)
        for name in previous:
            if name not in files and (out / name).is_file() and not (out / name).is_symlink():
                (out / name).unlink()
        if manifest:
            os.replace(tmp / MANIFEST, out / MANIFEST)
        return written
    except OSError as exc:
        raise VitcInputError(f"cannot write to {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_manifest(out: Path) -> list[str]:
    try:
        names = (out / MANIFEST).read_text().split()
    except (OSError, UnicodeDecodeError):
        return []
    return [n for n in names if "/" not in n and "\\" not in n and n not in (".", "..")]
