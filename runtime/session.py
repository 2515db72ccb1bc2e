"""onnxruntime sessions: opening models, running them, exposing intermediate tensors."""
from __future__ import annotations

import functools
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from vitc.core.io import fits_in_protobuf

def session_options(threads: int | None = None) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return so


def open_session(model: onnx.ModelProto | str | os.PathLike, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session for an in-memory model (spilled to a temp file when > 2 GB) or a path."""
    if isinstance(model, (str, os.PathLike)):
        return ort.InferenceSession(os.fspath(model), session_options(threads), providers=["CPUExecutionProvider"])
    if fits_in_protobuf(model):
        return ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                    providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path, save_as_external_data=True, location="model.onnx.data")
        return ort.InferenceSession(path, session_options(threads), providers=["CPUExecutionProvider"])


def with_extra_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A shallow copy of ``model`` whose graph also outputs the tensors ``names``."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    for name in names:
        if name not in present:
            probe.graph.output.append(helper.make_empty_tensor_value_info(name))
            present.add(name)
    return probe


def run_with_intermediates(model: onnx.ModelProto, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Values of the intermediate tensors ``names`` for inputs ``feeds``."""
    sess = open_session(with_extra_outputs(model, names))
    wanted = list(dict.fromkeys(names))
    return dict(zip(wanted, sess.run(wanted, feeds)))


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
