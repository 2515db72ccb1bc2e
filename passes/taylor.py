"""``--passes taylor``: softmax attention → first-order Taylor linear attention (ViTALiTy; or second order).

Each selected block's ``ai.vitc::Attention`` core becomes ``ai.vitc::TaylorAttention`` (same
inputs, O(n·d²), never an n×n tensor; see :mod:`vitc.runtime.taylor_ops` for the formula).

Training-free recovery (all on calibration data, teacher-forced: every block sees the
*original* model's block input):

* refit — the block's output projection is refitted by ridge least squares so that
  out_proj(TaylorAttention(q, k, v)) matches the original attention output (pre-residual);
  λ is chosen per layer on held-out calibration samples, and a refit that does worse there
  than the original projection is rejected;
* heads — ``--head-cos-floor C``: per head, the teacher-forced cosine of its Taylor output to
  its softmax output (real tokens); heads below C stay exact softmax inside a hybrid core
  (``softmax_heads``: n×n for those heads only, costed as softmax), and the refit and cosines
  are of that hybrid; a block none of whose heads reaches C keeps softmax;
* selection — ``--max-drop P``: greedily linearise layers in order of least cosine damage,
  keeping a layer only if end-to-end calibration accuracy (or top-1 agreement without labels)
  drops by at most P percentage points; ``--cos-floor C``: keep layers whose teacher-forced
  attention-output cosine is at least C.

The pass record gives per-layer cosines (before/after refit), end-to-end agreement/accuracy,
whether weights are untrained or fitted, and operation counts (baseline vs rewritten).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import onnx_graphsurgeon as gs

from vitc.core.ir import EncoderBlock
from vitc.core.errors import VitcInputError
from vitc.core.graph import const_value
from vitc.core.ir import CompiledModel, PassRecord
from vitc.compiler import opcount
from vitc.compiler.core_sites import classify_bias
from vitc.compiler.emit import emit
from vitc.passes.fidelity import drop_of, emit_copy, end_to_end, mean_cosine, primary_output
from vitc.passes.options import PassOptions, at_least, block_list, in_range, option, parse_block_list, positive
from vitc.runtime.batching import run_batched
from vitc.runtime.output_kinds import mask_input
from vitc.runtime.session import open_session
from vitc.runtime.taylor_ops import (CENTERINGS, DEFAULT_CENTERING, MASK_THRESHOLD, OP_TYPE, VARIANTS,
                                    hybrid_attributes, softmax_heads_np, taylor_attention_np)

RIDGE_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)   # λ relative to the mean eigenvalue of XᵀX (trace / C)
HOLDOUT_FRACTION = 0.2      # calibration samples held out to choose λ and report the refit's cosine
MIN_REFIT_SAMPLES = 5


# ---------------------------------------------------------------------------------------------
# options

# ---------------------------------------------------------------------------------------------
# graph edits

def linearise_block(cm: CompiledModel, block, variant: str, centering: str, simplified: bool = False,
                    softmax_heads=()) -> None:
    """Turn the ai.vitc::Attention core of ``block`` (an encoder block or a core-only site) into
    ai.vitc::TaylorAttention (the caller has checked that its mask only masks keys); the heads
    ``softmax_heads`` stay exact softmax (hybrid overload)."""
    node = cm.node(block.attention)
    if node.op not in ("Attention", OP_TYPE):
        raise VitcInputError(f"block {block.index}: core '{node.name}' is {node.op}, not ai.vitc::Attention")
    if len(node.inputs) == 4:
        mask = const_value(node.inputs[3])
        if mask is not None and bool(np.all(mask == 0)):
            node.inputs.pop()                       # a constant all-zero mask (dynamo exports): a true no-op
    node.op = OP_TYPE
    heads = int(node.attrs["num_heads"])
    node.attrs = {"num_heads": heads, "scale": float(node.attrs["scale"]),
                  "variant": variant, "centering": centering, "simplified": int(simplified),
                  **hybrid_attributes(heads, softmax_heads)}


def replace_out_projection(cm: CompiledModel, block: EncoderBlock, weight: np.ndarray, bias: np.ndarray | None,
                           tag: str = "fitted") -> None:
    """Point the block's output projection at new initializers (never edits a shared one)."""
    prefix = f"/block{block.index}/attn/out_proj"
    mm = cm.node(block.out_proj.matmul)
    w = gs.Constant(f"{prefix}.weight_{tag}", np.ascontiguousarray(weight, np.float32))
    if mm.op == "Gemm":
        mm.attrs["transB"] = 0
        if len(mm.inputs) > 2 and bias is not None:
            mm.inputs[2] = gs.Constant(f"{prefix}.bias_{tag}", np.ascontiguousarray(bias, np.float32))
    mm.inputs[1] = w
    block.out_proj.weight = w.name
    if bias is not None and block.out_proj.add:
        add = cm.node(block.out_proj.add)
        idx = 1 if const_value(add.inputs[1]) is not None else 0
        b = gs.Constant(f"{prefix}.bias_{tag}", np.ascontiguousarray(bias.reshape(-1), np.float32))
        add.inputs[idx] = b
        block.out_proj.bias = b.name


def _out_projection(cm: CompiledModel, block: EncoderBlock) -> tuple[np.ndarray, np.ndarray | None]:
    mm = cm.node(block.out_proj.matmul)
    w = const_value(mm.inputs[1]).astype(np.float64)
    if mm.op == "Gemm" and mm.attrs.get("transB", 0):
        w = w.T
    b = None
    if block.out_proj.add:
        add = cm.node(block.out_proj.add)
        b = next((const_value(i) for i in add.inputs if const_value(i) is not None), None)
    elif mm.op == "Gemm" and len(mm.inputs) > 2:
        b = const_value(mm.inputs[2])
    return w, None if b is None else np.asarray(b, np.float64).reshape(-1)


def _projection(cm: CompiledModel, proj) -> tuple[np.ndarray, np.ndarray | None]:
    w = const_value(cm.tensor(proj.weight)).astype(np.float64)
    b = None if proj.bias is None else const_value(cm.tensor(proj.bias)).astype(np.float64).reshape(-1)
    return w, b


# ---------------------------------------------------------------------------------------------
# numerics

def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """x[..., K] @ w[K, N] (+ b) through one 2-D BLAS call, float64."""
    y = x.reshape(-1, x.shape[-1]) @ w
    if b is not None:
        y += b
    return y.reshape(x.shape[:-1] + (w.shape[1],))


@dataclasses.dataclass
class LsqStats:
    """Sufficient statistics of a least-squares problem rows X → Y (float64)."""
    n: int
    sx: np.ndarray
    sy: np.ndarray
    xtx: np.ndarray
    xty: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, keep: np.ndarray | None = None) -> "LsqStats":
        """``keep``: which rows (tokens) count, same leading shape as ``x`` (None: all)."""
        x = x.reshape(-1, x.shape[-1]).astype(np.float64, copy=False)
        y = y.reshape(-1, y.shape[-1]).astype(np.float64, copy=False)
        if keep is not None:
            rows = keep.reshape(-1).astype(bool)
            x, y = x[rows], y[rows]
        xt = np.ascontiguousarray(x.T)       # (x.T @ x takes OpenBLAS's much slower syrk path)
        return cls(len(x), x.sum(0), y.sum(0), xt @ x, xt @ y)

    def __sub__(self, o: "LsqStats") -> "LsqStats":
        return LsqStats(self.n - o.n, self.sx - o.sx, self.sy - o.sy, self.xtx - o.xtx, self.xty - o.xty)

    def solve(self, lam: float, intercept: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """argmin ‖XW + b − Y‖² + λ'‖W‖², λ' = lam·trace(XcᵀXc)/C (b unpenalised)."""
        if intercept:
            xm, ym = self.sx / self.n, self.sy / self.n
            gram = self.xtx - self.n * np.outer(xm, xm)
            cross = self.xty - self.n * np.outer(xm, ym)
        else:
            gram, cross = self.xtx, self.xty
        reg = lam * max(np.trace(gram) / len(gram), 1e-12)
        w = np.linalg.solve(gram + reg * np.eye(len(gram)), cross)
        return w, (ym - xm @ w) if intercept else None


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float, intercept: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """argmin ‖XW + b − Y‖² + λ'‖W‖², λ' = lam·trace(XcᵀXc)/C; closed form, float64."""
    return LsqStats.of(x, y).solve(lam, intercept)


@dataclasses.dataclass
class BlockFit:
    index: int
    cos_before: float
    cos_after: float | None = None          # refit, on held-out calibration samples
    cos_after_fit: float | None = None      # refit, on the samples it was fitted on (all)
    cos_before_holdout: float | None = None # original projection, on the held-out samples
    ridge: float | None = None              # λ used (relative to trace(XᵀX)/C)
    res_cos_before: float | None = None     # cosine of block_input + attention output
    res_cos_after: float | None = None
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    rejected: bool = False                  # refit worse than the original projection on held-out data
    note: str | None = None
    head_cosines: list | None = None        # per head: Taylor head output vs softmax's (teacher-forced, real tokens)
    softmax_heads: list = dataclasses.field(default_factory=list)   # heads kept exact (--head-cos-floor)
    declined: str | None = None             # why the block keeps softmax (no head at the floor, …)

    @property
    def fitted(self) -> bool:
        return self.weight is not None

    @property
    def damage(self) -> float:
        return 1.0 - (self.cos_after if self.fitted else self.cos_before)

    def to_dict(self) -> dict:
        d = {"cos_before": round(self.cos_before, 6)}
        for k in ("cos_after", "cos_before_holdout", "cos_after_fit", "res_cos_before", "res_cos_after", "ridge"):
            v = getattr(self, k)
            if v is not None:
                d[k] = round(v, 6)
        if self.rejected:
            d["refit"] = self.note or "rejected (held-out cosine below the original projection's)"
        if self.head_cosines is not None:
            d["head_cosines"] = [round(c, 4) for c in self.head_cosines]
            d["softmax_heads"] = self.softmax_heads
        return d


# ---------------------------------------------------------------------------------------------
# end-to-end evaluation

# ---------------------------------------------------------------------------------------------
# the pass

def _refit_value(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


@dataclasses.dataclass(frozen=True)
class TaylorOptions(PassOptions):
    layers: str | None = option(None, "--taylor-layers", "--layers", metavar="LIST", check=block_list,
                                help="blocks to linearise (candidates under --max-drop/--cos-floor): all | 0,2,5 | 0-3")
    variant: str = option("paper", "--taylor-variant", choices=VARIANTS, type=str,
                          help="paper (Algorithm 1, default), code (released implementation: s·Q(K̂ᵀV)) or order2 "
                               "(second-order expansion 1 + x + x²/2: more faithful, O(n·d³) per head)")
    centering: str | None = option(None, "--taylor-centering", choices=CENTERINGS, type=str,
                                   help="key centring axis (default: tokens for paper and order2, features for code)")
    max_drop: float | None = option(None, "--max-drop", type=float, metavar="PP", check=at_least(0.0),
                                    help="choose layers greedily: end-to-end calibration accuracy (agreement "
                                         "without labels) may drop at most PP percentage points")
    cos_floor: float | None = option(None, "--cos-floor", type=float, metavar="C", check=in_range(-1.0, 1.0),
                                     help="choose layers whose teacher-forced attention-output cosine is at least C")
    refit: str = option("auto", "--taylor-refit", choices=("auto", "yes", "no"), type=_refit_value,
                        help="ridge-refit the output projection of linearised blocks (auto: with --calib or a budget)")
    ridge: float | None = option(None, "--taylor-ridge", type=float, metavar="LAMBDA", check=positive,
                                 help="ridge strength relative to trace(XᵀX)/C (default: chosen per layer from "
                                      f"{', '.join(f'{g:g}' for g in RIDGE_GRID)} on held-out calibration samples)")
    metric: str = option("auto", "--taylor-metric", choices=("auto", "accuracy", "agreement", "cosine"), type=str,
                         help="what --max-drop measures (auto: accuracy with labels, else top-1 agreement)")
    measure: bool = option(True, "--taylor-no-measure", negate="--taylor-no-measure",
                           help="skip the calibration fidelity measurement (cosines, end-to-end agreement) when no "
                                "refit or budget needs it — for quick compiles of large models")
    tokens: int | None = option(None, "--taylor-tokens", type=int, metavar="N", check=positive,
                                help="token count for operation counts of models with a dynamic sequence length")
    head_cos_floor: float | None = option(None, "--head-cos-floor", type=float, metavar="C", check=in_range(-1.0, 1.0),
                                          help="per head: keep as exact softmax the heads whose teacher-forced Taylor "
                                               "output cosine is below C (hybrid core; a block none of whose heads "
                                               "reaches C keeps softmax)")
    when: str = option("always", "--taylor-when", choices=("always", "pays"), type=str,
                       help="pays: keep softmax in blocks whose Taylor core would need more multiplications at the "
                            "model's token count (static, --taylor-tokens, or the calibration's real lengths)")


class TaylorPass:
    name = "taylor"
    help = "softmax attention → first-order Taylor linear attention (ViTALiTy), O(n·d²)"
    Options = TaylorOptions

    # -- option resolution
    def _config(self, cm: CompiledModel, ctx) -> dict:
        o: TaylorOptions = ctx.opts(self.name)
        return {"variant": o.variant, "centering": o.centering or DEFAULT_CENTERING[o.variant],
                "candidates": parse_block_list(o.layers, len(cm.blocks) + len(cm.cores), "--layers"),
                "max_drop": o.max_drop, "cos_floor": o.cos_floor, "refit": o.refit, "metric": o.metric,
                "ridge": o.ridge, "tokens": o.tokens, "measure": o.measure, "when": o.when,
                "head_cos_floor": o.head_cos_floor}

    def run(self, cm: CompiledModel, ctx) -> PassRecord:
        t0 = time.perf_counter()
        cfg = self._config(cm, ctx)
        sites = {b.index: b for b in list(cm.blocks) + list(cm.cores)}
        for i in cfg["candidates"]:
            op = cm.node(sites[i].attention).op
            if op == OP_TYPE:
                raise VitcInputError(f"taylor: block {i} core is already {op} (run taylor once, before reorder)")
        declined = {i: r for i in cfg["candidates"] if (r := decline_reason(cm, ctx, sites[i])) is not None}
        if cfg["when"] == "pays":
            real = real_token_count(cm, ctx)
            for i in cfg["candidates"]:
                if i not in declined and i < len(cm.blocks):
                    why = cost_decline(cm, cm.blocks[i], cfg, real)
                    if why:
                        declined[i] = why
        candidates = [i for i in cfg["candidates"] if i not in declined and i < len(cm.blocks)]
        core_candidates = [i for i in cfg["candidates"] if i not in declined and i >= len(cm.blocks)]
        budget = cfg["max_drop"] is not None or cfg["cos_floor"] is not None
        data = ctx.calibration(cm)
        real_data = data.source != "synthetic"
        refit = cfg["refit"] == "yes" or (cfg["refit"] == "auto" and (real_data or budget))
        fits = self._fit_blocks(cm, ctx, candidates, cfg, refit)
        for i in list(candidates):
            if i in fits and fits[i].declined:
                declined[i] = fits[i].declined
                candidates.remove(i)
        notes = []
        ref_outputs = ctx.model_outputs(cm) if (cfg["measure"] or cfg["max_drop"] is not None) else None
        metric = cfg["metric"]
        if metric == "auto":
            metric = "accuracy" if data.labels is not None else "agreement"
        if ref_outputs is not None and metric in ("accuracy", "agreement") and primary_output(ref_outputs)[1] != "logits":
            metric = "cosine"
            notes.append("model output is not a classifier: --max-drop measures 100·(1 − output cosine)")
        if metric == "accuracy" and data.labels is None:
            raise VitcInputError("taylor: --taylor-metric accuracy needs labels in the calibration data")
        selection, trials = self._select(cm, ctx, candidates, core_candidates, fits, cfg, data, ref_outputs, metric,
                                         refit)
        for i in selection:
            linearise_block(cm, sites[i], cfg["variant"], cfg["centering"], softmax_heads=_heads(fits, i))
            if refit and i in fits and fits[i].weight is not None:
                replace_out_projection(cm, sites[i], fits[i].weight, fits[i].bias)
        fidelity = {"calibration": data.source, "samples": data.size,
                    "per_layer": {str(i): fits[i].to_dict() for i in candidates if i in fits}}
        if ref_outputs is not None:
            fidelity.update({"end_to_end": end_to_end(emit_copy(cm), data, ref_outputs), "metric": metric})
        else:
            fidelity["measured"] = "no (--taylor-no-measure): fidelity not measured"
        details = {
            "op": f"ai.vitc::{OP_TYPE}", "variant": cfg["variant"], "centering": cfg["centering"],
            "candidates": candidates + core_candidates, "selected": selection,
            "declined": {str(i): r for i, r in sorted(declined.items())},
            "selection": ("max-drop" if cfg["max_drop"] is not None else
                          "cos-floor" if cfg["cos_floor"] is not None else "layers"),
            "max_drop": cfg["max_drop"], "cos_floor": cfg["cos_floor"],
            "refit": "ridge least squares on the output projection (teacher-forced)" if refit else "none",
            "ridge_lambda": (cfg["ridge"] if cfg["ridge"] is not None else
                             "per layer, chosen on held-out calibration samples") if refit else None,
            "block_weights": {str(i): ("fitted" if refit and fits.get(i) and fits[i].fitted else "untrained")
                              for i in selection},
            "head_cos_floor": cfg["head_cos_floor"],
            "softmax_heads": {str(i): _heads(fits, i) for i in selection if _heads(fits, i)},
            "trials": trials, "opcount": block_opcounts(cm, selection, cfg["tokens"], real_token_count(cm, ctx)),
        }
        if "note" in details["opcount"]:
            notes.append(details["opcount"]["note"])
        if notes:
            details["notes"] = notes
        fitted = [i for i in selection if refit and fits.get(i) and fits[i].fitted]
        weights = ("fitted" if len(fitted) == len(selection) else "fitted+untrained" if fitted else "untrained") \
            if selection else "none"
        return PassRecord(self.name, selection, weights, fidelity, details,
                          timings={"seconds": round(time.perf_counter() - t0, 2)})

    # -- teacher-forced per-block fits
    def _fit_blocks(self, cm, ctx, candidates, cfg, refit) -> dict[int, BlockFit]:
        budget = cfg["max_drop"] is not None or cfg["cos_floor"] is not None
        if not (refit or budget or cfg["measure"] or cfg["head_cos_floor"] is not None):
            return {}
        fits = {}
        for i in ctx.progress.bar(candidates, "taylor: block fits" if refit else "taylor: block fidelity"):
            fits[i] = fit_block(cm, ctx, cm.blocks[i], cfg["variant"], cfg["centering"], refit, cfg["ridge"],
                                cfg["head_cos_floor"])
        return fits

    # -- layer selection
    def _select(self, cm, ctx, candidates, core_candidates, fits, cfg, data, ref_outputs, metric, refit):
        """Blocks by teacher-forced damage, then core-only sites (no block to teacher-force: they
        are tried end to end under --max-drop, taken as listed otherwise, left out by --cos-floor)."""
        if cfg["cos_floor"] is not None:
            sel = [i for i in candidates if 1.0 - fits[i].damage >= cfg["cos_floor"]]
            if cfg["max_drop"] is None:
                return sel, []
            candidates, core_candidates = sel, []
        if cfg["max_drop"] is None:
            return candidates + core_candidates, []
        order = sorted(candidates, key=lambda i: fits[i].damage) + list(core_candidates)
        chosen, trials = [], []
        for i in ctx.progress.bar(order, "taylor: layer selection (end-to-end trials)"):
            trial = dataclasses.replace(cm, graph=cm.graph.copy(), blocks=[dataclasses.replace(
                b, out_proj=dataclasses.replace(b.out_proj)) for b in cm.blocks], records=[])
            for j in chosen + [i]:
                site = trial.blocks[j] if j < len(trial.blocks) else cm.cores[j - len(cm.blocks)]
                linearise_block(trial, site, cfg["variant"], cfg["centering"], softmax_heads=_heads(fits, j))
                if refit and j in fits and fits[j].weight is not None:
                    replace_out_projection(trial, trial.blocks[j], fits[j].weight, fits[j].bias)
            res = end_to_end(emit(trial), data, ref_outputs)
            drop = drop_of(res, metric)
            ok = drop <= cfg["max_drop"] + 1e-9
            trials.append({"add": i, "layers": sorted(chosen + [i]), "drop": round(drop, 3), "kept": ok, **res})
            if ok:
                chosen.append(i)
        return sorted(chosen), trials


def _heads(fits: dict, i: int) -> list:
    """Heads of block ``i`` kept exact (none without a fit or a head floor)."""
    return list(fits[i].softmax_heads) if i in fits else []


def decline_reason(cm: CompiledModel, ctx, site) -> str | None:
    """Why a block or core-only site keeps its softmax, or None if it can be linearised: the
    linear forms are linear already; first-order Taylor attention has no n×n term, so only a mask
    that removes keys (the same for every query) can be kept — a causal mask or an additive bias
    (relative position, …) is declined rather than dropped."""
    if getattr(site, "kind", "softmax") != "softmax":
        return f"{site.kind} attention is already linear in the tokens"
    node = cm.node(site.attention)
    if len(node.inputs) < 4:
        return None
    kind = getattr(site, "bias", None)
    if kind in (None, "additive", "key-padding"):     # blocks, and cores with a bias: look at the values
        values = mask_values(cm, ctx, site)
        kind = "none" if np.all(values == 0) else classify_bias(values, MASK_THRESHOLD)
    if kind == "causal":
        return "causal mask: linear attention would need a prefix-sum form (not implemented); kept as softmax"
    if kind == "additive":
        return ("additive N×N bias on the scores (e.g. relative position): first-order Taylor attention "
                "would keep an N×N term; kept as softmax")
    return None


SAMPLE_CHUNK = 256     # calibration samples per step of the teacher-forced cores (bounds their float64 temporaries)


def _block_cores(cm: CompiledModel, block: EncoderBlock, x_all: np.ndarray, mask: np.ndarray | None, variant: str,
                 centering: str, exact_heads: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Teacher-forced Taylor core output [B, N, C] of ``block`` for its inputs ``x_all`` [B, N, C] and
    additive ``mask`` (:func:`mask_values`, or None) and, with
    ``exact_heads``, its softmax heads [B, N, H, d]; float64, computed :data:`SAMPLE_CHUNK` samples
    at a time so that q, k, v and the cores' temporaries exist for one chunk only (a whole
    calibration set of a few thousand sentences would need several GB of them at once)."""
    node = cm.node(block.attention)
    heads, scale = int(node.attrs["num_heads"]), float(node.attrs["scale"])
    projections = [_projection(cm, p) for p in (block.q_proj, block.k_proj, block.v_proj)]
    per_sample_mask = mask is not None and np.ndim(mask) >= 1 and np.shape(mask)[0] == len(x_all)
    cores, exact = [], []
    for start in range(0, len(x_all), SAMPLE_CHUNK):
        x = x_all[start:start + SAMPLE_CHUNK].astype(np.float64)
        q, k, v = (_linear(x, *p) for p in projections)
        m = mask[start:start + SAMPLE_CHUNK] if per_sample_mask else mask
        cores.append(taylor_attention_np(q, k, v, heads, scale, variant, centering, m))
        if exact_heads:
            exact.append(softmax_heads_np(q, k, v, heads, scale, range(heads), m))
    return np.concatenate(cores), (np.concatenate(exact) if exact_heads else None)


def mask_values(cm: CompiledModel, ctx, block) -> np.ndarray:
    """The additive mask fed to the block's (or core's) ai.vitc node on the calibration data."""
    mask_t = cm.node(block.attention).inputs[3]
    if const_value(mask_t) is not None:
        return const_value(mask_t)
    mask_name = mask_t.name
    original_names = {o for n in cm.original.graph.node for o in n.output} | {i.name for i in cm.original.graph.input}
    if mask_name in original_names:
        return ctx.activations(cm, [mask_name])[mask_name]
    # created by the front end (e.g. bool → additive): evaluate the current canonical graph
    cache = ctx.__dict__.setdefault("_taylor_graph_values", {})
    if mask_name not in cache:
        sess = open_session(emit_copy(cm), outputs=[mask_name])
        data = ctx.calibration(cm)
        feeds = {i.name: data.feeds[i.name] for i in sess.get_inputs()}
        cache[mask_name] = run_batched(sess, feeds, [mask_name])[0]
    return cache[mask_name]


def fit_block(cm: CompiledModel, ctx, block: EncoderBlock, variant: str, centering: str,
              refit: bool, ridge: float | None = None, head_cos_floor: float | None = None) -> BlockFit:
    """Cosines of the linearised block (teacher-forced) and, with ``refit``, the refitted projection.

    ``ridge``: λ relative to trace(XᵀX)/C; None picks it from :data:`RIDGE_GRID` by the cosine on
    held-out calibration samples (a seeded random split). ``head_cos_floor``: heads whose Taylor
    output cosine to their softmax output is below it stay exact, and the cosines and the refit
    are of that hybrid core; a block with no head at the floor is ``declined`` (with why).
    """
    heads = int(cm.node(block.attention).attrs["num_heads"])
    mask = mask_values(cm, ctx, block) if block.has_mask else None
    if head_cos_floor is not None and np.ndim(mask) == 4 and np.shape(mask)[1] != 1:
        return BlockFit(block.index, float("nan"),
                        declined="a mask per head: hybrid heads need one key mask for all heads; kept as softmax")
    acts = ctx.activations(cm, [block.x_in, block.attn_output] + ([block.block_input] if block.block_input else []))
    z, exact = _block_cores(cm, block, acts[block.x_in], mask, variant, centering, exact_heads=head_cos_floor is not None)
    y = acts[block.attn_output].astype(np.float64)
    keep = ctx.token_mask(cm, y.shape[1]) if y.ndim == 3 else None
    head_cos, soft = None, []
    if head_cos_floor is not None:
        head_cos = head_cosines(z.reshape(exact.shape), exact, keep)
        soft = [h for h in range(heads) if head_cos[h] < head_cos_floor]
        if len(soft) == heads:
            return BlockFit(block.index, float("nan"), head_cosines=head_cos, softmax_heads=soft,
                            declined=f"no head reaches the head cosine floor {head_cos_floor:g} "
                                     f"(best {max(head_cos):.3f}); kept as softmax")
        if soft:
            z = z.reshape(exact.shape)
            z[:, :, soft] = exact[:, :, soft]
            z = z.reshape(y.shape)
        del exact
    if keep is not None:                  # padding tokens: out of every cosine and of the fit
        z, y = z * keep[..., None], y * keep[..., None]
    w, b = _out_projection(cm, block)
    before = _linear(z, w, b)
    if keep is not None:
        before = before * keep[..., None]
    fit = BlockFit(block.index, mean_cosine(before, y), head_cosines=head_cos, softmax_heads=soft)
    resid = acts.get(block.block_input)
    if resid is not None and keep is not None and resid.shape == y.shape:
        resid = resid * keep[..., None]
    if resid is not None and resid.shape == y.shape:
        fit.res_cos_before = mean_cosine(before + resid, y + resid)
    if not refit:
        return fit
    intercept = b is not None
    n = len(z)
    if n < MIN_REFIT_SAMPLES:
        fit.rejected = True
        fit.note = f"refit skipped: {n} calibration sample(s), needs ≥ {MIN_REFIT_SAMPLES} to hold some out"
        return fit
    n_hold = max(1, int(round(HOLDOUT_FRACTION * n)))
    total = LsqStats.of(z, y, keep)
    hold = np.sort(np.random.default_rng(0).permutation(n)[:n_hold])
    train_stats = total - LsqStats.of(z[hold], y[hold], None if keep is None else keep[hold])
    scores = {}
    for cand in ([ridge] if ridge is not None else RIDGE_GRID):
        pred = _linear(z[hold], *train_stats.solve(cand, intercept))
        scores[cand] = mean_cosine(pred if keep is None else pred * keep[hold][..., None], y[hold])
    lam = max(scores, key=scores.get)
    fit.cos_after = scores[lam]
    fit.cos_before_holdout = mean_cosine(before[hold], y[hold])
    fit.ridge = lam
    fit.weight, fit.bias = total.solve(lam, intercept)
    after = _linear(z, fit.weight, fit.bias)
    if keep is not None:
        after = after * keep[..., None]
    fit.cos_after_fit = mean_cosine(after, y)
    if fit.cos_after < fit.cos_before_holdout:           # the refit does not generalise: keep the original projection
        fit.rejected = True
        fit.weight = fit.bias = None
    if resid is not None and resid.shape == y.shape:
        fit.res_cos_after = mean_cosine(after + resid, y + resid)
    return fit


def head_cosines(taylor: np.ndarray, exact: np.ndarray, keep: np.ndarray | None) -> list[float]:
    """Per head h, the mean over samples of the cosine between [B, N, H, d] head outputs
    ``taylor[:, :, h]`` and ``exact[:, :, h]`` (real tokens only with ``keep`` [B, N])."""
    if keep is not None:
        taylor, exact = taylor * keep[..., None, None], exact * keep[..., None, None]
    return [mean_cosine(taylor[:, :, h], exact[:, :, h]) for h in range(taylor.shape[2])]


# ---------------------------------------------------------------------------------------------
# operation counts

def _tokens(block: EncoderBlock, override, real_tokens: int | None = None) -> tuple[int, str]:
    if override:
        return int(override), "given (--taylor-tokens)"
    if not block.tokens_dynamic:
        return block.tokens, "static"
    if real_tokens:
        return int(real_tokens), "median real tokens per calibration sample (attention mask)"
    return block.tokens, "representative (dynamic sequence; probe length)"


def real_token_count(cm: CompiledModel, ctx) -> int | None:
    """Median number of real (unpadded) tokens per sample of the user's calibration data, from
    the model's attention-mask input; None for synthetic data or without a mask input."""
    data = ctx.calibration(cm)
    name = mask_input(data.feeds) if data.source != "synthetic" else None
    return int(np.median(data.feeds[name].astype(bool).sum(1))) if name else None


def break_even_tokens(d: int, h: int, attrs: dict, masked: bool, limit: int = 1 << 16) -> int | None:
    """Fewest tokens at which the Taylor core needs no more multiplications than softmax
    attention (counts of :mod:`vitc.compiler.opcount`); None if not below ``limit``."""
    def pays(n: int) -> bool:
        t = opcount.taylor_attention_counts(n, d, h, attrs["variant"], attrs["centering"], bool(attrs["simplified"]),
                                            masked)
        return t.mul <= opcount.softmax_attention_counts(n, d, h, masked).mul
    lo, hi = 1, 2
    while not pays(hi):
        lo, hi = hi, hi * 2
        if hi > limit:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if pays(mid) else (mid, hi)
    return hi if not pays(lo) else lo


def cost_decline(cm: CompiledModel, block: EncoderBlock, cfg: dict, real_tokens: int | None) -> str | None:
    """Why linearising ``block`` would cost more multiplications than its softmax at the counted
    tokens (``--taylor-when pays``), or None."""
    n, _ = _tokens(block, cfg["tokens"], real_tokens)
    masked = len(cm.node(block.attention).inputs) == 4
    attrs = {"variant": cfg["variant"], "centering": cfg["centering"], "simplified": 0}
    d, h = block.head_dim, block.num_heads
    taylor = opcount.taylor_attention_counts(n, d, h, cfg["variant"], cfg["centering"], False, masked)
    soft = opcount.softmax_attention_counts(n, d, h, masked)
    if taylor.mul <= soft.mul:
        return None
    return (f"linearisation does not pay at {n} tokens: {taylor.mul / soft.mul:.2f}x softmax's multiplications "
            f"(break-even at about {break_even_tokens(d, h, attrs, masked)} tokens); kept as softmax")


def block_opcounts(cm: CompiledModel, selected: list[int], tokens_override=None, real_tokens: int | None = None) -> dict:
    """Per-block and total counts of the attention core, baseline vs rewritten (see vitc.compiler.opcount);
    ``real_tokens``: the token count of a dynamic sequence (calibration data), else the probe's.
    Adds each rewritten block's break-even token count and a note when linearisation costs more
    multiplications than softmax at the counted tokens."""
    rows, tot_b, tot_r, g_b, g_r = [], opcount.OpCounts(), opcount.OpCounts(), opcount.OpCounts(), opcount.OpCounts()
    token_note = None
    notes = []
    for block in cm.blocks:
        n, token_note = _tokens(block, tokens_override, real_tokens)
        node = cm.node(block.attention)
        h, d, c = block.num_heads, block.head_dim, block.embed_dim
        masked = len(node.inputs) == 4
        base = opcount.softmax_attention_counts(n, d, h, masked)
        gbase = opcount.core_graph_counts("Attention", {"num_heads": h, "scale": float(node.attrs["scale"])},
                                          len(node.inputs), n, c, cm.opset)
        if node.op == OP_TYPE:
            a = node.attrs
            hs = len(a.get("softmax_heads") or [])          # hybrid: exact heads cost softmax's
            new = opcount.taylor_attention_counts(n, d, h - hs, a["variant"], a["centering"], bool(a["simplified"]),
                                                  masked) + opcount.softmax_attention_counts(n, d, hs, masked)
            gnew = opcount.core_graph_counts(OP_TYPE, dict(a), len(node.inputs), n, c, cm.opset)
        else:
            new, gnew = base, gbase
        row = {"block": block.index, "tokens": n, "heads": h, "head_dim": d, "rewritten": node.op == OP_TYPE,
               "softmax_heads": list(node.attrs.get("softmax_heads") or []) if node.op == OP_TYPE else [],
               "baseline": base.to_dict(), "taylor": new.to_dict(),
               "graph_baseline": gbase.to_dict(), "graph_taylor": gnew.to_dict()}
        if node.op == OP_TYPE:
            row["break_even_tokens"] = break_even_tokens(d, h, node.attrs, masked)
            if new.mul > base.mul:
                notes.append((block.index, n, new.mul / base.mul, row["break_even_tokens"]))
        rows.append(row)
        tot_b, tot_r, g_b, g_r = tot_b + base, tot_r + new, g_b + gbase, g_r + gnew
    return {"accounting": "attention core per image (batch 1), projections excluded; 'paper' = ViTALiTy Eq. (1)-(3) "
                          "step accounting, 'graph' = counted from the emitted ONNX function bodies "
                          "(see vitc.compiler.opcount and docs/taylor.md)",
            "tokens": token_note,
            "total_M": {"baseline": tot_b.millions(), "rewritten": tot_r.millions(),
                        "ratio": opcount.ratio(tot_b, tot_r)},
            "graph_total_M": {"baseline": g_b.millions(), "rewritten": g_r.millions(),
                              "ratio": opcount.ratio(g_b, g_r)},
            "per_block": rows,
            **({"note": f"linearisation does not pay here: at {notes[0][1]} tokens the Taylor cores of blocks "
                        f"{[b for b, *_ in notes]} need {max(r for _, _, r, _ in notes):.2f}x the multiplications "
                        f"of softmax attention (break-even at about {notes[0][3]} tokens)"} if notes else {})}
