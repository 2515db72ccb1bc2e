"""Run a compiled graph as the crossbar chip would compute it.

:func:`simulate_model` swaps every crossbar-mapped MVM of an ONNX model (the crossbar
backend's own classification, :func:`vitc.backends.partition.partition`: static-weight
``MatMul``/``Gemm``, patch-embedding ``Conv``) for an ``ai.vitc::XbarMatMul`` node whose
function body (:mod:`vitc.runtime.nonideal.xbar_op`) models weight quantisation and slicing into
cells, bit-serial / DAC-quantised inputs, per-row-group partial sums with ADC quantisation
and clipping, and seeded conductance variation — all weight-side work done here, at
compile time, into initializers (:func:`vitc.runtime.nonideal.arith.program_matrix`). The result
is an ordinary ONNX model that onnxruntime runs; the numpy twin
(:func:`vitc.runtime.nonideal.arith.reference_mvm`) defines the arithmetic.

Which MVMs are crossbar-mapped is decided as the crossbar backend decides it: a top-level
``MatMul``/``Gemm`` with a compile-time-constant weight operand and an activation operand,
a ``Conv`` with a constant kernel, an ``LSTM``/``GRU``/``RNN`` (constants found by
:func:`vitc.runtime.shapes.static_tensors`; weights computed from constants, e.g. int8 +
``DequantizeLinear``, are folded by onnx-graphsurgeon first). :mod:`.sweep` runs it over ADC
resolutions; ``vitc simulate`` and ``vitc compile --emit-sim`` are the command-line front
ends (``docs/nonideal.md``).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_graphsurgeon as gs
from onnx import helper, numpy_helper

from vitc.core.io import default_opset, load_model
from vitc.runtime import shapes
from vitc.runtime.data import Dataset, load_dataset
from vitc.runtime.function_builder import DOMAIN, DOMAIN_VERSION
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.nonideal.arith import (SimConfig, adc_inverse, calibrate_adc, calibrate_input_scale, output_step,
                                         program_matrix)
from vitc.runtime.nonideal.xbar_op import OP_TYPE, build_xbar_function, overload_name
from vitc.runtime.session import run_with_intermediates

CALIB_SAMPLES = 16


@dataclass
class SimLayer:
    """One replaced MVM."""

    node: str
    op_type: str
    K: int
    N: int
    groups: int
    crossbars: int                 # incl. the offset reference column of each row tile, if the mapping has one
    crossbars_weights: int         # the weights alone: what the cost model's mapping counts
    conversions_per_vector: int
    x_scale: float | None = None
    fullscale: float = 0.0
    adc_clip_fraction: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class SimResult:
    model: onnx.ModelProto
    config: SimConfig
    layers: list[SimLayer] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    calibration: str = "none"
    seconds: float = 0.0
    programmed: dict = field(default_factory=dict)   # node name -> ProgrammedMatrix (for the numpy twin)

    def summary(self) -> str:
        total = sum(l.crossbars for l in self.layers)
        weights = sum(l.crossbars_weights for l in self.layers)
        ref = f" = {weights} for the weights + {total - weights} for offset reference columns" if total != weights else ""
        lines = [f"non-ideal simulation ({self.config.source or 'custom'}): {self.config.describe()}",
                 f"  {len(self.layers)} crossbar-mapped MVMs replaced by {DOMAIN}::{OP_TYPE}"
                 f" ({total} crossbars{ref}; {sum(l.conversions_per_vector for l in self.layers)} ADC conversions "
                 "per input vector)"]
        if self.calibration != "none":
            lines.append(f"  calibration data: {self.calibration}")
        c = self.config
        if c.mode == "tile" and c.adc_range == "fixed" and c.adc_bits:
            lines.append("  note: tile mode with a fixed full scale spans the worst case of the whole multi-bit "
                         "product; consider --adc-range calibrated (docs/nonideal.md)")
        for name, why in self.skipped:
            lines.append(f"  kept ideal: {name} ({why})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "layers": [l.to_dict() for l in self.layers],
                "skipped": [{"node": n, "reason": r} for n, r in self.skipped], "calibration": self.calibration}


# --------------------------------------------------------------------------- helpers
def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every top-level node a unique name (prepare_graph and we must agree on them)."""
    seen: set[str] = set()
    for i, n in enumerate(model.graph.node):
        if not n.name or n.name in seen:
            base = n.name or f"{n.op_type}_{i}"
            name, k = base, 1
            while name in seen:
                name, k = f"{base}__{k}", k + 1
            n.name = name
        seen.add(n.name)


@dataclass
class _Mvm:
    """A crossbar-mapped node: its op type, whether its left operand is the constant one, and
    (for Conv) the input shape."""

    op_type: str
    const_left: bool = False
    x_shape: list | None = None


def _fold_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with weights computed from constants (e.g. int8 initializers behind
    ``DequantizeLinear``) folded into initializers by onnx-graphsurgeon (``model`` itself
    when every weight already is one). Shape computations are left as they are."""
    inits = {t.name for t in model.graph.initializer}
    static = shapes.static_tensors(model.graph.node, inits)
    weights = {t for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN")
               for t in n.input[:3] if t}
    if all(t in inits or t not in static for t in weights):
        return model
    graph = gs.import_onnx(model)
    graph.fold_constants(fold_shapes=False, error_ok=True).cleanup(remove_unused_graph_inputs=False)
    folded = gs.export_onnx(graph, do_type_check=False)
    folded.ir_version = model.ir_version
    del folded.opset_import[:]
    folded.opset_import.extend(model.opset_import)
    have = {(f.domain, f.name, f.overload) for f in folded.functions}
    folded.functions.extend(f for f in model.functions if (f.domain, f.name, f.overload) not in have)
    del folded.metadata_props[:]
    folded.metadata_props.extend(model.metadata_props)
    return folded


def _find_mvms(model: onnx.ModelProto, seq_len: int | None) -> dict[str, _Mvm]:
    """Top-level static-weight products of ``model`` by node name (module docstring)."""
    static = shapes.static_tensors(model.graph.node, {t.name for t in model.graph.initializer})
    found = {}
    for node in model.graph.node:
        ins = list(node.input)
        if node.op_type in ("MatMul", "Gemm") and len(ins) >= 2:
            a, b = ins[0] in static, ins[1] in static
            if a != b:
                found[node.name] = _Mvm(node.op_type, const_left=a)
        elif node.op_type == "Conv" and len(ins) >= 2 and ins[1] in static and ins[0] not in static:
            found[node.name] = _Mvm("Conv")
        elif node.op_type in ("LSTM", "GRU", "RNN") and len(ins) >= 3 and ins[0] not in static:
            found[node.name] = _Mvm(node.op_type)
    convs = [n for n in model.graph.node if n.name in found and n.op_type == "Conv"]
    if convs:
        # shapes only decide the patch geometry here: any sequence length will do for symbolic dims
        info = shapes.infer(model, shapes.concrete_inputs(model, 1, seq_len or 16))
        for n in convs:
            found[n.name].x_shape = info.get(n.input[0], (None, None))[1]
    return found


# --------------------------------------------------------------------------- rewriting
class _Rewriter:
    def __init__(self, model: onnx.ModelProto, cfg: SimConfig):
        self.model, self.cfg = model, cfg
        self.consts = {t.name: t for t in model.graph.initializer}
        self.new_inits: list[onnx.TensorProto] = []
        self.overloads: set[tuple[bool, int]] = set()
        self.programmed: dict[str, Any] = {}     # node name -> (ProgrammedMatrix, x tensor name, im2col info)

    def value(self, name: str) -> np.ndarray | None:
        """A weight's value (initializers only: constant sub-graphs were folded before)."""
        t = self.consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def _init(self, name: str, arr: np.ndarray) -> str:
        self.new_inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def xbar_node(self, node_name: str, x: str, y: str, W: np.ndarray):
        """An XbarMatMul node computing y = x·W (W [K, N]); programs W."""
        cfg = self.cfg
        pm = program_matrix(W, cfg, name=node_name)
        self.programmed[node_name] = pm
        p = f"{node_name}/xbar"
        static = cfg.input_scaling == "static"
        ins = [x, self._init(f"{p}.cells", pm.cells), f"{p}.adc_inv", f"{p}.step",
               self._init(f"{p}.w_scale", pm.w_scale.astype(np.float64)),
               self._init(f"{p}.corr", float(1 << (cfg.input_bits - 1)) * pm.colsum_q.astype(np.float64)),
               self._init(f"{p}.rows", np.maximum(pm.row_index, 0).reshape(pm.groups, cfg.rows_parallel))]
        if static:
            ins.append(f"{p}.x_scale")
        self.overloads.add((static, pm.cell_zero_point))
        node = helper.make_node(OP_TYPE, ins, [y], name=f"{node_name}/xbar", domain=DOMAIN)
        node.overload = overload_name(cfg, static, pm.cell_zero_point)
        return node, pm

    def finish_scalars(self) -> None:
        """adc_inv / step / x_scale initializers (after calibration has set full scales)."""
        for name, pm in self.programmed.items():
            p = f"{name}/xbar"
            self._init(f"{p}.adc_inv", np.array(adc_inverse(pm, self.cfg), np.float32))
            self._init(f"{p}.step", np.array(output_step(pm, self.cfg), np.float64))
            if self.cfg.input_scaling == "static":
                self._init(f"{p}.x_scale", np.array(pm.x_scale, np.float32))

    # -- per op type: list of replacement nodes, or a reason string
    def matmul(self, node, it):
        if it.const_left:
            return "constant left operand (A·X) not simulated"
        W = self.value(node.input[1])
        if W is None:
            return "weight is not a compile-time constant"
        if W.ndim != 2:
            return f"weight of rank {W.ndim} (batched constant matrices) not simulated"
        xn, pm = self.xbar_node(node.name, node.input[0], node.output[0], W.astype(np.float32))
        return [xn], node.input[0]

    def gemm(self, node, it):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0):
            return "Gemm with transA not simulated"
        if it.const_left:
            return "constant left operand not simulated"
        B = self.value(node.input[1])
        if B is None:
            return "weight is not a compile-time constant"
        W = (B.T if attrs.get("transB", 0) else B).astype(np.float32)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        out = node.output[0]
        has_c = len(node.input) > 2 and node.input[2]
        y = out if (alpha == 1.0 and not has_c) else f"{node.name}/xbar_out"
        xn, _ = self.xbar_node(node.name, node.input[0], y, W)
        nodes = [xn]
        if alpha != 1.0:
            a_name = self._init(f"{node.name}/xbar.alpha", np.array(alpha, np.float32))
            y2 = out if not has_c else f"{node.name}/xbar_scaled"
            nodes.append(helper.make_node("Mul", [y, a_name], [y2], name=f"{node.name}/xbar_alpha"))
            y = y2
        if has_c:
            c = node.input[2]
            if beta != 1.0:
                cv = self.value(c)
                if cv is None:
                    return "Gemm with beta != 1 and a non-constant C not simulated"
                c = self._init(f"{node.name}/xbar.c", (beta * cv).astype(np.float32))
            nodes.append(helper.make_node("Add", [y, c], [out], name=f"{node.name}/xbar_bias"))
        return nodes, node.input[0]

    def rnn(self, node, it):
        """LSTM/GRU/RNN: the input projection X·Wᵀ runs on crossbars, hoisted out of the
        recurrence: X' = XbarMatMul(X, [W_0ᵀ | W_1ᵀ]) and W' selects each direction's block of
        X' (identity blocks: the op's own X'·W'ᵀ is then exact). The recurrent R matrices stay
        ideal: simulating them needs the recurrence unrolled."""
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if int(attrs.get("layout", 0)) != 0:
            return f"{node.op_type} with layout=1 not simulated"
        W = self.value(node.input[1])
        if W is None or W.ndim != 3:
            return "weight is not a compile-time constant"
        D, G, _ = W.shape
        Wcat = np.concatenate([W[d].T for d in range(D)], axis=1).astype(np.float32)       # [I, D·G]
        sel = np.zeros((D, G, D * G), np.float32)
        for d in range(D):
            sel[d, :, d * G:(d + 1) * G] = np.eye(G, dtype=np.float32)
        xp = f"{node.name}/xbar_x"
        xn, _ = self.xbar_node(node.name, node.input[0], xp, Wcat)
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.input[0] = xp
        new.input[1] = self._init(f"{node.name}/xbar.W_select", sel)
        return [xn, new], node.input[0]

    def conv(self, node, it):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        Wc = self.value(node.input[1])
        if Wc is None:
            return "weight is not a compile-time constant"
        if Wc.ndim != 4:
            return "only 2-D convolutions are simulated"
        co, ci, kh, kw = Wc.shape
        x_shape = it.x_shape
        if (int(attrs.get("group", 1)) != 1 or list(attrs.get("strides", [1, 1])) != [kh, kw]
                or any(attrs.get("pads", [0, 0, 0, 0])) or any(d != 1 for d in attrs.get("dilations", [1, 1]))
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID")
                or x_shape is None or None in x_shape[1:] or x_shape[2] % kh or x_shape[3] % kw):
            return "only non-overlapping (patch-embedding) convolutions are simulated"
        H, Wd = x_shape[2] // kh, x_shape[3] // kw
        p = node.name
        i64 = lambda n, v: self._init(f"{p}/xbar.{n}", np.array(v, np.int64))  # noqa: E731
        nodes = [
            helper.make_node("Reshape", [node.input[0], i64("s1", [-1, ci, H, kh, Wd, kw])], [f"{p}/xbar_r1"],
                             name=f"{p}/xbar_r1"),
            helper.make_node("Transpose", [f"{p}/xbar_r1"], [f"{p}/xbar_t1"], perm=[0, 2, 4, 1, 3, 5],
                             name=f"{p}/xbar_t1"),
            helper.make_node("Reshape", [f"{p}/xbar_t1", i64("s2", [-1, H * Wd, ci * kh * kw])], [f"{p}/xbar_cols"],
                             name=f"{p}/xbar_cols"),
        ]
        xn, _ = self.xbar_node(p, f"{p}/xbar_cols", f"{p}/xbar_y", Wc.reshape(co, -1).T.astype(np.float32))
        nodes.append(xn)
        y = f"{p}/xbar_y"
        if len(node.input) > 2 and node.input[2]:
            nodes.append(helper.make_node("Add", [y, node.input[2]], [f"{p}/xbar_yb"], name=f"{p}/xbar_bias"))
            y = f"{p}/xbar_yb"
        nodes += [
            helper.make_node("Reshape", [y, i64("s3", [-1, H, Wd, co])], [f"{p}/xbar_r3"], name=f"{p}/xbar_r3"),
            helper.make_node("Transpose", [f"{p}/xbar_r3"], [node.output[0]], perm=[0, 3, 1, 2], name=f"{p}/xbar_t3"),
        ]
        return nodes, ("im2col", node.input[0], (ci, kh, kw, H, Wd))


def _im2col(x: np.ndarray, info) -> np.ndarray:
    ci, kh, kw, H, Wd = info
    t = x.reshape(-1, ci, H, kh, Wd, kw).transpose(0, 2, 4, 1, 3, 5)
    return t.reshape(len(x), H * Wd, ci * kh * kw)


def _calibration_inputs(model: onnx.ModelProto, calib, seed: int, samples: int, input_shapes) -> tuple[dict, str]:
    if isinstance(calib, Dataset):
        data = calib
    elif isinstance(calib, dict):
        data = Dataset({k: np.asarray(v) for k, v in calib.items()}, None, "given arrays")
    elif calib is not None:
        data = load_dataset(calib, model)
    else:
        data = Dataset(synthetic_inputs(model, batch=samples, seed=seed, shapes=input_shapes), None, "synthetic")
    data = data.take(samples)
    return data.feeds, data.source


# --------------------------------------------------------------------------- main entry
def simulate_model(model: onnx.ModelProto | str | os.PathLike, cfg: SimConfig | None = None, *,
                   calib: Any = None, calib_samples: int = CALIB_SAMPLES, input_shapes: dict | None = None,
                   seq_len: int | None = None) -> SimResult:
    """``model`` with every crossbar-mapped MVM replaced by ``ai.vitc::XbarMatMul`` (module doc).

    ``calib``: data (path or Dataset) for ``input_scaling = static`` / ``adc_range =
    calibrated``; synthetic inputs when absent (the result says so). The input model is not
    modified.
    """
    t0 = time.perf_counter()
    cfg = (cfg or SimConfig.from_hw("rram-128")).checked()
    if not isinstance(model, onnx.ModelProto):
        model = load_model(model).model
    original = model
    m = _fold_weights(model)
    if m is model:
        m = onnx.ModelProto()
        m.CopyFrom(model)
    _name_nodes(m)
    mvms, skipped = _find_mvms(m, seq_len), []
    rw = _Rewriter(m, cfg)
    new_nodes, x_of = [], {}
    for node in m.graph.node:
        it = mvms.get(node.name)
        if it is None:
            new_nodes.append(node)
            continue
        handler = {"MatMul": rw.matmul, "Gemm": rw.gemm, "Conv": rw.conv, "LSTM": rw.rnn, "GRU": rw.rnn,
                   "RNN": rw.rnn}.get(node.op_type)
        out = handler(node, it) if handler else f"{node.op_type} not simulated"
        if isinstance(out, str):
            skipped.append((node.name, out))
            new_nodes.append(node)
            continue
        nodes, xsrc = out
        new_nodes.extend(nodes)
        x_of[node.name] = xsrc
    # calibration (static input scales, calibrated ADC ranges) on the float model's activations
    source = "none"
    needs = cfg.input_scaling == "static" or (cfg.adc_range == "calibrated" and cfg.adc_bits)
    if needs and rw.programmed:
        feeds, source = _calibration_inputs(original, calib, cfg.seed, calib_samples, input_shapes)
        names = sorted({(x if isinstance(x, str) else x[1]) for x in x_of.values()})
        acts = {}
        for start in range(0, len(names), 64):
            acts.update(run_with_intermediates(original, names[start:start + 64], feeds))
        for name, pm in rw.programmed.items():
            src = x_of[name]
            xa = acts[src] if isinstance(src, str) else _im2col(acts[src[1]], src[2])
            if cfg.input_scaling == "static":
                calibrate_input_scale(pm, cfg, xa)
            if cfg.adc_range == "calibrated" and cfg.adc_bits:
                calibrate_adc(pm, cfg, xa)
    rw.finish_scalars()
    # assemble
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    m.graph.initializer.extend(rw.new_inits)
    opset = default_opset(m)
    if rw.overloads:
        if not any(o.domain == DOMAIN for o in m.opset_import):
            m.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        have = {(f.domain, f.name, f.overload) for f in m.functions}
        for static, zp in sorted(rw.overloads):
            fn = build_xbar_function(cfg, opset, static, zp)
            if (fn.domain, fn.name, fn.overload) not in have:
                m.functions.append(fn)
        m.ir_version = max(m.ir_version, 10)      # function overloads need IR 10
    for name, pm in rw.programmed.items():
        if mvms[name].op_type in ("LSTM", "GRU", "RNN"):
            skipped.append((name, f"recurrent matrix R of {mvms[name].op_type} kept ideal (input projection W "
                                  "simulated)"))
    layers = []
    for name, pm in rw.programmed.items():
        layers.append(SimLayer(name, mvms[name].op_type, pm.K, pm.N, pm.groups, int(pm.stats["crossbars"]),
                               int(pm.stats["crossbars_weights"]), pm.groups * cfg.conversions_per_output * pm.n_cols, pm.x_scale, pm.fullscale,
                               pm.stats.get("adc_clip_fraction")))
    res = SimResult(m, cfg, layers, skipped, source, programmed=dict(rw.programmed))
    meta = {p.key: p for p in m.metadata_props}
    for key, value in (("vitc.sim", json.dumps(res.to_dict()["config"], sort_keys=True)),
                       ("vitc.sim.layers", str(len(layers)))):
        if key in meta:
            meta[key].value = value
        else:
            m.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    res.seconds = time.perf_counter() - t0
    return res


def sim_config_of(model: onnx.ModelProto) -> dict | None:
    """The simulation config stored in a simulated model's metadata (None for other models)."""
    for p in model.metadata_props:
        if p.key == "vitc.sim":
            return json.loads(p.value)
    return None


__all__ = ["simulate_model", "SimResult", "SimLayer", "sim_config_of", "CALIB_SAMPLES"]
