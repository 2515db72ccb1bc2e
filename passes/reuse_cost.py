"""Cost accounting for attention reuse on the crossbar cost model (:mod:`vitc.backends`).

Two uses:

* :func:`account` — the exact accounting of one rewritten model against its baseline, both
  run through the backend: ops present in the baseline and gone from the rewrite are the
  *removed* work (q/k/v/out crossbars, K/V crossbar writes, QKᵀ/S·V products, softmax ...),
  ops new in the rewrite are the *added* TB work; plus the buffer that holds each source's
  A_i from its block to its last reuse (:func:`buffer_cost`), which the backend does not
  model. Totals before/after with the buffer folded in, and the ratios TReX reports.
* :class:`PlanCostModel` — a fast surrogate for the ``auto`` search: the backend runs twice
  (baseline, and "every block ≥ 1 reuses") and per-block deltas of energy, crossbars/area,
  resource busy time (pipeline interval) and critical-path time (latency) are combined
  analytically for any plan in microseconds. Exact figures for the chosen plans come from
  :func:`account`.

Buffer for A_i (our assumption, stated in the record): one write plus one read per reuse of
tokens·C·``output_bits`` bits at the preset's buffer energy per bit; area = the peak bits live
at once × ``SRAM_UM2_PER_BIT`` (6T SRAM macro incl. periphery, 0.2 µm²/bit at 22 nm, scaled by
(node/22)²); its transfers overlap compute (no latency).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from vitc.core.costs import CostBreakdown, OpCostRecord

SRAM_UM2_PER_BIT_22NM = 0.2     # our assumption: 22 nm 6T bitcell ≈ 0.1 µm², macro efficiency ≈ 50 %
DIGITAL_UNITS = ("mac", "sfu", "vector")


def tile_area_mm2(spec) -> float:
    return spec["buffer.area_mm2_per_tile"] + spec["interconnect.area_mm2_per_tile"]


def sram_um2_per_bit(spec) -> float:
    node = float(spec.get("technology.node_nm", 22) or 22)
    return SRAM_UM2_PER_BIT_22NM * (node / 22.0) ** 2


def _sum(recs: list[OpCostRecord], spec, xbar_mm2: float) -> dict:
    """Work and cost sums over ``recs`` (``xbar_mm2``: one crossbar's area)."""
    area = (sum(r.crossbars_physical for r in recs) * xbar_mm2
            + sum(r.tiles for r in recs) * tile_area_mm2(spec))
    act = [r for r in recs if r.kind == "act_product"]
    soft = [r for r in recs if r.op_type == "Softmax"]
    return {
        "ops": len(recs),
        "energy_pj": sum(r.energy_pj for r in recs),
        "latency_ns_sum": sum(r.latency_ns for r in recs),
        "macs": sum(r.macs for r in recs),
        "crossbars": sum(r.crossbars for r in recs),
        "crossbars_with_replicas": sum(r.crossbars_total for r in recs),
        "crossbars_dynamic": sum(r.crossbars_dynamic for r in recs),
        "crossbar_area_mm2": area,
        "kv_cells_written": sum(r.cells_written for r in recs),
        "write_energy_pj": sum(r.energy.get("write", 0.0) for r in recs),
        "act_product_macs": sum(r.macs for r in act),
        "act_product_energy_pj": sum(r.energy_pj for r in act),
        "softmax_elements": sum(r.elements for r in soft),
        "softmax_energy_pj": sum(r.energy_pj for r in soft),
    }


def buffer_cost(plan: dict[int, int], tokens: int, embed_dim: int, spec, batch: int = 1) -> dict:
    """Buffer holding each source's A_i from block i to its last reuse (see module doc)."""
    if not plan:
        return {"bits_peak": 0, "energy_pj": 0.0, "area_mm2": 0.0, "sources": {}}
    bits_each = int(batch * tokens * embed_dim * spec["crossbar.output_bits"])
    last: dict[int, int] = {}
    uses: dict[int, int] = {}
    for t, s in plan.items():
        last[s] = max(last.get(s, s), t)
        uses[s] = uses.get(s, 0) + 1
    n_layers = max(plan) + 1
    live = [sum(bits_each for s, e in last.items() if s <= layer < e) for layer in range(n_layers)]
    peak = max(live) if live else 0
    e_bit = spec["buffer.energy_pj_per_bit"] * _zeta_spec(spec)
    energy = sum(bits_each * (1 + uses[s]) * e_bit for s in last)
    return {"bits_each": bits_each, "bits_peak": int(peak), "energy_pj": energy,
            "area_mm2": peak * sram_um2_per_bit(spec) * 1e-6,
            "sram_um2_per_bit": sram_um2_per_bit(spec),
            "sources": {str(s): {"held_until_block": e, "reuses": uses[s]} for s, e in sorted(last.items())}}


def _zeta_spec(spec) -> float:
    return float(spec["calibration.post_layout_energy_factor"])


def _tokens_dim(cm, plan) -> tuple[int, int]:
    b = cm.blocks[next(iter(plan))] if plan else cm.blocks[0]
    return b.tokens, b.embed_dim


def edap(energy_pj: float, latency_ns: float, area_mm2: float) -> float:
    """Energy·delay·area in J·s·mm² (the backend's ``edap_j_s_mm2``)."""
    return energy_pj * 1e-12 * latency_ns * 1e-9 * area_mm2


def account(an0: CostBreakdown, an1: CostBreakdown, plan: dict[int, int], tokens: int, embed_dim: int) -> dict:
    """Exact accounting of the rewrite (``an1``) against the baseline (``an0``); see module doc."""
    spec = an1.hardware
    xbar_mm2 = an1.crossbar_area_mm2
    r0, r1 = an0.ops, an1.ops
    names0, names1 = {r.name for r in r0}, {r.name for r in r1}
    removed = [r for r in r0 if r.name not in names1]
    added = [r for r in r1 if r.name not in names0]
    buf = buffer_cost(plan, tokens, embed_dim, spec, an1.batch)
    t0, t1 = an0.totals, an1.totals
    e1 = t1["energy_pj"] + buf["energy_pj"] / max(1, an1.batch)       # per image
    a1 = t1["area_mm2"] + buf["area_mm2"]
    edap0 = t0["edap_j_s_mm2"]
    edap1 = edap(e1, t1["latency_ns"], a1)
    thr1 = 1e9 / t1["pipeline_interval_ns"] if t1["pipeline_interval_ns"] > 0 else 0.0
    tops_equiv = t0["ops"] * thr1 / 1e12
    per_block = {}
    for j in sorted(plan):
        rem = _sum([r for r in removed if r.block == j], spec, xbar_mm2)
        per_block[str(j)] = {"source": plan[j], "removed": _short(rem),
                             "tb_added": _short(_sum([r for r in added if r.block == j], spec, xbar_mm2))}
    removed_sum, added_sum = _sum(removed, spec, xbar_mm2), _sum(added, spec, xbar_mm2)
    by_role: dict[str, float] = {}
    for r in removed:
        by_role[r.role or "other"] = by_role.get(r.role or "other", 0.0) + r.energy_pj
    return {
        "hardware": spec.name, "attention_products": spec["attention_products.mode"],
        "removed": {**removed_sum, "energy_by_role_pj": dict(sorted(by_role.items()))},
        "tb_added": added_sum,
        "buffer": buf,
        "baseline": _totals(t0),
        "rewritten": _totals(t1),
        "rewritten_with_buffer": {"energy_pj": e1, "latency_ns": t1["latency_ns"], "area_mm2": a1,
                                  "edap_j_s_mm2": edap1, "tops_per_mm2": t1["tops"] / a1 if a1 else 0.0,
                                  "tops_per_mm2_equivalent": tops_equiv / a1 if a1 else 0.0},
        "ratios": {
            "edap_reduction": edap0 / edap1 if edap1 else None,
            "energy_reduction": t0["energy_pj"] / e1 if e1 else None,
            "latency_reduction": t0["latency_ns"] / t1["latency_ns"] if t1["latency_ns"] else None,
            "area_reduction": t0["area_mm2"] / a1 if a1 else None,
            "throughput_gain": t0["pipeline_interval_ns"] / t1["pipeline_interval_ns"]
            if t1["pipeline_interval_ns"] else None,
            "tops_per_mm2_gain": (t1["tops"] / a1) / t0["tops_per_mm2"] if t0["tops_per_mm2"] and a1 else None,
            "tops_per_mm2_equivalent_gain": (tops_equiv / a1) / t0["tops_per_mm2"] if t0["tops_per_mm2"] and a1 else None,
            # one image at a time (no layer pipeline): original ops / single-image latency / area
            "tops_per_mm2_latency_equivalent_gain": (t0["latency_ns"] * t0["area_mm2"]) / (t1["latency_ns"] * a1)
            if t1["latency_ns"] and a1 else None,
        },
        "pipeline_bottleneck": {"baseline": an0.totals.get("pipeline_bottleneck"),
                                "rewritten": an1.totals.get("pipeline_bottleneck")},
        "per_block": per_block,
        "notes": ["tops_per_mm2 counts the operations the rewritten model executes; tops_per_mm2_equivalent "
                  "counts the original model's operations at the rewritten model's throughput (same task per image); "
                  "tops_per_mm2_latency_equivalent: original operations per single-image latency (no layer pipeline)",
                  "buffer: one write + one read per reuse at the preset buffer energy; area = peak live bits x "
                  f"{sram_um2_per_bit(spec):.3g} um2/bit (our SRAM assumption); no latency (overlapped)"],
    }


def _short(s: dict) -> dict:
    keep = ("energy_pj", "macs", "crossbars", "crossbars_with_replicas", "crossbars_dynamic", "crossbar_area_mm2",
            "kv_cells_written", "write_energy_pj", "act_product_macs", "softmax_elements", "latency_ns_sum")
    return {k: s[k] for k in keep}


def _totals(t: dict) -> dict:
    keep = ("energy_pj", "latency_ns", "pipeline_interval_ns", "area_mm2", "edap_j_s_mm2", "tops", "tops_per_mm2",
            "tops_per_w", "ops", "crossbars", "crossbars_with_replicas", "crossbars_dynamic")
    return {k: t[k] for k in keep if k in t}


def cost_oracle(ctx):
    """``model -> CostBreakdown`` for reuse's accounting: the compile's own target when it has
    crossbars, else the crossbar target on ``--reuse-hw`` (default rram-128); None when no cost
    model applies (``--target none`` without ``--reuse-hw``, or no cost interface wired)."""
    hw = ctx.opts("reuse").hw
    if ctx.target in ("xbar",) and hw is None and ctx.cost is not None:
        return ctx.cost
    if ctx.cost_for is None or (ctx.target == "none" and hw is None and ctx.cost is None):
        return None
    return ctx.cost_for("xbar", hw or "rram-128")


def account_for_context(cm, ctx, baseline_model, rewritten_model, plan: dict[int, int]) -> dict | None:
    """:func:`account` on reuse's cost model (:func:`cost_oracle`); None when none applies."""
    cost = cost_oracle(ctx)
    if cost is None:
        return None
    tokens, dim = _tokens_dim(cm, plan)
    out = account(cost(baseline_model, cm.name), cost(rewritten_model, cm.name), plan, tokens, dim)
    if cost is not ctx.cost:
        out["notes"].append(f"accounted on the crossbar target with {cost.hardware.name} (the compile's target "
                            f"'{ctx.target}' has no crossbar model for reuse's EDAP accounting; --reuse-hw sets it)")
    return out


# ----------------------------------------------------------------------------- search surrogate
@dataclass
class PlanCost:
    energy_pj: float
    latency_ns: float
    interval_ns: float
    area_mm2: float
    ops: float
    edap: float
    tops_per_mm2: float
    tops_per_mm2_equivalent: float
    crossbars_with_replicas: int


@dataclass
class PlanCostModel:
    """Analytic per-plan cost from a baseline and an all-reuse analysis (see module doc)."""

    spec: object
    freq_ghz: float
    baseline: dict
    removed: dict[int, dict] = field(default_factory=dict)   # per block: sums of removed ops
    tb: dict[int, dict] = field(default_factory=dict)        # per block: sums of TB ops
    xbar_cycles: list = field(default_factory=list)          # [(cycles, block or None)] baseline crossbar ops, desc
    tb_xbar_cycles: dict[int, int] = field(default_factory=dict)
    busy0: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    dlat_cycles: dict[int, int] = field(default_factory=dict)
    leak_uw0: float = 0.0
    xbar_mm2: float = 0.0            # one crossbar's area, as the cost model charges it
    xbar_leak_uw: float = 0.0        # and its static power
    tokens: int = 1
    embed_dim: int = 1
    batch: int = 1

    @classmethod
    def build(cls, an0: CostBreakdown, an_all: CostBreakdown, plan_all: dict[int, int], tokens: int,
              embed_dim: int) -> "PlanCostModel":
        spec = an0.hardware
        r0, r1 = an0.ops, an_all.ops
        names1 = {r.name for r in r1}
        names0 = {r.name for r in r0}
        m = cls(spec, spec.freq_ghz, dict(an0.totals), tokens=tokens, embed_dim=embed_dim, batch=an0.batch)
        m.counts = {u: int(spec[f"units.{u}.count"]) for u in DIGITAL_UNITS}
        m.leak_uw0 = float(an0.leakage_uw)
        m.xbar_mm2, m.xbar_leak_uw = an0.crossbar_area_mm2, an0.crossbar_leakage_uw
        for r in r0:
            if r.resource in DIGITAL_UNITS:
                m.busy0[r.resource] = m.busy0.get(r.resource, 0) + r.cycles
        removable = {}
        for j in plan_all:
            rem = [r for r in r0 if r.block == j and r.name not in names1]
            add = [r for r in r1 if r.block == j and r.name not in names0]
            m.removed[j] = cls._block_sums(rem)
            m.tb[j] = cls._block_sums(add)
            m.tb_xbar_cycles[j] = max((r.cycles for r in add if r.unit in ("xbar", "xbar-write")), default=0)
            for r in rem:
                removable[r.name] = j
        m.xbar_cycles = sorted(((r.cycles, removable.get(r.name)) for r in r0 if r.unit in ("xbar", "xbar-write")),
                               key=lambda x: -x[0])
        cp0 = an0.critical_cycles_by_block
        cp1 = an_all.critical_cycles_by_block
        m.dlat_cycles = {j: cp0.get(j, 0) - cp1.get(j, 0) for j in plan_all}
        return m

    @staticmethod
    def _block_sums(recs: list[OpCostRecord]) -> dict:
        busy: dict[str, int] = {}
        for r in recs:
            if r.resource in DIGITAL_UNITS:
                busy[r.resource] = busy.get(r.resource, 0) + r.cycles
        return {"energy_pj": sum(r.energy_pj for r in recs), "macs": sum(r.macs for r in recs),
                "crossbars_total": sum(r.crossbars_total for r in recs), "tiles": sum(r.tiles for r in recs),
                "crossbars_physical": sum(r.crossbars_physical for r in recs),
                "crossbars_dynamic": sum(r.crossbars_dynamic for r in recs), "busy": busy}

    def cost(self, plan: dict[int, int]) -> PlanCost:
        spec, b = self.spec, self.baseline
        zeta = _zeta_spec(spec)
        blocks = list(plan)
        d_xbar = sum(self.tb[j]["crossbars_physical"] - self.removed[j]["crossbars_physical"] for j in blocks)
        d_static = sum(self.tb[j]["crossbars_total"] - self.removed[j]["crossbars_total"] for j in blocks)
        d_tiles = sum(self.tb[j]["tiles"] - self.removed[j]["tiles"] for j in blocks)
        buf = buffer_cost(plan, self.tokens, self.embed_dim, spec, self.batch)
        area = (b["area_mm2"] + d_xbar * self.xbar_mm2 + d_tiles * tile_area_mm2(spec)
                + buf["area_mm2"])
        B = max(1, self.batch)          # records are per batch, totals per image
        latency_cycles = b["latency_cycles"] - sum(self.dlat_cycles[j] for j in blocks)
        latency_ns = latency_cycles / self.freq_ghz / B
        # pipeline interval: busiest digital unit kind, or the slowest remaining crossbar op
        busy = dict(self.busy0)
        for j in blocks:
            for u, v in self.removed[j]["busy"].items():
                busy[u] = busy.get(u, 0) - v
            for u, v in self.tb[j]["busy"].items():
                busy[u] = busy.get(u, 0) + v
        per_stage = [-(-v // max(1, self.counts.get(u, 1))) for u, v in busy.items()]
        removed = set(blocks)
        xmax = next((c for c, blk in self.xbar_cycles if blk not in removed), 0)
        xmax = max([xmax] + [self.tb_xbar_cycles[j] for j in blocks])
        interval_cycles = max(per_stage + [xmax]) if spec["pipeline.enabled"] else latency_cycles
        interval_ns = interval_cycles / self.freq_ghz
        window = interval_ns if spec["pipeline.leakage_window"] == "interval" else latency_ns * B
        leak_uw = self.leak_uw0 + d_xbar * self.xbar_leak_uw + d_tiles * spec["buffer.leakage_uw_per_tile"]
        dyn = (b["dynamic_energy_pj"] + sum(self.tb[j]["energy_pj"] - self.removed[j]["energy_pj"] for j in blocks) / B)
        energy = dyn + (leak_uw * 1e-6 * window * 1e-9 * 1e12 * zeta + buf["energy_pj"]) / B
        ops = b["ops"] + 2 * sum(self.tb[j]["macs"] - self.removed[j]["macs"] for j in blocks) // B
        thr = B * 1e9 / interval_ns if interval_ns > 0 else 0.0
        return PlanCost(energy, latency_ns, interval_ns, area, ops, edap(energy, latency_ns, area),
                        ops * thr / 1e12 / area, b["ops"] * thr / 1e12 / area,
                        int(b["crossbars_with_replicas"] + d_static))


__all__ = ["account", "account_for_context", "buffer_cost", "PlanCostModel", "PlanCost", "edap", "cost_oracle"]
