"""Inputs and weights of a model's static-weight MVMs, from one onnxruntime run.

Every ``Conv`` (dense) and every ``MatMul``/``Gemm`` with a constant weight, with the input vectors
it sees for one sample (a convolution's as im2col rows, channel-major like NeuroSim's
``stretch_input``), and the quantisers of DNN+NeuroSim's wrapper. Used by ``vitc export neurosim``
(trace files) and by the crossbar cost model's data-dependent read energy
(:mod:`vitc.backends.xbar_activity`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from vitc.core.errors import VitcInputError
from vitc.runtime.data import Dataset
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.session import run_with_intermediates


@dataclass
class TraceLayer:
    """One NeuroSim layer: the ONNX node it comes from and its network-CSV row."""
    node: str
    op: str
    weight_name: str
    row: tuple[int, int, int, int, int, int, int, int]   # IFM H, IFM W, C_in, kH, kW, C_out, pool, stride
    weight: np.ndarray = field(repr=False)                # [K, N] in [-1, 1]
    inputs: np.ndarray = field(repr=False)                # [vectors, K]
    note: str = ""


def _const(model: onnx.ModelProto, held: dict | None = None) -> dict[str, np.ndarray]:
    """Constant tensors; ``held``: the data of placeholders held apart ({name: TensorProto or array})."""
    held = held or {}

    def value(t):
        h = held.get(t.name, t)
        return numpy_helper.to_array(h) if isinstance(h, onnx.TensorProto) else np.asarray(h)
    out = {t.name: value(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            out[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return out


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _derived_from_constants(model: onnx.ModelProto, consts: dict) -> set[str]:
    """Tensors computed only from constants (e.g. int8 weights behind DequantizeLinear)."""
    known = set(consts)
    for n in model.graph.node:
        if n.input and all(i in known or not i for i in n.input):
            known.update(o for o in n.output if o)
    return known


def find_layers(model: onnx.ModelProto, consts: dict | None = None) -> tuple[list[onnx.NodeProto], list[dict]]:
    """Static-weight MVM nodes NeuroSim can take, and the ones it cannot (with the reason)."""
    consts = _const(model) if consts is None else consts
    static = _derived_from_constants(model, consts)
    take, skipped = [], []
    for n in model.graph.node:
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in static:
            if _attr(n, "group", 1) != 1:
                skipped.append({"node": n.name, "op": n.op_type, "reason": "grouped/depthwise convolution "
                                "(NeuroSim maps dense convolutions only)"})
            else:
                take.append(n)
        elif n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in static \
                and n.input[0] not in static:
            take.append(n)
        elif n.op_type == "MatMul" and all(i not in static for i in n.input[:2]):
            skipped.append({"node": n.name, "op": n.op_type, "reason": "activation×activation product (no fixed "
                            "weights: not a NeuroSim layer)"})
    return take, skipped


def _im2col(x: np.ndarray, kh: int, kw: int, pads, strides, dil) -> np.ndarray:
    """x [C, H, W] → [positions, C·kh·kw] (channel-major, like NeuroSim's stretch_input)."""
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    oh = (h + pads[0] + pads[2] - dil[0] * (kh - 1) - 1) // strides[0] + 1
    ow = (w + pads[1] + pads[3] - dil[1] * (kw - 1) - 1) // strides[1] + 1
    cols = np.empty((oh * ow, c, kh, kw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dil[0]: i * dil[0] + strides[0] * oh: strides[0],
                       j * dil[1]: j * dil[1] + strides[1] * ow: strides[1]]
            cols[:, :, i, j] = patch.reshape(c, -1).T
    return cols.reshape(oh * ow, -1)


POOLING_OPS = ("MaxPool", "AveragePool")
TO_POOLING_OPS = ("Relu", "Add", "BatchNormalization", "Clip", "Identity")


def reaches_pooling(out: str, consumers: dict[str, list[tuple[str, str | None]]]) -> bool:
    """Whether tensor ``out`` flows into a pooling op through at most three single-consumer
    activations, bias adds or normalisations (NeuroSim's network-file column "max pool after").
    ``consumers``: tensor → (op type, first output) of every op that reads it."""
    t = out
    for _ in range(4):
        nxt = consumers.get(t, [])
        if len(nxt) != 1:
            return False
        op_type, first = nxt[0]
        if op_type in POOLING_OPS:
            return True
        if op_type not in TO_POOLING_OPS or first is None:
            return False
        t = first
    return False


def consumer_map(ops) -> dict[str, list[tuple[str, str | None]]]:
    """The ``consumers`` argument of :func:`reaches_pooling` from ``(op type, inputs, outputs)``
    of every op (ONNX nodes or the backend's prepared ops)."""
    consumers: dict[str, list] = {}
    for op_type, inputs, outputs in ops:
        for i in inputs:
            consumers.setdefault(i, []).append((op_type, outputs[0] if outputs else None))
    return consumers


def trace_layers(model: onnx.ModelProto, data: Dataset | None = None, seed: int = 0,
                 input_shapes: dict | None = None, held: dict | None = None) -> tuple[list[TraceLayer], list[dict]]:
    """The NeuroSim layers of ``model`` with their weights and the inputs of one sample (``held``:
    the data of weights held apart from ``model``, as :func:`vitc.compiler.emit.emit_light` returns)."""
    consts = _const(model, held)
    nodes, skipped = find_layers(model, consts)
    if not nodes:
        raise VitcInputError("the model has no static-weight MatMul/Gemm/Conv for NeuroSim")
    feeds = ({k: v[:1] for k, v in data.feeds.items()} if data is not None else
             synthetic_inputs(model, batch=1, seed=seed, shapes=input_shapes))
    wanted = sorted({n.input[0] for n in nodes} | {n.input[1] for n in nodes if n.input[1] not in consts})
    values = run_with_intermediates(model, wanted, feeds, held)
    layers = []
    consumers = consumer_map((n.op_type, n.input, n.output) for n in model.graph.node)
    for n in nodes:
        w = consts.get(n.input[1])
        w = np.asarray(values[n.input[1]] if w is None else w, np.float64)
        x = np.asarray(values[n.input[0]], np.float64)
        if n.op_type == "Conv":
            cout, cin, kh, kw = w.shape
            strides = list(_attr(n, "strides", [1, 1]))
            pads = list(_attr(n, "pads", [0, 0, 0, 0]))
            dil = list(_attr(n, "dilations", [1, 1]))
            if _attr(n, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                skipped.append({"node": n.name, "op": "Conv", "reason": "auto_pad convolution not exported"})
                continue
            inputs = _im2col(x[0], kh, kw, pads, strides, dil)
            row = (x.shape[2], x.shape[3], cin, kh, kw, cout, int(reaches_pooling(n.output[0], consumers)), strides[0])
            wm = w.reshape(cout, -1).T
        else:
            if n.op_type == "Gemm" and _attr(n, "transB", 0):
                w = w.T
            if n.op_type == "Gemm" and _attr(n, "transA", 0):
                x = x.T
            if w.ndim != 2:
                skipped.append({"node": n.name, "op": n.op_type, "reason": f"batched weight of rank {w.ndim}"})
                continue
            inputs = x.reshape(-1, x.shape[-1])
            if x.ndim >= 3:                     # [B, T, K]: the first sample's T vectors
                inputs = x.reshape(x.shape[0], -1, x.shape[-1])[0]
            k, nout = w.shape
            row = (inputs.shape[0], 1, k, 1, 1, nout, 0, 1)
            wm = w
        scale = float(np.abs(wm).max()) or 1.0
        layers.append(TraceLayer(n.name, n.op_type, n.input[1], tuple(int(v) for v in row), wm / scale, inputs))
    return layers, skipped


def quantise_weights(w: np.ndarray, bits: int) -> np.ndarray:
    """NeuroSim's wrapper quantiser: steps of 2^(1−bits), clipped to ±(1 − step)."""
    step = 2.0 ** (1 - bits)
    return np.clip(np.round(w / step) * step, -1 + step, 1 - step)


def input_bit_planes(x: np.ndarray, bits: int) -> np.ndarray:
    """[vectors, K] → [K, vectors·bits] of 0/1, sign bit first (NeuroSim's ``dec2bin`` on values
    scaled to [−1, 1) by their maximum magnitude)."""
    step = 2.0 ** (1 - bits)
    scale = float(np.abs(x).max()) or 1.0
    q = np.clip(np.floor(x / scale / step), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1).astype(np.int64)
    code = np.where(q < 0, q + 2 ** bits, q)            # two's complement
    planes = np.stack([(code >> (bits - 1 - b)) & 1 for b in range(bits)], axis=-1)   # [V, K, bits]
    return planes.transpose(1, 0, 2).reshape(x.shape[1], -1).astype(np.uint8)


__all__ = ["TraceLayer", "find_layers", "trace_layers", "quantise_weights", "input_bit_planes"]
