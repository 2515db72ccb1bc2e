"""Turn a :class:`CompiledModel` back into a valid, deterministic ONNX model.

Adds the ``ai.vitc`` function bodies the graph uses, the opset import for the domain,
function overloads (chosen by arity), node metadata (block / role), and the lowest IR
version the graph needs (the input's; 10 where function overloads are used), so a compiled
model loads in the same onnxruntime releases as its input (from 1.17, for IR 10).
"""
from __future__ import annotations

import onnx
import contextlib

import numpy as np
import onnx_graphsurgeon as gs
from onnx_graphsurgeon.ir.tensor import LazyValues
from onnx import helper

from vitc.core.errors import VitcInputError
from vitc.core.graph import MappedValues
from vitc.core.mapped import placeholder
from vitc.core.ir import CompiledModel
from vitc.core.version import VERSION
from vitc.runtime.function_builder import DOMAIN, DOMAIN_VERSION
from vitc.runtime.ops import functions_for, overload_for
from vitc.runtime.session import max_ir_version

MIN_IR_FOR_OVERLOADS = 10


#: initializers at least this large are left out of a light export (placeholders, data kept apart)
LIGHT_MIN_BYTES = 4096


@contextlib.contextmanager
def held_weights(graph: gs.Graph):
    """While active, the large initializers of ``graph`` (the input's TensorProtos, mapped arrays,
    arrays the front end or passes made) export as placeholders (dims, type, marked external);
    yields ``{name: TensorProto or array}``."""
    held: dict = {}
    swapped = []
    for t in graph.tensors().values():
        lazy = getattr(t, "_values", None)
        if isinstance(lazy, MappedValues):
            data, ph = lazy.array, placeholder(t.name, lazy.placeholder.data_type, lazy.placeholder.dims)
        elif isinstance(t, gs.Constant) and isinstance(lazy, LazyValues) and _nbytes(lazy.tensor) >= LIGHT_MIN_BYTES:
            data, ph = lazy.tensor, placeholder(t.name, lazy.tensor.data_type, lazy.tensor.dims)
        elif isinstance(t, gs.Constant) and isinstance(lazy, np.ndarray) and lazy.dtype.kind in "fiub" and \
                lazy.nbytes >= LIGHT_MIN_BYTES:           # a weight the front end or a pass made
            data, ph = lazy, placeholder(t.name, helper.np_dtype_to_tensor_dtype(lazy.dtype), lazy.shape)
        else:
            continue
        held[t.name] = data
        swapped.append((t, lazy))
        t._values = LazyValues(ph)
    try:
        yield held
    finally:
        for t, lazy in swapped:
            t._values = lazy


def emit_light(cm: CompiledModel) -> tuple[onnx.ModelProto, dict]:
    """:func:`emit` without copying any large weight: those initializers are placeholders and come
    back as ``{name: TensorProto or array}`` — what :class:`vitc.core.io.StreamedModel` writes
    from and :func:`vitc.runtime.session.open_session` runs from."""
    with held_weights(cm.graph) as held:
        model = emit(cm)
    return model, dict(held)


def _nbytes(t: onnx.TensorProto) -> int:
    if t.data_type in (onnx.TensorProto.STRING, onnx.TensorProto.UNDEFINED) or t.data_location == onnx.TensorProto.EXTERNAL:
        return 0
    return int(np.prod(t.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize


def emit(cm: CompiledModel) -> onnx.ModelProto:
    cm.graph.cleanup(remove_unused_graph_inputs=False).toposort()
    model = gs.export_onnx(cm.graph, do_type_check=False)
    used = []
    for node in model.graph.node:
        if node.domain == DOMAIN:
            node.overload = overload_for(node.op_type, len(node.input), node)
            used.append((node.op_type, node.overload))
        meta = cm.node_meta.get(node.name)
        if meta:
            del node.metadata_props[:]
            for k in sorted(meta):
                node.metadata_props.append(onnx.StringStringEntryProto(key=k, value=meta[k]))
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", cm.opset))
    extra = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx", DOMAIN)})
    for dom in extra:
        model.opset_import.append(helper.make_opsetid(dom, 1))
    if used:
        model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))
        model.functions.extend(functions_for(used, cm.opset))
    # the lowest IR version the graph needs: the input's, raised to 10 where function overloads are used
    base = cm.original.ir_version if cm.original is not None and cm.original.ir_version else 8
    model.ir_version = max(base, MIN_IR_FOR_OVERLOADS) if used else base
    if model.ir_version > max_ir_version():
        raise VitcInputError(f"the installed onnxruntime loads ONNX IR up to {max_ir_version()}; the compiled model "
                             f"needs IR {model.ir_version} (pip install -U onnxruntime)")
    model.producer_name, model.producer_version = "vitc", VERSION
    del model.metadata_props[:]
    for key, value in (("vitc.passes", ",".join(r.name for r in cm.records) or "none"),
                       ("vitc.blocks", str(len(cm.blocks)))):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return model
