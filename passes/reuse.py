"""``--passes reuse``: later encoders reuse an earlier encoder's attention output (TReX).

In a reusing block j the residual ``x + MSA_j(LN(x))`` becomes ``x + TB(A_i)``, with ``A_i``
the source block's pre-residual attention output (its output projection's result) and TB a
small transformation block (:mod:`vitc.passes.reuse_tb`). Block j's q/k/v projections, core,
output projection (and, pre-LN, its first LayerNorm) become dead and are removed.

Plans (``--reuse-plan``):

* ``1,3,5,7,9,11`` — each listed block reuses the nearest earlier block that still computes
  attention (block 0 always computes);
* ``3:1,5:1`` — explicit ``target:source`` pairs (may be mixed with plain entries); a source
  that is itself reusing resolves to the block it reuses (the chain ends at a computing block);
* ``auto`` — search for the plan with the lowest EDAP under a fidelity budget (``--max-drop``
  and/or ``--cos-floor``) and an optional latency limit (``--max-latency``); see
  :mod:`vitc.passes.reuse_search`.

TB weights: ``identity`` needs none; otherwise fitted in closed form on calibration activations,
block by block in order (:func:`fit_plan`): ``--tb-fit corrected`` (default) feeds the TB the
*rewritten* model's own A_i and targets the original A_j plus the drift of the residual stream
that earlier rewrites caused (x_j − x̃_j); ``sequential`` targets the original A_j; ``teacher``
feeds the original A_i. Or loaded from ``--tb-weights FILE.npz`` (the pass writes
``reuse_tb.npz`` in that format to OUTDIR). The record says ``fitted`` / ``loaded`` / ``identity``.

With a cost target (``--target xbar``) the record's ``details.cost`` holds the accounting:
crossbars and area removed, per-inference K/V writes and QKᵀ/S·V/softmax work removed, TB cost
added, the buffer that holds each A_i until its last reuse, and EDAP / TOPS/mm² before/after
(:mod:`vitc.passes.reuse_cost`).
"""
from __future__ import annotations

import dataclasses
import math
import re
import time

import numpy as np

from vitc.core.errors import VitcInputError
from vitc.core.ir import CompiledModel, PassRecord
from vitc.passes.fidelity import choose_metric, drop_of, emit_copy, end_to_end, mean_cosine
from vitc.passes.registry import add_option, register
from vitc.passes.reuse_tb import (DEFAULT_KIND, DEFAULT_RIDGE, GN_STEPS, TB, TB_KINDS, SourceSolver, blas_threads,
                                  emit_tb, fit_tb, identity_tb, load_tbs, tbs_to_bytes)

FIT_MODES = ("sequential", "corrected", "teacher")
MAX_FIT_ROWS = 65536          # calibration tokens used to fit one TB (deterministic subsample beyond)
TB_ROLE = "reuse_tb"


# ----------------------------------------------------------------------------- options
# ----------------------------------------------------------------------------- plans
def parse_plan(spec, num_blocks: int) -> dict[int, int]:
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
        if not 0 <= t <= last:
            raise VitcInputError(f"--reuse-plan: block {t} does not exist (model has {num_blocks} blocks: 0-{last})")
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
    from vitc.runtime.batching import run_batched
    from vitc.runtime.session import open_session, with_extra_outputs
    sess = open_session(with_extra_outputs(emit_copy(cm), names))
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
@register
class ReusePass:
    name = "reuse"
    help = "later encoders reuse an earlier encoder's attention output through a transformation block (TReX)"

    @classmethod
    def add_arguments(cls, group) -> None:
        add_option(group, "--reuse-plan", dest="p_reuse_plan", metavar="PLAN",
             help="reusing blocks: 1,3,5 (each reuses the nearest earlier computing block) | 3:1,5:1 | auto")
        add_option(group, "--tb", "--tb-kind", dest="p_tb", choices=TB_KINDS,
             help=f"transformation block (default {DEFAULT_KIND})")
        add_option(group, "--tb-rank", dest="p_tb_rank", type=int, metavar="R", help="low-rank TB linear: C→R→C")
        add_option(group, "--tb-weights", dest="p_tb_weights", metavar="FILE.npz",
             help="load TB weights (format of the reuse_tb.npz the pass writes) instead of fitting")
        add_option(group, "--tb-fit", dest="p_tb_fit", choices=FIT_MODES,
             help="corrected (default): rewritten model's own A_i in, original A_j plus the residual-stream "
                  "drift out; sequential: rewritten A_i in, original A_j out; teacher: original A_i in")
        add_option(group, "--tb-ridge", dest="p_tb_ridge", type=float, metavar="LAMBDA",
             help=f"ridge strength relative to trace(XᵀX)/C (default {DEFAULT_RIDGE:g})")
        add_option(group, "--max-drop", dest="p_max_drop", type=float, metavar="PP",
             help="fidelity budget: end-to-end calibration accuracy (agreement without labels) may drop "
                  "at most PP percentage points")
        add_option(group, "--cos-floor", dest="p_cos_floor", type=float, metavar="C",
             help="fidelity budget: every reused layer's teacher-forced TB output cosine must be at least C")
        add_option(group, "--max-latency", dest="p_max_latency", metavar="NS|Fx",
             help="reuse auto: latency limit in ns, or a fraction of the baseline latency (e.g. 0.8x)")
        add_option(group, "--reuse-verify", dest="p_reuse_verify", choices=("auto", "all", "bisect"),
             help="reuse auto: check every frontier plan in onnxruntime (all), bisect for the budget "
                  "boundary, or all when cheap (auto, default)")
        add_option(group, "--reuse-verify-fit", dest="p_reuse_verify_fit", choices=("auto", "teacher", "final"),
             help="reuse auto: TBs used to verify frontier plans — teacher-forced pair fits (fast) or the final "
                  "--tb-fit refit (exact); auto: final when the onnxruntime work is small")
        add_option(group, "--reuse-beam", dest="p_reuse_beam", type=int, metavar="B",
             help="reuse auto: beam width per reuse count when the plan space is too large to enumerate")

    def config(self, cm: CompiledModel, ctx) -> dict:
        kind = ctx.option("tb", "tb_kind", default=DEFAULT_KIND)
        if kind not in TB_KINDS:
            raise VitcInputError(f"reuse: unknown TB kind '{kind}' (choose from {', '.join(TB_KINDS)})")
        rank = ctx.option("tb_rank")
        if rank is not None:
            rank = int(rank)
            c = cm.blocks[0].embed_dim if cm.blocks else 0
            if not 1 <= rank <= c:
                raise VitcInputError(f"--tb-rank {rank} must be between 1 and the embed dim {c}")
            if kind == "identity":
                raise VitcInputError("--tb-rank needs a TB with a linear layer (--tb linear|ln-linear|ln-linear-gelu)")
            if rank == c:
                rank = None
        mode = ctx.option("tb_fit", default="corrected")
        if mode not in FIT_MODES:
            raise VitcInputError(f"--tb-fit: unknown mode '{mode}' (choose from {', '.join(FIT_MODES)})")
        max_drop, cos_floor = ctx.option("reuse_max_drop", "max_drop"), ctx.option("reuse_cos_floor", "cos_floor")
        return {"plan": ctx.option("reuse_plan", "plan"), "kind": kind, "rank": rank, "mode": mode,
                "weights_file": ctx.option("tb_weights"),
                "ridge": float(ctx.option("tb_ridge", default=DEFAULT_RIDGE)),
                "max_drop": None if max_drop is None else float(max_drop),
                "cos_floor": None if cos_floor is None else float(cos_floor),
                "max_latency": ctx.option("reuse_max_latency", "max_latency"),
                "beam": int(ctx.option("reuse_beam", default=64)),
                "verify": ctx.option("reuse_verify", default="auto"),
                "verify_fit": ctx.option("reuse_verify_fit", default="auto"),
                "measure": bool(ctx.option("reuse_measure", default=True)),
                "cost": bool(ctx.option("reuse_cost", default=True))}

    def run(self, cm: CompiledModel, ctx) -> PassRecord:
        t0 = time.perf_counter()
        cfg = self.config(cm, ctx)
        n = len(cm.blocks)
        spec = cfg["plan"]
        search = None
        files: dict[str, bytes] = {}
        baseline = emit_copy(cm) if cfg["cost"] else None
        if isinstance(spec, str) and spec.strip().lower() == "auto":
            if cfg["weights_file"]:
                raise VitcInputError("--tb-weights cannot be combined with --reuse-plan auto (weights fix the plan)")
            from vitc.passes.reuse_search import auto_plan
            if baseline is None:
                baseline = emit_copy(cm)
            plan, search = auto_plan(cm, ctx, cfg, baseline)
            files.update(search.pop("files", {}))
            teacher_tbs = search.pop("_teacher_tbs", {})
            verified_fit = search.pop("_verified_fit", (None, None))
        else:
            plan = parse_plan(spec, n)
        check_plan(cm, plan)
        data = ctx.calibration(cm)
        if cfg["weights_file"]:
            tbs = load_tbs(cfg["weights_file"], plan, {t: cm.blocks[t].embed_dim for t in plan})
            apply_plan(cm, plan, tbs)
            weights = "loaded"
            fit_stats = {}
            if any(tb.kind == "identity" for tb in tbs.values()) and all(tb.kind == "identity" for tb in tbs.values()):
                weights = "identity"
        elif search is not None and plan and verified_fit[0] == cfg["mode"] and verified_fit[1] is not None:
            tbs, fit_stats = verified_fit[1]     # verified with the final fit: ship exactly what was measured
            if fit_stats is None:
                fit_stats = tb_stats(cm, ctx, plan, tbs)
            apply_plan(cm, plan, tbs)
            weights = "identity" if cfg["kind"] == "identity" else "fitted"
        elif search is not None and plan and cfg["kind"] != "identity" and cfg["mode"] != "teacher":
            tbs, fit_stats = self._refit_searched(cm, ctx, cfg, plan, teacher_tbs, search)
            weights = "fitted"
        else:
            tbs, fit_stats = fit_plan(cm, ctx, plan, cfg["kind"], cfg["rank"], cfg["ridge"], cfg["mode"])
            weights = "identity" if cfg["kind"] == "identity" else "fitted"
        if not plan:
            weights = "none"
        if plan and weights in ("fitted", "loaded") and any(tb.kind != "identity" for tb in tbs.values()):
            files["reuse_tb.npz"] = tbs_to_bytes(tbs, plan)
        fidelity: dict = {"calibration": data.source, "samples": data.size,
                          "per_layer": {str(t): s for t, s in fit_stats.items()}}
        if cfg["measure"] and plan:
            ref = ctx.model_outputs(cm)
            fidelity["end_to_end"] = end_to_end(emit_copy(cm), data, ref)
            fidelity["metric"] = choose_metric(data, ref)
        kinds = sorted({tb.kind for tb in tbs.values()}) if plan else []
        details = {
            "plan": {str(t): s for t, s in sorted(plan.items())}, "plan_text": plan_text(plan),
            "removed_attention": sorted(plan), "computing": [i for i in range(n) if i not in plan],
            "tb": kinds[0] if len(kinds) == 1 else kinds, "tb_rank": cfg["rank"],
            "tb_fit": (None if weights != "fitted" else
                       {"mode": cfg["mode"], "ridge_lambda": cfg["ridge"],
                        "method": ("ridge least squares" if cfg["kind"] != "ln-linear-gelu" else
                                   "ridge least squares on GELU-inverse targets + preconditioned Gauss-Newton")
                        + (f", reduced rank {cfg['rank']}" if cfg["rank"] else ""),
                        "target": "original attention output of the reusing block"}),
            "block_weights": {str(t): ("identity" if tbs[t].kind == "identity" else weights) for t in sorted(plan)},
        }
        if search is not None:
            details["search"] = search
        if cfg["cost"] and plan:
            from vitc.passes.reuse_cost import account_for_context
            cost = account_for_context(cm, ctx, baseline, emit_copy(cm), plan)
            if cost is not None:
                details["cost"] = cost
        details["seconds"] = round(time.perf_counter() - t0, 2)
        rec = PassRecord(self.name, sorted(plan), weights, fidelity, details)
        rec.files.update(files)
        return rec

    @staticmethod
    def _refit_searched(cm, ctx, cfg, plan, teacher_tbs, search) -> tuple[dict, dict]:
        """Refit the searched plan in ``cfg["mode"]``; keep the verified teacher-forced TBs if it measures worse."""
        trial = working_copy(cm)
        tbs, stats = fit_plan(trial, ctx, plan, cfg["kind"], cfg["rank"], cfg["ridge"], cfg["mode"])
        data = ctx.calibration(cm)
        ref = ctx.model_outputs(cm)
        metric = choose_metric(data, ref)
        seq = drop_of(end_to_end(emit_copy(trial), data, ref), metric)
        chosen = next((r for r in search["frontier"] if r.get("chosen")), None)
        teacher = chosen["drop"] if chosen else math.inf
        if seq <= teacher + 1e-9:
            search["final_fit"] = {"mode": cfg["mode"], "drop": round(seq, 4), "verified_teacher_drop": teacher}
            apply_plan(cm, plan, tbs)
            return tbs, stats
        search["final_fit"] = {"mode": "teacher", "drop": teacher, f"{cfg['mode']}_drop": round(seq, 4),
                               "note": f"the {cfg['mode']} refit measured worse; the verified teacher-forced TBs are kept"}
        stats = tb_stats(cm, ctx, plan, teacher_tbs)
        apply_plan(cm, plan, teacher_tbs)
        return teacher_tbs, stats
