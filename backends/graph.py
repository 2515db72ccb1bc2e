"""The compiled ONNX model as a flat, shaped op list and a networkx DAG, for costing.

:func:`prepare_graph` reads the top-level nodes of the model with concrete input shapes
(batch and sequence length fixed; :mod:`vitc.runtime.shapes`), marks which tensors are
static (initializers, constants and anything computed only from them), and attaches the
block and role each node carries (``vitc.block`` / ``vitc.role`` metadata written by the
front end; for raw models the names, :mod:`vitc.backends.raw_adapter`).

``ai.vitc`` custom ops are never inlined. Each is one node whose attributes and input
shapes say what it computes; with ``lower_cores`` (targets that cost cores on generic units)
it becomes the steps its op declares (:func:`vitc.runtime.ops.work`) — primitive products and
element-wise ops with shapes — at the node's position; without, it stays one ``ai.vitc`` node
that a cost model prices as a whole (the systolic attention model). Model-local functions of
other domains (exporters') are inlined with ``onnx.inliner`` first.

Only shapes matter: weights are never converted to numpy; large initializers are replaced
by shaped graph inputs before shape inference.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field

import onnx
from onnx import helper, inliner

from vitc.backends.raw_adapter import block_from_name, role_from_name
from vitc.core.errors import VitcInputError
from vitc.runtime import shapes
from vitc.runtime.function_builder import DOMAIN
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.ops import WORK, work

# Ops that only move or reinterpret data (no arithmetic): costed as free.
FREE_OPS = {
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Cast", "Shape",
    "Gather", "GatherElements", "Slice", "Split", "Concat", "Constant", "ConstantOfShape",
    "Expand", "Size", "Range", "Dropout", "CastLike", "Tile", "Pad", "SplitToSequence",
    "SequenceAt", "NonZero", "Unique", "ScatterND", "Where", "Trilu", "EyeLike", "DepthToSpace",
    "SpaceToDepth", "Optional", "OptionalGetElement", "GlobalLpPool",
}


@dataclass
class OpNode:
    """One op with shapes: a top-level ONNX node, a whole ``ai.vitc`` core, or one declared step
    of a lowered core.

    ``origin``: name of the top-level node it belongs to (itself unless it is a step);
    ``origin_type``: that node's ``domain::op_type``; ``in_shapes``/``out_shapes``: concrete
    dims (``None`` where unknown); ``static_in``: whether each input is a compile-time
    constant.
    """

    name: str
    op_type: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    origin: str
    origin_type: str
    in_shapes: list
    out_shapes: list
    static_in: list[bool]
    block: int | None = None
    role: str | None = None
    hint_role: str | None = None      # raw models only: the role its name suggests (raw_adapter)
    layer: str = ""
    index: int = 0


@dataclass
class PreparedGraph:
    """Ops in topological order, the DAG over them, and model facts."""

    ops: list[OpNode]
    dag: nx.DiGraph
    init_shapes: dict[str, tuple[int, ...]]
    init_types: dict[str, int]
    fingerprint: str
    batch: int
    seq_len: int | None
    input_shapes: dict[str, list[int]]
    warnings: list[str] = field(default_factory=list)
    origin_nodes: list[str] = field(default_factory=list)
    producer: dict[str, int] = field(default_factory=dict)
    raw: bool = False        # not compiled by vitc: blocks and roles guessed from names

    _PASS_THROUGH = ("DequantizeLinear", "Transpose", "Cast", "Identity", "Reshape", "Squeeze", "Unsqueeze",
                     "QuantizeLinear", "Mul", "Div")

    def weight_source(self, tensor: str) -> str:
        """The initializer a static tensor comes from (through DequantizeLinear, Transpose ...)."""
        seen = 0
        while tensor not in self.init_shapes and tensor in self.producer and seen < 8:
            op = self.ops[self.producer[tensor]]
            if op.op_type not in self._PASS_THROUGH or not op.inputs:
                break
            cands = [t for t in op.inputs if t in self.init_shapes]
            if cands:
                return max(cands, key=lambda t: math.prod(self.init_shapes[t]))
            tensor = op.inputs[0]
            seen += 1
        return tensor


# --------------------------------------------------------------------------- fingerprint
def model_fingerprint(model: onnx.ModelProto) -> str:
    """A cheap content key of the graph structure and weight shapes (not weight values)."""
    h = hashlib.sha256()
    g = model.graph
    for n in g.node:
        h.update(f"{n.domain}|{n.op_type}|{n.name}|{','.join(n.input)}|{','.join(n.output)}\n".encode())
        for a in n.attribute:
            h.update(a.SerializeToString())
    for t in g.initializer:
        h.update(f"{t.name}|{t.data_type}|{list(t.dims)}\n".encode())
    for vi in list(g.input) + list(g.output):
        h.update(vi.SerializeToString())
    for f in model.functions:
        h.update(f.SerializeToString())
    for o in model.opset_import:
        h.update(f"{o.domain}:{o.version}".encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- nodes
def _attrs(node: onnx.NodeProto) -> dict:
    out = {}
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            continue          # sub-graph attributes (If/Loop bodies): the op is costed as one
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _meta(node: onnx.NodeProto) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def is_compiled(model: onnx.ModelProto) -> bool:
    """True for models written by ``vitc compile`` (they carry block/role metadata)."""
    return any(p.key == "vitc.passes" for p in model.metadata_props)


def _top_level(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with foreign model-local functions inlined (onnx.inliner) and every node named."""
    foreign = [(f.domain, f.name) for f in model.functions if f.domain != DOMAIN]
    if foreign:
        model = inliner.inline_selected_functions(model, foreign)
    names = [n.name for n in model.graph.node]
    if all(names) and len(set(names)) == len(names):
        return model
    named = onnx.ModelProto()
    named.CopyFrom(model)
    seen: set[str] = set()
    for i, n in enumerate(named.graph.node):
        if not n.name or n.name in seen:
            base, k = n.name or f"{n.op_type}_{i}", 1
            name = base
            while name in seen:
                name, k = f"{base}__{k}", k + 1
            n.name = name
        seen.add(n.name)
    return named


_COSTED_WITH_SHAPES = {"MatMul", "Gemm", "Conv", "LSTM", "MatMulInteger", "QLinearMatMul"}


def _unknown(tensors, info: dict) -> list[str]:
    return [t for t in tensors if t and (t not in info or info[t][1] is None or any(d is None for d in info[t][1]))]


# --------------------------------------------------------------------------- prepare
@dataclass
class ShapedModel:
    """The expensive, target-independent part of preparing a model: top-level nodes as
    :class:`OpNode` s with concrete shapes, and for each ``ai.vitc`` core its declared steps."""

    nodes: list[OpNode]
    steps: dict[str, list[OpNode]]     # core node name -> its steps (absent: cannot be lowered)
    init_shapes: dict[str, tuple[int, ...]]
    init_types: dict[str, int]
    fingerprint: str
    batch: int
    seq_len: int | None
    input_shapes: dict[str, list[int]]
    warnings: list[str]
    raw: bool


def shape_model(model: onnx.ModelProto, *, batch: int = 1, seq_len: int | None = None,
                input_shapes: dict[str, tuple[int, ...]] | None = None) -> ShapedModel:
    """Shapes, constants, blocks and roles of every top-level node (see module docstring)."""
    if batch < 1:
        raise VitcInputError(f"batch must be >= 1 (got {batch})")
    fingerprint = model_fingerprint(model)
    model = _top_level(model)
    raw = not is_compiled(model)
    nodes = list(model.graph.node)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    input_shapes = shapes.concrete_inputs(model, batch, seq_len, input_shapes)
    info = shapes.infer(model, input_shapes)
    warnings: list[str] = []
    wanted = sorted(set(_unknown([t for n in nodes if n.op_type in _COSTED_WITH_SHAPES or n.domain == DOMAIN
                                  for t in list(n.input) + list(n.output)], info)))
    if wanted:
        note = shapes.resolve_by_running(model, nodes, synthetic_inputs(model, shapes=input_shapes), info, wanted)
        warnings += [note] if note else []
    init_shapes = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    init_types = {t.name: t.data_type for t in model.graph.initializer}
    static = shapes.static_tensors(nodes, init_shapes)

    def dims(t: str):
        return info.get(t, (None, None))[1] if t else None

    ops, steps = [], {}
    for n in nodes:
        meta = _meta(n)
        blk = meta.get("vitc.block")
        block = int(blk) if blk is not None and str(blk).lstrip("-").isdigit() else (
            block_from_name(n.name) if raw else None)
        role = meta.get("vitc.role")
        otype = f"{n.domain + '::' if n.domain else ''}{n.op_type}"
        attrs = _attrs(n)
        base = dict(origin=n.name, origin_type=otype, block=block, role=role,
                    hint_role=role_from_name(n.name) if raw else None)
        if n.domain == DOMAIN and n.op_type in WORK:
            declared = _lower(n, attrs, [dims(t) for t in n.input], opset, warnings)
            if declared is not None:
                steps[n.name] = [OpNode(name=f"{n.name}/{st.op_type}_{j}", op_type=st.op_type, domain="",
                                        inputs=[("" if src is None else n.input[src[1]] if src[0] == "input"
                                                 else f"{n.name}/step{src[1]}") for src in st.reads],
                                        outputs=[n.output[0] if j == len(declared) - 1 else f"{n.name}/step{j}"],
                                        attrs=dict(st.attrs), in_shapes=[list(x) for x in st.in_shapes],
                                        out_shapes=[list(st.out_shape)], static_in=list(st.static_in), **base)
                                 for j, st in enumerate(declared)]
        elif n.domain == DOMAIN:
            warnings.append(f"no declared work for {n.domain}::{n.op_type} ({n.name}); costed as free")
        elif n.domain not in ("", "ai.onnx", "com.microsoft"):
            warnings.append(f"custom op {n.domain}::{n.op_type} ({n.name}) has no cost rule; costed as free")
        ops.append(OpNode(name=n.name, op_type=n.op_type, domain=n.domain, inputs=list(n.input),
                          outputs=list(n.output), attrs=attrs,
                          in_shapes=[dims(t) for t in n.input], out_shapes=[dims(t) for t in n.output],
                          static_in=[(t in static) or t == "" for t in n.input], **base))
    return ShapedModel(ops, steps, init_shapes, init_types, fingerprint, batch, seq_len,
                       {k: list(v) for k, v in input_shapes.items()}, warnings, raw)


def build_graph(sm: ShapedModel, lower=True) -> PreparedGraph:
    """The op list and DAG of ``sm``; each core whose ``lower(op)`` is true (or all, for
    ``lower=True``) is replaced by its declared steps."""
    ops: list[OpNode] = []
    for op in sm.nodes:
        if op.name in sm.steps and (lower(op) if callable(lower) else bool(lower)):
            ops.extend(dataclasses.replace(s) for s in sm.steps[op.name])
        else:
            ops.append(dataclasses.replace(op))
    producer: dict[str, int] = {}
    for idx, op in enumerate(ops):
        op.index = idx
        for t in op.outputs:
            if t:
                producer[t] = idx
    import networkx as nx    # noqa: PLC0415 - 0.2 s to import; front-end-only runs never need it
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(ops)))
    for op in ops:
        for t in op.inputs:
            p = producer.get(t) if t else None
            if p is not None and p != op.index:
                dag.add_edge(p, op.index)
    if not nx.is_directed_acyclic_graph(dag):
        raise VitcInputError("the compiled graph has a cycle; cannot schedule it")
    return PreparedGraph(ops=ops, dag=dag, init_shapes=sm.init_shapes, init_types=sm.init_types,
                         fingerprint=sm.fingerprint, batch=sm.batch, seq_len=sm.seq_len,
                         input_shapes=sm.input_shapes, warnings=list(sm.warnings),
                         origin_nodes=[n.name for n in sm.nodes], producer=producer, raw=sm.raw)


def prepare_graph(model: onnx.ModelProto, *, batch: int = 1, seq_len: int | None = None,
                  input_shapes: dict[str, tuple[int, ...]] | None = None, lower_cores=True) -> PreparedGraph:
    """:func:`shape_model` then :func:`build_graph` (every core lowered by default)."""
    return build_graph(shape_model(model, batch=batch, seq_len=seq_len, input_shapes=input_shapes), lower_cores)


def _lower(node: onnx.NodeProto, attrs: dict, in_shapes: list, opset: int, warnings: list[str]):
    """The declared steps of a core node, or None (with a warning) when its shapes are unknown."""
    if any(s is None or any(d is None for d in s) for s in in_shapes[:3]):
        warnings.append(f"{node.name}: unknown input shapes; {node.op_type} not costed")
        return None
    try:
        return work(node.op_type, attrs, [tuple(s) for s in in_shapes if s is not None], opset)
    except (KeyError, ValueError, ZeroDivisionError, IndexError) as exc:
        warnings.append(f"{node.name}: {node.op_type} work could not be derived ({type(exc).__name__}); not costed")
        return None


__all__ = ["OpNode", "PreparedGraph", "ShapedModel", "shape_model", "build_graph", "prepare_graph",
           "model_fingerprint", "FREE_OPS", "is_compiled"]
