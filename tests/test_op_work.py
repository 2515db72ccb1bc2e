"""Every ai.vitc op's declared work equals the arithmetic of its function body.

The backends cost a custom op from its declared work (:mod:`vitc.runtime.op_registry`) and never
inline it; this test inlines the body (onnx.inliner), runs it in onnxruntime to get every
intermediate shape, and checks that the non-layout nodes are exactly the declared steps: same
op types in the same order, same operand and result shapes, same constant operands.
"""
from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, inliner

from vitc.runtime import shapes
from vitc.runtime.ops import OPS, WORK, functions_for, overload_for, work
from vitc.runtime.session import max_ir_version, open_session, with_extra_outputs
from vitc.runtime.taylor_ops import CENTERINGS, VARIANTS, can_simplify, hybrid_attributes

LAYOUT = {"Reshape", "Transpose", "Shape", "Gather", "Concat", "Cast", "Constant", "Identity", "Unsqueeze",
          "Squeeze", "Slice", "Split", "Expand", "Flatten"}


def _configs():
    yield "Attention", {"num_heads": 3, "scale": 0.25}, False
    yield "Attention", {"num_heads": 3, "scale": 0.25}, True
    for variant in VARIANTS:
        for centering in CENTERINGS:
            for simplified in (0, 1):
                if simplified and not can_simplify(variant, centering):
                    continue
                for masked in (False, True):
                    attrs = {"num_heads": 3, "scale": 0.25, "variant": variant, "centering": centering,
                             "simplified": simplified}
                    yield "TaylorAttention", attrs, masked
                    yield "TaylorAttention", {**attrs, **hybrid_attributes(3, [1])}, masked   # one exact head


def _model(op_type, attrs, masked, nq, nk, c, opset=17, shp=None):
    shp = shp or {"q": [2, nq, c], "k": [2, nk, c], "v": [2, nk, c], "mask": [2, 1, 1, nk]}
    ins = list(shp) if "mask" not in shp else ["q", "k", "v"] + (["mask"] if masked else [])
    node = helper.make_node(op_type, ins, ["y"], name="core", domain="ai.vitc", **attrs)
    node.overload = overload_for(op_type, len(ins), node)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(x, TensorProto.FLOAT, shp[x]) for x in ins],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.vitc", 1)],
                          functions=functions_for([(op_type, node.overload)], opset))
    m.ir_version = max_ir_version()
    return m, {x: shp[x] for x in ins}


@pytest.mark.parametrize("op_type,attrs,masked", list(_configs()),
                         ids=lambda v: v if isinstance(v, str) else "-".join(
                             str(x) for k, x in v.items() if k not in ("taylor_heads", "head_order"))
                         if isinstance(v, dict) else ("masked" if v else "plain"))
@pytest.mark.parametrize("opset", [17, 18])
def test_declared_work_is_the_body(op_type, attrs, masked, opset):
    nq = nk = 7
    if op_type == "Attention":
        nk = 5          # the softmax core already allows N_q != N_kv
    m, in_shapes = _model(op_type, attrs, masked, nq, nk, 12, opset)
    _assert_work_is_body(m, in_shapes, op_type, attrs, masked, opset)


def _assert_work_is_body(m, in_shapes, op_type, attrs, masked, opset):
    flat = inliner.inline_local_functions(m)
    names = [o for n in flat.graph.node for o in n.output if o]
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in in_shapes.items()}
    if masked:
        feeds["mask"] = np.where(rng.random(in_shapes["mask"]) < 0.3, -1e4, 0.0).astype(np.float32)
    values = dict(zip(names, open_session(with_extra_outputs(flat, names)).run(names, feeds)))
    values.update(feeds)
    static = shapes.static_tensors(flat.graph.node, set())
    body = [(n.op_type, tuple(tuple(values[i].shape) for i in n.input if i), tuple(values[n.output[0]].shape),
             tuple(i in static for i in n.input if i))
            for n in flat.graph.node if n.op_type not in LAYOUT]
    declared = [(s.op_type, s.in_shapes, s.out_shape, s.static_in)
                for s in work(op_type, attrs, [tuple(v) for v in in_shapes.values()], opset)]
    assert declared == body


LINEAR_SHAPES = {
    "FactorizedAttention": ({"scale": 0.5}, {"q": [6, 7, 4], "k": [6, 9, 4], "v": [6, 9, 5]}),
    "LinearAttention": ({"eps": 1e-6}, {"q": [6, 7, 4], "k": [6, 9, 4], "v": [6, 9, 5]}),
    "SeparableAttention": ({}, {"s": [2, 1, 3, 7], "k": [2, 4, 3, 7], "v": [2, 4, 3, 7]}),
}


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _linear_reference(op_type, attrs, f):
    if op_type == "FactorizedAttention":
        return attrs["scale"] * f["q"] @ (np.swapaxes(_softmax(f["k"], 1), 1, 2) @ f["v"])
    if op_type == "LinearAttention":
        kt = np.swapaxes(f["k"], 1, 2)
        return (f["q"] @ (kt @ f["v"])) / (f["q"] @ kt.sum(2, keepdims=True) + attrs["eps"])
    return f["v"] * (f["k"] * _softmax(f["s"], -1)).sum(-1, keepdims=True)


@pytest.mark.parametrize("op_type", sorted(LINEAR_SHAPES))
@pytest.mark.parametrize("opset", [17, 18])
def test_linear_attention_ops_compute_their_formula_and_declare_it(op_type, opset):
    attrs, shp = LINEAR_SHAPES[op_type]
    m, in_shapes = _model(op_type, attrs, False, 0, 0, 0, opset, shp=dict(shp))
    _assert_work_is_body(m, in_shapes, op_type, attrs, False, opset)
    rng = np.random.default_rng(1)
    feeds = {k: np.abs(rng.standard_normal(v)).astype(np.float32) for k, v in shp.items()}
    got = open_session(m).run(["y"], feeds)[0]
    np.testing.assert_allclose(got, _linear_reference(op_type, attrs, feeds), rtol=1e-5, atol=1e-5)


def test_every_op_declares_its_work():
    assert set(OPS) <= set(WORK)
