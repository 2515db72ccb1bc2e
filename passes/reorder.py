"""``--passes reorder``: reassociate MatMul chains to the cheapest order (exact), and — when
asked with ``--reorder-simplify`` — emit forms that exploit provably constant values.

Chains: a maximal tree of ``MatMul`` nodes whose intermediate results each feed exactly one
other MatMul of the tree (and are not graph outputs), e.g. ``(A·B)·C`` or ``A·(B·(C·D))``. Its
leaves A₀ … A_m ([…, p_i, p_{i+1}], rank ≥ 2, batch dims broadcast) are re-multiplied in the
order that minimises multiplications (matrix-chain dynamic programme, cost of a product
batch·p·q·r); a sub-chain whose leaves are all constants is multiplied once at compile time
(float64, stored as float32) and costs nothing at run time. Sizes come from the graph's static
shapes; a symbolic dim takes a stated representative size (``--reorder-dim``, default: the
model's token count; a symbolic leading dim of a rank ≥ 3 tensor is the batch and costs as 1).
A chain is rewritten only if the new order is strictly cheaper.
Reassociation is exact in real arithmetic; in float32 outputs move by rounding only.

Simplifications (``--reorder-simplify``): ``ai.vitc::TaylorAttention`` with the paper variant
centred over tokens has k̂_sum = Σ_j (k_j − K̄) = 0 exactly, so t_D = n_w; such nodes switch to
the constant-denominator body (``simplified=1``: Z = v_sum/n_w + Q·(s/n_w·G)).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import onnx_graphsurgeon as gs

from vitc.compiler.emit import emit
from vitc.core.graph import const_value, producer
from vitc.core.ir import CompiledModel, PassRecord
from vitc.passes.options import PassOptions, option, positive
from vitc.passes.taylor import block_opcounts
from vitc.runtime.batching import run_batched
from vitc.runtime.session import open_session
from vitc.runtime.taylor_ops import OP_TYPE as TAYLOR_OP, can_simplify

DEFAULT_DIM = 197
MEASURE_SAMPLES = 8          # calibration samples used to measure a rewrite's output change


@dataclass
class Leaf:
    tensor: gs.Tensor
    shape: tuple[int, ...]          # representative sizes
    const: np.ndarray | None


def _dims(t: gs.Tensor, rep: int) -> tuple[int, ...] | None:
    """Shape of ``t`` with symbolic dims replaced by ``rep``; None if unknown."""
    if isinstance(t, gs.Constant):
        return tuple(int(d) for d in t.values.shape)
    v = const_value(t)
    if v is not None:
        return tuple(v.shape)
    if t.shape is None:
        return None
    out = []
    for axis, d in enumerate(t.shape):
        if isinstance(d, (int, np.integer)) and d >= 0:
            out.append(int(d))
        elif isinstance(d, str) or d is None or (isinstance(d, (int, np.integer)) and d < 0):
            out.append(1 if axis == 0 and len(t.shape) >= 3 else rep)   # symbolic batch costs as 1
        else:
            return None
    return tuple(out)


def _is_internal(t: gs.Tensor, outputs: set[str]) -> bool:
    return (len(t.outputs) == 1 and t.outputs[0].op == "MatMul" and t.name not in outputs
            and producer(t) is not None and producer(t).op == "MatMul")


def _collect(t: gs.Tensor, outputs: set[str], nodes: list[gs.Node]) -> list[gs.Tensor]:
    """Leaves (in order) of the MatMul tree producing ``t``; the tree's nodes go to ``nodes``."""
    node = producer(t)
    nodes.append(node)
    leaves = []
    for x in node.inputs[:2]:
        if _is_internal(x, outputs) and x.outputs[0] is node:
            leaves.extend(_collect(x, outputs, nodes))
        else:
            leaves.append(x)
    return leaves


def _batch(shapes: list[tuple[int, ...]]) -> int:
    try:
        b = np.broadcast_shapes(*[s[:-2] for s in shapes])
    except ValueError:
        return -1
    return int(np.prod(b, dtype=np.int64)) if len(b) else 1


class ChainPlan:
    """Matrix-chain DP over leaves; costs are multiplications at run time."""

    def __init__(self, leaves: list[Leaf]):
        self.leaves = leaves
        m = len(leaves)
        self.p = [leaves[0].shape[-2]] + [lf.shape[-1] for lf in leaves]
        self.const = [[all(lf.const is not None for lf in leaves[i:j + 1]) for j in range(m)] for i in range(m)]
        self.cost = [[0] * m for _ in range(m)]
        self.split = [[-1] * m for _ in range(m)]
        for length in range(2, m + 1):
            for i in range(m - length + 1):
                j = i + length - 1
                if self.const[i][j]:
                    self.cost[i][j] = 0
                    self.split[i][j] = i        # folded at compile time (any split)
                    continue
                best, arg = None, -1
                batch = _batch([lf.shape for lf in leaves[i:j + 1]])
                for s in range(i, j):
                    c = self.cost[i][s] + self.cost[s + 1][j] + batch * self.p[i] * self.p[s + 1] * self.p[j + 1]
                    if best is None or c < best:
                        best, arg = c, s
                self.cost[i][j], self.split[i][j] = best, arg

    @property
    def best(self) -> int:
        return self.cost[0][len(self.leaves) - 1]

    def expression(self, i: int = 0, j: int | None = None) -> str:
        j = len(self.leaves) - 1 if j is None else j
        if i == j:
            return self.leaves[i].tensor.name
        if self.const[i][j]:
            return "const[" + "·".join(lf.tensor.name for lf in self.leaves[i:j + 1]) + "]"
        s = self.split[i][j]
        return f"({self.expression(i, s)} · {self.expression(s + 1, j)})"


def _tree_cost(t: gs.Tensor, leaf_shapes: dict[str, tuple], outputs: set[str], rep: int) -> tuple[int, tuple, bool]:
    """Run-time multiplications of the existing tree producing ``t``: (cost, shape, all-constant)."""
    node = producer(t)
    parts = []
    for x in node.inputs[:2]:
        if _is_internal(x, outputs) and x.outputs[0] is node:
            parts.append(_tree_cost(x, leaf_shapes, outputs, rep))
        else:
            parts.append((0, leaf_shapes[x.name], const_value(x) is not None))
    (ca, sa, ka), (cb, sb, kb) = parts
    shape = tuple(np.broadcast_shapes(sa[:-2], sb[:-2])) + (sa[-2], sb[-1])
    own = 0 if (ka and kb) else _batch([sa, sb]) * sa[-2] * sa[-1] * sb[-1]
    return ca + cb + own, shape, ka and kb


def _build(graph: gs.Graph, plan: ChainPlan, prefix: str, out: gs.Tensor, counter: list[int],
           i: int = 0, j: int | None = None) -> gs.Tensor:
    j = len(plan.leaves) - 1 if j is None else j
    if i == j:
        return plan.leaves[i].tensor
    counter[0] += 1
    k = counter[0]
    if plan.const[i][j]:
        acc = plan.leaves[i].const.astype(np.float64)
        for lf in plan.leaves[i + 1:j + 1]:
            acc = acc @ lf.const.astype(np.float64)
        dtype = plan.leaves[i].const.dtype
        folded = gs.Constant(f"{prefix}/reorder_const_{k}", np.ascontiguousarray(acc.astype(dtype)))
        if out is None:
            return folded
        graph.nodes.append(gs.Node("Identity", f"{prefix}/reorder_identity_{k}", inputs=[folded], outputs=[out]))
        return out
    s = plan.split[i][j]
    a = _build(graph, plan, prefix, None, counter, i, s)
    b = _build(graph, plan, prefix, None, counter, s + 1, j)
    y = out if out is not None else gs.Variable(f"{prefix}/reorder_{k}_output", dtype=np.float32)
    graph.nodes.append(gs.Node("MatMul", f"{prefix}/reorder_{k}", inputs=[a, b], outputs=[y]))
    return y


def reorder_graph(graph: gs.Graph, rep: int = DEFAULT_DIM) -> list[dict]:
    """Reassociate every MatMul chain of ``graph`` where that is cheaper. Returns one entry per chain."""
    outputs = {t.name for t in graph.outputs}
    roots = [n for n in graph.nodes if n.op == "MatMul" and n.outputs and not _is_internal(n.outputs[0], outputs)]
    report = []
    for root in roots:
        out = root.outputs[0]
        nodes: list[gs.Node] = []
        leaves_t = _collect(out, outputs, nodes)
        if len(leaves_t) < 3:
            continue
        entry = {"root": root.name, "operands": len(leaves_t)}
        shapes = {x.name: _dims(x, rep) for x in leaves_t}
        dtypes = {x.dtype for x in leaves_t if getattr(x, "dtype", None) is not None}
        if any(s is None or len(s) < 2 for s in shapes.values()) or any(
                np.dtype(d).kind != "f" for d in dtypes):
            report.append({**entry, "rewritten": False, "reason": "unknown shape, rank < 2 or non-float operand"})
            continue
        leaves = [Leaf(x, shapes[x.name], const_value(x)) for x in leaves_t]
        if any(leaves[i].shape[-1] != leaves[i + 1].shape[-2] for i in range(len(leaves) - 1)) \
                or _batch([lf.shape for lf in leaves]) < 0:
            report.append({**entry, "rewritten": False, "reason": "inner sizes differ at the representative size"})
            continue
        current, _, _ = _tree_cost(out, shapes, outputs, rep)
        plan = ChainPlan(leaves)
        entry.update({"mul_before": current, "mul_after": min(current, plan.best), "order": plan.expression()})
        if plan.best >= current:
            report.append({**entry, "rewritten": False, "reason": "already cheapest"})
            continue
        for n in nodes:
            n.outputs.clear()
            n.inputs.clear()
        _build(graph, plan, root.name, out, [0])
        report.append({**entry, "rewritten": True})
    graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return report


def simplify_taylor(cm: CompiledModel) -> list[int]:
    """Switch paper/token-centred TaylorAttention cores to the constant-denominator form."""
    done = []
    for block in cm.blocks:
        node = next((n for n in cm.graph.nodes if n.name == block.attention), None)
        if node is None or node.op != TAYLOR_OP or node.attrs.get("simplified"):
            continue
        if can_simplify(node.attrs.get("variant", "paper"), node.attrs.get("centering", "tokens")):
            node.attrs["simplified"] = 1
            done.append(block.index)
    return done


def representative_dim(cm: CompiledModel, given) -> tuple[int, str]:
    if given:
        return int(given), "given (--reorder-dim)"
    for b in cm.blocks:
        return b.tokens, ("probe sequence length (dynamic model)" if b.tokens_dynamic else "the model's token count")
    return DEFAULT_DIM, "default"


@dataclasses.dataclass(frozen=True)
class ReorderOptions(PassOptions):
    dim: int | None = option(None, "--reorder-dim", type=int, metavar="N", check=positive,
                             help="representative size of symbolic dims when costing chains "
                                  "(default: the model's token count)")
    measure: bool = option(True, "--reorder-no-measure", negate="--reorder-no-measure",
                           help="do not measure the rewritten model against the input graph on calibration inputs")
    simplify: bool = option(False, "--reorder-simplify",
                            help="also emit constant forms that are exact by proof (TaylorAttention: k̂_sum = 0 "
                                 "with centring over tokens ⇒ t_D = n)")


class ReorderPass:
    name = "reorder"
    help = "reassociate MatMul chains by FLOP count (exact); --reorder-simplify exploits provable constants"
    Options = ReorderOptions
    after = ("taylor",)     # simplifies the Taylor cores taylor wrote

    def run(self, cm: CompiledModel, ctx) -> PassRecord:
        t0 = time.perf_counter()
        before = dataclasses.replace(cm, graph=cm.graph.copy())
        o: ReorderOptions = ctx.opts(self.name)
        rep, rep_note = representative_dim(cm, o.dim)
        chains = reorder_graph(cm.graph, rep)
        simplify = o.simplify
        simplified = simplify_taylor(cm) if simplify else []
        rewritten = [c for c in chains if c["rewritten"]]
        details = {"representative_dim": rep, "representative_dim_source": rep_note,
                   "chains": chains, "chains_rewritten": len(rewritten),
                   "mul_saved": int(sum(c["mul_before"] - c["mul_after"] for c in rewritten)),
                   "simplify": simplify, "taylor_constant_denominator_blocks": simplified}
        if simplified:
            details["opcount"] = block_opcounts(cm, simplified, getattr(ctx.opts("taylor"), "tokens", None))
        fidelity = {"exact": "reassociation and k̂_sum = 0 are exact in real arithmetic; float32 outputs "
                             "differ by rounding only"}
        if not (rewritten or simplified):
            fidelity["measured"] = "graph unchanged"
        elif o.measure:
            fidelity.update(measure_change(before, cm, ctx))
        else:
            fidelity["measured"] = "no (--reorder-no-measure)"
        return PassRecord(self.name, sorted(simplified), "none", fidelity, details,
                          timings={"seconds": round(time.perf_counter() - t0, 3)})


def measure_change(before: CompiledModel, after: CompiledModel, ctx, samples: int = MEASURE_SAMPLES) -> dict:
    """Max relative difference and cosine of the outputs, graph before vs after, on calibration inputs."""
    data = ctx.calibration(after).take(samples)
    outs = []
    for cm in (before, after):
        sess = open_session(emit(dataclasses.replace(cm, graph=cm.graph.copy())))
        outs.append(run_batched(sess, {i.name: data.feeds[i.name] for i in sess.get_inputs()}))
    rel = max(float(np.abs(a - b).max() / max(float(np.abs(a).max()), 1e-30)) for a, b in zip(*outs))
    a, b = outs[0][0].reshape(data.size, -1).astype(np.float64), outs[1][0].reshape(data.size, -1).astype(np.float64)
    cos = float(((a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)).min())
    return {"measured_on": f"{data.size} calibration samples ({data.source})", "max_rel": rel, "cosine_min": cos}
