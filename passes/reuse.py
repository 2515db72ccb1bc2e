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
from pathlib import Path


from vitc.core.errors import VitcInputError
from vitc.core.ir import CompiledModel, PassRecord
from vitc.passes.fidelity import choose_metric, drop_of, emit_copy, end_to_end
from vitc.passes.options import PassOptions, at_least, in_range, option, positive
from vitc.passes.reuse_cost import account_for_context
from vitc.passes.reuse_plan import (FIT_MODES, apply_plan, check_plan, fit_plan, parse_plan, plan_text, tb_stats,
                                    working_copy)
from vitc.passes.reuse_search import auto_plan
from vitc.passes.reuse_tb import DEFAULT_KIND, DEFAULT_RIDGE, TB_KINDS, load_tbs, tbs_to_bytes


_PLAN_ITEM = re.compile(r"^\s*\d+\s*(:\s*\d+\s*)?$")


def plan_syntax(v) -> None:
    """Syntax of ``--reuse-plan`` (existence of the blocks is checked against the model)."""
    if isinstance(v, dict) or (isinstance(v, (list, tuple)) and all(isinstance(x, int) for x in v)):
        return
    if not isinstance(v, str) or not v.strip():
        raise ValueError("expected a plan such as 1,3,5 or 3:1,5:1 or auto")
    if v.strip().lower() == "auto":
        return
    for part in v.split(","):
        if not _PLAN_ITEM.match(part):
            raise ValueError(f"cannot read '{part.strip()}' (use e.g. 1,3,5 or 3:1,5:1 or auto)")


def latency_syntax(v) -> None:
    text = str(v).strip().lower()
    try:
        x = float(text[:-1]) if text.endswith("x") else float(text[:-2] if text.endswith("ns") else text)
    except ValueError:
        raise ValueError("use ns (e.g. 3.5e6) or a fraction of the baseline (e.g. 0.8x)") from None
    if not x > 0:
        raise ValueError("must be positive")


def existing_file(v) -> None:
    if not Path(v).is_file():
        raise ValueError("file not found")


@dataclasses.dataclass(frozen=True)
class ReuseOptions(PassOptions):
    plan: str | None = option(None, "--reuse-plan", metavar="PLAN", check=plan_syntax,
                              help="reusing blocks: 1,3,5 (each reuses the nearest earlier computing block) | "
                                   "3:1,5:1 | auto")
    kind: str = option(DEFAULT_KIND, "--tb", "--tb-kind", choices=TB_KINDS, type=str, keys=("tb", "tb_kind"),
                       help=f"transformation block (default {DEFAULT_KIND})")
    rank: int | None = option(None, "--tb-rank", type=int, metavar="R", check=positive, keys=("tb_rank",),
                              help="low-rank TB linear: C→R→C")
    weights: str | None = option(None, "--tb-weights", type=str, metavar="FILE.npz", check=existing_file,
                                 keys=("tb_weights",),
                                 help="load TB weights (format of the reuse_tb.npz the pass writes) instead of fitting")
    fit: str = option("corrected", "--tb-fit", choices=FIT_MODES, type=str, keys=("tb_fit",),
                      help="corrected (default): rewritten model's own A_i in, original A_j plus the residual-stream "
                           "drift out; sequential: rewritten A_i in, original A_j out; teacher: original A_i in")
    ridge: float = option(DEFAULT_RIDGE, "--tb-ridge", type=float, metavar="LAMBDA", check=positive, keys=("tb_ridge",),
                          help=f"ridge strength relative to trace(XᵀX)/C (default {DEFAULT_RIDGE:g})")
    max_drop: float | None = option(None, "--max-drop", type=float, metavar="PP", check=at_least(0.0),
                                    help="fidelity budget: end-to-end calibration accuracy (agreement without "
                                         "labels) may drop at most PP percentage points")
    cos_floor: float | None = option(None, "--cos-floor", type=float, metavar="C", check=in_range(-1.0, 1.0),
                                     help="fidelity budget: every reused layer's teacher-forced TB output cosine "
                                          "must be at least C")
    max_latency: str | None = option(None, "--max-latency", type=str, metavar="NS|Fx", check=latency_syntax,
                                     help="reuse auto: latency limit in ns, or a fraction of the baseline latency "
                                          "(e.g. 0.8x)")
    verify: str = option("auto", "--reuse-verify", choices=("auto", "all", "bisect"), type=str,
                         help="reuse auto: check every frontier plan in onnxruntime (all), bisect for the budget "
                              "boundary, or all when cheap (auto, default)")
    verify_fit: str = option("auto", "--reuse-verify-fit", choices=("auto", "teacher", "final"), type=str,
                             help="reuse auto: TBs used to verify frontier plans — teacher-forced pair fits (fast) "
                                  "or the final --tb-fit refit (exact); auto: final when the onnxruntime work is small")
    recover_estimate: int = option(2, "--reuse-recover-estimate", type=int, metavar="EPOCHS", check=at_least(0),
                                   help="reuse auto with --passes ...,recover: a verified plan that misses the budget "
                                        "with its fitted TBs is trained this many epochs and judged on the result "
                                        "(an estimate of what recovery reaches; 0: fitted TBs only)")
    beam: int = option(64, "--reuse-beam", type=int, metavar="B", check=positive,
                       help="reuse auto: beam width per reuse count when the plan space is too large to enumerate")
    hw: str | None = option(None, "--reuse-hw", type=str, metavar="PRESET",
                            help="crossbar preset for reuse's EDAP accounting when the compile has no crossbar "
                                 "target (default rram-128)")
    measure: bool = option(True, "--reuse-no-measure", negate="--reuse-no-measure",
                           help="skip the end-to-end calibration measurement of the rewritten model")
    cost: bool = option(True, "--reuse-no-cost", negate="--reuse-no-cost",
                        help="skip the EDAP accounting of the plan")


class ReusePass:
    name = "reuse"
    help = "later encoders reuse an earlier encoder's attention output through a transformation block (TReX)"
    Options = ReuseOptions

    def config(self, cm: CompiledModel, ctx) -> dict:
        o: ReuseOptions = ctx.opts(self.name)
        rank = o.rank
        if rank is not None:
            c = cm.blocks[0].embed_dim if cm.blocks else 0
            if not 1 <= rank <= c:
                raise VitcInputError(f"--tb-rank {rank} must be between 1 and the embed dim {c}")
            if o.kind == "identity":
                raise VitcInputError("--tb-rank needs a TB with a linear layer (--tb linear|ln-linear|ln-linear-gelu)")
            if rank == c:
                rank = None
        return {"plan": o.plan, "kind": o.kind, "rank": rank, "mode": o.fit, "weights_file": o.weights,
                "ridge": o.ridge, "max_drop": o.max_drop, "cos_floor": o.cos_floor, "max_latency": o.max_latency,
                "beam": o.beam, "verify": o.verify, "verify_fit": o.verify_fit, "measure": o.measure,
                "recover_estimate": o.recover_estimate if ctx.opts("recover") is not None else 0,
                "cost": o.cost, "hw": o.hw}

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
            if baseline is None:
                baseline = emit_copy(cm)
            plan, search = auto_plan(cm, ctx, cfg, baseline)
            section = search.pop("section", None)
            teacher_tbs = search.pop("_teacher_tbs", {})
            verified_fit = search.pop("_verified_fit", (None, None))
        else:
            plan = parse_plan(spec, n, len(cm.cores))
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
            cost = account_for_context(cm, ctx, baseline, emit_copy(cm), plan)
            if cost is not None:
                details["cost"] = cost
        rec = PassRecord(self.name, sorted(plan), weights, fidelity, details)
        if search is not None and section is not None:
            rec.sections[section["key"]] = section
        rec.timings["seconds"] = round(time.perf_counter() - t0, 2)
        if search is not None:
            rec.timings.update({f"search_{k}": v for k, v in search.pop("seconds", {}).items()})
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
