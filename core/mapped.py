"""An ONNX file read with its large initializers memory-mapped, not parsed.

``onnx.load`` reads the whole file into one bytes object and parses it into a second copy of
every weight; converting a weight to numpy makes a third. :func:`map_model` instead walks the
protobuf wire format of the file (ModelProto → graph → initializer → raw_data), parses a
*light* model from everything except the large ``raw_data`` fields, and returns those fields as
read-only numpy arrays over a private (copy-on-write) memory map of the file: one copy of the
weights at most, paged in only where read, and the file is never written.

A light model's mapped initializers are placeholders (dims and type, ``data_location`` EXTERNAL,
location :data:`HELD_LOCATION`) — the same form the rest of vitc uses for weights held apart
from a proto (:mod:`vitc.compiler.emit`, :mod:`vitc.runtime.session`).

Any file the walk does not understand (external data, groups, duplicate fields, sizes that do
not add up) raises :class:`NotMappable`; the caller then reads it the ordinary way, so corrupt
files get the same one-line errors as before.
"""
from __future__ import annotations

import mmap
import os

import numpy as np
import onnx
from onnx import helper

#: location of a placeholder initializer whose data is held apart (mapped, or the input's proto)
HELD_LOCATION = "__vitc_held__"

#: initializers whose raw data is at least this large are mapped, smaller ones stay in the proto
MAP_MIN_BYTES = 4096

_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9


class NotMappable(Exception):
    """The file is not one :func:`map_model` reads (the caller falls back to ``onnx.load``)."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise NotMappable("bad varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _fields(buf, pos: int, end: int):
    """(field number, wire type, field start, payload start, field end) of each field in buf[pos:end]."""
    while pos < end:
        start = pos
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, pos = _varint(buf, pos, end)
            payload = pos
        elif wire == 1:
            payload, pos = pos, pos + 8
        elif wire == 2:
            n, payload = _varint(buf, pos, end)
            pos = payload + n
        elif wire == 5:
            payload, pos = pos, pos + 4
        else:
            raise NotMappable("group or unknown wire type")
        if pos > end or number == 0:
            raise NotMappable("field runs past its message")
        yield number, wire, start, payload, pos


def _strip_tensor(buf, start: int, end: int, min_bytes: int):
    """The TensorProto in buf[start:end] without a large raw_data field, and that field's
    (offset, length); (None, None) when it keeps its data."""
    raw = None
    kept = []
    for number, wire, fstart, payload, fend in _fields(buf, start, end):
        if number == _TENSOR_RAW_DATA and wire == 2:
            if raw is not None:
                raise NotMappable("raw_data given twice")
            raw = (payload, fend - payload)
        else:
            kept.append((fstart, fend))
    if raw is None or raw[1] < min_bytes:
        return None, None
    return b"".join(buf[a:b] for a, b in kept), raw


def map_model(path: str | os.PathLike, min_bytes: int = MAP_MIN_BYTES) -> tuple[onnx.ModelProto, dict]:
    """(light ModelProto, {initializer name: read-only array over the mapped file}) for the model
    file at ``path``; raises :class:`NotMappable` for a file this reader does not handle."""
    with open(path, "rb") as f:
        try:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        except (ValueError, OSError) as exc:      # empty file, special file
            raise NotMappable(str(exc)) from None
    buf = memoryview(mm)
    end = len(buf)
    pieces, raws = [], []          # raws: (initializer index, offset, length)
    graphs = 0
    for number, wire, fstart, payload, fend in _fields(buf, 0, end):
        if number != _MODEL_GRAPH or wire != 2:
            pieces.append(buf[fstart:fend])
            continue
        graphs += 1
        body, index = [], 0
        for g_number, g_wire, g_start, g_payload, g_end in _fields(buf, payload, fend):
            if g_number == _GRAPH_INITIALIZER and g_wire == 2:
                tensor, raw = _strip_tensor(buf, g_payload, g_end, min_bytes)
                if raw is not None:
                    body.append(b"\x2a" + encode_varint(len(tensor)) + tensor)
                    raws.append((index, *raw))
                else:
                    body.append(buf[g_start:g_end])
                index += 1
            else:
                body.append(buf[g_start:g_end])
        graph = b"".join(body)
        pieces.append(b"\x3a" + encode_varint(len(graph)) + graph)
    if graphs != 1:
        raise NotMappable("not exactly one graph")
    try:
        light = onnx.ModelProto.FromString(b"".join(pieces))
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise NotMappable(type(exc).__name__) from None
    weights = {}
    inits = light.graph.initializer
    for index, offset, length in raws:
        t = inits[index]
        try:
            dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type))
        except (KeyError, TypeError, ValueError):
            raise NotMappable("unknown element type") from None
        count = int(np.prod(t.dims, dtype=np.int64)) if t.dims else 1
        if dtype.kind not in "fiub" or dtype.itemsize * count != length or t.name in weights or \
                t.data_location == onnx.TensorProto.EXTERNAL or any(d < 0 for d in t.dims):
            raise NotMappable("raw data does not match its tensor")
        arr = np.frombuffer(mm, dtype=dtype.newbyteorder("<"), count=count, offset=offset).reshape(tuple(t.dims))
        arr.flags.writeable = False
        weights[t.name] = arr
        mark_held(t)
    return light, weights


def mark_held(t: onnx.TensorProto) -> None:
    """Make ``t`` a placeholder whose data is held apart (keeps name, type and dims)."""
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    del t.external_data[:]
    t.external_data.add(key="location", value=HELD_LOCATION)


def _header(arr: np.ndarray, name: str) -> bytes:
    head = onnx.TensorProto()
    head.name = name
    head.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
    head.dims.extend(arr.shape)
    return head.SerializeToString(deterministic=True)


def _name_field(name: str) -> int:
    n = len(name.encode())
    return 1 + len(encode_varint(n)) + n if n else 0


def tensor_size(value, name: str) -> int:
    """Length of :func:`tensor_chunks` ``(value, name)`` in bytes, without serialising."""
    if isinstance(value, onnx.TensorProto):
        return value.ByteSize() - _name_field(value.name) + _name_field(name)
    arr = np.asarray(value)
    return len(_header(arr, name)) + 1 + len(encode_varint(arr.nbytes)) + arr.nbytes


def placeholder(name: str, data_type: int, dims) -> onnx.TensorProto:
    """A data-less TensorProto standing for a weight held apart (:func:`mark_held`)."""
    t = onnx.TensorProto()
    t.name, t.data_type = name, data_type
    t.dims.extend(dims)
    mark_held(t)
    return t


def renamed(t: onnx.TensorProto, name: str) -> onnx.TensorProto:
    """A copy of ``t`` named ``name`` (``t`` itself when it already is)."""
    if t.name == name:
        return t
    out = onnx.TensorProto()
    out.CopyFrom(t)
    out.name = name
    return out


def tensor_chunks(value, name: str) -> list:
    """The serialised TensorProto named ``name`` holding ``value`` (a TensorProto or an array), as
    byte chunks — an array's data is not copied into a proto first."""
    if isinstance(value, onnx.TensorProto):
        return [renamed(value, name).SerializeToString(deterministic=True)]
    arr = np.ascontiguousarray(value)
    data = memoryview(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).cast("B")
    return [_header(arr, name), b"\x4a" + encode_varint(len(data)), data]
