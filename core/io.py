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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx import external_data_helper, helper

from vitc.core.errors import VitcInputError
from vitc.core.mapped import NotMappable, encode_varint, map_model, renamed, tensor_chunks, tensor_size

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
    """A checked model. With ``weights`` (``load_model(..., mapped=True)``), ``model`` is light:
    those initializers are placeholders and their data are read-only arrays over the mapped file."""
    model: onnx.ModelProto
    path: Path
    opset: int
    external_data: bool
    weights: dict = field(default_factory=dict)


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise VitcInputError("model imports no default-domain opset")


def _check_external_data(model: onnx.ModelProto, base: Path, mapped: dict) -> bool:
    """Validate every external-data reference against ``base``; True if any exist (``mapped``:
    names of placeholders whose data :func:`vitc.core.mapped.map_model` holds)."""
    found = False
    root = base.resolve()
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor) or tensor.name in mapped:
            continue
        found = True
        try:
            info = external_data_helper.ExternalDataInfo(tensor)
        except (ValueError, TypeError, KeyError) as exc:
            raise VitcInputError(f"external data entry of tensor '{tensor.name}' is malformed "
                                 f"({type(exc).__name__})") from None
        loc = info.location
        if not isinstance(loc, str) or not loc or "\x00" in loc:
            raise VitcInputError(f"external data location {loc!r} of tensor '{tensor.name}' is not a file name")
        try:
            target = (base / loc).resolve()
        except (OSError, ValueError, RuntimeError):
            raise VitcInputError(f"external data location {loc!r} of tensor '{tensor.name}' is not a file name") \
                from None
        if os.path.isabs(loc) or not target.is_relative_to(root):
            raise VitcInputError(f"external data path '{loc}' of tensor '{tensor.name}' escapes the model folder")
        if not target.is_file():
            raise VitcInputError(f"external data file '{loc}' of tensor '{tensor.name}' is missing")
        if (info.offset or 0) < 0 or (info.length or 0) < 0:
            raise VitcInputError(f"external data of tensor '{tensor.name}' has a negative offset or length")
        end = (info.offset or 0) + (info.length or 0)
        if end > target.stat().st_size:
            raise VitcInputError(f"external data file '{loc}' is truncated (tensor '{tensor.name}' needs {end} bytes)")
    return found


_TYPED_FIELD = {1: "float_data", 2: "int32_data", 3: "int32_data", 4: "int32_data", 5: "int32_data",
                6: "int32_data", 7: "int64_data", 9: "int32_data", 10: "int32_data", 11: "double_data",
                12: "uint64_data", 13: "uint64_data", 16: "int32_data"}


def check_initializers(model: onnx.ModelProto, label: str) -> None:
    """Every initializer has a known element type, sane dims, and exactly the data its dims need
    (cheap: sizes only, no conversion)."""
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            continue
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except (KeyError, TypeError, ValueError):
            raise VitcInputError(f"invalid ONNX model {label}: initializer '{t.name}' has an unknown element type "
                                 f"({t.data_type})") from None
        if any(d < 0 for d in t.dims):
            raise VitcInputError(f"invalid ONNX model {label}: initializer '{t.name}' has a negative dimension")
        n = int(np.prod(t.dims, dtype=np.float64)) if t.dims else 1
        if t.data_type == onnx.TensorProto.STRING:
            have = len(t.string_data)
        elif t.HasField("raw_data"):
            if len(t.raw_data) != n * itemsize and t.data_type not in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
                raise VitcInputError(f"invalid ONNX model {label}: initializer '{t.name}' holds {len(t.raw_data)} "
                                     f"bytes, its shape {list(t.dims)} needs {n * itemsize}")
            continue
        else:
            field = _TYPED_FIELD.get(t.data_type)
            have = len(getattr(t, field)) if field else n
            if t.data_type in (14, 15):      # complex: two values per element
                have //= 2
        if have != n:
            raise VitcInputError(f"invalid ONNX model {label}: initializer '{t.name}' holds {have} values, its "
                                 f"shape {list(t.dims)} needs {n}")


def _strings(model: onnx.ModelProto):
    """Every name and string field of ``model`` (graphs, sub-graphs, functions, metadata)."""
    def graph(g):
        yield g.name
        for n in g.node:
            yield from (n.name, n.op_type, n.domain, *n.input, *n.output)
            for a in n.attribute:
                yield from (a.name, a.ref_attr_name)
                if a.type == onnx.AttributeProto.STRING:
                    yield a.s
                yield from a.strings
                for t in ([a.t] if a.HasField("t") else []) + list(a.tensors):
                    yield t.name
                    yield from t.string_data
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from graph(a.g)
                for sub in a.graphs:
                    yield from graph(sub)
            for p in n.metadata_props:
                yield from (p.key, p.value)
        for t in g.initializer:
            yield t.name
            for e in t.external_data:
                yield from (e.key, e.value)
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            yield vi.name
            yield from (d.dim_param for d in vi.type.tensor_type.shape.dim)
    yield from (model.producer_name, model.producer_version, model.domain)
    for p in model.metadata_props:
        yield from (p.key, p.value)
    for o in model.opset_import:
        yield o.domain
    for f in model.functions:
        yield from (f.name, f.domain, f.overload, *f.input, *f.output, *f.attribute)
        for n in f.node:
            yield from (n.name, n.op_type, n.domain, *n.input, *n.output)
    yield from graph(model.graph)


def check_text(model: onnx.ModelProto, label: str) -> None:
    """Every name and string is valid UTF-8 (protobuf keeps undecodable bytes as surrogates; they
    would surface deep inside a later stage)."""
    try:
        for text in _strings(model):
            text.decode("utf-8") if isinstance(text, bytes) else text.encode("utf-8")
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise VitcInputError(f"invalid ONNX model {label}: a name or string is not valid UTF-8 (corrupt file?)") \
            from None


def check_structure(model: onnx.ModelProto, label: str) -> None:
    """The ONNX checker on a weight-less view of ``model`` (large initializers as shaped inputs), so
    a 350 MB model is never serialised for it; data sizes are :func:`check_initializers`'."""
    g = model.graph
    small, big = [], []
    for t in g.initializer:
        n = int(np.prod(t.dims, dtype=np.float64)) if t.dims else 1
        (small if n <= 4096 and t.data_location != onnx.TensorProto.EXTERNAL else big).append(t)
    view = onnx.ModelProto()
    view.ir_version, view.producer_name = model.ir_version, model.producer_name
    view.opset_import.extend(model.opset_import)
    view.functions.extend(model.functions)
    graph = view.graph
    graph.name = g.name
    graph.node.extend(g.node)
    graph.input.extend(g.input)
    present = {vi.name for vi in g.input}
    graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in big
                       if t.name not in present)
    graph.initializer.extend(small)
    graph.output.extend(g.output)
    graph.value_info.extend(g.value_info)
    graph.sparse_initializer.extend(g.sparse_initializer)
    try:
        onnx.checker.check_model(view, full_check=False)
    except (onnx.checker.ValidationError, ValueError, RuntimeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VitcInputError(f"invalid ONNX model {label}: {first[:300]}") from None


def load_model(path: str | os.PathLike, mapped: bool = False) -> LoadedModel:
    """Read and check the model at ``path`` (module docstring); never modifies the file.
    ``mapped``: large initializers are memory-mapped, not parsed (:mod:`vitc.core.mapped`; files
    with external data, or that the mapper does not read, are loaded the ordinary way)."""
    if "\x00" in os.fspath(path):
        raise VitcInputError("model path contains a NUL byte")
    p = Path(path)
    if not p.exists():
        raise VitcInputError(f"model file not found: {p}")
    if not p.is_file():
        raise VitcInputError(f"not a file: {p}")
    weights = {}
    try:
        model, weights = map_model(p) if mapped else (None, {})
    except NotMappable:
        model = None
    try:
        model = model or onnx.load(str(p), load_external_data=False)
    except MemoryError:
        raise VitcInputError(f"not a readable ONNX model (too large or corrupt): {p}") from None
    except Exception as exc:  # noqa: BLE001 - protobuf and onnx raise DecodeError, UnicodeDecodeError, ...
        raise VitcInputError(f"not a readable ONNX model (truncated or not ONNX): {p} ({type(exc).__name__})") from None
    if model.ir_version == 0 or not model.HasField("graph") or len(model.graph.node) == 0:
        raise VitcInputError(f"not an ONNX model (no graph found): {p}")
    check_text(model, p.name)
    external = _check_external_data(model, p.parent, weights)
    if external:
        try:
            onnx.load_external_data_for_model(model, str(p.parent))
        except Exception as exc:  # noqa: BLE001 - OSError, ValueError from onnx's reader
            raise VitcInputError(f"cannot read the external data of {p.name} ({type(exc).__name__})") from None
    opset = default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise VitcInputError(f"unsupported opset {opset} in {p.name} (vitc reads opsets {MIN_OPSET}-{MAX_OPSET})")
    check_initializers(model, p.name)
    check_structure(model, p.name)
    return LoadedModel(model, p, opset, external, weights)


def _with_held(light: onnx.ModelProto, held: dict) -> onnx.ModelProto:
    full = onnx.ModelProto()
    full.CopyFrom(light)
    for t in full.graph.initializer:
        if t.name in held:
            t.CopyFrom(as_tensor(held[t.name], t.name))
    return full


def as_tensor(value, name: str) -> onnx.TensorProto:
    """``value`` (a held TensorProto or array) as a TensorProto named ``name``."""
    if isinstance(value, onnx.TensorProto):
        return renamed(value, name)
    return numpy_helper.from_array(np.asarray(value), name)


class StreamedModel:
    """A model file written piece by piece: ``light`` (a ModelProto whose large initializers are
    placeholders) with each placeholder's data taken from ``weights`` (name → the TensorProto or
    array holding it), serialised one tensor at a time — no second copy of the weights and no
    whole-file bytes object. The file is the same protobuf message ``onnx.load`` reads (the
    initializers follow the graph's other fields)."""

    def __init__(self, light: onnx.ModelProto, weights: dict):
        self.light, self.weights = light, weights

    def write_to(self, f) -> None:
        head = onnx.ModelProto()
        head.CopyFrom(self.light)
        head.ClearField("graph")
        graph = onnx.GraphProto()
        for fd, value in self.light.graph.ListFields():     # every field but the initializers
            if fd.name != "initializer":
                if hasattr(value, "extend"):
                    getattr(graph, fd.name).extend(value)
                elif fd.message_type is not None:
                    getattr(graph, fd.name).CopyFrom(value)
                else:
                    setattr(graph, fd.name, value)
        g_bytes = graph.SerializeToString(deterministic=True)
        inits = self.light.graph.initializer
        sizes = [tensor_size(self.weights.get(t.name, t), t.name) for t in inits]
        g_len = len(g_bytes) + sum(1 + len(encode_varint(n)) + n for n in sizes)
        f.write(head.SerializeToString(deterministic=True))
        f.write(b"\x3a" + encode_varint(g_len))          # ModelProto.graph (field 7, length-delimited)
        f.write(g_bytes)
        for t, n in zip(inits, sizes):
            f.write(b"\x2a" + encode_varint(n))          # GraphProto.initializer (field 5)
            for c in tensor_chunks(self.weights.get(t.name, t), t.name):
                f.write(c)


def model_bytes(model: onnx.ModelProto, name: str, external: bool, held: dict | None = None) -> dict:
    """Files for ``model`` saved as ``name``: one file, or two with external data. ``held``: the
    data of ``model``'s placeholder initializers (a light model, :func:`vitc.compiler.emit.emit_light`),
    streamed into the file."""
    total = model.ByteSize() + sum(v.ByteSize() if isinstance(v, onnx.TensorProto) else v.nbytes
                                   for v in (held or {}).values())
    if not external and total < _TWO_GB - (64 << 20):
        return {name: StreamedModel(model, held)} if held else {name: model.SerializeToString(deterministic=True)}
    if held:
        model = _with_held(model, held)
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


def write_outputs(outdir: str | os.PathLike, files: dict, manifest: bool = True) -> list[Path]:
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
            if hasattr(data, "write_to"):
                with open(tmp / name, "wb") as f:
                    data.write_to(f)
            else:
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
