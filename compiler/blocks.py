"""EncoderBlock records: where each block's pieces are in the canonical graph.

Records hold tensor and node *names*, so they stay valid while passes edit the graph
(look them up with ``CompiledModel.node`` / ``.tensor``).
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from vitc.core.graph import producer, single_consumer, weight_input
from vitc.compiler.normalize import upstream


def norm_form(t: gs.Tensor) -> tuple[str | None, str]:
    """(node name, form) of the normalisation producing ``t`` — op / decomposed / skip-layernorm."""
    name, form, _ = normalisation(t)
    return name, form


def normalisation(t: gs.Tensor) -> tuple[str | None, str, gs.Tensor | None]:
    """(node name, form, normalised input) of the LayerNorm producing ``t``, or (None, "none", None)."""
    node = producer(t)
    if node is None:
        return None, "none", None
    if node.op == "LayerNormalization":
        return node.name, "op", node.inputs[0]
    if node.op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
        return node.name, "skip-layernorm", None
    if node.op in ("Add", "Mul"):
        nodes = upstream(t, 10)
        ops = {n.op for n in nodes}
        if "ReduceMean" in ops and ("Sqrt" in ops or "Pow" in ops):
            outer = [n for n in nodes if n.op == "ReduceMean"
                     and any(c.op == "Sub" and c in nodes for c in n.inputs[0].outputs)]
            return node.name, "decomposed", outer[0].inputs[0] if outer else None
    return None, "none", None


def gelu_form(nodes: list[gs.Node]) -> str:
    ops = {n.op for n in nodes}
    if "Gelu" in ops:
        return "op"
    if ops & {"BiasGelu", "FastGelu"}:
        return "contrib-" + sorted(ops & {"BiasGelu", "FastGelu"})[0]
    if "Erf" in ops:
        return "erf"
    if "Tanh" in ops:
        return "tanh"
    if "Relu" in ops:
        return "relu"
    return "unknown"


def _next_weight_matmul(t: gs.Tensor, limit: int = 24) -> tuple[gs.Node | None, list[gs.Node]]:
    """First MatMul/Gemm with a constant weight downstream of ``t`` along single consumers."""
    path = []
    for _ in range(limit):
        consumers = [c for c in t.outputs]
        if not consumers:
            return None, path
        mm = next((c for c in consumers if weight_input(c) is not None and c.inputs[0] is t), None)
        if mm is not None:
            return mm, path
        # follow the first non-residual consumer
        nxt = next((c for c in consumers if c.op not in ("Add",) or len(consumers) == 1), consumers[0])
        path.append(nxt)
        if not nxt.outputs:
            return None, path
        t = nxt.outputs[0]
    return None, path


def residual_of(t: gs.Tensor) -> tuple[gs.Node | None, gs.Tensor | None]:
    """The residual ``Add`` consuming ``t`` (through Dropout/Identity) and its other operand."""
    for _ in range(4):
        c = single_consumer(t)
        if c is None:
            return None, None
        if c.op == "Add":
            other = c.inputs[1] if c.inputs[0] is t else c.inputs[0]
            return c, other
        if c.op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
            return c, c.inputs[1] if c.inputs[0] is t else c.inputs[0]
        if c.op not in ("Dropout", "Identity", "Cast"):
            return None, None
        t = c.outputs[0]
    return None, None


def describe_mlp(after: gs.Tensor, post_ln: bool) -> dict:
    """fc1 / activation / fc2 / second residual (and, post-LN, its norm) downstream of ``after``."""
    fc1, path1 = _next_weight_matmul(after)
    if fc1 is None:
        return {"mlp_fc1": None, "mlp_fc2": None, "norm2": None, "gelu": "none", "output": None}
    fc2, path2 = _next_weight_matmul(fc1.outputs[0])
    norm2 = None
    if not post_ln and path1:
        norm2, _ = norm_form(path1[-1].outputs[0])
    out = None
    if fc2 is not None:
        t = fc2.outputs[0]
        if (c := single_consumer(t)) is not None and c.op == "Add" and len(c.inputs) == 2:
            t = c.outputs[0]  # fc2 bias
        res, _ = residual_of(t)
        if res is not None and res.op.startswith("Skip"):
            out, norm2 = res.outputs[0], res.name
        elif res is not None:
            out = res.outputs[0]
            nxt = single_consumer(out)
            if post_ln and nxt is not None and nxt.op == "LayerNormalization":
                out = nxt.outputs[0]
                norm2 = nxt.name
    return {"mlp_fc1": fc1.name, "mlp_fc2": fc2.name if fc2 else None, "norm2": norm2,
            "gelu": gelu_form(path2), "output": out.name if out is not None else None}
