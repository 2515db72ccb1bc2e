"""onnxruntime sessions: opening models, running them, exposing intermediate tensors."""
from __future__ import annotations

import functools
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper


def session_options(threads: int | None = None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return so


#: initializers at least this large are handed to onnxruntime as shared numpy buffers, not serialised
SHARED_MIN_BYTES = 4096
_SHARED_LOCATION = "__vitc_shared_initializer__"


def _nbytes(t: onnx.TensorProto) -> int:
    if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED):
        return 0
    return int(np.prod(t.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def light_model(model: onnx.ModelProto, outputs: list[str] | None = None,
                held: dict | None = None, zeros: bool = False,
                as_inputs: bool = False) -> tuple[onnx.ModelProto, dict]:
    """``model`` without its large initializers' data (placeholders marked external) plus the
    extra graph ``outputs``, and those initializers as numpy arrays: a session is built from the
    small proto with the arrays as shared initializers, so no weight is serialised or parsed.
    ``zeros``: large and placeholder initializers read as zeros (for runs that only need shapes;
    untouched zero pages cost no memory). ``as_inputs``: those initializers become graph inputs
    instead, fed with the arrays at run time (onnxruntime copies shared initializers into the
    session, never fed arrays: for one run, no copy of the weights at all)."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    src, g = model.graph, light.graph
    g.name = src.name
    g.node.extend(src.node)
    g.input.extend(src.input)
    g.output.extend(src.output)
    g.value_info.extend(src.value_info)
    g.sparse_initializer.extend(src.sparse_initializer)
    shared = {}
    held = held or {}
    graph_inputs = {i.name for i in src.input}     # an initializer that is also a graph input stays inline
    used = _used_names(src)
    for t in src.initializer:
        if t.name not in used:                     # onnxruntime drops unused initializers: nothing to share
            continue
        big = (t.data_location == onnx.TensorProto.EXTERNAL or _nbytes(t) >= SHARED_MIN_BYTES) and \
            t.name not in graph_inputs
        if t.name in held:
            h = held[t.name]
            shared[t.name] = numpy_helper.to_array(h) if isinstance(h, onnx.TensorProto) else h
        elif zeros and big:
            shared[t.name] = np.zeros(tuple(t.dims), helper.tensor_dtype_to_np_dtype(t.data_type))
        elif not big or t.data_location == onnx.TensorProto.EXTERNAL:
            g.initializer.append(t)
            continue
        else:
            shared[t.name] = numpy_helper.to_array(t)
        if as_inputs:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            continue
        ph = g.initializer.add()
        ph.name, ph.data_type = t.name, t.data_type
        ph.dims.extend(t.dims)
        ph.data_location = onnx.TensorProto.EXTERNAL
        ph.external_data.add(key="location", value=_SHARED_LOCATION)
    present = {o.name for o in g.output}
    for name in outputs or []:
        if name not in present:
            g.output.append(helper.make_empty_tensor_value_info(name))
            present.add(name)
    return light, shared


def _used_names(graph: onnx.GraphProto) -> set[str]:
    """Tensor names read by ``graph``'s nodes (sub-graphs included) or returned by it."""
    out = {o.name for o in graph.output}
    for n in graph.node:
        out.update(n.input)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out |= _used_names(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    out |= _used_names(g)
    return out


def open_session(model: onnx.ModelProto | str | os.PathLike, threads: int | None = None,
                 outputs: list[str] | None = None, prepack: bool = True, held: dict | None = None,
                 zeros: bool = False) -> ort.InferenceSession:
    """A CPU session for a model path or an in-memory model, whose graph also outputs the
    intermediate tensors ``outputs``. In-memory models never serialise their weights: they reach
    onnxruntime as shared numpy buffers (kept alive with the session); ``held``: the data of a
    light model's placeholder initializers; ``prepack=False`` skips onnxruntime's weight
    pre-packing (one run: less time and memory)."""
    so = session_options(threads)
    if not prepack:
        so.add_session_config_entry("session.disable_prepacking", "1")
    if isinstance(model, (str, os.PathLike)):
        if outputs:
            return open_session(onnx.load(os.fspath(model)), threads, outputs, prepack)
        return ort.InferenceSession(os.fspath(model), so, providers=["CPUExecutionProvider"])
    light, shared = light_model(model, outputs, held, zeros)
    if shared:
        names = list(shared)
        so.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(shared[n]) for n in names])
    sess = ort.InferenceSession(light.SerializeToString(), so, providers=["CPUExecutionProvider"])
    sess._vitc_shared = shared          # onnxruntime reads these buffers for the session's lifetime
    return sess


def with_extra_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph also outputs the tensors ``names`` (for files; to run one,
    ``open_session(model, outputs=names)`` avoids the copy)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in names:
        if name not in present:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
            present.add(name)
    return probe


def run_with_intermediates(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray],
                           held: dict | None = None) -> dict[str, np.ndarray]:
    """Values of the intermediate tensors ``names`` for inputs ``feeds`` (one run; the large
    weights are fed as inputs, so onnxruntime holds no copy of them)."""
    wanted = list(dict.fromkeys(names))
    light, weights = light_model(model, wanted, held, as_inputs=True)
    so = session_options()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL   # one run: nothing to gain
    sess = ort.InferenceSession(light.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return dict(zip(wanted, sess.run(wanted, {**feeds, **weights})))


@functools.lru_cache(maxsize=1)
def max_ir_version() -> int:
    """The highest ONNX IR version the installed onnxruntime loads (probed once)."""
    for ir in range(onnx.IR_VERSION, 6, -1):
        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = ir
        try:
            ort.InferenceSession(m.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
            return ir
        except Exception:  # noqa: BLE001 - any refusal means "too new"
            continue
    return 8
