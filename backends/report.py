"""Render an :class:`~vitc.backends.api.Analysis` into the five output files and a summary.

Files (schemas documented in ``docs/report-schema.md``):

* ``mapping.json``  (``vitc.mapping`` v1) — every weight block on every crossbar;
* ``schedule.json`` (``vitc.schedule`` v1) — start/end cycle and unit of every costed op;
* ``report.json``   (``vitc.report`` v1) — totals, per-component, per-layer, per-op, critical
  path, pass records, surrogate figures, warnings;
* ``report.md``     — the same as tables;
* ``report.html``   — self-contained page (inline SVG plots, inline CSS, no scripts).

Everything is deterministic: sorted keys, floats rounded to 6 significant digits, no
timestamps, SVG with a fixed hash salt.
"""
from __future__ import annotations

import html
import json
import math

import numpy as np

from vitc.backends import plots
from vitc.backends.cost import DYNAMIC_COMPONENTS, LATENCY_COMPONENTS
from vitc.backends.partition import FREE

REPORT_SCHEMA = ("vitc.report", 1)
MAPPING_SCHEMA = ("vitc.mapping", 1)
SCHEDULE_SCHEMA = ("vitc.schedule", 1)

BLOCK_FIELDS = ["crossbar", "tile", "pe", "group", "row_tile", "col_tile", "row0", "rows", "col0", "cols",
                "weight_col0", "weight_col1", "utilisation"]

NOTES = [
    "ops = 2 x MACs (static-weight and activation x activation products); element-wise work is not counted as ops.",
    "Energy per image includes leakage = chip static power x pipeline interval (or x latency when the preset says so), "
    "and is multiplied by the preset's post_layout_energy_factor.",
    "Latency is the makespan of a list schedule of one image; throughput is 1 / pipeline interval, the busiest "
    "resource's time per image with layers pipelined.",
    "Per-layer energies exclude leakage; per-layer sums plus leakage equal the totals.",
    "Layer latency is the sum of its ops' busy times (ops of a layer may overlap in the schedule).",
    "EDAP = energy per image (J) x latency per image (s) x area (mm2).",
    "Costs are computed at batch 1 unless options say otherwise; weights are never read, only their shapes.",
]


# --------------------------------------------------------------------------- helpers
def _r(x):
    """Round floats to 6 significant digits, recursively (for deterministic JSON)."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.6g}")
    if isinstance(x, (np.floating,)):
        return _r(float(x))
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, dict):
        return {str(k): _r(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_r(v) for v in x]
    return x


def _dumps(obj) -> bytes:
    return (json.dumps(_r(obj), sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _dumps_mapping(mapping: dict) -> bytes:
    """mapping.json: readable header, then one compact line per matrix (its blocks last).

    Blocks are already integers and 4-decimal utilisations, so they skip the rounding pass;
    DeiT-Base on 64×64 crossbars has ~340 k blocks.
    """
    head = _r({k: v for k, v in mapping.items() if k != "matrices"})
    head["matrices"] = "@@MATRICES@@"
    lines = []
    for m in mapping["matrices"]:
        meta = json.dumps(_r({k: v for k, v in m.items() if k != "blocks"}), sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False)
        lines.append(meta[:-1] + ',"blocks":' + json.dumps(m["blocks"], separators=(",", ":")) + "}")
    body = "[\n" + ",\n".join(lines) + "\n]" if lines else "[]"
    text = json.dumps(head, sort_keys=True, indent=1, ensure_ascii=False).replace('"@@MATRICES@@"', body, 1)
    return (text + "\n").encode("utf-8")


def _si(x: float, unit: str) -> str:
    """Human-readable number with an SI prefix (x in base units)."""
    if x == 0:
        return f"0 {unit}"
    for f, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"),
                 (1e-12, "p")):
        if abs(x) >= f:
            return f"{x / f:.4g} {p}{unit}"
    return f"{x:.3g} {unit}"


# --------------------------------------------------------------------------- builders
def _mapping(an) -> dict:
    spec = an.spec
    if an.xbar is None:  # a target without crossbars (e.g. systolic): an empty mapping
        return {"schema": MAPPING_SCHEMA[0], "schema_version": MAPPING_SCHEMA[1], "model": an.model_name,
                "hardware": spec.name, "crossbar": {}, "block_fields": BLOCK_FIELDS, "totals": an.floorplan,
                "matrices": []}
    cpw = spec.columns_per_weight if "crossbar" in spec.data else 1
    R, C = spec["crossbar.rows"], spec["crossbar.cols"]
    mp = spec.section("mapping")
    per_pe = mp["crossbars_per_pe"]
    per_tile = per_pe * mp["pes_per_tile"]
    mats = []
    for mm in (an.xbar.maps if an.xbar else []):
        g, r, c = np.meshgrid(np.arange(mm.count), np.arange(mm.row_tiles), np.arange(mm.col_tiles), indexing="ij")
        g, r, c = g.ravel(), r.ravel(), c.ravel()
        local = np.arange(g.size)
        rows = mm.rows_used[r]
        cols = mm.cols_used[c]
        col0 = c * C
        util = rows * cols / float(R * C)
        blocks = np.column_stack([
            mm.first_crossbar + local, mm.first_tile + local // per_tile, (local % per_tile) // per_pe,
            g, r, c, r * R, rows, col0, cols, col0 // cpw, -(-(col0 + cols) // cpw)])
        blist = [b + [round(float(u), 4)] for b, u in zip(blocks.tolist(), util)]
        mats.append({
            "op": mm.op, "layer": mm.layer, "matrix": mm.label, "weight": an.graph.weight_source(mm.tensor),
            "K": mm.K, "N": mm.N, "count": mm.count, "row_tiles": mm.row_tiles, "col_tiles": mm.col_tiles,
            "physical_cols": mm.phys_cols, "crossbars": mm.crossbars, "replication": mm.replication,
            "crossbars_with_replicas": mm.crossbars_total, "dynamic": mm.dynamic,
            "first_crossbar": mm.first_crossbar, "first_tile": mm.first_tile, "tiles": mm.tiles,
            "utilisation_mean": float(util.mean()) if util.size else 0.0, "blocks": blist,
        })
    xb = spec.section("crossbar")
    return {
        "schema": MAPPING_SCHEMA[0], "schema_version": MAPPING_SCHEMA[1], "model": an.model_name,
        "hardware": spec.name,
        "crossbar": {"rows": R, "cols": C, "cell_bits": xb["cell_bits"], "weight_bits": xb["weight_bits"],
                     "slices": spec.slices, "columns_per_weight": cpw, "signed": xb["signed"],
                     "crossbars_per_pe": per_pe, "pes_per_tile": mp["pes_per_tile"]},
        "layout": ("physical columns of weight column j: [j*columns_per_weight, (j+1)*columns_per_weight) "
                   "(slices most-significant first, then the negative copy if differential); replicas of a "
                   "matrix repeat its blocks on further crossbars (ids after the first copy)"),
        "block_fields": BLOCK_FIELDS,
        "totals": an.floorplan,
        "matrices": mats,
    }


def _layers(an) -> list[dict]:
    zeta = an.param("calibration.post_layout_energy_factor", 1.0)
    by_index = {it.op.index: it for it in an.items}
    slot = {s.index: s for s in an.schedule.slots}
    layers: dict[str, dict] = {}
    for it in an.items:
        if it.kind == FREE:
            continue
        L = layers.setdefault(it.layer, {
            "layer": it.layer, "block": it.block, "role": it.role, "ops": 0, "units": set(), "crossbars": 0,
            "crossbars_with_replicas": 0, "crossbars_dynamic": 0, "replication": 1, "macs": 0,
            "latency_by_component_ns": {k: 0.0 for k in LATENCY_COMPONENTS},
            "energy_by_component_pj": {k: 0.0 for k in DYNAMIC_COMPONENTS},
            "start_cycle": None, "end_cycle": 0, "_util": []})
    for c in an.costs:
        it = by_index[c.index]
        L = layers[it.layer]
        L["ops"] += 1
        L["units"].add(c.unit)
        L["macs"] += c.macs
        L["crossbars"] += c.crossbars
        L["crossbars_dynamic"] += c.crossbars_dynamic
        rep = c.extra.get("replication", 1)
        L["replication"] = max(L["replication"], rep)
        L["crossbars_with_replicas"] += c.crossbars * rep
        for k, v in c.latency.items():
            L["latency_by_component_ns"][k] += v
        for k, v in c.energy.items():
            L["energy_by_component_pj"][k] += v * zeta
        s = slot.get(c.index)
        if s is not None:
            L["start_cycle"] = s.start if L["start_cycle"] is None else min(L["start_cycle"], s.start)
            L["end_cycle"] = max(L["end_cycle"], s.end)
        for mm in c.extra.get("maps", []):
            L["_util"].append(mm.utilisation(an.param("crossbar.rows"), an.param("crossbar.cols")))
    out = []
    for L in layers.values():
        if L["ops"] == 0:
            continue
        u = np.concatenate(L.pop("_util")) if L["_util"] else np.zeros(0)
        L.pop("_util", None)
        L["utilisation_mean"] = float(u.mean()) if u.size else None
        L["units"] = sorted(L["units"])
        L["latency_ns"] = sum(L["latency_by_component_ns"].values())
        L["energy_pj"] = sum(L["energy_by_component_pj"].values())
        L["start_cycle"] = L["start_cycle"] or 0
        out.append(L)
    out.sort(key=lambda L: (L["start_cycle"], L["end_cycle"], L["layer"]))
    return out


def _ops(an) -> list[dict]:
    zeta = an.param("calibration.post_layout_energy_factor", 1.0)
    by_index = {it.op.index: it for it in an.items}
    slot = {s.index: s for s in an.schedule.slots}
    out = []
    for c in an.costs:
        it = by_index[c.index]
        s = slot[c.index]
        out.append({"name": c.name, "op_type": it.op.op_type, "origin": it.op.origin, "layer": c.layer,
                    "kind": c.kind, "unit": c.unit, "resource": c.resource, "instance": s.instance,
                    "start": s.start, "end": s.end, "cycles": c.cycles,
                    "latency_ns": c.latency_ns, "energy_pj": c.energy_pj * zeta, "macs": c.macs,
                    "crossbars": c.crossbars, "crossbars_dynamic": c.crossbars_dynamic,
                    "replication": c.extra.get("replication", 1)})
    return out


def _schedule(an) -> dict:
    sched, spec = an.schedule, an.spec
    costs = {c.index: c for c in an.costs}
    counts = an.unit_counts
    res = {}
    for r, b in sorted(sched.resource_busy.items()):
        n = counts.get(r, 1)
        res[r] = {"instances": n, "busy_cycles": b,
                  "utilisation": b / (n * sched.makespan) if sched.makespan else 0.0}
    ops = [{"op": s.name, "layer": s.layer, "unit": costs[s.index].unit, "resource": s.resource,
            "instance": s.instance, "start": s.start, "end": s.end}
           for s in sched.slots if s.index in costs]
    return {
        "schema": SCHEDULE_SCHEMA[0], "schema_version": SCHEDULE_SCHEMA[1], "model": an.model_name,
        "hardware": spec.name, "clock_mhz": spec.freq_ghz * 1000.0, "makespan_cycles": sched.makespan,
        "interval_cycles": an.totals["pipeline_interval_cycles"], "bottleneck": sched.bottleneck,
        "resources": res, "ops": ops,
        "critical_path": [{"op": s.name, "layer": s.layer, "resource": s.resource, "start": s.start, "end": s.end}
                          for s in sched.critical_path],
    }


def _calibration_source(rec: dict) -> str:
    for where in (rec, rec.get("details") or {}, rec.get("fidelity") or {}):
        if isinstance(where, dict):
            v = where.get("calibration") or where.get("calibration_source")
            if isinstance(v, str):
                return v
    return ""


def _surrogate_section(an, pass_records: list[dict]) -> dict:
    """Which figures in this report are surrogates (hardware parameters, pass fidelity)."""
    hw = sorted(an.spec.surrogates)
    passes = []
    for rec in pass_records:
        status = str(rec.get("weights", rec.get("weights_status", ""))).lower()
        calib = _calibration_source(rec).lower()
        why = []
        if status in ("untrained", "fitted"):
            why.append(f"replacement weights are {status}")
        if "synthetic" in calib or rec.get("synthetic_calibration") or rec.get("synthetic"):
            why.append("fidelity measured on synthetic calibration inputs, not real data")
        if why:
            passes.append({"pass": rec.get("name", "?"), "weights": status or None, "why": "; ".join(why)})
    return {
        "hardware": hw,
        "hardware_note": ("hardware figures marked surrogate come from related tools, calibrations to a published "
                          "result, or our own choices; docs/hardware.md gives the source of each"),
        "passes": passes,
    }


def build_report(an, pass_records: list[dict], mapping: dict) -> dict:
    t = an.totals
    util = np.concatenate([mm.utilisation(an.param("crossbar.rows"), an.param("crossbar.cols"))
                           for mm in (an.xbar.maps if an.xbar else []) if not mm.dynamic] or [np.zeros(0)])
    counts, edges = np.histogram(util, bins=np.linspace(0, 1, 11))
    zeta = an.param("calibration.post_layout_energy_factor", 1.0)
    return {
        "schema": REPORT_SCHEMA[0], "schema_version": REPORT_SCHEMA[1],
        "model": {"name": an.model_name, "fingerprint": an.graph.fingerprint, "batch": an.graph.batch,
                  "seq_len": an.graph.seq_len, "input_shapes": an.graph.input_shapes,
                  "nodes_expanded": len(an.graph.ops), "ops_costed": len(an.costs),
                  "top_level_nodes": len(an.graph.origin_nodes)},
        "target": an.target,
        "hardware": {"name": an.spec.name, "origin": an.spec.origin, "kind": an.spec.kind,
                     "description": an.spec.description, "parameters": an.spec.fingerprint(),
                     "surrogates": sorted(an.spec.surrogates)},
        "totals": {**t, "energy_pre_layout_pj": t["energy_pj"] / zeta,
                   "dynamic_energy_share": {k: (t["energy_by_component_pj"][k] / t["dynamic_energy_pj"]
                                                if t["dynamic_energy_pj"] else 0.0) for k in DYNAMIC_COMPONENTS}},
        "layers": _layers(an),
        "ops": _ops(an),
        "units": {u: {"count": n, "lanes": an.unit_lanes.get(u)} for u, n in sorted(an.unit_counts.items())},
        "attention_products": ("systolic" if an.target in ("systolic", "hybrid")
                               else an.param("attention_products.mode")),
        "utilisation": {"mean": float(util.mean()) if util.size else None, "histogram_edges": edges.tolist(),
                        "histogram_counts": counts.tolist()},
        "critical_path": [{"op": s.name, "layer": s.layer, "resource": s.resource, "start": s.start, "end": s.end}
                          for s in an.schedule.critical_path],
        "pass_records": list(pass_records),
        "surrogates": _surrogate_section(an, pass_records),
        "lifetime": _lifetime(an),
        "warnings": sorted(set(an.warnings)),
        "notes": NOTES,
        **({"systolic": an.sections["systolic"]} if "systolic" in an.sections else {}),
    }


def _lifetime(an) -> dict | None:
    if an.param("attention_products.mode") != "xbar-write" or not an.floorplan.get("crossbars_dynamic"):
        return None
    endurance = an.spec["attention_products.endurance_cycles"]
    thr = an.totals["throughput_ips"]
    return {"writes_per_cell_per_inference": 1, "endurance_cycles": endurance,
            "inferences_until_wearout": endurance,
            "seconds_until_wearout_at_throughput": endurance / thr if thr else None}


# --------------------------------------------------------------------------- text
def summary(an) -> str:
    t = an.totals
    extra = []
    if t["crossbars_with_replicas"] != t["crossbars"]:
        extra.append(f"{t['crossbars_with_replicas'] - t['crossbars']:,} replicas")
    if t["crossbars_dynamic"]:
        extra.append(f"{t['crossbars_dynamic']:,} reprogrammed per inference")
    xb = f"{t['crossbars']:,}" + (f" (+ {', '.join(extra)})" if extra else "")
    lines = [
        f"{an.model_name} on {an.spec.name} ({an.target})",
        f"  latency       {_si(t['latency_ns'] * 1e-9, 's')} / image",
        f"  throughput    {t['throughput_ips']:.4g} images/s (pipelined; interval {_si(t['pipeline_interval_ns'] * 1e-9, 's')})",
        f"  energy        {_si(t['energy_pj'] * 1e-12, 'J')} / image",
        f"  area          {t['area_mm2']:.4g} mm²",
        f"  EDAP          {t['edap_j_s_mm2']:.4g} J·s·mm²",
        f"  TOPS/W        {t['tops_per_w']:.4g}",
        f"  TOPS/mm²      {t['tops_per_mm2']:.4g}",
        f"  crossbars     {xb}",
    ]
    sy = an.sections.get("systolic")
    if sy is not None:
        if an.xbar is None:
            lines.pop()
        a = sy["array"]
        att = ", ".join(f"{v['cores']} {k}" for k, v in sorted(sy["attention_totals"].items())) or "none"
        lines.append(f"  systolic      {sy['preset']}: {a['rows']}x{a['cols']} SA-General + {a['diag_rows']}x"
                     f"{a['diag_cols']} SA-Diag, GEMMs {sy['options']['dataflow']}, attention cores: {att}"
                     f" ({sy['options']['attention_dataflow']})")
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def _g(x, nd=4) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{nd}g}"


def _totals_rows(t: dict) -> list[list]:
    return [
        ["latency per image", _si(t["latency_ns"] * 1e-9, "s")],
        ["pipeline interval", _si(t["pipeline_interval_ns"] * 1e-9, "s") + f" (bottleneck {t['pipeline_bottleneck']})"],
        ["throughput", f"{t['throughput_ips']:.4g} images/s"],
        ["energy per image", _si(t["energy_pj"] * 1e-12, "J")],
        ["area", f"{t['area_mm2']:.4g} mm²"],
        ["EDAP", f"{t['edap_j_s_mm2']:.4g} J·s·mm²"],
        ["TOPS", f"{t['tops']:.4g}"],
        ["TOPS/W", f"{t['tops_per_w']:.4g}"],
        ["TOPS/mm²", f"{t['tops_per_mm2']:.4g}"],
        ["MACs per image", f"{t['macs']:,}"],
        ["crossbars (weights)", f"{t['crossbars']:,}"],
        ["crossbars incl. replicas", f"{t['crossbars_with_replicas']:,}"],
        ["crossbars reprogrammed per inference", f"{t['crossbars_dynamic']:,}"],
        ["tiles", f"{t['tiles']:,}"],
        ["leakage power", f"{t['leakage_uw']:.4g} µW"],
        ["post-layout energy factor", f"{t['post_layout_energy_factor']:g}"],
    ]


def _layer_rows(rep: dict) -> list[list]:
    rows = []
    for L in rep["layers"]:
        rows.append([L["layer"], "/".join(L["units"]), _g(L["crossbars"]), _g(L["replication"]),
                     "–" if L["utilisation_mean"] is None else f"{100 * L['utilisation_mean']:.1f}%",
                     _g(L["macs"]), _g(L["start_cycle"]), _g(L["end_cycle"]),
                     _g(L["latency_ns"] / 1e3), _g(L["energy_pj"] / 1e6)])
    return rows


_LAYER_HEADER = ["layer", "unit", "crossbars", "repl.", "util.", "MACs", "start", "end", "latency µs", "energy µJ"]


def _systolic_tables(sy: dict) -> list[tuple[str, list[str], list[list], str]]:
    """(title, header, rows, note) of the systolic section, shared by report.md and report.html."""
    f_mhz = sy["clock_mhz"]
    out = []
    o = sy["options"]
    out.append(("Systolic unit: settings", ["setting", "value"],
                [["preset", sy["preset"]],
                 ["array", f"{sy['array']['rows']}x{sy['array']['cols']} SA-General + "
                           f"{sy['array']['diag_rows']}x{sy['array']['diag_cols']} SA-Diag"],
                 ["clock", f"{_g(f_mhz)} MHz"]] + [[k, str(v)] for k, v in sorted(o.items())]
                + [["report components", ", ".join(f"{k} → {v}" for k, v in sorted(sy["component_map"].items()))]],
                "Energy model: each unit's power × its busy cycles (idle units clock gated) + SRAM and DRAM "
                "words × energy per word."))
    rows = []
    for u, v in sy["units"].items():
        if not v["instantiated"]:
            continue
        rows.append([u, _g(v["lanes"]), _g(v["power_mw"]), _g(v["busy_cycles"]), _g(v["busy_cycles"] / f_mhz),
                     _g(v["energy_pj"] / 1e6), _g(v["area_mm2"])])
    rows.append(["SRAM", "–", "–", f"{sy['sram']['words']:,} words", "–", _g(sy["sram"]["energy_pj"] / 1e6), "–"])
    rows.append(["DRAM", "–", "–", f"{sy['dram']['words']:,} words", _g(sy["dram"]["stall_cycles"] / f_mhz)
                 + " stall", _g(sy["dram"]["energy_pj"] / 1e6), "–"])
    if sy.get("link"):
        rows.append(["on-chip link (activations)", "–", "–", f"{sy['link']['words']:,} words", "–",
                     _g(sy["link"]["energy_pj"] / 1e6), "–"])
    out.append(("Systolic unit: busy time and energy per unit",
                ["unit", "lanes", "power mW", "busy cycles", "busy µs", "energy µJ", "area mm²"], rows, ""))
    out.append(("Systolic unit: work by kind", ["kind", "ops", "cycles", "µs", "energy µJ", "MACs"],
                [[k, _g(v["ops"]), _g(v["cycles"]), _g(v["cycles"] / f_mhz), _g(v["energy_pj"] / 1e6),
                  _g(v["macs"])] for k, v in sy["by_kind"].items()],
                "Energies here exclude the crossbar post-layout factor; in the hybrid target, crossbar ops "
                "are not listed."))
    if sy["attention_totals"]:
        rows = []
        for k, v in sorted(sy["attention_totals"].items()):
            e = v["energy_uj"]
            rows.append([k, _g(v["cores"]), _g(v["latency_ns"] / 1e3), _g(e.get("systolic")), _g(e.get("other")),
                         _g(e.get("data_access")), _g(e.get("overall")), _g(e.get("dram")), _g(v["macs"])])
        out.append(("Attention cores (ViTALiTy Table V cells)",
                    ["kind", "cores", "latency µs", "systolic µJ", "other µJ", "data access µJ", "overall µJ",
                     "DRAM µJ", "MACs"], rows,
                    "Each ai.vitc attention core is costed as a unit (backends/vitality_model.py); 'overall' is "
                    "on-chip energy as in Table V, DRAM is reported beside it."))
    for tab in sy["steps"]:
        desc = ", ".join(f"{k}={tab[k]}" for k in ("kind", "variant", "centering", "simplified", "masked",
                                                     "dataflow", "n", "d") if k in tab)
        rows = [[s["step"], s["unit"], _g(s["ops_per_head"]), _g(s["cycles_per_head"]), _g(s["latency_ns"] / 1e3),
                 f"{100 * s['share']:.1f}%"] for s in tab["steps"]]
        rows.append(["overall, steps in sequence", "", "", _g(sum(s["cycles_per_head"] for s in tab["steps"])),
                     _g(tab["sequential_ns"] / 1e3), "100%"])
        rows.append(["overall, intra-layer pipeline", "", "", "", _g(tab["pipelined_ns"] / 1e3), ""])
        out.append((f"Per-step latency (Table II analogue): {desc}",
                    ["step", "unit", "ops / head", "cycles / head", f"µs ({tab['instances']} heads)", "share"],
                    rows, "Busy time of each step; the accelerator overlaps the steps (Fig. 7), so the pipelined "
                          "total is below the sequential sum."))
    dfc = sy["dataflow_comparison"]
    if dfc["attention"]:
        rows = []
        for df, e in sorted(dfc["attention"].items()):
            rows.append([df, _g(e.get("systolic")), _g(e.get("other")), _g(e.get("data_access")),
                         _g(e.get("overall")), _g(e.get("latency_cycles", 0) / f_mhz)])
        out.append(("Dataflow comparison: Taylor attention cores",
                    ["dataflow", "systolic µJ", "other µJ", "data access µJ", "overall µJ", "latency µs"], rows,
                    f"Selected: {o['attention_dataflow']}."))
    g = dfc["gemm"]
    if g["gemms"]:
        rows = [[df, _g(g[df]["sa_busy_cycles"]), _g(g[df]["latency_ns"] / 1e3), f"{g[df]['sram_words']:,}",
                 _g(g[df]["energy_pj"] / 1e6)] for df in ("ws", "is", "os", "auto")]
        out.append(("Dataflow comparison: GEMMs outside the attention cores",
                    ["dataflow", "SA busy cycles", "µs", "SRAM words", "SA + SRAM µJ"], rows,
                    f"{g['gemms']} GEMMs; selected: {g['selected']}; cycle mode {o['gemm_mode']}."))
    return out


def render_md(rep: dict, summary_text: str) -> str:
    t = rep["totals"]
    parts = [f"# vitc report — {rep['model']['name']} on {rep['hardware']['name']} ({rep['target']})", "",
             f"Schema {rep['schema']} v{rep['schema_version']}. Hardware: {rep['hardware']['description']}.", "",
             "## Totals", "", _md_table(["metric", "value"], _totals_rows(t)), "",
             "## Energy by component", "",
             _md_table(["component", "µJ / image", "share of dynamic"],
                       [[k, _g(v / 1e6), "–" if k == "leakage" else f"{100 * t['dynamic_energy_share'].get(k, 0):.1f}%"]
                        for k, v in t["energy_by_component_pj"].items()]), "",
             "## Area by component", "",
             _md_table(["component", "mm²"], [[k, _g(v)] for k, v in t["area_by_component_mm2"].items()]), "",
             "## Layers", "", _md_table(_LAYER_HEADER, _layer_rows(rep)), "",
             "## Critical path", "",
             _md_table(["op", "layer", "resource", "start", "end"],
                       [[c["op"], c["layer"], c["resource"], _g(c["start"]), _g(c["end"])]
                        for c in rep["critical_path"]]), ""]
    if rep.get("systolic"):
        for title, header, rows, note in _systolic_tables(rep["systolic"]):
            parts += [f"## {title}", "", _md_table(header, rows), ""] + ([note, ""] if note else [])
    parts += ["## Pass records", ""]
    if rep["pass_records"]:
        parts.append("```json\n" + json.dumps(_r(rep["pass_records"]), sort_keys=True, indent=1, ensure_ascii=False)
                     + "\n```")
    else:
        parts.append("No rewrite passes recorded.")
    s = rep["surrogates"]
    parts += ["", "## Surrogate figures", "", s["hardware_note"] + ".", "",
              "Hardware parameters that are surrogates: " + (", ".join(f"`{x}`" for x in s["hardware"]) or "none") + ".",
              ""]
    if s["passes"]:
        parts.append("Pass fidelity figures that are surrogates: " +
                     "; ".join(f"{p['pass']} ({p['weights']}): {p['why']}" for p in s["passes"]) + ".")
    else:
        parts.append("No pass fidelity figure is marked as a surrogate.")
    if rep["lifetime"]:
        lt = rep["lifetime"]
        parts += ["", "## Crossbar write endurance", "",
                  f"Attention operands are written every inference: {lt['inferences_until_wearout']:.3g} inferences "
                  f"until wear-out ({_g(lt['seconds_until_wearout_at_throughput'])} s at full throughput)."]
    if rep["warnings"]:
        parts += ["", "## Warnings", ""] + [f"- {w}" for w in rep["warnings"]]
    parts += ["", "## Notes", ""] + [f"- {n}" for n in rep["notes"]]
    parts += ["", "## Summary", "", "```", summary_text, "```", ""]
    return "\n".join(parts)


_CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.plots svg{max-width:100%;height:auto}
.note{color:#555;font-size:12px}
pre{background:#f7f7f7;padding:8px;font-size:11px;overflow-x:auto}
"""


def _html_table(header: list[str], rows: list[list]) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def render_html(rep: dict, an, mapping: dict, sched: dict, with_plots: bool = True) -> str:
    t = rep["totals"]
    title = f"vitc report — {rep['model']['name']} on {rep['hardware']['name']} ({rep['target']})"
    figs = []
    if with_plots:
        layers = rep["layers"]
        figs.append(("Per-layer latency by component", plots.stacked_layers(
            layers, "latency_by_component_ns", LATENCY_COMPONENTS, "Latency per layer (busy time)", "µs", 1e3)))
        figs.append(("Per-layer energy by component", plots.stacked_layers(
            layers, "energy_by_component_pj", DYNAMIC_COMPONENTS, "Dynamic energy per layer", "µJ", 1e6)))
        figs.append(("Component breakdown", plots.component_breakdown(t["energy_by_component_pj"],
                                                                       t["area_by_component_mm2"])))
        util = np.concatenate([np.array([b[-1] for b in m["blocks"]], dtype=float)
                               for m in mapping["matrices"] if not m["dynamic"]] or [np.zeros(0)])
        if an.xbar is not None:
            figs.append(("Crossbar utilisation", plots.utilisation_histogram(util)))
        if rep.get("systolic"):
            figs.append(("Systolic unit: busy time and energy per unit", plots.systolic_units(rep["systolic"])))
            for tab in rep["systolic"]["steps"]:
                figs.append((f"Per-step latency, {tab['kind']} attention (n={tab['n']}, d={tab['d']})",
                             plots.step_shares(tab)))
        figs.append(("Schedule timeline", plots.gantt(
            [{"unit": o["unit"], "resource": o["resource"], "instance": o["instance"], "start": o["start"],
              "end": o["end"]} for o in sched["ops"]], sched["makespan_cycles"], sched["clock_mhz"])))
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Schema {rep['schema']} v{rep['schema_version']}. "
        f"{html.escape(rep['hardware']['description'])}. Self-contained page: no scripts, no network.</p>",
        "<h2>Totals</h2>", _html_table(["metric", "value"], _totals_rows(t)),
    ]
    parts.append("<div class='plots'>")
    for name, svg in figs:
        parts.append(f"<h2>{html.escape(name)}</h2>{svg}")
    parts.append("</div>")
    parts += ["<h2>Energy by component</h2>",
              _html_table(["component", "µJ / image", "share of dynamic"],
                          [[k, _g(v / 1e6), "–" if k == "leakage" else f"{100 * t['dynamic_energy_share'].get(k, 0):.1f}%"]
                           for k, v in t["energy_by_component_pj"].items()]),
              "<h2>Layers</h2>", _html_table(_LAYER_HEADER, _layer_rows(rep)),
              "<h2>Critical path</h2>",
              _html_table(["op", "layer", "resource", "start", "end"],
                          [[c["op"], c["layer"], c["resource"], _g(c["start"]), _g(c["end"])]
                           for c in rep["critical_path"]])]
    if rep.get("systolic"):
        for title, header, rows, note in _systolic_tables(rep["systolic"]):
            parts += [f"<h2>{html.escape(title)}</h2>", _html_table(header, rows)]
            if note:
                parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("<h2>Pass records</h2>")
    if rep["pass_records"]:
        parts.append("<pre>" + html.escape(json.dumps(_r(rep["pass_records"]), sort_keys=True, indent=1,
                                                      ensure_ascii=False)) + "</pre>")
    else:
        parts.append("<p>No rewrite passes recorded.</p>")
    s = rep["surrogates"]
    parts += ["<h2>Surrogate figures</h2>", f"<p class='note'>{html.escape(s['hardware_note'])}.</p>",
              "<p>" + html.escape(", ".join(s["hardware"]) or "none") + "</p>"]
    if s["passes"]:
        parts.append("<ul>" + "".join(f"<li>{html.escape(p['pass'])} ({html.escape(str(p['weights']))}): "
                                      f"{html.escape(p['why'])}</li>" for p in s["passes"]) + "</ul>")
    if rep["warnings"]:
        parts += ["<h2>Warnings</h2><ul>"] + [f"<li>{html.escape(w)}</li>" for w in rep["warnings"]] + ["</ul>"]
    parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in rep["notes"]] + ["</ul>"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render(an, pass_records: list[dict]):
    """All output files, the summary and the report dict for ``an``."""
    from vitc.backends.api import BackendResult

    mapping = _mapping(an)
    sched = _schedule(an)
    rep = _r(build_report(an, pass_records, mapping))
    text = summary(an)
    plots_on = bool(an.options.get("plots", True))
    files = {
        "mapping.json": _dumps_mapping(mapping),
        "schedule.json": _dumps(sched),
        "report.json": _dumps(rep),
        "report.md": render_md(rep, text).encode("utf-8"),
        "report.html": render_html(rep, an, mapping, sched, plots_on).encode("utf-8"),
    }
    return BackendResult(files=files, summary=text, report=rep)


__all__ = ["render", "summary", "build_report", "REPORT_SCHEMA", "MAPPING_SCHEMA", "SCHEDULE_SCHEMA", "BLOCK_FIELDS"]
