"""Run a compiled graph as the crossbar chip would compute it.

:func:`simulate_model` swaps every crossbar-mapped MVM of an ONNX model (the crossbar
backend's own classification, :func:`vitc.backends.partition.partition`: static-weight
``MatMul``/``Gemm``, patch-embedding ``Conv``) for an ``ai.vitc::XbarMatMul`` node whose
function body (:mod:`vitc.runtime.xbar_ops`) models weight quantisation and slicing into
cells, bit-serial / DAC-quantised inputs, per-row-group partial sums with ADC quantisation
and clipping, and seeded conductance variation — all weight-side work done here, at
compile time, into initializers (:func:`vitc.runtime.nonideal.program_matrix`). The result
is an ordinary ONNX model that onnxruntime runs; the numpy twin
(:func:`vitc.runtime.nonideal.reference_mvm`) defines the arithmetic.

:func:`adc_sweep` simulates a model at several ADC resolutions and measures top-1
accuracy on labelled data; :func:`sweep_files` renders that as ``nonideal.json``,
``nonideal.md`` and ``nonideal_adc.png``. ``vitc simulate`` and ``vitc compile --emit-sim``
are the command-line front ends (``docs/nonideal.md``).
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from vitc.compiler.errors import VitcInputError
from vitc.runtime.function_builder import DOMAIN, DOMAIN_VERSION
from vitc.runtime.nonideal import (SimConfig, adc_inverse, calibrate_adc, calibrate_input_scale, output_step,
                                   program_matrix)
from vitc.runtime.xbar_ops import OP_TYPE, build_xbar_function, overload_name

CALIB_SAMPLES = 16


@dataclass
class SimLayer:
    """One replaced MVM."""

    node: str
    op_type: str
    K: int
    N: int
    groups: int
    crossbars: int
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

    def summary(self) -> str:
        lines = [f"non-ideal simulation ({self.config.source or 'custom'}): {self.config.describe()}",
                 f"  {len(self.layers)} crossbar-mapped MVMs replaced by {DOMAIN}::{OP_TYPE}"
                 f" ({sum(l.crossbars for l in self.layers)} crossbars, "
                 f"{sum(l.conversions_per_vector for l in self.layers)} ADC conversions per input vector)"]
        if self.calibration != "none":
            lines.append(f"  calibration data: {self.calibration}")
        for name, why in self.skipped:
            lines.append(f"  kept ideal: {name} ({why})")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "layers": [l.to_dict() for l in self.layers],
                "skipped": [{"node": n, "reason": r} for n, r in self.skipped], "calibration": self.calibration}


# --------------------------------------------------------------------------- helpers
def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise VitcInputError("model imports no default-domain opset")


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


class _Constants:
    """Values of compile-time-constant tensors (initializers, Constant nodes, and anything
    computed only from them, evaluated in onnxruntime on demand)."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.inits = {t.name: t for t in model.graph.initializer}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.cache: dict[str, np.ndarray] = {}

    def _ancestors(self, name: str, acc: list, seen: set) -> bool:
        if name in self.inits or name == "" or name in seen:
            return True
        node = self.producer.get(name)
        if node is None or node.domain not in ("", "ai.onnx") or node.op_type.startswith("Random"):
            return False
        seen.add(name)
        for o in node.output:
            seen.add(o)
        if not all(self._ancestors(i, acc, seen) for i in node.input):
            return False
        acc.append(node)
        return True

    def value(self, name: str) -> np.ndarray | None:
        if name in self.cache:
            return self.cache[name]
        if name in self.inits:
            v = numpy_helper.to_array(self.inits[name])
        else:
            nodes: list = []
            if not self._ancestors(name, nodes, set()):
                return None
            used = {i for n in nodes for i in n.input}
            g = helper.make_graph(nodes, "const", [], [helper.make_empty_tensor_value_info(name)],
                                  [t for t in self.model.graph.initializer if t.name in used])
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", _opset(self.model))])
            m.ir_version = self.model.ir_version
            from vitc.runtime.session import open_session
            v = open_session(m).run([name], {})[0]
        self.cache[name] = v
        return v


def _find_mvms(model: onnx.ModelProto, seq_len: int | None):
    """(top-level MVM nodes by name with their work items, skipped (name, reason) list)."""
    from vitc.backends.graph import prepare_graph
    from vitc.backends.partition import LSTM, MVM, partition
    pg = prepare_graph(model, batch=1, seq_len=seq_len)
    items, _ = partition(pg)
    found, skipped = {}, []
    for it in items:
        if it.kind not in (MVM, LSTM):
            continue
        op = it.op
        if op.name != op.origin:
            skipped.append((op.origin, f"{op.op_type} inside the function body of {op.origin_type}"))
        elif it.kind == LSTM:
            skipped.append((op.name, f"{op.op_type} W/R matrices are simulated ideal (recurrence not unrolled)"))
        else:
            found[op.name] = it
    return found, skipped


# --------------------------------------------------------------------------- rewriting
class _Rewriter:
    def __init__(self, model: onnx.ModelProto, cfg: SimConfig):
        self.model, self.cfg = model, cfg
        self.consts = _Constants(model)
        self.new_inits: list[onnx.TensorProto] = []
        self.overloads: set[tuple[bool, int]] = set()
        self.programmed: dict[str, Any] = {}     # node name -> (ProgrammedMatrix, x tensor name, im2col info)

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
        if it.op.static_in[0] and not it.op.static_in[1]:
            return "constant left operand (A·X) not simulated"
        W = self.consts.value(node.input[1])
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
        if it.op.static_in[0] and not it.op.static_in[1]:
            return "constant left operand not simulated"
        B = self.consts.value(node.input[1])
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
                cv = self.consts.value(c)
                if cv is None:
                    return "Gemm with beta != 1 and a non-constant C not simulated"
                c = self._init(f"{node.name}/xbar.c", (beta * cv).astype(np.float32))
            nodes.append(helper.make_node("Add", [y, c], [out], name=f"{node.name}/xbar_bias"))
        return nodes, node.input[0]

    def conv(self, node, it):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        Wc = self.consts.value(node.input[1])
        if Wc is None:
            return "weight is not a compile-time constant"
        if Wc.ndim != 4:
            return "only 2-D convolutions are simulated"
        co, ci, kh, kw = Wc.shape
        x_shape = it.op.in_shapes[0]
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
    from vitc.compiler.calibration import Dataset, load_dataset
    from vitc.runtime.inputs import synthetic_inputs
    if isinstance(calib, Dataset):
        data = calib
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
        from vitc.compiler.io import load_model
        model = load_model(model).model
    original = model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    _name_nodes(m)
    mvms, skipped = _find_mvms(m, seq_len)
    rw = _Rewriter(m, cfg)
    new_nodes, x_of = [], {}
    for node in m.graph.node:
        it = mvms.get(node.name)
        if it is None:
            new_nodes.append(node)
            continue
        handler = {"MatMul": rw.matmul, "Gemm": rw.gemm, "Conv": rw.conv}.get(node.op_type)
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
        from vitc.runtime.session import run_with_intermediates
        feeds, source = _calibration_inputs(original, calib, cfg.seed, calib_samples, input_shapes)
        names = sorted({(x if isinstance(x, str) else x[1]) for x in x_of.values()})
        acts = {}
        for start in range(0, len(names), 64):
            acts.update(run_with_intermediates(_named_copy(original, m), names[start:start + 64], feeds))
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
    opset = _opset(m)
    if rw.overloads:
        if not any(o.domain == DOMAIN for o in m.opset_import):
            m.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        have = {(f.domain, f.name, f.overload) for f in m.functions}
        for static, zp in sorted(rw.overloads):
            fn = build_xbar_function(cfg, opset, static, zp)
            if (fn.domain, fn.name, fn.overload) not in have:
                m.functions.append(fn)
        from vitc.runtime.session import max_ir_version
        m.ir_version = max(m.ir_version, max_ir_version())
    layers = []
    for name, pm in rw.programmed.items():
        layers.append(SimLayer(name, mvms[name].op.op_type, pm.K, pm.N, pm.groups, int(pm.stats["crossbars"]),
                               pm.groups * cfg.conversions_per_output * pm.n_cols, pm.x_scale, pm.fullscale,
                               pm.stats.get("adc_clip_fraction")))
    res = SimResult(m, cfg, layers, skipped, source)
    meta = {p.key: p for p in m.metadata_props}
    for key, value in (("vitc.sim", json.dumps(res.to_dict()["config"], sort_keys=True)),
                       ("vitc.sim.layers", str(len(layers)))):
        if key in meta:
            meta[key].value = value
        else:
            m.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    res.seconds = time.perf_counter() - t0
    return res


def _named_copy(original: onnx.ModelProto, named: onnx.ModelProto) -> onnx.ModelProto:
    """The original model with the node names used while rewriting (tensor names are unchanged)."""
    out = onnx.ModelProto()
    out.CopyFrom(original)
    _name_nodes(out)
    return out


def sim_config_of(model: onnx.ModelProto) -> dict | None:
    """The simulation config stored in a simulated model's metadata (None for other models)."""
    for p in model.metadata_props:
        if p.key == "vitc.sim":
            return json.loads(p.value)
    return None


__all__ = ["simulate_model", "SimResult", "SimLayer", "sim_config_of"]
