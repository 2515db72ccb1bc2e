"""Attention cores without a canonical encoder block around them: one rule, pattern + check + replacement.

Pattern. From a ``Softmax`` over the last axis back to the ``MatMul`` of two activations that
makes the scores ``S`` (the *score chain*), and forward to the ``MatMul(P, V)``. The chain may
hold, in any order: Cast/Identity; Reshapes of the leading axes (Swin's per-window view);
multiplications by a scalar or a per-head factor (last two axes of size 1: SwinV2's logit
scale, XCiT's temperature); additive terms (relative-position biases, masks — constant,
gathered or computed at run time); ``Where(cond, ·, c)`` with a very negative constant ``c``
(masked fill, causal masks). The chain is therefore ``f(S) = A ⊙ S + f(0)``. Nothing is assumed
about how q, k and v were made (windows, RoPE, pooled or downsampled tokens, grouped heads
after their ``Expand``, normalised q/k) nor about what reads the output (an activation before
the projection, a crop, ``Shape`` readers): the tensors entering the two products are used as
they are.

Check (:func:`check_core`, on the probe run): leading axes of q, kᵀ, v and S agree (G
independent groups = batch × heads × windows), the chain keeps the query and key axes, every
multiplicative factor is scalar or per head. The rewrite is then re-run in onnxruntime and
each core's output compared with the original's (:func:`vitc.compiler.frontend`), so a site
is only kept if it reproduces the export.

Replacement. ``ai.vitc::Attention`` with ``num_heads = 1`` over the G groups::

    q [.., Nq, dk] ─ (× run-time/per-head factors) ─ Reshape [G, Nq, dk] ─┐
    kᵀ [.., dk, Nkv] ─ Reshape, Transpose ─ [G, Nkv, dk] ────────────────┼─ Attention(scale) ─ Reshape ─ [.., Nq, dv]
    v [.., Nkv, dv] ─ Reshape [G, Nkv, dv] ──────────────────────────────┤
    f(0): the chain re-run on zeros of S's shape ─ Reshape [G, 1, Nq, Nkv] ┘   (only if the chain adds terms)

``scale`` is the product of the constant scalar factors. The bias ``f(0)`` is an N×N tensor per
group, as in the export; a linear-attention pass must decline such a core unless the bias
only masks keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from vitc.core.graph import const_value, producer
from vitc.core.ir import AttentionCore
from vitc.compiler.recognize import NotRecognised
from vitc.runtime.function_builder import DOMAIN

_PASS = {"Cast", "Identity"}
VERY_NEGATIVE = -1.0e4   # a masked-fill constant at or below this removes the key from the softmax


@dataclass
class Factor:
    tensor: gs.Tensor
    power: int              # +1 Mul, -1 Div


@dataclass
class CoreSite:
    """A structurally matched attention core (see the module docstring)."""
    anchor: gs.Node          # the Softmax
    qk: gs.Node
    av: gs.Node
    q_in: gs.Tensor          # [.., Nq, dk]
    kt: gs.Tensor            # [.., dk, Nkv]
    v_in: gs.Tensor          # [.., Nkv, dv]
    scores_in: gs.Tensor     # the Softmax input f(S)
    chain: list[gs.Node]     # score-chain nodes, from S to the Softmax input
    factors: list[Factor] = field(default_factory=list)
    additive: bool = False   # the chain adds terms (Add / masked-fill Where)
    forms: dict[str, str] = field(default_factory=dict)
    why_not_block: str = ""

    @property
    def scores(self) -> gs.Tensor:
        return self.qk.outputs[0]

    kind = "softmax"

    def __post_init__(self):
        self.result = self.av.outputs[0]     # the export's ·V product (kept when the node is rewired)

    @property
    def operands(self) -> list[gs.Tensor]:
        return [self.q_in, self.kt, self.v_in]

    @property
    def products(self) -> list[gs.Node]:
        return [self.qk, self.av]

    def probe_names(self) -> list[str]:
        names = [self.q_in.name, self.kt.name, self.v_in.name, self.scores.name, self.scores_in.name,
                 self.result.name]
        names += [f.tensor.name for f in self.factors if const_value(f.tensor) is None]
        return list(dict.fromkeys(names))

    def rewrite(self, graph: gs.Graph, values: dict, index: int) -> tuple[AttentionCore, str | None]:
        """Check on the probe ``values``, then replace (:func:`check_core`, :func:`rewrite_core`)."""
        return rewrite_core(graph, self, check_core(self, values), index)


def _is_product(node: gs.Node | None) -> bool:
    return node is not None and node.op == "MatMul" and all(const_value(i) is None for i in node.inputs[:2])


def _named(errors: list[NotRecognised]) -> NotRecognised | None:
    """The first reason that names a known form (talking heads, a learned projection)."""
    return next((e for e in errors if "talking heads" in str(e) or "learned projection" in str(e)), None)


def _leads_to_product(t: gs.Tensor, limit: int = 12) -> bool:
    """An activation×activation MatMul within ``limit`` producer steps of ``t``."""
    seen, frontier = set(), [t]
    while frontier and len(seen) < limit:
        p = producer(frontier.pop(0))
        if p is None or id(p) in seen:
            continue
        seen.add(id(p))
        if _is_product(p):
            return True
        frontier.extend(i for i in p.inputs if const_value(i) is None)
    return False


def _very_negative(t: gs.Tensor) -> bool:
    v = const_value(t)
    return v is not None and v.size == 1 and float(v.reshape(-1)[0]) <= VERY_NEGATIVE


def _walk_chain(t: gs.Tensor, depth: int = 0) -> tuple[gs.Node, list[gs.Node], list[Factor], bool]:
    """Back from ``t`` to the score product: (qk MatMul, chain nodes S→t, factors, additive)."""
    if depth > 24:
        raise NotRecognised("score chain longer than 24 ops")
    node = producer(t)
    if node is None:
        raise NotRecognised(f"the Softmax input '{t.name}' is not computed from a product")
    if _is_product(node):
        return node, [], [], False
    if node.op in ("MatMul", "Gemm", "Conv"):
        if _leads_to_product(node.inputs[0]):
            raise NotRecognised("scores mixed across heads by a learned matrix (talking heads, e.g. CaiT, "
                                "EfficientFormerV2)")
        raise NotRecognised("Softmax of a learned projection of the input, not of a query-key product "
                            "(separable or outlook attention, e.g. MobileViTv2, VOLO, ConViT's positional scores)")
    if node.op == "Transpose":   # only to name what lies behind it: a transposed score chain is not rewritten
        _walk_chain(node.inputs[0], depth + 1)
        raise NotRecognised(f"scores are transposed ('{node.name}') on the way to the Softmax")
    if node.op in _PASS or node.op == "Reshape":
        qk, chain, factors, additive = _walk_chain(node.inputs[0], depth + 1)
        return qk, chain + [node], factors, additive
    if node.op in ("Mul", "Div"):
        a, b = node.inputs
        sides = [(a, b, 1)] + ([(b, a, 1)] if node.op == "Mul" else [])
        errors = []
        for data, factor, power in sides:
            try:
                qk, chain, factors, additive = _walk_chain(data, depth + 1)
            except NotRecognised as exc:
                errors.append(exc)
                continue
            return qk, chain + [node], factors + [Factor(factor, power if node.op == "Mul" else -1)], additive
        raise _named(errors) or NotRecognised(f"scores come from {node.op} '{node.name}' of no query-key product")
    if node.op == "Add":
        found, errors = [], []
        for i, side in enumerate(node.inputs):
            try:
                found.append((i, _walk_chain(side, depth + 1)))
            except NotRecognised as exc:
                errors.append(exc)
        if not found:
            raise _named(errors) or NotRecognised(f"scores come from Add '{node.name}' of no query-key product")
        if len(found) > 1:
            raise NotRecognised("two query-key products are added on the scores")
        _, (qk, chain, factors, _) = found[0]
        return qk, chain + [node], factors, True
    if node.op == "Where":
        cond, x, y = node.inputs
        for data, other in ((x, y), (y, x)):
            if _very_negative(other):
                qk, chain, factors, _ = _walk_chain(data, depth + 1)
                return qk, chain + [node], factors, True
        raise NotRecognised("scores selected by Where against a value that is not a large negative constant")
    raise NotRecognised(f"scores come from {node.op} '{node.name}', not from a query-key product")


def _probs_consumer(softmax: gs.Node) -> gs.Node:
    """Follow the probabilities through Cast/Dropout/dynamo's NaN guard to the ·V MatMul."""
    t = softmax.outputs[0]
    for _ in range(8):
        cons = [c for c in t.outputs]
        if len(cons) == 1 and cons[0].op in ("Cast", "Identity", "Dropout"):
            t = cons[0].outputs[0]
            continue
        if len(cons) == 2 and {c.op for c in cons} == {"IsNaN", "Where"}:
            t = next(c for c in cons if c.op == "Where").outputs[0]
            continue
        if len(cons) != 1:
            raise NotRecognised(f"the attention probabilities have {len(cons)} consumers")
        c = cons[0]
        if c.op == "MatMul" and c.inputs[0] is t and const_value(c.inputs[1]) is None:
            return c
        if c.op in ("Mul", "Add", "Sub"):
            raise NotRecognised("attention probabilities combined with another term before ·V "
                                "(gated positional attention, e.g. ConViT)")
        if c.op == "MatMul" and const_value(c.inputs[1]) is not None:
            raise NotRecognised("probabilities mixed by a constant matrix (talking heads)")
        raise NotRecognised(f"the attention probabilities feed {c.op} '{c.name}', not a product with V")
    raise NotRecognised("no product with V after the Softmax")


def match_core(softmax: gs.Node) -> CoreSite:
    """The core around ``softmax`` (pattern only), or :class:`NotRecognised` with a named reason."""
    x = softmax.inputs[0]
    rank = len(x.shape) if x.shape is not None else None
    axis = softmax.attrs.get("axis", -1)
    if axis != -1 and (rank is None or axis != rank - 1):
        if rank is not None and axis in (-2, rank - 2):
            raise NotRecognised("Softmax over the token axis (factorised attention, e.g. CoaT: softmax(K)ᵀV is "
                                "already linear in the tokens); not rewritten")
        raise NotRecognised(f"Softmax over axis {axis}, not the key axis")
    qk, chain, factors, additive = _walk_chain(x)
    av = _probs_consumer(softmax)
    site = CoreSite(softmax, qk, av, qk.inputs[0], qk.inputs[1], av.inputs[1], x, chain, factors, additive)
    site.forms = {"core": "generic", "score_chain": ">".join(n.op for n in chain) or "none"}
    return site


# ------------------------------------------------------------------------------------------- check
@dataclass
class CoreGeometry:
    groups: int
    heads: int
    q_tokens: int
    kv_tokens: int
    head_dim: int
    value_dim: int
    scale: float
    runtime_factors: list[Factor]   # applied to q before the core (run-time scalars, per-head factors)
    k_direct: gs.Tensor | None      # k [.., Nkv, dk] when kᵀ is a Transpose of it


def _lead(a: np.ndarray) -> tuple:
    return tuple(a.shape[:-2])


def check_core(site: CoreSite, values: dict[str, np.ndarray]) -> CoreGeometry:
    q, kt, v = values[site.q_in.name], values[site.kt.name], values[site.v_in.name]
    s, s_in = values[site.scores.name], values[site.scores_in.name]
    if min(q.ndim, kt.ndim, v.ndim) < 2:
        raise NotRecognised("query/key/value operands of rank < 2")
    if s.shape != s_in.shape:
        raise NotRecognised(f"the score chain changes the scores' shape {s.shape} → {s_in.shape}")
    if not (_lead(q) == _lead(kt) == _lead(v) == _lead(s)):
        raise NotRecognised(f"q/k/v broadcast over batch or heads (leading axes {_lead(q)}, {_lead(kt)}, {_lead(v)}); "
                            "only repeated (expanded) heads are supported")
    nq, dk = q.shape[-2:]
    nkv = kt.shape[-1]
    if kt.shape[-2] != dk or v.shape[-2] != nkv:
        raise NotRecognised(f"inconsistent core shapes q {q.shape}, kᵀ {kt.shape}, v {v.shape}")
    scale, runtime = 1.0, []
    for f in site.factors:
        val = const_value(f.tensor)
        arr = np.asarray(val if val is not None else values[f.tensor.name])
        if arr.size == 1:
            if val is not None:
                scale *= float(arr.reshape(-1)[0]) ** f.power
            else:
                runtime.append(f)
            continue
        if arr.ndim < 3 or arr.shape[-2:] != (1, 1) or any(d != 1 for d in arr.shape[:-3]) \
                or q.ndim < 3 or arr.shape[-3] not in (1, q.shape[-3]):
            raise NotRecognised(f"scores multiplied element-wise by a tensor of shape {list(arr.shape)} "
                                "(only scalar and per-head factors)")
        runtime.append(f)
    kd = producer(site.kt)
    k_direct = None
    if kd is not None and kd.op == "Transpose":
        perm = list(kd.attrs.get("perm", []))
        r = len(perm)
        if r >= 2 and perm[:-2] == list(range(r - 2)) and perm[-2:] == [r - 1, r - 2]:
            k_direct = kd.inputs[0]
    groups = int(np.prod(_lead(q))) if _lead(q) else 1
    heads = int(q.shape[-3]) if q.ndim >= 3 else 1
    return CoreGeometry(groups, heads, int(nq), int(nkv), int(dk), int(v.shape[-1]), scale, runtime, k_direct)


# ------------------------------------------------------------------------------------------- replacement
class Builder:
    def __init__(self, graph: gs.Graph, prefix: str):
        self.graph, self.prefix, self.n = graph, prefix, 0

    def op(self, op: str, inputs: list, attrs: dict | None = None, dtype=None, outputs: list | None = None):
        self.n += 1
        if outputs is None:
            outputs = [gs.Variable(f"{self.prefix}/{op}_{self.n}_output_0", dtype=dtype)]
        self.graph.nodes.append(gs.Node(op, f"{self.prefix}/{op}_{self.n}", attrs=attrs or {}, inputs=inputs,
                                        outputs=outputs))
        return outputs[0]

    def const(self, name: str, value) -> gs.Constant:
        self.n += 1
        return gs.Constant(f"{self.prefix}.{name}_{self.n}", np.asarray(value))

    def tail_shape(self, t: gs.Tensor, k: int) -> gs.Tensor:
        """The last ``k`` dims of ``t``'s run-time shape (int64 [k])."""
        shape = self.op("Shape", [t], dtype=np.int64)
        return self.op("Slice", [shape, self.const("start", np.array([-k], np.int64)),
                                 self.const("end", np.array([np.iinfo(np.int64).max], np.int64))], dtype=np.int64)

    def head_shape(self, t: gs.Tensor, drop: int) -> gs.Tensor:
        """``t``'s run-time shape without its last ``drop`` dims."""
        shape = self.op("Shape", [t], dtype=np.int64)
        return self.op("Slice", [shape, self.const("start", np.array([0], np.int64)),
                                 self.const("end", np.array([-drop], np.int64))], dtype=np.int64)

    def concat(self, parts: list) -> gs.Tensor:
        return self.op("Concat", parts, {"axis": 0}, dtype=np.int64)

    def restore(self, core_out: gs.Tensor, like: gs.Tensor, value: gs.Tensor, out: gs.Tensor) -> None:
        """Write ``core_out`` [G, Nq, dv] into ``out`` as [lead(like).., Nq, dv(value)] (``out``'s
        producer must have been detached)."""
        self.op("Reshape", [core_out, self.concat([self.head_shape(like, 1), self.tail_shape(value, 1)])],
                outputs=[out])

    def flatten_groups(self, t: gs.Tensor, extra_axis: bool = False) -> gs.Tensor:
        """[.., a, b] → [G, a, b] (or [G, 1, a, b])."""
        lead = [self.const("g", np.array([-1] + ([1] if extra_axis else []), np.int64))]
        return self.op("Reshape", [t, self.concat(lead + [self.tail_shape(t, 2)])], dtype=t.dtype)


def _cone(site: CoreSite) -> list[gs.Node]:
    """Nodes on a path from S to the Softmax input (the chain and what computes its Reshape shapes)."""
    fwd, frontier = set(), [site.scores]
    while frontier:
        t = frontier.pop()
        for c in t.outputs:
            if id(c) not in fwd and c is not site.anchor:
                fwd.add(id(c))
                frontier.extend(c.outputs)
    back, frontier, nodes = set(), [site.scores_in], {}
    while frontier:
        t = frontier.pop()
        p = producer(t)
        if p is None or id(p) in back or p is site.qk:
            continue
        back.add(id(p))
        nodes[id(p)] = p
        frontier.extend(p.inputs)
    return [n for n in nodes.values() if id(n) in fwd]


def rewrite_core(graph: gs.Graph, site: CoreSite, geom: CoreGeometry, index: int) -> tuple[AttentionCore, str | None]:
    """Replace the site by the canonical core; returns the record and the bias tensor's name (or None)."""
    prefix = f"/core{index}/attn"
    b = Builder(graph, prefix)
    dtype = site.q_in.dtype or np.float32
    q = site.q_in
    for f in geom.runtime_factors:
        factor = f.tensor
        if const_value(factor) is not None and const_value(factor).size > 1 or \
                (factor.shape is not None and len(factor.shape) > 3):
            factor = b.op("Reshape", [factor, b.const("head_shape", np.array([-1, 1, 1], np.int64))], dtype=dtype)
        q = b.op("Mul" if f.power > 0 else "Div", [q, factor], dtype=dtype)
    qf = b.flatten_groups(q)
    if geom.k_direct is not None:
        kf = b.flatten_groups(geom.k_direct)
    else:
        kf = b.op("Transpose", [b.flatten_groups(site.kt)], {"perm": [0, 2, 1]}, dtype=dtype)
    vf = b.flatten_groups(site.v_in)
    inputs = [qf, kf, vf]
    bias_name = None
    if site.additive:
        order = {id(n): i for i, n in enumerate(graph.nodes)}
        cone = sorted(_cone(site), key=lambda n: order[id(n)])
        s_shape = b.concat([b.head_shape(site.q_in, 1), b.tail_shape(site.kt, 1)])
        zeros = b.op("ConstantOfShape", [s_shape], {"value": gs.Constant(f"{prefix}.zero",
                                                                         np.zeros(1, np.dtype(dtype)))}, dtype=dtype)
        remap = {id(site.scores): zeros}
        for node in cone:
            outs = [gs.Variable(f"{prefix}/bias/{o.name}", dtype=o.dtype) for o in node.outputs]
            ins = [remap.get(id(i), i) for i in node.inputs]
            graph.nodes.append(gs.Node(node.op, f"{prefix}/bias/{node.name}", attrs=dict(node.attrs), inputs=ins,
                                       outputs=outs, domain=node.domain))
            for o, n in zip(node.outputs, outs):
                remap[id(o)] = n
        bias = remap[id(site.scores_in)]
        bias_name = bias.name
        inputs.append(b.flatten_groups(bias, extra_axis=True))
    core_out = gs.Variable(f"{prefix}/Attention_output_0", dtype=dtype)
    core = gs.Node("Attention", f"{prefix}/Attention", domain=DOMAIN,
                   attrs={"num_heads": 1, "scale": float(geom.scale)}, inputs=inputs, outputs=[core_out])
    graph.nodes.append(core)
    out = site.result
    site.av.outputs.clear()
    b.restore(core_out, site.q_in, site.v_in, out)
    dynamic = any(not isinstance(d, int) for d in (site.q_in.shape or [None])[-2:]) or site.q_in.shape is None
    rec = AttentionCore(index=index, attention=core.name, heads=geom.heads, groups=geom.groups,
                        q_tokens=geom.q_tokens, kv_tokens=geom.kv_tokens, head_dim=geom.head_dim,
                        value_dim=geom.value_dim, tokens_dynamic=bool(dynamic), scale=geom.scale, kind="softmax",
                        bias="additive" if site.additive else "none", forms=dict(site.forms),
                        why_not_block=site.why_not_block, output=out.name)
    return rec, bias_name


def _projection(node: gs.Node) -> bool:
    return node.op in ("MatMul", "Gemm", "Conv") and len(node.inputs) > 1 and const_value(node.inputs[1]) is not None


def _nearest(t: gs.Tensor, forward: bool, limit: int = 16) -> list[gs.Node]:
    """The first projections (MatMul/Gemm/Conv with a constant weight) met walking from ``t``
    (breadth first over at most ``limit`` nodes; each path stops at the first projection)."""
    out, seen, frontier = [], set(), [t]
    while frontier and len(seen) < limit:
        x = frontier.pop(0)
        nodes = list(x.outputs) if forward else ([producer(x)] if producer(x) is not None else [])
        for n in nodes:
            if id(n) in seen:
                continue
            seen.add(id(n))
            if _projection(n):
                out.append(n)
            elif n.op not in ("LayerNormalization", "Softmax"):
                frontier.extend(n.outputs if forward else [i for i in n.inputs if const_value(i) is None])
    return out


def tag_core_neighbours(cm, site, index: int) -> None:
    """Name the projections around a core for the reports (q/k/v or packed qkv before it, the
    output projection after it), where no other block has named them."""
    roles: dict[int, tuple[gs.Node, set[str]]] = {}
    for role, t in zip("qkv", site.operands):
        for n in _nearest(t, forward=False):
            roles.setdefault(id(n), (n, set()))[1].add(role)
    for n, rs in roles.values():
        if n.name not in cm.node_meta:
            cm.tag(n.name, index, f"{next(iter(rs))}_proj" if len(rs) == 1 else "qkv_proj")
    for n in _nearest(site.result, forward=True)[:1]:
        if n.name not in cm.node_meta:
            cm.tag(n.name, index, "out_proj")


def classify_bias(bias: np.ndarray, threshold: float = VERY_NEGATIVE) -> str:
    """What an additive term on the scores [.., Nq, Nkv] (any broadcastable shape) does:
    ``key-padding`` (0 or ≤ ``threshold``, the same for every query), ``causal`` (exactly the
    keys after the query masked), or ``additive`` (anything else, e.g. a relative-position bias)."""
    b = np.asarray(bias, np.float64)
    b = b.reshape((-1,) + b.shape[-2:]) if b.ndim >= 2 else b.reshape(1, 1, -1)
    masked = b <= threshold
    if not np.all(masked | (b == 0.0)):
        return "additive"
    if np.all(masked == masked[:, :1, :]):
        return "key-padding"
    nq, nkv = b.shape[-2:]
    upper = np.triu(np.ones((nq, nkv), bool), 1 + nkv - nq)
    if np.all(masked[:, upper]) and not np.any(masked[:, ~upper]):
        return "causal"
    return "additive"


__all__ = ["Builder", "CoreSite", "CoreGeometry", "match_core", "check_core", "rewrite_core", "classify_bias",
           "tag_core_neighbours", "VERY_NEGATIVE"]
