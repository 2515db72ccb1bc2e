"""Reuse plans and the graph edits behind them (TReX): parse a plan, rewire reusing blocks to a
transformation block of an earlier block's attention output, and fit the TBs of a plan on
calibration activations (:func:`fit_plan`). The pass is :mod:`vitc.passes.reuse`; the plan
search :mod:`vitc.passes.reuse_search`."""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np

from vitc.core.errors import VitcInputError
from vitc.core.ir import CompiledModel
from vitc.passes.fidelity import emit_copy, mean_cosine
from vitc.passes.reuse_tb import DEFAULT_RIDGE, GN_STEPS, TB, SourceSolver, blas_threads, emit_tb, fit_tb, identity_tb
from vitc.runtime.batching import run_batched
from vitc.runtime.session import open_session

FIT_MODES = ("sequential", "corrected", "teacher")
MAX_FIT_ROWS = 65536          # calibration tokens used to fit one TB (deterministic subsample beyond)
TB_ROLE = "reuse_tb"


# ----------------------------------------------------------------------------- plans
def parse_plan(spec, num_blocks: int, num_cores: int = 0) -> dict[int, int]:
    """``"1,3,5"`` / ``"3:1,5:1"`` / list / dict → {reusing block: computing source block}.

    Raises :class:`VitcInputError` (one line) for malformed entries, block 0 reusing, blocks
    out of range, duplicates, a source not earlier than its target.
    """
    if spec is None:
        raise VitcInputError("reuse: no plan given (use --reuse-plan 1,3,5 | 3:1,5:1 | auto)")
    pairs: list[tuple[int, int | None]] = []
    if isinstance(spec, dict):
        pairs = [(int(t), int(s)) for t, s in spec.items()]
    elif isinstance(spec, (list, tuple)):
        for item in spec:
            pairs.append((int(item[0]), int(item[1])) if isinstance(item, (list, tuple)) else (int(item), None))
    else:
        text = str(spec).strip()
        if text.lower() in ("", "none"):
            return {}
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"(-?\d+)\s*(?::\s*(-?\d+))?", part)
            if m is None:
                raise VitcInputError(f"--reuse-plan: cannot read '{part}' (use e.g. 1,3,5 or 3:1,5:1 or auto)")
            pairs.append((int(m.group(1)), None if m.group(2) is None else int(m.group(2))))
    last = num_blocks - 1
    seen = set()
    for t, s in pairs:
        for b in (t, s):
            if b is not None and num_blocks <= b < num_blocks + num_cores:
                raise VitcInputError(f"--reuse-plan: site {b} is an attention core without a canonical encoder block "
                                     "(reuse needs the block's residual and projections; see vitc inspect)")
        if not 0 <= t <= last:
            raise VitcInputError(f"--reuse-plan: block {t} does not exist ("
                                 + (f"model has {num_blocks} blocks: 0-{last})" if num_blocks else
                                    "the model has no canonical encoder blocks; see vitc inspect)"))
        if t == 0:
            raise VitcInputError("--reuse-plan: block 0 cannot reuse attention (no earlier block computes it)")
        if t in seen:
            raise VitcInputError(f"--reuse-plan: block {t} is listed twice")
        seen.add(t)
        if s is not None:
            if not 0 <= s <= last:
                raise VitcInputError(f"--reuse-plan: source block {s} of {t}:{s} does not exist "
                                     f"(model has {num_blocks} blocks: 0-{last})")
            if s >= t:
                raise VitcInputError(f"--reuse-plan: {t}:{s} — a block can only reuse an earlier block")
    reusing = {t for t, _ in pairs}
    explicit = {t: s for t, s in pairs if s is not None}

    def nearest_computing(b: int) -> int | None:
        return next((i for i in range(b - 1, -1, -1) if i not in reusing), None)

    plan: dict[int, int] = {}
    for t, _ in sorted(pairs):
        chain = [explicit[t] if t in explicit else nearest_computing(t)]
        while chain[-1] is not None and chain[-1] in reusing:   # a removed source: follow what it reuses
            b = chain[-1]
            chain.append(explicit[b] if b in explicit else nearest_computing(b))
        if chain[-1] is None:
            raise VitcInputError(f"--reuse-plan: block {t}'s source {'→'.join(str(c) for c in chain[:-1])} is "
                                 "removed and has no earlier block that computes attention")
        plan[t] = chain[-1]
    return plan


def plan_text(plan: dict[int, int]) -> str:
    """``{1: 0, 3: 2}`` → ``"1:0,3:2"`` (``"none"`` when empty)."""
    return ",".join(f"{t}:{s}" for t, s in sorted(plan.items())) or "none"


def check_plan(cm: CompiledModel, plan: dict[int, int]) -> None:
    for t, s in plan.items():
        b = cm.blocks[t]
        if b.reuses is not None:
            raise VitcInputError(f"reuse: block {t} already reuses block {b.reuses} (run the reuse pass once)")
        if cm.blocks[s].reuses is not None:
            raise VitcInputError(f"reuse: source block {s} no longer computes attention")
        if b.residual is None:
            raise VitcInputError(f"reuse: block {t} has no residual Add to rewire")
        if cm.blocks[s].embed_dim != b.embed_dim:
            raise VitcInputError(f"reuse: blocks {s} and {t} have different widths "
                                 f"({cm.blocks[s].embed_dim} vs {b.embed_dim})")


# ----------------------------------------------------------------------------- graph edits
def working_copy(cm: CompiledModel) -> CompiledModel:
    """A copy whose graph, block records and node metadata can be edited independently."""
    return dataclasses.replace(cm, graph=cm.graph.copy(), blocks=[dataclasses.replace(b) for b in cm.blocks],
                               records=[], node_meta=dict(cm.node_meta))


def rewire_block(cm: CompiledModel, target: int, source: int, tb: TB) -> str:
    """Make block ``target`` add TB(A_source) instead of its own attention; returns the TB output name.

    The block's attention nodes become dead (removed by the next graph cleanup).
    """
    bt, bs = cm.blocks[target], cm.blocks[source]
    res = cm.node(bt.residual)
    tensors = cm.graph.tensors()
    src = tensors[bs.attn_output]
    idx = next((k for k, t in enumerate(res.inputs[:2]) if t is not None and t.name == bt.attn_output), None)
    if idx is None:
        idx = next((k for k, t in enumerate(res.inputs[:2]) if t is not None and t.name != bt.block_input), None)
    if idx is None:
        raise VitcInputError(f"reuse: cannot find the attention input of block {target}'s residual {res.name}")
    out = emit_tb(cm.graph, tb, src, f"/reuse/block{target}/tb", cm.opset,
                  lambda name: cm.tag(name, target, TB_ROLE))
    res.inputs[idx] = out
    bt.reuses = source
    return out.name


def apply_plan(cm: CompiledModel, plan: dict[int, int], tbs: dict[int, TB]) -> dict[int, str]:
    """Rewire every block of ``plan`` and clean the graph; returns {block: TB output tensor}."""
    outs = {t: rewire_block(cm, t, s, tbs[t]) for t, s in sorted(plan.items())}
    cm.graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return outs


# ----------------------------------------------------------------------------- data
def _rows(a: np.ndarray, max_rows: int = MAX_FIT_ROWS) -> np.ndarray:
    """[S, N, C] → [M, C] token rows (deterministic even subsample to at most ``max_rows``)."""
    r = a.reshape(-1, a.shape[-1])
    if len(r) > max_rows:
        r = r[np.linspace(0, len(r) - 1, max_rows).astype(np.int64)]
    return r


def run_current(cm: CompiledModel, ctx, names: list[str]) -> dict[str, np.ndarray]:
    """Values of tensors ``names`` of the *current* (rewritten) graph on the calibration data."""
    sess = open_session(emit_copy(cm), outputs=names)
    data = ctx.calibration(cm)
    feeds = {i.name: data.feeds[i.name] for i in sess.get_inputs()}
    return dict(zip(names, run_batched(sess, feeds, names)))


def fit_plan(*args, **kwargs) -> tuple[dict[int, TB], dict[int, dict]]:
    """:func:`_fit_plan` with BLAS on one thread (see :func:`vitc.passes.reuse_tb.blas_threads`)."""
    with blas_threads(1):
        return _fit_plan(*args, **kwargs)


def _fit_plan(cm: CompiledModel, ctx, plan: dict[int, int], kind: str, rank: int | None = None,
             ridge: float = DEFAULT_RIDGE, mode: str = "corrected", apply: bool = True,
             gn_steps: int = GN_STEPS) -> tuple[dict[int, TB], dict[int, dict]]:
    """Fit the TBs of ``plan`` (and, with ``apply``, rewire ``cm`` block by block, in block order).

    ``teacher``: input = the original model's A_i, target = the original A_j.
    ``sequential``: input = A_i of the graph rewritten so far, target = the original A_j.
    ``corrected``: as sequential, but the target also undoes the drift of the residual stream
    the earlier rewrites caused: y = A_j + x_j − x̃_j (x̃_j the rewritten block input), so that
    x̃_j + TB(Ã_i) ≈ x_j + A_j, the original post-attention stream. One onnxruntime run per
    reusing block that follows a rewrite. Returns (TBs, per-block fit statistics).
    """
    blocks = cm.blocks
    if mode != "teacher" and not apply:
        mode = "teacher"
    names = sorted({blocks[b].attn_output for b in set(plan) | set(plan.values())})
    if mode == "corrected":
        names += sorted({blocks[t].block_input for t in plan if blocks[t].block_input})
    orig = ctx.activations(cm, names)
    tbs: dict[int, TB] = {}
    stats: dict[int, dict] = {}
    sources: dict[int, tuple[np.ndarray, str, SourceSolver | None]] = {}
    applied: list[int] = []
    for t, s in sorted(plan.items()):
        a_name, x_name = blocks[s].attn_output, blocks[t].block_input
        want = []
        if s not in sources and mode != "teacher" and any(r < s for r in applied):
            want.append(a_name)
        if mode == "corrected" and x_name and applied:
            want.append(x_name)
        cur = run_current(cm, ctx, want) if want else {}
        if s not in sources:
            a_src = cur.get(a_name, orig[a_name])
            solver = None if kind == "identity" else SourceSolver(
                _rows(a_src), ln=kind in ("ln-linear", "ln-linear-gelu"), ridge=ridge)
            sources[s] = (a_src, "rewritten" if a_name in cur else "original", solver)
        a_src, fed, solver = sources[s]
        y_orig = orig[blocks[t].attn_output]
        y = y_orig
        if mode == "corrected" and x_name in cur:
            y = (y_orig.astype(np.float64) + orig[x_name] - cur[x_name]).astype(np.float32)
        tb = fit_tb(kind, solver, _rows(a_src), _rows(y), rank=rank, gn_steps=gn_steps) \
            if kind != "identity" else identity_tb()
        tb.stats["weights"] = "identity" if kind == "identity" else "fitted"
        tbs[t] = tb
        stats[t] = {"source": s, "input": fed, "cos_identity": round(mean_cosine(a_src, y_orig), 6),
                    "cos_tb": round(mean_cosine(tb(a_src), y_orig), 6),
                    "token_cos_tb": _r(tb.stats.get("cos")), "rel_err": _r(tb.stats.get("rel_err"))}
        if y is not y_orig:
            stats[t]["target"] = "corrected"
            stats[t]["cos_tb_corrected_target"] = round(mean_cosine(tb(a_src), y), 6)
        if "gn_steps" in tb.stats:
            stats[t]["gauss_newton_steps"] = tb.stats["gn_steps"]
        if apply:
            rewire_block(cm, t, s, tb)
            applied.append(t)
    if apply:
        cm.graph.cleanup(remove_unused_graph_inputs=False).toposort()
    return tbs, stats


def _r(v, nd: int = 6):
    return None if v is None or not math.isfinite(v) else round(float(v), nd)


def tb_stats(cm: CompiledModel, ctx, plan: dict[int, int], tbs: dict[int, TB]) -> dict[int, dict]:
    """Teacher-forced cosines of given TBs (original A_i in, original A_j as reference)."""
    names = sorted({cm.blocks[b].attn_output for b in set(plan) | set(plan.values())})
    acts = ctx.activations(cm, names)
    out = {}
    for t, s in sorted(plan.items()):
        a, y = acts[cm.blocks[s].attn_output], acts[cm.blocks[t].attn_output]
        out[t] = {"source": s, "input": "original", "cos_identity": round(mean_cosine(a, y), 6),
                  "cos_tb": round(mean_cosine(tbs[t](a), y), 6)}
    return out


# ----------------------------------------------------------------------------- the pass
