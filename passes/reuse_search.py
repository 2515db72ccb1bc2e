"""``--reuse-plan auto``: the reuse plan with the lowest EDAP under a fidelity budget.

Search space: every set R of reusing blocks (block 0 always computes) and, for each j ∈ R,
any computing source i < j — for 12 blocks 2¹¹ sets and far more (set, source) plans.

1. **Fidelity surrogate** (cached calibration activations, teacher forcing). For every pair
   i < j a TB of the requested kind is fitted (one ridge factorisation per source, shared by
   all its targets; GELU fits take fewer Gauss–Newton steps than the final fit) and scored by
   its damage d_ij = ‖TB_ij(A_i) − A_j‖² / ‖h_j‖², the error it injects relative to the
   residual stream h_j = x_j + A_j. A plan's damage is Σ_{j∈R} d_{src(j) j}.
2. **Cost surrogate** (:class:`vitc.passes.reuse_cost.PlanCostModel`): the backend runs on the
   baseline and on the all-reuse graph once; energy, crossbars/area, busy time and critical
   path are combined per plan analytically (µs per plan).
3. **Search with pruning**, exact under the surrogates:
   * source dominance — with additive damage the best source of j is argmin_i d_ij over the
     blocks that still compute, so (set, source) plans reduce to sets;
   * ``--cos-floor C`` removes pairs whose teacher-forced TB cosine is below C;
   * branch and bound over blocks in order (reuse / compute), keeping the least-damage plan for
     every reuse count k: a branch is cut when, for every k it can still reach, its damage so
     far plus the k − |R| smallest optimistic damages (min over *all* earlier sources) of the
     remaining blocks cannot beat the best plan found for k. More reuse ⇒ lower EDAP
     (monotone in k for a ViT's identical blocks), so these per-k optima, Pareto-filtered on
     (surrogate EDAP, damage), form the frontier. Beyond ``MAX_NODES`` branch-and-bound nodes
     the search falls back to a beam (``--reuse-beam``) over reuse counts.
4. **Verification**: every frontier plan is built with its teacher-forced TBs and run in
   onnxruntime on the calibration data (agreement / accuracy / output cosine) and through the
   backend (exact EDAP, latency). The chosen plan is the lowest exact EDAP that meets
   ``--max-drop`` (accuracy with labels, else top-1 agreement; default 1 pp when no budget is
   given), ``--cos-floor`` and ``--max-latency``. When trained recovery follows in the same
   compile (``--passes reuse,recover``), a plan that misses the budget with its fitted TBs is
   trained for ``--reuse-recover-estimate`` epochs and judged on the result: on real models
   closed-form fits alone reject plans that recovery carries.

The frontier goes into the report as a section (table and scatter; ``frontier_section``) and
into the pass record as JSON.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from vitc.core.errors import VitcInputError
from vitc.passes.fidelity import choose_metric, drop_of, emit_copy, end_to_end, mean_cosine, primary_output
from vitc.passes.recover import RecoverPass          # imports torch only when it runs
from vitc.passes.reuse_cost import PlanCostModel, _tokens_dim, account, cost_oracle
from vitc.passes.reuse_plan import apply_plan, fit_plan, plan_text, working_copy
from vitc.passes.reuse_tb import TB, SourceSolver, blas_threads, fit_tb, gelu_inverse, identity_tb

MAX_NODES = 200_000
SURROGATE_ROWS = 2048
SURROGATE_GN_STEPS = 3
DEFAULT_MAX_DROP = 1.0
LATENCY_MARGIN = 0.05            # surrogate latency this far over the limit: not verified
VERIFY_MACS_BUDGET = 5e11         # "auto" choices: onnxruntime work (MACs) we spend on verification freely


# ----------------------------------------------------------------------------- fidelity surrogate
@dataclass
class PairTable:
    """Teacher-forced TBs and scores for every (source i, target j), i < j."""

    damage: np.ndarray        # [L, L], inf where not allowed
    cosine: np.ndarray        # [L, L] sample-level cosine TB(A_i) vs A_j
    tbs: dict                 # (i, j) -> TB


def _sample_subset(n_samples: int, tokens: int, max_rows: int) -> np.ndarray:
    """Evenly spaced calibration samples whose tokens fit in ``max_rows`` rows (at least one)."""
    k = max(1, min(n_samples, max_rows // max(1, tokens)))
    return np.unique(np.linspace(0, n_samples - 1, k).astype(np.int64))


def pair_table(cm, ctx, kind: str, rank: int | None, ridge: float, max_rows: int = SURROGATE_ROWS,
               gn_steps: int = SURROGATE_GN_STEPS) -> PairTable:
    """:func:`_pair_table` with BLAS on one thread."""
    acts_names = [b.attn_output for b in cm.blocks]
    ctx.activations(cm, acts_names)          # onnxruntime keeps its own threads
    with blas_threads(1):
        return _pair_table(cm, ctx, kind, rank, ridge, max_rows, gn_steps)


def _pair_table(cm, ctx, kind: str, rank: int | None, ridge: float, max_rows: int = SURROGATE_ROWS,
                gn_steps: int = SURROGATE_GN_STEPS) -> PairTable:
    """Teacher-forced TB fits and damages for all pairs on a subset of calibration samples.

    The subset (``max_rows`` tokens) keeps the 66 fits of a 12-block model to seconds; damage
    and sample-level cosine are measured on the same samples.
    """
    L = len(cm.blocks)
    attn = [b.attn_output for b in cm.blocks]
    res_names = []
    original_outputs = {o for n in cm.original.graph.node for o in n.output}
    for b in cm.blocks:
        name = None
        if b.residual:
            try:
                name = cm.node(b.residual).outputs[0].name
            except KeyError:
                name = None
        res_names.append(name if name in original_outputs else (b.block_input if b.block_input in original_outputs
                                                                else b.attn_output))
    acts = ctx.activations(cm, list(dict.fromkeys(attn + res_names)))
    first = acts[attn[0]]
    tokens = int(np.prod(first.shape[1:-1])) if first.ndim > 2 else 1
    pick = _sample_subset(len(first), tokens, max_rows)
    samples = [np.ascontiguousarray(acts[n][pick], np.float32) for n in attn]      # [S', N, C]
    rows = [a.reshape(-1, a.shape[-1]) for a in samples]
    scale = [float((acts[n][pick].astype(np.float64) ** 2).sum()) or 1.0 for n in res_names]
    damage = np.full((L, L), np.inf)
    cosine = np.full((L, L), np.nan)
    tbs = {}
    inverse = {}
    for i in range(L - 1):
        solver = None if kind == "identity" else SourceSolver(rows[i], ln=kind in ("ln-linear", "ln-linear-gelu"),
                                                               ridge=ridge)
        for j in range(i + 1, L):
            if kind == "identity":
                tb = identity_tb()
            else:
                if kind == "ln-linear-gelu" and j not in inverse:
                    inverse[j] = gelu_inverse(rows[j])
                tb = fit_tb(kind, solver, rows[i], rows[j], rank=rank, gn_steps=gn_steps,
                            z_init=inverse.get(j))
            pred = tb(samples[i])
            y = samples[j]
            damage[i, j] = float(((pred - y).astype(np.float64) ** 2).sum()) / scale[j]
            cosine[i, j] = mean_cosine(pred, y)
            tbs[(i, j)] = tb
    return PairTable(damage, cosine, tbs)


# ----------------------------------------------------------------------------- search
def best_sources(reusing: tuple[int, ...] | frozenset, damage: np.ndarray) -> tuple[dict[int, int], float]:
    """Least-damage source for each reusing block among the computing ones, and the plan damage."""
    r = set(reusing)
    plan, total = {}, 0.0
    for j in sorted(r):
        cands = [i for i in range(j) if i not in r]
        i = min(cands, key=lambda i: (damage[i, j], j - i))
        plan[j] = i
        total += float(damage[i, j])
    return plan, total


def nearest_source_dp(damage: np.ndarray) -> dict[int, tuple[float, dict[int, int]]]:
    """Least-damage plan per reuse count k when every reusing block takes the *nearest* computing
    source (exact for that rule, O(L³)): DP over (last computing block, reuse count)."""
    L = damage.shape[0]
    # seg[a][b]: damage of blocks a+1..b-1 all reusing a (b = next computing block or L)
    seg = np.zeros((L, L + 1))
    for a in range(L):
        acc = 0.0
        for b in range(a + 1, L + 1):
            seg[a, b] = acc
            if b < L:
                acc += damage[a, b]
    best: dict[tuple[int, int], tuple[float, int | None]] = {(0, 0): (0.0, None)}   # (last, k) -> (dmg, prev last)
    for c in range(1, L):
        for (a, k), (dmg, _) in list(best.items()):
            if a >= c:
                continue
            v = dmg + seg[a, c]
            key = (c, k + c - a - 1)
            if math.isfinite(v) and (key not in best or v < best[key][0]):
                best[key] = (v, a)
    out: dict[int, tuple[float, dict[int, int]]] = {}
    for (a, k), (dmg, _) in best.items():
        total = dmg + seg[a, L]
        kk = k + L - a - 1
        if math.isfinite(total) and (kk not in out or total < out[kk][0]):
            # rebuild the computing chain
            chain, cur, ck = [a], a, k
            while best[(cur, ck)][1] is not None:
                prev = best[(cur, ck)][1]
                ck -= cur - prev - 1
                cur = prev
                chain.append(cur)
            comp = set(chain)
            plan = {b: max(c for c in comp if c < b) for b in range(1, L) if b not in comp}
            out[kk] = (total, plan)
    return out


def branch_and_bound(damage: np.ndarray, keep: int = 1, max_nodes: int = MAX_NODES) -> tuple[dict, int, bool]:
    """Least-damage plans per reuse count k (``keep`` best each); see module doc, step 3.

    Incumbents come from :func:`nearest_source_dp`; the bound for a node at block j uses, for
    every later block b, the least damage over the sources it could still have (the blocks
    computing so far and any block in [j, b)). Returns ({k: [(damage, plan), ...]}, nodes
    visited, completed).
    """
    L = damage.shape[0]
    d = np.where(np.isfinite(damage), damage, np.inf)
    # m2[j, b] = min_{j <= i < b} d[i, b]
    m2 = np.full((L + 1, L), np.inf)
    for b in range(L):
        for j in range(b - 1, -1, -1):
            m2[j, b] = min(m2[j + 1, b], d[j, b])
    best: dict[int, list] = {k: [] for k in range(L)}
    for k, (dmg, plan) in nearest_source_dp(damage).items():
        plan2, dmg2 = best_sources(tuple(plan), damage)
        best[k].append((dmg2, plan2))
    nodes = 0

    def worst(k):
        lst = best[k]
        return lst[-1][0] if len(lst) >= keep else math.inf

    def visit(j: int, computing: list[int], from_comp: np.ndarray, plan: dict[int, int], dmg: float) -> bool:
        nonlocal nodes
        nodes += 1
        if nodes > max_nodes:
            return False
        k0 = len(plan)
        if j == L:
            lst = best[k0]
            if all(p != plan for _, p in lst):
                lst.append((dmg, dict(plan)))
                lst.sort(key=lambda x: x[0])
                del lst[keep:]
            return True
        lb = np.minimum(from_comp[j:], m2[j, j:])
        lb = np.sort(lb[np.isfinite(lb)])
        pre = np.concatenate([[0.0], np.cumsum(lb)])
        if all(dmg + pre[k - k0] >= worst(k) - 1e-15 for k in range(k0, min(L - 1, k0 + len(pre) - 1) + 1)):
            return True
        if j >= 1:
            i = min(computing, key=lambda i: (d[i, j], j - i))
            if math.isfinite(d[i, j]):
                plan[j] = i
                ok = visit(j + 1, computing, from_comp, plan, dmg + float(d[i, j]))
                del plan[j]
                if not ok:
                    return False
        computing.append(j)
        ok = visit(j + 1, computing, np.minimum(from_comp, d[j]), plan, dmg)
        computing.pop()
        return ok

    completed = visit(0, [], np.full(L, np.inf), {}, 0.0)
    return {k: v for k, v in best.items() if v}, nodes, completed


def beam_search(damage: np.ndarray, width: int = 64) -> tuple[dict, int]:
    """Fallback: level-wise beam over reuse counts, extending the ``width`` least-damage sets by one block."""
    L = damage.shape[0]
    level = {frozenset(): 0.0}
    best = {0: [(0.0, {})]}
    evaluated = 1
    for k in range(1, L):
        cands = {}
        for r in level:
            for j in range(1, L):
                if j in r:
                    continue
                s = r | {j}
                if s in cands:
                    continue
                plan, dmg = best_sources(s, damage)
                evaluated += 1
                if math.isfinite(dmg):
                    cands[s] = (dmg, plan)
        if not cands:
            break
        top = sorted(cands.items(), key=lambda kv: kv[1][0])[:width]
        level = {s: v[0] for s, (v) in ((s, v) for s, v in top)}
        best[k] = [top[0][1]]
    return best, evaluated


def exhaustive(damage: np.ndarray) -> dict:
    """Brute force over every reuse set (for tests/benchmarks): {k: (damage, plan)} least damage per k."""
    L = damage.shape[0]
    best: dict[int, tuple] = {}
    for k in range(L):
        for r in itertools.combinations(range(1, L), k):
            plan, dmg = best_sources(r, damage)
            if math.isfinite(dmg) and (k not in best or dmg < best[k][0]):
                best[k] = (dmg, plan)
    return best


def count_plans(L: int) -> int:
    """Number of (reuse set, source per reusing block) plans of an L-block model."""
    # DP over blocks: ways[c] = number of partial plans with c computing blocks so far
    ways = {1: 1}
    for _ in range(1, L):
        nxt: dict[int, int] = {}
        for c, w in ways.items():
            nxt[c + 1] = nxt.get(c + 1, 0) + w          # compute
            nxt[c] = nxt.get(c, 0) + w * c               # reuse one of c computing sources
        ways = nxt
    return sum(ways.values())


# ----------------------------------------------------------------------------- budget
def parse_latency(value, baseline_ns: float) -> float | None:
    """``--max-latency``: ns (``250000``, ``2.5e5``) or a fraction of the baseline (``0.8x``)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    try:
        if text.endswith("x"):
            return float(text[:-1]) * baseline_ns
        if text.endswith("ns"):
            text = text[:-2]
        return float(text)
    except ValueError:
        raise VitcInputError(f"--max-latency: cannot read '{value}' (ns, e.g. 3.5e6, or a fraction like 0.8x)") from None


# ----------------------------------------------------------------------------- driver
def auto_plan(cm, ctx, cfg: dict, baseline_model) -> tuple[dict[int, int], dict]:
    """Search (see module doc); returns (plan, search record with ``files``)."""
    t0 = time.perf_counter()
    L = len(cm.blocks)
    if L < 2:
        return {}, {"note": "fewer than two blocks: nothing to reuse"}
    kind, rank = cfg["kind"], cfg["rank"]
    max_drop, cos_floor = cfg["max_drop"], cfg["cos_floor"]
    if max_drop is None and cos_floor is None:
        max_drop = DEFAULT_MAX_DROP
    # -- fidelity surrogate
    ctx.progress.note(f"reuse auto: teacher-forced TB fits for {L * (L - 1) // 2} block pairs")
    pairs = pair_table(cm, ctx, kind, rank, cfg["ridge"])
    damage = pairs.damage.copy()
    if cos_floor is not None:
        damage[~(pairs.cosine >= cos_floor)] = np.inf
    t_fit = time.perf_counter() - t0
    # -- cost surrogate
    ctx.progress.note("reuse auto: cost surrogate (baseline and all-reuse graphs through the backend)")
    cost = cost_oracle(ctx)
    if cost is None:
        raise VitcInputError("reuse auto needs a cost model: compile with a crossbar target (--target xbar) or "
                             "name one for reuse (--reuse-hw rram-128)")
    an0 = cost(baseline_model, cm.name)
    all_plan = {j: 0 for j in range(1, L)}
    dummy = {j: _dummy_tb(kind, rank, cm.blocks[j].embed_dim) for j in all_plan}
    trial = working_copy(cm)
    apply_plan(trial, all_plan, dummy)
    an_all = cost(emit_copy(trial), cm.name)
    tokens, dim = _tokens_dim(cm, all_plan)
    pcm = PlanCostModel.build(an0, an_all, all_plan, tokens, dim)
    t_cost = time.perf_counter() - t0 - t_fit
    # -- search
    t1 = time.perf_counter()
    per_k, nodes, completed = branch_and_bound(damage, keep=int(cfg.get("keep", 1)))
    method = "branch-and-bound"
    if not completed:
        per_k, nodes = beam_search(damage, cfg["beam"])
        method = f"beam (width {cfg['beam']}; branch and bound stopped at {MAX_NODES} nodes)"
    explored = []
    for k, lst in sorted(per_k.items()):
        for dmg, plan in lst:
            c = pcm.cost(plan)
            explored.append({"k": k, "plan": plan, "damage": dmg, "cost": c})
    t_search = time.perf_counter() - t1
    # Pareto filter on (surrogate EDAP, damage)
    explored.sort(key=lambda e: (e["cost"].edap, e["damage"]))
    frontier, best_dmg = [], math.inf
    for e in explored:
        if e["damage"] < best_dmg - 1e-15:
            frontier.append(e)
            best_dmg = e["damage"]
    # -- verification of the frontier
    data = ctx.calibration(cm)
    ref = ctx.model_outputs(cm)
    metric = choose_metric(data, ref)
    base_lat = an0.totals["latency_ns"]
    limit = parse_latency(cfg["max_latency"], base_lat)

    def verify(e: dict) -> dict:
        plan = e["plan"]
        ctx.progress.note(f"reuse auto: verifying plan {plan_text(plan) or '(none)'}")
        row = {"k": e["k"], "plan": plan_text(plan), "reusing": sorted(plan), "damage": e["damage"],
               "surrogate_edap": e["cost"].edap, "surrogate_latency_ns": e["cost"].latency_ns,
               "min_tb_cosine": float(min((pairs.cosine[s, t] for t, s in plan.items()), default=1.0)),
               "verified": True}
        if plan:
            tr = working_copy(cm)
            if verify_fit == "teacher":
                fitted[row["plan"]] = ({t: pairs.tbs[(s, t)] for t, s in plan.items()}, None)
                apply_plan(tr, plan, fitted[row["plan"]][0])
            else:
                fitted[row["plan"]] = fit_plan(tr, ctx, plan, kind, rank, cfg["ridge"], cfg["mode"])
            model = emit_copy(tr)
            row.update(end_to_end(model, data, ref))
            an1 = cost(model, cm.name)
            if recover_epochs and drop_of(row, metric) > (max_drop if max_drop is not None else math.inf) + 1e-9:
                row.update(recovery_estimate(tr, ctx, recover_epochs, data, ref, drop_of(row, metric)))
            acc = account(an0, an1, plan, tokens, dim)
            w = acc["rewritten_with_buffer"]
            row.update(edap=w["edap_j_s_mm2"], latency_ns=w["latency_ns"], area_mm2=w["area_mm2"],
                       edap_reduction=acc["ratios"]["edap_reduction"],
                       tops_per_mm2_gain=acc["ratios"]["tops_per_mm2_gain"])
        else:   # the original model: nothing to run
            row.update(_self_metrics(ref, data))
            row.update(edap=an0.totals["edap_j_s_mm2"], latency_ns=base_lat, area_mm2=an0.totals["area_mm2"],
                       edap_reduction=1.0, tops_per_mm2_gain=1.0)
        row["drop"] = drop_of(row, metric)
        ok = not (max_drop is not None and row["drop"] > max_drop + 1e-9)
        ok = ok and not (cos_floor is not None and row["min_tb_cosine"] < cos_floor)
        ok = ok and not (limit is not None and row["latency_ns"] > limit * (1 + 1e-12))
        row["meets_budget"] = ok
        return row

    # What verification costs, deterministically, in MACs of onnxruntime work: one calibration
    # pass per teacher-forced plan, about one per reusing block for a sequential/corrected refit.
    pass_macs = float(an0.totals["macs"]) / max(1, an0.batch) * data.size
    final_runs = sum(len(e["plan"]) for e in frontier)
    verify_fit = cfg.get("verify_fit") or "auto"
    if verify_fit == "auto":
        verify_fit = "final" if cfg["mode"] == "teacher" or pass_macs * final_runs <= VERIFY_MACS_BUDGET else "teacher"
    if verify_fit == "final":
        verify_fit = cfg["mode"]
    runs_per_plan = (lambda e: 1) if verify_fit == "teacher" else (lambda e: max(1, len(e["plan"])))
    fitted: dict[str, tuple] = {}
    results: dict[int, dict] = {}
    recover_epochs = int(cfg.get("recover_estimate") or 0)
    n_front = len(frontier)
    mode = cfg.get("verify", "auto")

    def check(idx: int) -> bool:
        if idx not in results:
            e = frontier[idx]
            if limit is not None and e["cost"].latency_ns > limit * (1 + LATENCY_MARGIN):
                results[idx] = _unverified(e, plan_text, pairs, "surrogate latency over the limit")
            else:
                results[idx] = verify(e)
        return results[idx]["meets_budget"]

    # plans the latency limit leaves (by the surrogate, with a margin): the aggressive end of the frontier
    cand = [idx for idx in range(n_front)
            if limit is None or frontier[idx]["cost"].latency_ns <= limit * (1 + LATENCY_MARGIN)]
    if mode == "auto":
        mode = "all" if pass_macs * sum(runs_per_plan(frontier[i]) for i in cand) <= VERIFY_MACS_BUDGET else "bisect"
    if mode == "all":
        for idx in range(n_front):
            check(idx)
    elif cand:
        # bisection over the candidates for the most aggressive plan within the fidelity budget,
        # assuming fidelity falls with reuse along the frontier
        lo, hi = 0, len(cand) - 1
        if check(cand[hi]):
            while lo < hi:
                mid = (lo + hi) // 2
                if check(cand[mid]):
                    hi = mid
                else:
                    lo = mid + 1
            if hi > 0:    # a neighbour on the aggressive side, in case fidelity is not monotone there
                check(cand[hi - 1])
    rows = [results[idx] if idx in results else _unverified(frontier[idx], plan_text, pairs, "not needed (bisection)")
            for idx in range(n_front)]
    feasible = [r for r in rows if r.get("verified") and r["meets_budget"]]
    chosen = min(feasible, key=lambda r: r["edap"]) if feasible else None
    notes = []
    if chosen is None:
        notes.append("no verified plan meets the budget" + (" and latency limit" if limit is not None else "")
                     + "; no reuse applied")
        plan = {}
    else:
        plan = next(e["plan"] for e in frontier if plan_text(e["plan"]) == chosen["plan"])
        chosen["chosen"] = True
    elapsed = time.perf_counter() - t0
    record = {
        "method": method, "nodes": nodes, "plans_in_space": count_plans(L), "reuse_sets": 2 ** (L - 1),
        "explored": len(explored), "frontier_size": len(frontier),
        "budget": {"max_drop": max_drop, "metric": metric, "cos_floor": cos_floor,
                   "max_latency_ns": limit, "baseline_latency_ns": base_lat},
        "baseline": {"edap_j_s_mm2": an0.totals["edap_j_s_mm2"], "latency_ns": base_lat,
                     "area_mm2": an0.totals["area_mm2"], "energy_pj": an0.totals["energy_pj"]},
        "frontier": [_json_row(r) for r in rows],
        "chosen": plan_text(plan), "surrogate": {"fidelity": "teacher-forced pair TBs, damage = ‖TB(A_i) − A_j‖²/‖x_j + A_j‖²",
                                                 "cost": "baseline + all-reuse backend runs, per-block deltas"},
        "verification": {"mode": mode, "fit": verify_fit, "verified": sum(1 for r in rows if r.get("verified")),
                         "calibration_pass_macs": pass_macs},
        "seconds": {"pair_fits": round(t_fit, 2), "cost_model": round(t_cost, 2), "search": round(t_search, 4),
                    "verification": round(elapsed - t_fit - t_cost - t_search, 2), "total": round(elapsed, 2)},
        "pair_damage": [[None if not math.isfinite(v) else round(float(v), 6) for v in row] for row in pairs.damage],
        "pair_cosine": [[None if not math.isfinite(v) else round(float(v), 6) for v in row] for row in pairs.cosine],
    }
    if notes:
        record["notes"] = notes
    record["section"] = frontier_section(record)
    record["_teacher_tbs"] = {t: pairs.tbs[(s, t)] for t, s in plan.items()}
    record["_verified_fit"] = (verify_fit, fitted.get(plan_text(plan)) if plan else None)
    return plan, record


def recovery_estimate(trial, ctx, epochs: int, data, ref: list, fitted_drop: float) -> dict:
    """End-to-end figures of ``trial`` (a plan applied with fitted TBs) after ``epochs`` epochs of
    the trained recovery that follows in this compile (its options, fewer epochs): what the plan
    can reach once recovered — an estimate, as the final recovery trains longer. Judged, like the
    fitted plans, on all calibration samples; the held-out figures of the training go along.
    Edits ``trial``."""
    opts = replace(ctx.opts("recover"), epochs=epochs, patience=epochs)
    ctx.progress.note(f"reuse auto: {epochs}-epoch recovery to estimate what training reaches")
    t0 = time.perf_counter()
    rec = RecoverPass().run(trial, ctx, opts)
    res = end_to_end(emit_copy(trial), data, ref)
    held = {k: v for k, v in rec.fidelity.items() if k.startswith("holdout_")}
    return {**res, "fitted_drop": round(fitted_drop, 4),
            "recovery_estimate": {"epochs": epochs, "best_epoch": rec.details["best_epoch"], **held,
                                  "seconds": round(time.perf_counter() - t0, 1)}}


def _self_metrics(ref: list, data) -> dict:
    """end_to_end() of the original model against itself (no run needed)."""
    index, kind = primary_output(ref)
    out = ref[index]
    res = {"output_cosine": 1.0}
    if kind == "logits":
        res["agreement"] = 100.0
        if data.labels is not None:
            acc = round(100.0 * float((out.argmax(1) == data.labels).mean()), 3)
            res["accuracy_original"] = res["accuracy"] = acc
    return res


def _unverified(e: dict, plan_text, pairs, why: str) -> dict:
    plan = e["plan"]
    return {"k": e["k"], "plan": plan_text(plan), "reusing": sorted(plan), "damage": e["damage"],
            "surrogate_edap": e["cost"].edap, "surrogate_latency_ns": e["cost"].latency_ns,
            "min_tb_cosine": float(min((pairs.cosine[s, t] for t, s in plan.items()), default=1.0)),
            "verified": False, "meets_budget": None, "why_not_verified": why}


def _dummy_tb(kind: str, rank: int | None, c: int) -> TB:
    if kind == "identity":
        return identity_tb()
    r = rank or c
    return TB(kind, np.zeros((c, r)), None if rank is None else np.zeros((r, c)), np.zeros(c))


def _json_row(r: dict) -> dict:
    out = {}
    for k, v in r.items():
        if isinstance(v, float):
            out[k] = round(v, 6) if abs(v) >= 1e-3 or v == 0 else float(f"{v:.6g}")
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- report section
def frontier_section(rec: dict) -> dict:
    """The ``reuse_frontier`` report section: the frontier as a table and as a scatter (EDAP
    relative to the baseline against the measured drop), rendered with the other sections."""
    b = rec["budget"]
    has_acc = any("accuracy" in r for r in rec["frontier"])
    recovered = [r["recovery_estimate"]["epochs"] for r in rec["frontier"] if "recovery_estimate" in r]
    v = rec.get("verification", {})
    header = ["k", "plan (target:source)", "surrogate damage", "surrogate EDAP", "EDAP (J·s·mm²)", "EDAP reduction",
              "latency (ns)", "TOPS/mm² gain", "agreement %"] + (["accuracy %"] if has_acc else []) + \
             (["drop fitted (pp)"] if recovered else []) + ["output cos", "drop (pp)", "meets budget"]
    rows = []
    for r in rec["frontier"]:
        row = [r["k"], r["plan"] + (" (chosen)" if r.get("chosen") else ""), r.get("damage"), r.get("surrogate_edap"),
               r.get("edap"), r.get("edap_reduction"), r.get("latency_ns"), r.get("tops_per_mm2_gain"),
               r.get("agreement")] + ([r.get("accuracy")] if has_acc else []) + \
            ([r.get("fitted_drop", r.get("drop"))] if recovered else []) + \
            [r.get("output_cosine"), r.get("drop"),
             "–" if not r.get("verified") else ("yes" if r["meets_budget"] else "no")]
        rows.append(row)
    note = (f"search: {rec['method']}, {rec['nodes']} nodes for {rec['reuse_sets']} reuse sets "
            f"({rec['plans_in_space']} plans with source choices); {rec['frontier_size']} frontier plans, "
            f"{v.get('verified', '?')} verified ({v.get('mode', '?')}); budget: max drop {b['max_drop']} pp "
            f"({b['metric']})" + (f", cos floor {b['cos_floor']}" if b["cos_floor"] is not None else "")
            + (f", max latency {b['max_latency_ns']:.4g} ns" if b["max_latency_ns"] else "")
            + (f"; plans that missed it with fitted TBs were judged after a {max(recovered)}-epoch trained "
               "recovery (an estimate: the recovery pass then trains longer)" if recovered else "")
            + f"; chosen: {rec['chosen']}")
    base = rec["baseline"]["edap_j_s_mm2"] or 1.0
    points = [{"label": r["plan"], "edap_rel": r["edap"] / base, "drop": r["drop"], "k": r["k"]}
              for r in rec["frontier"] if r.get("verified")]
    return {"key": "reuse_frontier", "title": "Reuse plan search (TReX): EDAP against fidelity",
            "tables": [{"title": "Frontier plans", "header": header, "rows": rows, "note": note}],
            "figures": [{"kind": "scatter", "title": "Verified frontier: EDAP (relative to the baseline) vs drop",
                         "points": points, "x": "drop", "y": "edap_rel", "xlabel": f"drop ({b['metric']}, pp)",
                         "ylabel": "EDAP / baseline EDAP", "color": "k", "label": "label",
                         "front": sorted(points, key=lambda q: q["drop"])}]}


