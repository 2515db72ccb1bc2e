"""Exporter noise removal before recognition: Identity aliases, no-op Casts, node names."""
from __future__ import annotations

import onnx_graphsurgeon as gs

from vitc.core.graph import const_value, producer

_ONNX_FLOAT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16"}


def _bypass(graph: gs.Graph, node: gs.Node) -> bool:
    """Route consumers of ``node``'s output to its input; False if the output is a graph output."""
    src, dst = node.inputs[0], node.outputs[0]
    if dst in graph.outputs:
        return False
    for consumer in list(dst.outputs):
        for j, t in enumerate(consumer.inputs):
            if t is dst:
                consumer.inputs[j] = src
    node.outputs.clear()
    return True


def _dtype_name(t: gs.Tensor) -> str | None:
    if isinstance(t, gs.Constant):
        return str(t.values.dtype)
    if t.dtype is None:
        value = const_value(t)
        return str(value.dtype) if value is not None else None
    try:
        import numpy as np
        return str(np.dtype(t.dtype))
    except TypeError:
        return None


def normalize(graph: gs.Graph) -> dict[str, int]:
    """Remove Identity nodes and Casts to the type their input already has; name every node.

    Returns counts of what was removed (for ``vitc inspect``).
    """
    removed = {"Identity": 0, "Cast": 0}
    for node in list(graph.nodes):
        if node.op == "Identity" and node.domain in ("", None):
            removed["Identity"] += _bypass(graph, node)
        elif node.op == "Cast" and node.inputs and node.outputs:
            target = _ONNX_FLOAT_TYPES.get(node.attrs.get("to"))
            if target is not None and _dtype_name(node.inputs[0]) == target:
                removed["Cast"] += _bypass(graph, node)
    graph.cleanup(remove_unused_graph_inputs=False)
    seen: set[str] = set()
    for k, node in enumerate(graph.nodes):
        if not node.name or node.name in seen:
            node.name = f"{node.name or node.op}__{k}"
        seen.add(node.name)
    return removed


def upstream(t: gs.Tensor, depth: int) -> list[gs.Node]:
    """Nodes within ``depth`` producer steps of ``t`` (breadth first)."""
    out, frontier = [], [t]
    for _ in range(depth):
        nxt = []
        for x in frontier:
            node = producer(x)
            if node is not None and node not in out:
                out.append(node)
                nxt.extend(i for i in node.inputs if i is not None)
        frontier = nxt
    return out
