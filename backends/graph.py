"""The compiled ONNX model as a flat, shaped op list and a networkx DAG, for costing.

:func:`prepare_graph` expands every model-local function call (``ai.vitc`` custom ops)
into its body, keeps track of which original node each expanded node came from, runs
ONNX shape inference with concrete input shapes (batch and sequence length fixed), marks
which tensors are static (initializers, constants and anything computed only from them),
and groups ops into report layers (encoder block + role).

Only shapes matter: weights are never converted to numpy; large initializers are replaced
by shaped graph inputs before shape inference, so DeiT-Base (86 M parameters) prepares in
well under a second.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

import networkx as nx
import onnx
from onnx import helper

from vitc.core.errors import VitcInputError
from vitc.runtime import shapes
from vitc.runtime.inputs import synthetic_inputs

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
    """One expanded ONNX node with shapes.

    ``origin``: name of the top-level node it came from (itself when not expanded);
    ``origin_type``: that node's ``domain::op_type``; ``in_shapes``/``out_shapes``: concrete
    dims (``None`` where unknown); ``static_in``: whether each input is a compile-time
    constant; ``weights``: names of static inputs that are initializers (shape in
    ``init_shapes``).
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
    layer: str = ""
    index: int = 0


@dataclass
class PreparedGraph:
    """Expanded ops in topological order, the DAG over them, and model facts."""

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


# --------------------------------------------------------------------------- expansion
def _attr_value(a: onnx.AttributeProto):
    return helper.get_attribute_value(a)


def _meta(node: onnx.NodeProto) -> dict[str, str]:
    return {p.key: p.value for p in node.metadata_props}


def _expand(model: onnx.ModelProto) -> tuple[list[tuple[onnx.NodeProto, str, str]], list[str]]:
    """Top-level nodes with function calls replaced by their bodies.

    Returns (list of (node, origin name, origin type), warnings). Expanded nodes are named
    ``<call name>/<body op>_<i>``; body-internal tensors ``<call name>/<tensor>``.
    """
    funcs = {}
    for f in model.functions:
        funcs[(f.domain, f.name, getattr(f, "overload", ""))] = f
    out: list[tuple[onnx.NodeProto, str, str]] = []
    warnings: list[str] = []
    used_names: set[str] = set()

    def unique(name: str) -> str:
        base, i = name, 1
        while name in used_names:
            name = f"{base}__{i}"
            i += 1
        used_names.add(name)
        return name

    def emit(node: onnx.NodeProto, origin: str, otype: str, depth: int):
        key = (node.domain, node.op_type, getattr(node, "overload", ""))
        f = funcs.get(key)
        if f is None or depth > 16:
            if node.domain not in ("", "ai.onnx") and f is None:
                warnings.append(f"no function body for {node.domain}::{node.op_type} ({node.name}); costed as free")
            out.append((node, origin, otype))
            return
        prefix = node.name or f"{node.op_type}_{len(out)}"
        rename: dict[str, str] = {}
        for formal, actual in zip(f.input, node.input):
            rename[formal] = actual
        for formal, actual in zip(f.output, node.output):
            rename[formal] = actual
        call_attrs = {a.name: a for a in node.attribute}
        defaults = {a.name: a for a in getattr(f, "attribute_proto", [])}

        def r(t: str) -> str:
            if t == "":
                return t
            if t not in rename:
                rename[t] = f"{prefix}/{t}"
            return rename[t]

        for i, bn in enumerate(f.node):
            nn = onnx.NodeProto()
            nn.CopyFrom(bn)
            del nn.input[:]
            nn.input.extend(r(t) for t in bn.input)
            del nn.output[:]
            nn.output.extend(r(t) for t in bn.output)
            nn.name = unique(f"{prefix}/{bn.name or bn.op_type}_{i}")
            attrs = []
            for a in bn.attribute:
                if a.ref_attr_name:
                    src = call_attrs.get(a.ref_attr_name) or defaults.get(a.ref_attr_name)
                    if src is None:
                        continue
                    na = onnx.AttributeProto()
                    na.CopyFrom(src)
                    na.name = a.name
                    attrs.append(na)
                else:
                    attrs.append(a)
            del nn.attribute[:]
            nn.attribute.extend(attrs)
            # sub-graph attributes (If/Loop bodies) are left as is: costed as one op
            if not nn.metadata_props:
                nn.metadata_props.extend(node.metadata_props)
            emit(nn, origin, otype, depth + 1)

    for n in model.graph.node:
        nm = n.name
        if not nm or nm in used_names:
            nn = onnx.NodeProto()
            nn.CopyFrom(n)
            nn.name = unique(nm or f"{n.op_type}_{len(out)}")
            n = nn
        else:
            used_names.add(nm)
        emit(n, n.name, f"{n.domain + '::' if n.domain else ''}{n.op_type}", 0)
    return out, warnings


# --------------------------------------------------------------------------- shapes
_COSTED_WITH_SHAPES = {"MatMul", "Gemm", "Conv", "LSTM", "MatMulInteger", "QLinearMatMul"}


def _unknown_costed(nodes: list[onnx.NodeProto], info: dict) -> list[str]:
    """Inputs/outputs of costed ops whose shapes inference left unknown."""
    return sorted({t for n in nodes if n.op_type in _COSTED_WITH_SHAPES for t in list(n.input) + list(n.output)
                   if t and (t not in info or info[t][1] is None or any(d is None for d in info[t][1]))})


# --------------------------------------------------------------------------- layers
_BLOCK_RES = [re.compile(p) for p in (
    r"blocks?[._](\d+)", r"layers?[._](\d+)", r"encoder[._/]layer[._/](\d+)", r"/layer\.(\d+)/", r"h\.(\d+)",
)]


def block_from_name(name: str) -> int | None:
    """Encoder block index from an exporter node name (``/blocks.3/...``, ``/encoder/layer.3/...``)."""
    for rx in _BLOCK_RES:
        m = rx.search(name)
        if m:
            return int(m.group(1))
    return None


_ROLE_PATTERNS = [
    ("patch_embed", ("patch_embed", "embeddings/patch", "patch_embeddings")),
    ("qkv_proj", ("qkv",)),
    ("q_proj", ("q_proj", "query", "/q/", ".q.", "to_q")),
    ("k_proj", ("k_proj", "/key", "/k/", ".k.", "to_k")),
    ("v_proj", ("v_proj", "/value", "/v/", ".v.", "to_v")),
    ("out_proj", ("attn.proj", "attn/proj", "attention/output/dense", "out_proj", "o_proj")),
    ("mlp_fc1", ("fc1", "intermediate/dense", "mlp.0", "mlp/0")),
    ("mlp_fc2", ("fc2", "/output/dense", "mlp.2", "mlp/2")),
    ("norm1", ("norm1", "layernorm_before", "attention/output/layernorm", "ln_1")),
    ("norm2", ("norm2", "layernorm_after", "/output/layernorm", "ln_2")),
    ("attention", ("attn", "attention", "self/")),
    ("head", ("head", "classifier", "pooler")),
    ("norm", ("norm", "layernorm")),
]


def role_from_name(name: str) -> str | None:
    """A role guess from an exporter node name; ``None`` when nothing matches."""
    low = name.lower()
    for role, pats in _ROLE_PATTERNS:
        if any(p in low for p in pats):
            return role
    return None


# --------------------------------------------------------------------------- prepare
def prepare_graph(model: onnx.ModelProto, *, batch: int = 1, seq_len: int | None = None,
                  input_shapes: dict[str, tuple[int, ...]] | None = None) -> PreparedGraph:
    """Expand, shape and annotate ``model`` for costing (see module docstring)."""
    if batch < 1:
        raise VitcInputError(f"batch must be >= 1 (got {batch})")
    expanded, warnings = _expand(model)
    input_shapes = shapes.concrete_inputs(model, batch, seq_len, input_shapes)
    nodes = [n for n, _, _ in expanded]
    info = shapes.infer(model, input_shapes, nodes=nodes)
    wanted = _unknown_costed(nodes, info)
    if wanted:
        note = shapes.resolve_by_running(model, nodes, synthetic_inputs(model, shapes=input_shapes), info, wanted)
        warnings += [note] if note else []

    init_shapes = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    init_types = {t.name: t.data_type for t in model.graph.initializer}
    static = shapes.static_tensors(nodes, init_shapes)
    ops: list[OpNode] = []
    producer: dict[str, int] = {}
    for idx, (n, origin, otype) in enumerate(expanded):
        attrs = {a.name: _attr_value(a) for a in n.attribute if a.type != onnx.AttributeProto.GRAPH}
        s_in = [(t in static) or t == "" for t in n.input]
        meta = _meta(n)
        blk = meta.get("vitc.block")
        op = OpNode(
            name=n.name, op_type=n.op_type, domain=n.domain, inputs=list(n.input), outputs=list(n.output),
            attrs=attrs, origin=origin, origin_type=otype,
            in_shapes=[info.get(t, (None, None))[1] if t else None for t in n.input],
            out_shapes=[info.get(t, (None, None))[1] for t in n.output],
            static_in=s_in,
            block=int(blk) if blk is not None and str(blk).lstrip("-").isdigit() else block_from_name(origin),
            role=meta.get("vitc.role"), index=idx)
        ops.append(op)
        for t in n.output:
            producer[t] = idx

    dag = nx.DiGraph()
    for op in ops:
        dag.add_node(op.index)
    for op in ops:
        for t in op.inputs:
            p = producer.get(t)
            if p is not None and p != op.index:
                dag.add_edge(p, op.index)
    if not nx.is_directed_acyclic_graph(dag):
        raise VitcInputError("the compiled graph has a cycle; cannot schedule it")
    seen, origin_nodes = set(), []
    for op in ops:
        if op.origin not in seen:
            seen.add(op.origin)
            origin_nodes.append(op.origin)
    return PreparedGraph(ops=ops, dag=dag, init_shapes=init_shapes, init_types=init_types,
                         fingerprint=model_fingerprint(model), batch=batch, seq_len=seq_len,
                         input_shapes=input_shapes, warnings=warnings, origin_nodes=origin_nodes,
                         producer=producer)


__all__ = ["OpNode", "PreparedGraph", "prepare_graph", "model_fingerprint", "FREE_OPS",
           "block_from_name", "role_from_name"]
