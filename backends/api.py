"""Backend entry point: shape → partition → cost → schedule for one hardware target.

    from vitc.backends.api import analyse
    an = analyse(model, "xbar", "rram-128", model_name="deit_small")
    an.totals["energy_pj"], an.costs, an.schedule, an.sections

The shaped model is cached by a content fingerprint, so a sweep over presets in one process
shapes the model once. Rendering the analysis into files is the driver's (:mod:`vitc.report`).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import onnx

from vitc.backends.cost import AREA_COMPONENTS, COMPONENTS, DYNAMIC_COMPONENTS, MACRO_COMPONENTS, OpCost, Target
from vitc.backends.digital import DigitalModel
from vitc.backends.graph import PreparedGraph, ShapedModel, build_graph, model_fingerprint, shape_model
from vitc.core.hardware import HardwareSpec, load_hw
from vitc.backends.partition import CORE, FREE, WorkItem, partition
from vitc.backends.schedule import Schedule, list_schedule
from vitc.backends.targets import TARGETS
from vitc.backends.xbar import XbarModel
from vitc.backends.xbar_activity import layer_traces
from vitc.core.costs import CostBreakdown, OpCostRecord
from vitc.core.errors import VitcInputError



@dataclass
class Analysis:
    """Everything computed for one (model, hardware) pair, before rendering."""

    model_name: str
    target: str
    spec: HardwareSpec
    graph: PreparedGraph
    items: list[WorkItem]
    costs: list[OpCost]
    schedule: Schedule
    floorplan: dict
    xbar: XbarModel | None
    digital: DigitalModel
    area: dict[str, float]
    leakage_uw: float
    totals: dict
    warnings: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    unit_counts: dict = field(default_factory=dict)
    unit_lanes: dict = field(default_factory=dict)
    sections: dict = field(default_factory=dict)  #: extra report.json sections from the cost models

    def param(self, dotted: str, default=None):
        """A hardware parameter, or ``default`` when this kind of description lacks it."""
        return self.spec.get(dotted, default)


def target_named(name: str) -> Target:
    """The registered target ``name`` (one-line error listing the others)."""
    if name not in TARGETS:
        raise VitcInputError(f"unknown target '{name}' (available: {', '.join(sorted(TARGETS))}, none)")
    return TARGETS[name]


# --------------------------------------------------------------------------- graph cache
_CACHE: "OrderedDict[tuple, ShapedModel]" = OrderedDict()
_CACHE_SIZE = 4


def shaped(model: onnx.ModelProto, batch: int = 1, seq_len: int | None = None,
           input_shapes: dict[str, tuple[int, ...]] | None = None) -> ShapedModel:
    """:func:`~vitc.backends.graph.shape_model` of ``model``, cached by content fingerprint (a sweep
    over presets shapes the model once)."""
    key = (model_fingerprint(model), batch, seq_len, tuple(sorted((input_shapes or {}).items())))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    sm = shape_model(model, batch=batch, seq_len=seq_len, input_shapes=input_shapes)
    _CACHE[key] = sm
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return sm


def prepared(model: onnx.ModelProto, batch: int = 1, seq_len: int | None = None,
             input_shapes: dict[str, tuple[int, ...]] | None = None, lower_cores=True):
    """(PreparedGraph, work items, warnings) for ``model`` with cores lowered as ``lower_cores`` says."""
    pg = build_graph(shaped(model, batch, seq_len, input_shapes), lower_cores)
    items, warnings = partition(pg)
    return pg, items, warnings


# --------------------------------------------------------------------------- analysis
def xbar_traces(model: onnx.ModelProto, spec, options: dict) -> dict:
    """Quantised MVM operands for a preset with ``[adc_circuit]`` (one onnxruntime run on the first
    sample of ``options["activity_data"]``, else on seeded synthetic inputs; ``options["held"]``: data
    of weights held apart from ``model``); compute once and pass
    as ``options["xbar_traces"]`` to cost the same model on several presets."""
    xb = spec.section("crossbar")
    return layer_traces(model, options.get("activity_data"), int(options.get("seed", 0)),
                        options.get("input_shapes"), weight_bits=xb["weight_bits"], input_bits=xb["input_bits"],
                        held=options.get("held"))


def analyse(model: onnx.ModelProto, target: str = "xbar", hw="rram-128", *, model_name: str = "model",
            options: dict | None = None) -> Analysis:
    """Map, cost and schedule ``model`` on ``hw`` (no rendering)."""
    options = dict(options or {})
    spec = load_hw(hw)
    tgt = target_named(target)
    tgt.check_hw(spec)
    shapes_given = options.get("input_shapes") or {}
    batch = int(options.get("batch") or (next(iter(shapes_given.values()))[0] if shapes_given else 1))
    seq_len = options.get("seq_len")
    models = tgt.models(spec, options)
    whole = [m for m in models if CORE in m.kinds]
    lowered: list[str] = []

    def lower(op) -> bool:
        # a core stays whole when a model of the target prices it from its attributes
        reasons = [m.whole_core(op) for m in whole]
        if whole and all(reasons):
            lowered.append(f"{op.origin}: {op.origin_type} costed op by op ({reasons[0]})")
        return all(reasons)

    pg, items, warnings = prepared(model, batch, int(seq_len) if seq_len is not None else None,
                                   options.get("input_shapes"), lower)
    warnings = list(warnings) + lowered
    by_kind = {}
    for m in models:
        for k in m.kinds:
            by_kind.setdefault(k, m)
    xbar = next((m for m in models if isinstance(m, XbarModel)), None)
    digital = next((m for m in models if isinstance(m, DigitalModel)), None)
    costs: list[OpCost] = []
    for it in items:
        if it.kind == FREE:
            continue
        if it.kind == CORE and (CORE not in by_kind or by_kind[CORE].whole_core(it.op)):
            warnings.append(f"{it.op.name}: {it.op.origin_type} with unknown shapes not costed")
            continue
        m = by_kind.get(it.kind)
        if m is None:
            raise VitcInputError(f"target '{target}' has no cost model for {it.kind} ops ({it.op.name})")
        costs.append(m.cost(it))
    if xbar is not None:
        xbar.replicate(costs)
        floor = xbar.floorplan()
    else:
        floor = {"crossbars": 0, "crossbars_with_replicas": 0, "crossbars_dynamic": 0, "tiles": 0}
    counts: dict[str, int] = {}
    lanes: dict[str, int] = {}
    for m in models:
        counts.update(getattr(m, "unit_counts", dict)())
        lanes.update(getattr(m, "unit_lanes", dict)())
    sched = list_schedule(pg.dag, {c.index: c for c in costs}, counts)
    area: dict[str, float] = {k: 0.0 for k in AREA_COMPONENTS}
    leak = 0.0
    for m in models:
        for k, v in m.area().items():
            area[k] = area.get(k, 0.0) + v
        leak += m.leakage_uw()
    totals = _totals(spec, costs, sched, area, leak, floor, batch)
    sections = {}
    for m in models:
        warnings.extend(getattr(m, "warnings", []))
        sec = getattr(m, "report_section", None)
        data = sec() if sec is not None else None
        if data:
            sections[data.get("key", type(m).__name__)] = data
    return Analysis(model_name, target, spec, pg, items, costs, sched, floor, xbar, digital, area, leak, totals,
                    warnings, options, counts, lanes, sections)


def _totals(spec: HardwareSpec, costs: list[OpCost], sched: Schedule, area: dict, leak_uw: float, floor: dict,
            batch: int = 1) -> dict:
    """Per-image figures of a schedule of ``batch`` images: energy, MACs and ops divided by the
    batch, latency per image = the batch's makespan / batch (``batch_latency_ns`` keeps the
    makespan), throughput = batch / pipeline interval (the interval is per batch)."""
    f = spec.freq_ghz
    zeta = float(spec.get("calibration.post_layout_energy_factor", 1.0) or 1.0)
    pipelined = spec.get("pipeline.enabled", True)
    batch_latency_ns = sched.makespan / f
    interval_ns = (sched.interval / f) if pipelined else batch_latency_ns
    window = interval_ns if spec.get("pipeline.leakage_window", "interval") == "interval" else batch_latency_ns
    energy = {k: 0.0 for k in COMPONENTS}
    for c in costs:
        for k, v in c.energy.items():
            energy[k] += v
    energy["leakage"] = leak_uw * 1e-6 * window * 1e-9 * 1e12 * zeta  # pJ; the chip's static power, like NeuroSim
    energy = {k: v / batch for k, v in energy.items()}
    pre_layout = sum(v / zeta if k in MACRO_COMPONENTS or k == "leakage" else v for k, v in energy.items())
    e_pj = sum(energy.values())
    dyn_pj = sum(energy[k] for k in DYNAMIC_COMPONENTS)
    macs = sum(c.macs for c in costs) // batch
    ops = 2 * macs
    area_mm2 = sum(area.values())
    thr = batch * 1e9 / interval_ns if interval_ns > 0 else 0.0
    tops = ops * thr / 1e12
    e_j = e_pj * 1e-12
    latency_ns = batch_latency_ns / batch
    return {
        "batch": batch,
        "latency_ns": latency_ns,
        "batch_latency_ns": batch_latency_ns,
        "latency_cycles": sched.makespan,
        "pipeline_interval_ns": interval_ns,
        "pipeline_interval_cycles": sched.interval if pipelined else sched.makespan,
        "pipeline_bottleneck": sched.bottleneck,
        "throughput_ips": thr,
        "energy_pj": e_pj,
        "dynamic_energy_pj": dyn_pj,
        "energy_by_component_pj": energy,
        "area_mm2": area_mm2,
        "area_by_component_mm2": dict(area),
        "leakage_uw": leak_uw,
        "macs": macs,
        "ops": ops,
        "tops": tops,
        "tops_per_w": (ops / e_j / 1e12) if e_j > 0 else 0.0,
        "tops_per_mm2": tops / area_mm2 if area_mm2 > 0 else 0.0,
        "edap_j_s_mm2": e_j * latency_ns * 1e-9 * area_mm2,
        "crossbars": floor["crossbars"],
        "crossbars_with_replicas": floor["crossbars_with_replicas"],
        "crossbars_dynamic": floor["crossbars_dynamic"],
        "tiles": floor["tiles"],
        "post_layout_energy_factor": zeta,
        "energy_pre_layout_pj": pre_layout,
    }


def breakdown(an: Analysis) -> CostBreakdown:
    """The model-independent cost records passes receive (:class:`vitc.core.costs.CostBreakdown`)."""
    items = {it.op.index: it for it in an.items}
    ops = []
    for c in an.costs:
        it = items[c.index]
        maps = c.extra.get("maps", []) if isinstance(c.extra, dict) else []
        static = [m for m in maps if not m.dynamic]
        ops.append(OpCostRecord(
            name=c.name, block=it.block, role=it.role, op_type=it.op.op_type, kind=c.kind, unit=c.unit,
            resource=c.resource, energy_pj=c.energy_pj, energy=dict(c.energy),
            cycles=int(c.cycles), latency_ns=float(c.latency_ns), macs=int(c.macs), crossbars=int(c.crossbars),
            crossbars_total=int(sum(m.crossbars_total for m in static)),
            crossbars_dynamic=int(c.crossbars_dynamic), crossbars_physical=int(sum(m.crossbars_built for m in maps)),
            tiles=int(sum(m.tiles for m in maps)),
            cells_written=int(c.extra.get("cells_written", 0)) if isinstance(c.extra, dict) else 0,
            elements=int(it.elements)))
    critical: dict[int, int] = {}
    for sl in an.schedule.critical_path:
        it = items.get(sl.index)
        if it is not None and it.block is not None:
            critical[it.block] = critical.get(it.block, 0) + (sl.end - sl.start)
    return CostBreakdown(dict(an.totals), ops, critical, float(an.leakage_uw), int(an.options.get("batch", 1)),
                         an.spec, an.target, list(an.warnings),
                         an.xbar.crossbar_area_mm2() if an.xbar is not None else 0.0,
                         an.xbar.crossbar_leakage_uw() if an.xbar is not None else 0.0)


def cost_oracle(target: str, hw, options: dict | None = None):
    """``model -> CostBreakdown`` on ``target``/``hw`` (what the driver hands passes as ``ctx.cost``)."""
    spec = load_hw(hw)

    def cost(model: onnx.ModelProto, name: str = "model") -> CostBreakdown:
        return breakdown(analyse(model, target, spec, model_name=name, options=dict(options or {})))
    cost.target, cost.hardware = target, spec
    return cost


__all__ = ["Analysis", "analyse", "breakdown", "cost_oracle", "prepared", "shaped", "target_named", "TARGETS"]
