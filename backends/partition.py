"""Partition the compiled graph: classify every op and group ops into report layers.

Classes (``WorkItem.kind``):

``mvm``          static-weight matrix-vector products — MatMul/Gemm with a constant operand,
                 Conv (im2col: K = C_in/g·k_h·k_w, N = C_out/g, one input vector per output
                 pixel; the ViT patch embedding is one). → crossbars.
``lstm``         ONNX LSTM/GRU/RNN: W (input) and R (recurrent) matrices on crossbars, the
                 recurrence as serial steps, the gates on the special-function unit.
``act_product``  activation×activation products (QKᵀ, S·V, K̂ᵀV, Q·G): → the digital MAC
                 unit, or crossbars reprogrammed per inference (preset option).
``sfu``          nonlinear functions (Softmax, LayerNorm, Erf/GELU, Sigmoid, Tanh, Exp, Div, Sqrt).
``vector``       element-wise/reduction/pooling arithmetic (Add, Mul, ReLU, MaxPool, ReduceMean ...).
``free``         data movement and shape bookkeeping (Reshape, Transpose, Slice, Concat ...) and
                 anything computed only from constants (folded at compile time).
``attention_core`` an ``ai.vitc`` core left whole (targets that price it from its attributes;
                 the others see its declared steps, :func:`vitc.backends.graph.build_graph`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from vitc.backends.graph import FREE_OPS, OpNode, PreparedGraph
from vitc.runtime.function_builder import DOMAIN
from vitc.runtime.mvm_traces import consumer_map, reaches_pooling

MVM, LSTM, ACT, SFU, VEC, FREE = "mvm", "lstm", "act_product", "sfu", "vector", "free"
CORE = "attention_core"
COSTED = (MVM, LSTM, ACT, SFU, VEC, CORE)


@dataclass
class Matrix:
    """One weight matrix as the crossbars see it.

    ``K`` rows (input length) × ``N`` logical columns (outputs); ``count`` identical-shape
    independent matrices (conv groups, per-head weights, LSTM directions); ``vectors`` input
    vectors per matrix per inference; ``serial_steps`` > 0 when the vectors come one after
    another through a recurrence (LSTM R).
    """

    label: str
    tensor: str
    K: int
    N: int
    count: int = 1
    vectors: int = 1
    serial_steps: int = 0


@dataclass
class WorkItem:
    """The costing view of one op."""

    op: OpNode
    kind: str
    matrices: list[Matrix] = field(default_factory=list)
    macs: int = 0
    elements: int = 0
    elem_ops: dict[str, float] = field(default_factory=dict)
    passes: int = 1
    in_elements: int = 0
    out_elements: int = 0
    layer: str = ""
    role: str | None = None
    block: int | None = None
    note: str = ""
    pooled_after: bool = False   # an MVM whose output goes (through activations) into a pooling op


def _prod(dims) -> int | None:
    if dims is None or any(d is None for d in dims):
        return None
    return int(math.prod(dims)) if dims else 1


def _elems(shapes) -> int:
    return sum(_prod(s) or 0 for s in shapes if s is not None)


# element-wise op → (unit kind, elementary ops per element, passes over the data)
_SFU_OPS: dict[str, tuple[dict[str, float], int]] = {
    "Softmax": ({"cmp": 1, "add": 2, "exp": 1, "div": 1}, 3),
    "LogSoftmax": ({"cmp": 1, "add": 2, "exp": 1, "div": 1}, 3),
    "LayerNormalization": ({"add": 4, "mul": 3}, 3),
    "Erf": ({"erf": 1}, 1),
    "Gelu": ({"erf": 1, "mul": 2, "add": 1}, 1),
    "FastGelu": ({"tanh": 1, "mul": 4, "add": 2}, 1),
    "Sigmoid": ({"sigmoid": 1}, 1),
    "Tanh": ({"tanh": 1}, 1),
    "Exp": ({"exp": 1}, 1),
    "Log": ({"exp": 1}, 1),
    "Sqrt": ({"sqrt": 1}, 1),
    "Reciprocal": ({"div": 1}, 1),
    "Div": ({"div": 1}, 1),
    "Softplus": ({"exp": 1, "add": 1}, 1),
    "Mish": ({"exp": 1, "tanh": 1, "mul": 1}, 1),
    "HardSigmoid": ({"mul": 1, "add": 1, "cmp": 2}, 1),
    "HardSwish": ({"mul": 2, "add": 1, "cmp": 2}, 1),
}
_VEC_OPS: dict[str, dict[str, float]] = {
    "Add": {"add": 1}, "Sub": {"add": 1}, "Mul": {"mul": 1}, "Neg": {"add": 1}, "Abs": {"cmp": 1},
    "Relu": {"cmp": 1}, "LeakyRelu": {"cmp": 1, "mul": 1}, "PRelu": {"cmp": 1, "mul": 1},
    "Clip": {"cmp": 2}, "Max": {"cmp": 1}, "Min": {"cmp": 1}, "Sum": {"add": 1}, "Mean": {"add": 1, "mul": 1},
    "Pow": {"mul": 1}, "BatchNormalization": {"mul": 1, "add": 1}, "Sign": {"cmp": 1},
    "Equal": {"cmp": 1}, "Less": {"cmp": 1}, "Greater": {"cmp": 1}, "Not": {"cmp": 1}, "And": {"cmp": 1},
    "Or": {"cmp": 1}, "Floor": {"cmp": 1}, "Ceil": {"cmp": 1}, "Round": {"cmp": 1},
    "QuantizeLinear": {"mul": 1, "add": 1}, "DequantizeLinear": {"mul": 1, "add": 1},
    "InstanceNormalization": {"add": 4, "mul": 3},
}
_REDUCE_OPS = {"ReduceMean": {"add": 1}, "ReduceSum": {"add": 1}, "ReduceMax": {"cmp": 1},
               "ReduceMin": {"cmp": 1}, "ReduceL2": {"mul": 1, "add": 1}, "ReduceSumSquare": {"mul": 1, "add": 1},
               "ReduceProd": {"mul": 1}, "GlobalAveragePool": {"add": 1}, "GlobalMaxPool": {"cmp": 1},
               "ArgMax": {"cmp": 1}, "ArgMin": {"cmp": 1}, "CumSum": {"add": 1}, "TopK": {"cmp": 2}}


def _matmul_item(op: OpNode, warnings: list[str]) -> WorkItem:
    a_s, b_s = op.in_shapes[0], op.in_shapes[1]
    out = op.out_shapes[0]
    a_static, b_static = op.static_in[0], op.static_in[1]
    if a_static and b_static:
        return WorkItem(op, FREE, note="constant-folded")
    if a_s is None or b_s is None or out is None or None in a_s or None in b_s or None in out:
        warnings.append(f"{op.name}: unknown shapes; MatMul not costed")
        return WorkItem(op, FREE, note="unknown shape")
    if len(b_s) == 1:
        b_s = list(b_s) + [1]
    if len(a_s) == 1:
        a_s = [1] + list(a_s)
    K = int(a_s[-1])
    out_el = _prod(out) or 0
    macs = out_el * K
    if b_static:
        N = int(b_s[-1])
        count = _prod(b_s[:-2]) or 1
        vectors = max(1, out_el // (N * count))
        return WorkItem(op, MVM, [Matrix("W", op.inputs[1], K, N, count, vectors)], macs=macs,
                        in_elements=_prod(a_s) or 0, out_elements=out_el)
    if a_static:
        # Y = A·X with constant A [.., M, K]: crossbars hold Aᵀ (K rows × M columns); each
        # column of X is an input vector.
        M = int(a_s[-2])
        count = _prod(a_s[:-2]) or 1
        vectors = max(1, out_el // (M * count))
        return WorkItem(op, MVM, [Matrix("W", op.inputs[0], K, M, count, vectors)], macs=macs,
                        in_elements=_prod(b_s) or 0, out_elements=out_el)
    return WorkItem(op, ACT, macs=macs, in_elements=_elems([a_s, b_s]), out_elements=out_el)


def _gemm_item(op: OpNode, warnings: list[str]) -> WorkItem:
    a_s, b_s, out = op.in_shapes[0], op.in_shapes[1], op.out_shapes[0]
    if a_s is None or b_s is None or out is None or None in a_s or None in b_s:
        warnings.append(f"{op.name}: unknown shapes; Gemm not costed")
        return WorkItem(op, FREE, note="unknown shape")
    ta, tb = int(op.attrs.get("transA", 0)), int(op.attrs.get("transB", 0))
    M, K = (a_s[1], a_s[0]) if ta else (a_s[0], a_s[1])
    N = b_s[0] if tb else b_s[1]
    macs = int(M * K * N)
    extra = {"add": 1.0} if len(op.inputs) > 2 and op.inputs[2] else {}
    if op.static_in[0] and op.static_in[1]:
        return WorkItem(op, FREE, note="constant-folded")
    if op.static_in[1]:
        return WorkItem(op, MVM, [Matrix("W", op.inputs[1], int(K), int(N), 1, int(M))], macs=macs,
                        in_elements=int(M * K), out_elements=int(M * N), elem_ops=extra)
    if op.static_in[0]:
        return WorkItem(op, MVM, [Matrix("W", op.inputs[0], int(K), int(M), 1, int(N))], macs=macs,
                        in_elements=int(K * N), out_elements=int(M * N), elem_ops=extra)
    return WorkItem(op, ACT, macs=macs, in_elements=int(M * K + K * N), out_elements=int(M * N), elem_ops=extra)


def _conv_item(op: OpNode, warnings: list[str]) -> WorkItem:
    x_s, w_s, out = op.in_shapes[0], op.in_shapes[1], op.out_shapes[0]
    if w_s is None or out is None or None in w_s or None in out:
        warnings.append(f"{op.name}: unknown shapes; Conv not costed")
        return WorkItem(op, FREE, note="unknown shape")
    g = int(op.attrs.get("group", 1))
    cout, cin_g, ks = int(w_s[0]), int(w_s[1]), w_s[2:]
    K = cin_g * int(math.prod(ks))
    N = cout // g
    vectors = int(out[0]) * int(math.prod(out[2:]))
    macs = vectors * K * cout
    extra = {"add": 1.0} if len(op.inputs) > 2 and op.inputs[2] else {}
    if op.static_in[1]:
        return WorkItem(op, MVM, [Matrix("W", op.inputs[1], K, N, g, vectors)], macs=macs,
                        in_elements=_prod(x_s) or 0, out_elements=_prod(out) or 0, elem_ops=extra,
                        note=f"im2col: {vectors} vectors of length {K}")
    return WorkItem(op, ACT, macs=macs, in_elements=(_prod(x_s) or 0) + (_prod(w_s) or 0),
                    out_elements=_prod(out) or 0, elem_ops=extra)


def _rnn_item(op: OpNode, warnings: list[str]) -> WorkItem:
    x_s, w_s, r_s = op.in_shapes[0], op.in_shapes[1], op.in_shapes[2]
    if x_s is None or w_s is None or r_s is None or None in x_s or None in w_s or None in r_s:
        warnings.append(f"{op.name}: unknown shapes; {op.op_type} not costed")
        return WorkItem(op, FREE, note="unknown shape")
    layout = int(op.attrs.get("layout", 0))
    seq, batch = (x_s[1], x_s[0]) if layout else (x_s[0], x_s[1])
    dirs, GH, I = int(w_s[0]), int(w_s[1]), int(w_s[2])
    H = int(r_s[2])
    gates = GH // H
    mats = [Matrix("W", op.inputs[1], I, GH, dirs, int(seq * batch)),
            Matrix("R", op.inputs[2], H, GH, dirs, int(seq * batch), serial_steps=int(seq))]
    macs = int(seq * batch * dirs * GH * (I + H))
    if op.op_type == "LSTM":
        ops = {"sigmoid": 3, "tanh": 2, "mul": 3, "add": 2}
    elif op.op_type == "GRU":
        ops = {"sigmoid": 2, "tanh": 1, "mul": 3, "add": 3}
    else:
        ops = {"tanh": 1, "add": 1}
    if not (op.static_in[1] and op.static_in[2]):
        warnings.append(f"{op.name}: {op.op_type} with non-constant weights costed as if constant")
    return WorkItem(op, LSTM, mats, macs=macs, elements=int(seq * batch * dirs * H), elem_ops=ops,
                    in_elements=_prod(x_s) or 0, out_elements=_elems(op.out_shapes), note=f"{gates} gates, {seq} steps")


def classify(op: OpNode, warnings: list[str]) -> WorkItem:
    """The :class:`WorkItem` for one op (see module docstring for the classes)."""
    t = op.op_type
    if op.domain == DOMAIN:
        return WorkItem(op, CORE, in_elements=_elems(op.in_shapes[:3]), out_elements=_elems(op.out_shapes[:1]),
                        note="costed as a whole from its attributes")
    if t == "MatMul" or t == "MatMulInteger":
        return _matmul_item(op, warnings)
    if t == "Gemm":
        return _gemm_item(op, warnings)
    if t in ("Conv", "ConvInteger"):
        return _conv_item(op, warnings)
    if t in ("LSTM", "GRU", "RNN"):
        return _rnn_item(op, warnings)
    if t in FREE_OPS or (op.inputs and all(op.static_in)) or not op.outputs:
        return WorkItem(op, FREE)
    out_el = _elems(op.out_shapes[:1])
    in_el = _elems(op.in_shapes)
    if out_el == 0 and op.out_shapes and op.out_shapes[0] is None:
        warnings.append(f"{op.name}: unknown output shape; {t} not costed")
        return WorkItem(op, FREE, note="unknown shape")
    if t == "Div" and len(op.static_in) > 1 and op.static_in[1]:
        return WorkItem(op, VEC, elements=out_el, elem_ops={"mul": 1}, in_elements=in_el, out_elements=out_el)
    if t == "Pow" and len(op.static_in) > 1 and op.static_in[1]:
        return WorkItem(op, VEC, elements=out_el, elem_ops={"mul": 1}, in_elements=in_el, out_elements=out_el)
    if t in _SFU_OPS:
        ops, passes = _SFU_OPS[t]
        ops = dict(ops)
        if t == "LayerNormalization":
            # one 1/sqrt(var+eps) per normalised row
            axis = int(op.attrs.get("axis", -1))
            shp = op.in_shapes[0] or []
            row = _prod(shp[axis:]) or 1
            ops["sqrt"] = 1.0 / row
            ops["div"] = 1.0 / row
        return WorkItem(op, SFU, elements=out_el, elem_ops=ops, passes=passes, in_elements=in_el, out_elements=out_el)
    if t in _VEC_OPS:
        return WorkItem(op, VEC, elements=out_el, elem_ops=dict(_VEC_OPS[t]), in_elements=in_el, out_elements=out_el)
    if t in _REDUCE_OPS:
        x = _prod(op.in_shapes[0]) if op.in_shapes else 0
        return WorkItem(op, VEC, elements=x or 0, elem_ops=dict(_REDUCE_OPS[t]), in_elements=in_el, out_elements=out_el)
    if t in ("MaxPool", "AveragePool", "LpPool"):
        k = int(math.prod(op.attrs.get("kernel_shape", [1])))
        return WorkItem(op, VEC, elements=out_el * k, elem_ops={"cmp" if t == "MaxPool" else "add": 1},
                        in_elements=in_el, out_elements=out_el)
    warnings.append(f"{op.name}: op {op.domain + '::' if op.domain else ''}{t} has no cost rule; costed as one "
                    "vector operation per output element")
    return WorkItem(op, VEC, elements=out_el, elem_ops={"add": 1}, in_elements=in_el, out_elements=out_el)


# --------------------------------------------------------------------------- layers
def _prefix(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name.strip("/") else name


def _label(block, role, fallback: str) -> str:
    if role is None:
        return fallback
    return f"block{block}.{role}" if block is not None else role


def _mark_pooling(pg: PreparedGraph, items: list[WorkItem]) -> None:
    """Mark MVMs followed by a pooling op (:func:`~vitc.runtime.mvm_traces.reaches_pooling`):
    NeuroSim's network file flags such layers and moves a quarter of their outputs over the
    global bus."""
    consumers = consumer_map((op.op_type, op.inputs, op.outputs) for op in pg.ops)
    for it in items:
        if it.kind == MVM and it.op.outputs:
            it.pooled_after = reaches_pooling(it.op.outputs[0], consumers)


def _fuse_bias(pg: PreparedGraph, items: list[WorkItem], by_index: dict[int, WorkItem]) -> None:
    """Fold ``Add(MVM output, constant bias)`` into the MVM's accumulation (as Gemm/Conv do).

    The Add must be the MVM output's only consumer and the constant a per-output vector
    (N elements); the add is then charged as one accumulation add per output element.
    """
    consumers: dict[str, int] = {}
    for op in pg.ops:
        for t in op.inputs:
            consumers[t] = consumers.get(t, 0) + 1
    for it in items:
        op = it.op
        if op.op_type != "Add" or it.kind != VEC or len(op.inputs) != 2 or sum(op.static_in) != 1:
            continue
        x = op.inputs[0] if op.static_in[1] else op.inputs[1]
        b_shape = op.in_shapes[1] if op.static_in[1] else op.in_shapes[0]
        p = pg.producer.get(x)
        if p is None or consumers.get(x, 0) != 1:
            continue
        mvm = by_index[p]
        if mvm.kind != MVM or not mvm.matrices or b_shape is None:
            continue
        n = _prod(b_shape)
        if n != mvm.matrices[0].N:
            continue
        mvm.elem_ops["add"] = 1.0
        it.kind, it.note = FREE, f"bias fused into {mvm.op.name} accumulation"


def _fuse_gelu(pg: PreparedGraph, items: list[WorkItem], by_index: dict[int, WorkItem]) -> None:
    """Cost an exported Erf-GELU, 0.5·x·(1 + erf(x/√2)), as one special-function op.

    The five element-wise nodes (Div or Mul by a constant, Erf, Add 1, Mul x, Mul 0.5)
    become one ``Gelu`` pass on the SFU, as a hardware GELU unit computes it; the other
    four are marked free.
    """
    consumers: dict[str, list[int]] = {}
    for op in pg.ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op.index)

    def only_consumer(t: str, op_types: tuple[str, ...]) -> WorkItem | None:
        c = consumers.get(t, [])
        if len(c) != 1:
            return None
        it = by_index[c[0]]
        return it if it.op.op_type in op_types and it.kind in (VEC, SFU) else None

    for erf in items:
        if erf.op.op_type != "Erf" or erf.kind != SFU:
            continue
        p = pg.producer.get(erf.op.inputs[0])
        if p is None:
            continue
        scale = by_index[p]
        if scale.op.op_type not in ("Div", "Mul") or scale.kind != VEC or not any(scale.op.static_in):
            continue
        x = scale.op.inputs[0] if scale.op.static_in[1] else scale.op.inputs[1]
        add = only_consumer(erf.op.outputs[0], ("Add",))
        if add is None or not any(add.op.static_in):
            continue
        mul = only_consumer(add.op.outputs[0], ("Mul",))
        if mul is None or x not in mul.op.inputs:
            continue
        half = only_consumer(mul.op.outputs[0], ("Mul",))
        chain = [scale, add, mul] + ([half] if half is not None and any(half.op.static_in) else [])
        for it in chain:
            it.kind, it.note = FREE, f"fused into GELU at {erf.op.name}"
        erf.elem_ops = {"erf": 1.0, "mul": 3.0, "add": 1.0}
        erf.in_elements, erf.note = erf.out_elements, "Erf-GELU costed as one SFU pass"


def partition(pg: PreparedGraph) -> tuple[list[WorkItem], list[str]]:
    """Classify every op of ``pg`` and assign report layers. Returns (items, warnings)."""
    warnings = list(pg.warnings)
    items = [classify(op, warnings) for op in pg.ops]
    by_index = {it.op.index: it for it in items}
    _fuse_bias(pg, items, by_index)
    _fuse_gelu(pg, items, by_index)
    _mark_pooling(pg, items)
    layer_of: dict[int, str] = {}
    layer_meta: dict[str, tuple] = {}

    def assign(it: WorkItem, key: str, block, role):
        layer_of[it.op.index] = key
        it.layer, it.block, it.role = key, block, role
        layer_meta.setdefault(key, (block, role))

    first_block_op = min((op.index for op in pg.ops if op.block is not None), default=None)
    # 1) explicit metadata, custom ops, and weight-bearing / product ops own their layers
    for it in items:
        op = it.op
        blk = op.block
        if op.role:
            assign(it, _label(blk, op.role, op.origin), blk, op.role)
        elif op.origin_type.startswith("ai.vitc::"):
            role = "attention" if "Attention" in op.origin_type else op.origin_type.split("::")[1]
            assign(it, _label(blk, role, op.origin) if blk is not None else op.origin, blk, role)
        elif it.kind in (MVM, LSTM):
            role = op.hint_role
            if role in ("attention", "norm", "norm1", "norm2"):
                role = "lstm" if it.kind == LSTM else None
            key = _label(blk, role, op.origin)
            if key in layer_meta and layer_meta[key] != (blk, role):
                key = op.origin
            assign(it, key, blk, role)
        elif it.kind == ACT:
            assign(it, _label(blk, "attention", _prefix(op.origin)) if blk is not None else _prefix(op.origin) + ":products",
                   blk, "attention")
        elif op.op_type == "LayerNormalization" or (op.hint_role or "").startswith("norm"):
            role = op.hint_role or "norm"
            if blk is None and role == "norm":   # outside the encoder blocks: before them or after
                role = "pre_norm" if first_block_op is not None and op.index < first_block_op else "final_norm"
            assign(it, _label(blk, role, _prefix(op.origin)), blk, role)
    # 2) everything else joins the layer of its latest ancestor on the data path
    #    (topological order, so ancestors are already assigned; constant sub-graphs are
    #    skipped); ops with no such ancestor form "block<i>.other" or "input"
    const_op = {it.op.index for it in items if it.op.inputs and all(it.op.static_in) or it.op.op_type == "Constant"}
    for it in items:
        if it.op.index in layer_of:
            continue
        preds = [p for p in sorted(pg.dag.predecessors(it.op.index), reverse=True) if p not in const_op]
        key = next((layer_of[p] for p in preds if p in layer_of), None)
        if key is None:
            key = f"block{it.op.block}.other" if it.op.block is not None else "input"
        blk, role = layer_meta.get(key, (it.op.block, None))
        assign(it, key, blk, role)
    return items, warnings


__all__ = ["Matrix", "WorkItem", "classify", "partition", "MVM", "LSTM", "ACT", "SFU", "VEC", "FREE", "CORE",
           "COSTED"]
