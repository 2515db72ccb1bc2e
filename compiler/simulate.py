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

import io
import json
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
    programmed: dict = field(default_factory=dict)   # node name -> ProgrammedMatrix (for the numpy twin)

    def summary(self) -> str:
        lines = [f"non-ideal simulation ({self.config.source or 'custom'}): {self.config.describe()}",
                 f"  {len(self.layers)} crossbar-mapped MVMs replaced by {DOMAIN}::{OP_TYPE}"
                 f" ({sum(l.crossbars for l in self.layers)} crossbars, "
                 f"{sum(l.conversions_per_vector for l in self.layers)} ADC conversions per input vector)"]
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
    # shapes only decide the classification here: any sequence length will do for symbolic dims
    pg = prepare_graph(model, batch=1, seq_len=seq_len or 16)
    items, _ = partition(pg)
    found, skipped = {}, []
    for it in items:
        op = it.op
        unknown = (it.note == "unknown shape" and op.op_type in ("MatMul", "Gemm") and len(op.static_in) > 1
                   and op.static_in[1] and not op.static_in[0])
        if it.kind not in (MVM, LSTM) and not unknown:     # unknown shapes: still a static-weight product
            continue
        if op.name != op.origin:
            skipped.append((op.origin, f"{op.op_type} inside the function body of {op.origin_type}"))
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

    def rnn(self, node, it):
        """LSTM/GRU/RNN: the input projection X·Wᵀ runs on crossbars, hoisted out of the
        recurrence: X' = XbarMatMul(X, [W_0ᵀ | W_1ᵀ]) and W' selects each direction's block of
        X' (identity blocks: the op's own X'·W'ᵀ is then exact). The recurrent R matrices stay
        ideal: simulating them needs the recurrence unrolled."""
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if int(attrs.get("layout", 0)) != 0:
            return f"{node.op_type} with layout=1 not simulated"
        W = self.consts.value(node.input[1])
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
    for name, pm in rw.programmed.items():
        if mvms[name].op.op_type in ("LSTM", "GRU", "RNN"):
            skipped.append((name, f"recurrent matrix R of {mvms[name].op.op_type} kept ideal (input projection W "
                                  "simulated)"))
    layers = []
    for name, pm in rw.programmed.items():
        layers.append(SimLayer(name, mvms[name].op.op_type, pm.K, pm.N, pm.groups, int(pm.stats["crossbars"]),
                               pm.groups * cfg.conversions_per_output * pm.n_cols, pm.x_scale, pm.fullscale,
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


# --------------------------------------------------------------------------- sweeps
def parse_bits(spec) -> list[int]:
    """``"4,5,6,7,8"`` → [4, 5, 6, 7, 8]; ``ideal`` / 0 = an ideal ADC; a range ``4-8`` works too."""
    if spec is None:
        return []
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, (list, tuple)):
        return [int(b) for b in spec]
    out = []
    for part in str(spec).split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            if part == "ideal":
                out.append(0)
            elif "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise VitcInputError(f"--adc-bits: cannot read '{part}' (use e.g. 4,5,6,7,8 or 4-8 or ideal)") from None
    for b in out:
        if not 0 <= b <= 24:
            raise VitcInputError(f"--adc-bits: {b} is out of range (1..24, or 0/ideal)")
    return out


@dataclass
class SweepResult:
    """Top-1 accuracy per (variant, ADC bits) on labelled data."""

    config: SimConfig
    bits: list[int]
    variants: list[str]
    float_accuracy: dict[str, float | None]
    accuracy: dict[str, dict[int, float | None]]
    agreement: dict[str, dict[int, float]]
    cosine: dict[str, dict[int, float]]
    samples: int
    data: str
    calibration: str
    skipped: dict[str, list] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"schema": "vitc.nonideal/1", "config": self.config.to_dict(), "describe": self.config.describe(),
                "bits": self.bits, "variants": self.variants, "float_accuracy": self.float_accuracy,
                "accuracy": {v: {str(b): a for b, a in d.items()} for v, d in self.accuracy.items()},
                "top1_agreement": {v: {str(b): a for b, a in d.items()} for v, d in self.agreement.items()},
                "cosine_mean": {v: {str(b): a for b, a in d.items()} for v, d in self.cosine.items()},
                "samples": self.samples, "data": self.data, "calibration": self.calibration,
                "kept_ideal": self.skipped}

    @staticmethod
    def _pct(v) -> str:
        return "—" if v is None else f"{100 * v:.2f} %"

    def markdown(self, plot: str | None = "nonideal_adc.png") -> str:
        c = self.config
        head = "| ADC bits | " + " | ".join(self.variants) + " |"
        lines = ["## Non-ideal accuracy vs ADC bits", "",
                 f"Crossbar preset `{c.source or 'custom'}` simulated as the chip computes "
                 f"({c.describe().replace(f'{c.adc_bits}-bit ADC', 'b-bit ADC')}); "
                 f"top-1 accuracy on {self.samples} labelled samples from `{self.data}`"
                 + (f"; calibration data: {self.calibration}" if self.calibration != "none" else "") + ".", "",
                 head, "|" + "---|" * (len(self.variants) + 1),
                 "| float | " + " | ".join(self._pct(self.float_accuracy[v]) for v in self.variants) + " |"]
        for b in self.bits:
            label = "ideal ADC" if b == 0 else str(b)
            lines.append(f"| {label} | " + " | ".join(self._pct(self.accuracy[v][b]) for v in self.variants) + " |")
        lines += ["", "Top-1 agreement with each variant's own float outputs:", "", head,
                  "|" + "---|" * (len(self.variants) + 1)]
        for b in self.bits:
            label = "ideal ADC" if b == 0 else str(b)
            lines.append(f"| {label} | " + " | ".join(self._pct(self.agreement[v][b]) for v in self.variants) + " |")
        kept = {v: s for v, s in self.skipped.items() if s}
        if kept:
            lines += ["", "Kept ideal (not crossbar-simulated): " + "; ".join(
                f"{v}: {', '.join(n for n, _ in s)}" for v, s in kept.items())]
        if plot:
            lines += ["", f"![accuracy vs ADC bits]({plot})"]
        return "\n".join(lines) + "\n"

    def plot_png(self) -> bytes:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5.2, 3.4), dpi=120)
        bits = [b for b in self.bits if b]
        for i, v in enumerate(self.variants):
            color = f"C{i}"
            ys = [self.accuracy[v][b] for b in bits]
            if any(y is not None for y in ys):
                ax.plot(bits, [100 * y if y is not None else np.nan for y in ys], "o-", color=color, label=v)
            if self.float_accuracy.get(v) is not None:
                ax.axhline(100 * self.float_accuracy[v], color=color, ls="--", lw=0.8, label=f"{v} (float)")
        ax.set_xlabel("ADC bits")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_xticks(bits)
        ax.set_title(f"{self.config.source or 'custom'}: accuracy vs ADC resolution", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        return buf.getvalue()

    def html_section(self) -> str:
        """A self-contained HTML section (table + the plot as a data URI) for report.html."""
        import base64
        import html
        esc = html.escape
        rows = [["float"] + [self._pct(self.float_accuracy[v]) for v in self.variants]]
        rows += [["ideal ADC" if b == 0 else str(b)] + [self._pct(self.accuracy[v][b]) for v in self.variants]
                 for b in self.bits]
        table = ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in ["ADC bits"] + self.variants) + "</tr>"
                 + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>")
        c = self.config
        parts = ["<h2>Non-ideal accuracy vs ADC bits</h2>",
                 f"<p class='note'>Crossbar preset {esc(c.source or 'custom')} simulated as the chip computes "
                 f"({esc(c.describe().replace(f'{c.adc_bits}-bit ADC', 'b-bit ADC'))}); top-1 accuracy on "
                 f"{self.samples} labelled samples from {esc(self.data)}. See docs/nonideal.md.</p>", table]
        if any(a is not None for d in self.accuracy.values() for a in d.values()):
            parts.append("<p><img alt='accuracy vs ADC bits' src='data:image/png;base64,"
                         + base64.b64encode(self.plot_png()).decode() + "'></p>")
        return "\n".join(parts) + "\n"

    def files(self, prefix: str = "nonideal") -> dict[str, bytes]:
        out = {f"{prefix}.json": (json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n").encode()}
        has_acc = any(a is not None for d in self.accuracy.values() for a in d.values())
        png = f"{prefix}_adc.png" if has_acc else None
        if png:
            out[png] = self.plot_png()
        out[f"{prefix}.md"] = self.markdown(png).encode()
        return out


def adc_sweep(variants: dict[str, onnx.ModelProto], cfg: SimConfig, bits: list[int], data, *,
              calib: Any = None, calib_samples: int = CALIB_SAMPLES, keep_models: bool = False,
              batch_size: int = 32, progress=None) -> tuple[SweepResult, dict[str, dict[int, SimResult]]]:
    """Simulate each variant at each ADC resolution and measure top-1 accuracy on ``data``.

    ``data``: a :class:`vitc.compiler.calibration.Dataset` (labels optional: without them only
    agreement with the float model is reported). Returns (sweep, {variant: {bits: SimResult}}
    when ``keep_models``).
    """
    from vitc.runtime.batching import run_batched
    from vitc.runtime.session import open_session
    from vitc.runtime.validate import compare_outputs
    labels = data.labels
    acc, agree, cos, facc, kept, skipped = {}, {}, {}, {}, {}, {}
    calib_src = "none"
    for vname, model in variants.items():
        ref_sess = open_session(model)
        names = [o.name for o in ref_sess.get_outputs()]
        feeds = {i.name: data.feeds[i.name] for i in ref_sess.get_inputs()}
        ref = run_batched(ref_sess, feeds, names[:1], batch_size)[0]
        m = compare_outputs(names[0], ref, ref, 1e-3, 1e-4, labels)
        facc[vname] = m.ref_accuracy
        acc[vname], agree[vname], cos[vname], kept[vname] = {}, {}, {}, {}
        for b in bits:
            res = simulate_model(model, cfg.with_(adc_bits=b), calib=calib, calib_samples=calib_samples)
            calib_src = res.calibration if res.calibration != "none" else calib_src
            skipped[vname] = [list(x) for x in res.skipped]
            out = run_batched(open_session(res.model), feeds, names[:1], batch_size)[0]
            mm = compare_outputs(names[0], ref, out, 1e-3, 1e-4, labels)
            acc[vname][b] = mm.cand_accuracy
            agree[vname][b] = mm.top1_agreement if mm.top1_agreement is not None else float("nan")
            cos[vname][b] = mm.cosine_mean
            if keep_models:
                kept[vname][b] = res
            if progress:
                progress(vname, b, mm)
    sweep = SweepResult(cfg, list(bits), list(variants), facc, acc, agree, cos, data.size, data.source, calib_src,
                        skipped)
    return sweep, kept


# --------------------------------------------------------------------------- CLI glue
def add_sim_arguments(p, *, for_compile: bool = False) -> None:
    """Simulation flags, shared by ``vitc simulate`` and ``vitc compile --emit-sim``."""
    if for_compile:
        p.add_argument("--emit-sim", action="store_true",
                       help="also write <model>.sim.onnx: crossbar MVMs as ai.vitc::XbarMatMul (non-ideal arithmetic)")
    p.add_argument("--adc-bits", help="ADC resolution(s): one value or a sweep such as 4,5,6,7,8 (0/ideal: ideal ADC); "
                                      "default: the preset's")
    p.add_argument("--sim-mode", choices=["bitserial", "tile"], default="bitserial",
                   help="bitserial: one conversion per input bit-plane and weight slice, as the preset says; "
                        "tile: fast approximation, one conversion per row group on the full product")
    p.add_argument("--variation", type=float, default=0.0, help="conductance variation sigma (default 0)")
    p.add_argument("--variation-model", choices=["lognormal", "gaussian"], default="lognormal")
    p.add_argument("--on-off-ratio", type=float, default=0.0, help="cell on/off conductance ratio (0: ideal)")
    p.add_argument("--adc-range", choices=["fixed", "calibrated"], default="fixed",
                   help="ADC full scale: fixed fraction of the worst-case current, or calibrated from data")
    p.add_argument("--adc-fullscale", type=float, default=1.0,
                   help="fixed: fraction of the worst-case current; calibrated: margin on the percentile")
    p.add_argument("--adc-percentile", type=float, default=100.0, help="calibrated ADC range: percentile of currents")
    p.add_argument("--input-scaling", choices=["dynamic", "static"], default="dynamic",
                   help="input quantisation scale: per input vector at run time, or calibrated per layer")
    p.add_argument("--offset-correction", choices=["column", "digital"], default="column",
                   help="offset-mapped weights: subtract an ADC-converted reference column, or digitally")
    for flag in ("weight-bits", "input-bits", "cell-bits", "dac-bits"):
        p.add_argument(f"--sim-{flag}", type=int, help=f"override the preset's {flag.replace('-', '_')}")
    if for_compile:
        p.add_argument("--sim-inputs", help="labelled data (.npz with 'labels') for the accuracy-vs-ADC-bits table "
                                            "of the original and the compiled model")
        p.add_argument("--sim-samples", type=int, help="use the first N samples of --sim-inputs")


def options_from_args(args) -> dict:
    """The simulation options of parsed CLI ``args`` (see :func:`add_sim_arguments`)."""
    g = lambda k: getattr(args, k, None)  # noqa: E731
    return {"adc_bits": g("adc_bits"), "mode": g("sim_mode"), "variation": g("variation"),
            "variation_model": g("variation_model"), "on_off_ratio": g("on_off_ratio"), "adc_range": g("adc_range"),
            "adc_fullscale": g("adc_fullscale"), "adc_percentile": g("adc_percentile"),
            "input_scaling": g("input_scaling"), "offset_correction": g("offset_correction"),
            "weight_bits": g("sim_weight_bits"), "input_bits": g("sim_input_bits"), "cell_bits": g("sim_cell_bits"),
            "dac_bits": g("sim_dac_bits"), "inputs": g("sim_inputs"), "samples": g("sim_samples")}


def config_from_options(hw, opts: dict, seed: int = 0) -> tuple[SimConfig, list[int]]:
    """(base SimConfig, list of ADC bits to simulate) from :func:`options_from_args` output."""
    keys = ("mode", "variation", "variation_model", "on_off_ratio", "adc_range", "adc_fullscale", "adc_percentile",
            "input_scaling", "offset_correction", "weight_bits", "input_bits", "cell_bits", "dac_bits")
    from vitc.backends.hardware import load_hw
    spec = load_hw(hw) if not hasattr(hw, "section") else hw
    if spec.kind != "xbar":
        raise VitcInputError(f"non-ideal simulation needs a crossbar preset (--hw); '{spec.name}' is a {spec.kind} "
                             "description")
    cfg = SimConfig.from_hw(spec, seed=seed, **{k: opts.get(k) for k in keys})
    bits = parse_bits(opts.get("adc_bits")) or [cfg.adc_bits]
    return cfg, bits


def _sim_name(stem: str, bits: list[int], b: int) -> str:
    return f"{stem}.sim.onnx" if len(bits) == 1 else f"{stem}.sim-adc{b or 'ideal'}.onnx"


def simulate_files(variants: dict[str, onnx.ModelProto], stems: dict[str, str], cfg: SimConfig, bits: list[int],
                   opts: dict, *, calib: Any = None, calib_samples: int = CALIB_SAMPLES, write_models: bool = True,
                   log=print) -> tuple[dict[str, bytes], SweepResult | None]:
    """Files for OUTDIR: simulated models (one per variant and ADC setting) and, with labelled
    ``opts['inputs']``, the accuracy table/plot (``nonideal.{json,md}``, ``nonideal_adc.png``)."""
    from vitc.compiler.calibration import load_dataset
    from vitc.compiler.io import model_bytes
    files: dict[str, bytes] = {}
    sweep = None
    if opts.get("inputs"):
        first = next(iter(variants.values()))
        data = load_dataset(opts["inputs"], first).take(opts.get("samples"))

        def progress(v, b, m):
            acc = "" if m.cand_accuracy is None else f"accuracy {100 * m.cand_accuracy:.2f} %, "
            log(f"  {v} @ {'ideal ADC' if b == 0 else f'{b}-bit ADC'}: {acc}top-1 agreement "
                f"{100 * (m.top1_agreement or 0):.2f} %, cosine {m.cosine_mean:.4f}")
        sweep, kept = adc_sweep(variants, cfg, bits, data, calib=calib, calib_samples=calib_samples,
                                keep_models=write_models, progress=progress)
        files.update(sweep.files())
        if write_models:
            for v, per in kept.items():
                for b, res in per.items():
                    files.update(model_bytes(res.model, _sim_name(stems[v], bits, b), external=False))
    elif write_models:
        for v, model in variants.items():
            for b in bits:
                res = simulate_model(model, cfg.with_(adc_bits=b), calib=calib, calib_samples=calib_samples)
                if b == bits[0]:
                    log(res.summary())
                files.update(model_bytes(res.model, _sim_name(stems[v], bits, b), external=False))
    return files, sweep


def emit_sim_files(cm, result_model: onnx.ModelProto, hw, opts: dict, seed: int = 0, calib: Any = None,
                   calib_samples: int | None = None, reports: dict | None = None) -> tuple[dict[str, bytes], str]:
    """For ``vitc compile --emit-sim``: the simulated rewritten graph(s) and, with labelled
    ``--sim-inputs``, the accuracy table for the original and the rewritten model — also
    appended to ``report.md`` / ``report.html`` when ``reports`` (the OUTDIR files so far) has them."""
    cfg, bits = config_from_options(hw, opts, seed)
    lines: list[str] = []
    variants = {"compiled": result_model}
    stems = {"compiled": cm.name}
    rewritten = bool(cm.records)
    if opts.get("inputs") and rewritten and cm.original is not None:
        variants = {"original": cm.original, ",".join(r.name for r in cm.records): result_model}
        stems = {"original": f"{cm.name}.original", list(variants)[1]: cm.name}
    files, sweep = simulate_files(variants, stems, cfg, bits, opts, calib=calib,
                                  calib_samples=calib_samples or CALIB_SAMPLES, log=lines.append)
    if sweep is not None:
        lines.append(sweep.markdown(plot=None).strip())
        reports = reports or {}
        if "report.md" in reports:
            files["report.md"] = reports["report.md"].rstrip(b"\n") + b"\n\n" + files["nonideal.md"]
        html_doc = reports.get("report.html", b"")
        if b"</body>" in html_doc:
            head, _, tail = html_doc.rpartition(b"</body>")
            files["report.html"] = head + sweep.html_section().encode() + b"</body>" + tail
    return files, "\n".join(lines)


def cmd_simulate(args) -> int:
    """``vitc simulate MODEL.onnx [MORE.onnx ...]`` (see ``vitc simulate --help``)."""
    from vitc.compiler.io import load_model, write_outputs
    opts = options_from_args(args)
    if args.inputs:
        opts["inputs"] = args.inputs
    if args.samples:
        opts["samples"] = args.samples
    cfg, bits = config_from_options(args.hw, opts, args.seed)
    variants, stems = {}, {}
    for path in args.models:
        stem = Path(path).name.removesuffix(".onnx")
        label = stem.removesuffix(".vitc")
        while label in variants:
            label += "'"
        variants[label] = load_model(path).model
        stems[label] = stem
    out = args.output or f"{Path(args.models[0]).name.removesuffix('.onnx')}_sim"
    print(f"simulating {len(variants)} model(s) on {cfg.source}: {cfg.describe()}"
          + (f"; ADC bits {', '.join(str(b) or 'ideal' for b in bits)}" if len(bits) > 1 else ""))
    files, sweep = simulate_files(variants, stems, cfg, bits, opts, calib=args.calib,
                                  calib_samples=args.calib_samples or CALIB_SAMPLES)
    written = write_outputs(out, files)
    if sweep is not None:
        print(sweep.markdown(plot=None).strip())
    print(f"wrote {len(written)} files to {out}/")
    return 0


def add_simulate_parser(sub) -> None:
    """Register ``vitc simulate`` on the CLI's sub-parsers."""
    p = sub.add_parser("simulate", help="run models as IMC crossbars compute (ADC, DAC, cells, variation); "
                                        "accuracy vs ADC bits")
    p.add_argument("models", nargs="+", help="ONNX model(s): an original and/or compiled (.vitc.onnx) variants")
    p.add_argument("--hw", default="rram-128", help="hardware preset name or TOML file (default rram-128)")
    p.add_argument("--inputs", help="labelled data (.npz with 'labels') for the accuracy table")
    p.add_argument("--samples", type=int, help="use the first N samples of --inputs")
    p.add_argument("--calib", help="calibration data for --input-scaling static / --adc-range calibrated "
                                   "(default: synthetic)")
    p.add_argument("--calib-samples", type=int, help=f"calibration samples (default {CALIB_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="variation seed")
    p.add_argument("-o", "--output", help="output folder (default <model>_sim)")
    add_sim_arguments(p)
    p.set_defaults(func=cmd_simulate)


def nonideal_note(candidate, result) -> str:
    """For ``vitc validate``: a line naming the non-ideal accuracy when ``candidate`` is a
    simulated model (empty string otherwise)."""
    try:
        model = candidate if isinstance(candidate, onnx.ModelProto) else onnx.load(str(candidate),
                                                                                    load_external_data=False)
    except Exception:  # noqa: BLE001 - the validation itself reports unreadable models
        return ""
    cfg = sim_config_of(model)
    if cfg is None:
        return ""
    accs = [o.cand_accuracy for o in result.outputs if o.cand_accuracy is not None]
    what = (f"non-ideal accuracy {100 * accs[0]:.2f} %" if accs else
            "non-ideal outputs (pass --labels for the non-ideal accuracy)")
    adc = f"{cfg['adc_bits']}-bit ADC" if cfg.get("adc_bits") else "ideal ADC"
    return (f"{what}: candidate simulates crossbars ({cfg.get('source') or 'custom'}, {cfg.get('mode')}, {adc}); "
            "differences from the reference are the modelled non-idealities")


__all__ = ["nonideal_note", "simulate_model", "SimResult", "SimLayer", "sim_config_of", "adc_sweep", "SweepResult",
           "parse_bits",
           "add_sim_arguments", "options_from_args", "config_from_options", "emit_sim_files", "cmd_simulate",
           "add_simulate_parser", "simulate_files"]
