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
from onnx import helper, shape_inference

from vitc.compiler.errors import VitcInputError

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
_SMALL_INIT = 4096  # initializers up to this many elements keep their values (shape data)


def _dims(t: onnx.TypeProto) -> list | None:
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out = []
    for d in t.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None)
    return out


def _concrete_inputs(model: onnx.ModelProto, batch: int, seq_len: int | None,
                     overrides: dict[str, tuple[int, ...]] | None = None) -> dict[str, list[int]]:
    """Concrete graph-input shapes: ``overrides`` (batch axis replaced by ``batch``), else symbolic
    dim 0 → batch, a symbolic 2-D sequence axis → seq_len, symbolic image C/H/W → 3×224×224
    (the front end's rule, :func:`vitc.runtime.inputs.concrete_shape`)."""
    from vitc.runtime.inputs import concrete_shape, input_specs
    shapes = {}
    for spec in input_specs(model):
        if overrides and spec.name in overrides:
            shapes[spec.name] = [batch] + [int(d) for d in overrides[spec.name][1:]]
            continue
        shapes[spec.name] = list(concrete_shape(spec, batch, seq_len))
    return shapes


def _infer(nodes: list[onnx.NodeProto], model: onnx.ModelProto, input_shapes: dict[str, list[int]]):
    """Run shape inference on a weight-less copy; return tensor name → (elem type, dims)."""
    g = model.graph
    elem_of_input = {vi.name: vi.type.tensor_type.elem_type for vi in g.input}
    inputs = [helper.make_tensor_value_info(n, elem_of_input.get(n, onnx.TensorProto.FLOAT), d)
              for n, d in input_shapes.items()]
    small, big = [], []
    for t in g.initializer:
        n = 1
        for d in t.dims:
            n *= d
        if n <= _SMALL_INIT and t.data_location != onnx.TensorProto.EXTERNAL:
            small.append(t)
        else:
            big.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    outputs = [helper.make_value_info(o.name, onnx.TypeProto()) for o in g.output]
    graph = helper.make_graph(nodes, g.name or "g", inputs + big, outputs, small)
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    try:
        inferred = shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception as e:  # noqa: BLE001 - onnx raises several types
        raise VitcInputError(f"shape inference failed on the compiled graph: {e}") from None
    info = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        d = _dims(vi.type)
        if d is not None:
            info[vi.name] = (vi.type.tensor_type.elem_type, d)
    for t in small:
        info[t.name] = (t.data_type, list(t.dims))
    return info


_COSTED_WITH_SHAPES = {"MatMul", "Gemm", "Conv", "LSTM", "MatMulInteger", "QLinearMatMul"}


def _resolve_by_running(nodes: list[onnx.NodeProto], model: onnx.ModelProto, input_shapes: dict[str, list[int]],
                        info: dict) -> list[str]:
    """Fill dims shape inference left unknown on inputs/outputs of costed ops by one onnxruntime
    run of the expanded graph on synthetic inputs (exports whose shapes flow through run-time
    Shape/Expand arithmetic, e.g. BERT). Returns warnings."""
    wanted = sorted({t for n in nodes if n.op_type in _COSTED_WITH_SHAPES for t in list(n.input) + list(n.output)
                     if t and (t not in info or any(d is None for d in info[t][1]))})
    if not wanted:
        return []
    from vitc.runtime.inputs import synthetic_inputs
    from vitc.runtime.session import open_session
    g = model.graph
    graph = helper.make_graph(nodes, g.name or "g", list(g.input), [helper.make_empty_tensor_value_info(t)
                                                                     for t in wanted], list(g.initializer))
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    try:
        shapes = {k: tuple(v) for k, v in input_shapes.items()}
        values = open_session(m).run(wanted, synthetic_inputs(m, shapes=shapes))
    except Exception as e:  # noqa: BLE001 - best effort; costing proceeds with what is known
        return [f"shapes of {len(wanted)} tensors unknown and the graph could not be run to find them "
                f"({type(e).__name__})"]
    for t, v in zip(wanted, values):
        info[t] = (info.get(t, (onnx.helper.np_dtype_to_tensor_dtype(v.dtype), None))[0], list(v.shape))
    return []


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
    input_shapes = _concrete_inputs(model, batch, seq_len, input_shapes)
    nodes = [n for n, _, _ in expanded]
    info = _infer(nodes, model, input_shapes)
    warnings += _resolve_by_running(nodes, model, input_shapes, info)

    init_shapes = {t.name: tuple(int(d) for d in t.dims) for t in model.graph.initializer}
    init_types = {t.name: t.data_type for t in model.graph.initializer}
    static: set[str] = set(init_shapes)
    ops: list[OpNode] = []
    producer: dict[str, int] = {}
    for idx, (n, origin, otype) in enumerate(expanded):
        attrs = {a.name: _attr_value(a) for a in n.attribute if a.type != onnx.AttributeProto.GRAPH}
        s_in = [(t in static) or t == "" for t in n.input]
        if n.op_type in ("Constant",) or (n.input and all(s_in) and n.op_type not in ("RandomNormal", "RandomUniform")):
            static.update(n.output)
        elif n.op_type in ("Shape", "Size"):
            static.update(n.output)  # shape data: known at compile time once shapes are fixed
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
