"""Test helpers: single-core models of an ai.vitc op, run in onnxruntime with every intermediate
exposed (the inlined function body), to check what the emitted graphs really compute."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from vitc.compiler.opcount import OpCounts, _ZERO_COST, node_counts
from vitc.runtime.function_builder import DOMAIN, DOMAIN_VERSION
from vitc.runtime.ops import functions_for, overload_for
from vitc.runtime.session import max_ir_version, open_session, with_extra_outputs


def count_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, OpCounts]:
    """Per-node counts of ``model`` (model-local functions inlined), shapes taken from a run.

    Keys are the inlined node names; runs the model once in onnxruntime with every
    intermediate exposed, so the shapes are the ones actually computed.
    """
    from onnx import inliner
    flat = inliner.inline_local_functions(model)
    names = [o for n in flat.graph.node for o in n.output if o]
    sess = open_session(with_extra_outputs(flat, names))
    wanted = list(dict.fromkeys(names))
    values = dict(zip(wanted, sess.run(wanted, feeds)))
    values.update({k: np.asarray(v) for k, v in feeds.items()})
    for init in flat.graph.initializer:
        values[init.name] = onnx.numpy_helper.to_array(init)
    out = {}
    for i, node in enumerate(flat.graph.node):
        if node.op_type in _ZERO_COST:
            continue
        ins = [values[x].shape if x in values else None for x in node.input if x]
        outs = [values[x].shape for x in node.output if x in values]
        out[node.name or f"{node.op_type}_{i}"] = node_counts(node.op_type, ins, outs)
    return out


def largest_intermediate(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """Shapes of every intermediate tensor of ``model`` (functions inlined) on ``feeds``."""
    from onnx import inliner
    flat = inliner.inline_local_functions(model)
    names = list(dict.fromkeys(o for n in flat.graph.node for o in n.output if o))
    sess = open_session(with_extra_outputs(flat, names))
    return {n: v.shape for n, v in zip(names, sess.run(names, feeds))}


def single_core_model(op_type: str, attrs: dict, n_inputs: int, opset: int) -> onnx.ModelProto:
    """A model with one ``ai.vitc`` core node on inputs q, k, v [B, N, C] (+ mask [B, 1, 1, N])."""
    ins = ["q", "k", "v", "mask"][:n_inputs]
    node = helper.make_node(op_type, ins, ["y"], name="core", domain=DOMAIN, **attrs)
    node.overload = overload_for(op_type, n_inputs, node)
    vis = [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["B", "N", "C"] if x != "mask" else ["B", 1, 1, "N"])
           for x in ins]
    graph = helper.make_graph([node], "core", vis, [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "N", "C"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset),
                                                    helper.make_opsetid(DOMAIN, DOMAIN_VERSION)],
                              functions=functions_for([(op_type, node.overload)], opset))
    model.ir_version = max_ir_version()
    return model


def core_feeds(n: int, c: int, n_inputs: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {x: rng.standard_normal((1, n, c)).astype(np.float32) for x in ("q", "k", "v")}
    if n_inputs == 4:
        feeds["mask"] = np.zeros((1, 1, 1, n), np.float32)
    return feeds


