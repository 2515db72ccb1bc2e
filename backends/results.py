"""What a cost analysis reports, as data: the contents of ``mapping.json``, ``schedule.json``
and ``report.json`` (schemas in ``docs/report-schema.md``). Rendering (Markdown, HTML, plots)
is the driver's (:mod:`vitc.report`); cost models add their own sections through
``report_section()`` (a dict with ``title``, ``tables`` and any data)."""
from __future__ import annotations

import numpy as np

from vitc.backends.cost import DYNAMIC_COMPONENTS, LATENCY_COMPONENTS
from vitc.backends.partition import FREE

REPORT_SCHEMA = ("vitc.report", 2)
MAPPING_SCHEMA = ("vitc.mapping", 1)
SCHEDULE_SCHEMA = ("vitc.schedule", 1)

BLOCK_FIELDS = ["crossbar", "tile", "pe", "group", "row_tile", "col_tile", "row0", "rows", "col0", "cols",
                "weight_col0", "weight_col1", "utilisation"]

#: what a role (vitc.role metadata, or the raw adapter's guess) counts as in the rollups
OP_KINDS = ("patch_embedding", "qkv_projection", "attention_core", "output_projection", "reuse_tb", "bilstm", "mlp",
            "norm_nonlinear", "head", "other")
ATTENTION_KINDS = ("qkv_projection", "attention_core", "output_projection", "reuse_tb", "bilstm")
_ROLE_KIND = {"q_proj": "qkv_projection", "k_proj": "qkv_projection", "v_proj": "qkv_projection",
              "qkv_proj": "qkv_projection", "attention": "attention_core", "out_proj": "output_projection",
              "mlp_fc1": "mlp", "mlp_fc2": "mlp", "norm1": "norm_nonlinear", "norm2": "norm_nonlinear",
              "norm": "norm_nonlinear", "pre_norm": "norm_nonlinear", "final_norm": "norm_nonlinear",
              "residual": "norm_nonlinear", "patch_embedding": "patch_embedding",
              "embed": "patch_embedding", "head": "head", "reuse_tb": "reuse_tb"}


def op_kind(role: str | None) -> str:
    """The rollup kind of a role (``q_proj_bias`` counts with ``q_proj``; LSTM roles as ``bilstm``)."""
    if not role:
        return "other"
    base = role.removesuffix("_bias")
    if base in _ROLE_KIND:
        return _ROLE_KIND[base]
    if base.startswith(("lstm", "bilstm")):
        return "bilstm"
    return "other"


NOTES = [
    "ops = 2 x MACs (static-weight and activation x activation products); element-wise work is not counted as ops.",
    "Energy per image includes leakage = chip static power x pipeline interval (or x latency when the preset says so); "
    "the preset's post_layout_energy_factor multiplies the crossbar macro's energies (ADC, accumulation, array, "
    "periphery, buffers, interconnect, writes, leakage), as NeuroSim's zeta does, not the digital units'.",
    "Latency is the makespan of a list schedule of one image; throughput is 1 / pipeline interval, the busiest "
    "resource's time per image with layers pipelined.",
    "Per-layer energies exclude leakage; per-layer sums plus leakage equal the totals.",
    "Layer latency is the sum of its ops' busy times (ops of a layer may overlap in the schedule).",
    "EDAP = energy per image (J) x latency per image (s) x area (mm2).",
    "Costs are computed for the batch (--batch, default 1) and reported per image: energies, MACs and ops "
    "divided by the batch, latency per image = the batch's latency / batch (batch_latency_ns is the batch's), "
    "throughput = batch / pipeline interval; cycle columns and the schedule are the batch's. Weights are never "
    "read, only their shapes.",
]


def mapping_data(an) -> dict:
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
        cap = mm.sites // mm.tiles if mm.sites and mm.tiles else per_tile    # crossbars a tile holds
        blocks = np.column_stack([
            mm.first_crossbar + local, mm.first_tile + local // cap, (local % cap) // per_pe,
            g, r, c, r * R, rows, col0, cols, col0 // cpw, -(-(col0 + cols) // cpw)])
        blist = [b + [round(float(u), 4)] for b, u in zip(blocks.tolist(), util)]
        mats.append({
            "op": mm.op, "layer": mm.layer, "matrix": mm.label, "weight": an.graph.weight_source(mm.tensor),
            "K": mm.K, "N": mm.N, "count": mm.count, "row_tiles": mm.row_tiles, "col_tiles": mm.col_tiles,
            "physical_cols": mm.phys_cols, "crossbars": mm.crossbars, "replication": mm.replication,
            "crossbars_with_replicas": mm.crossbars_total, "crossbars_built": mm.crossbars_built,
            "dynamic": mm.dynamic,
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
    per_image = 1.0 / an.totals.get("batch", 1)     # op energies carry the post-layout factor already
    by_index = {it.op.index: it for it in an.items}
    slot = {s.index: s for s in an.schedule.slots}
    layers: dict[str, dict] = {}
    for it in an.items:
        if it.kind == FREE:
            continue
        L = layers.setdefault(it.layer, {
            "layer": it.layer, "block": it.block, "role": it.role, "kind_of_op": op_kind(it.role), "ops": 0,
            "units": set(), "crossbars": 0, "area_mm2": 0.0, "buffer_bits": 0.0, "interconnect_bits": 0.0,
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
        L["area_mm2"] += _op_area(an, c)
        L["buffer_bits"] += c.traffic.get("buffer_bits", 0) / an.totals.get("batch", 1)
        L["interconnect_bits"] += c.traffic.get("interconnect_bits", 0) / an.totals.get("batch", 1)
        L["crossbars_dynamic"] += c.crossbars_dynamic
        rep = c.extra.get("replication", 1)
        L["replication"] = max(L["replication"], rep)
        L["crossbars_with_replicas"] += c.crossbars * rep
        for k, v in c.latency.items():
            L["latency_by_component_ns"][k] += v
        for k, v in c.energy.items():
            L["energy_by_component_pj"][k] += v * per_image
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


def _op_area(an, c) -> float:
    return an.xbar.op_area_mm2(c) if an.xbar is not None and c.extra.get("maps") else 0.0


def rollups(an) -> dict:
    """Energy, busy latency, dedicated area, MACs, crossbars and traffic per encoder block and per
    op kind, and the attention share. Energies per image (post-layout factor applied, no
    leakage); busy latency = the sum of the ops' times (ops overlap in the schedule); area = what
    the op occupies alone (crossbars and their tiles) — shared digital units are listed apart."""
    per_image = 1.0 / an.totals.get("batch", 1)
    items = {it.op.index: it for it in an.items}
    f = an.spec.freq_ghz
    blocks: dict = {}
    kinds = {k: {"energy_pj": 0.0, "latency_ns": 0.0, "area_mm2": 0.0, "macs": 0, "crossbars": 0, "ops": 0}
             for k in OP_KINDS}
    slot = {sl.index: sl for sl in an.schedule.slots}
    for c in an.costs:
        it = items[c.index]
        k = op_kind(it.role)
        e = c.energy_pj * per_image
        area = _op_area(an, c)
        rec = kinds[k]
        rec["energy_pj"] += e
        rec["latency_ns"] += c.latency_ns
        rec["area_mm2"] += area
        rec["macs"] += c.macs
        rec["crossbars"] += c.crossbars
        rec["ops"] += 1
        b = blocks.setdefault(it.block, {"block": it.block, "energy_pj": 0.0, "latency_ns": 0.0, "area_mm2": 0.0,
                                         "macs": 0, "crossbars": 0, "buffer_bits": 0.0, "interconnect_bits": 0.0,
                                         "start_cycle": None, "end_cycle": 0,
                                         "energy_by_kind_pj": {}, "latency_by_kind_ns": {}})
        b["energy_pj"] += e
        b["latency_ns"] += c.latency_ns
        b["area_mm2"] += area
        b["macs"] += c.macs
        b["crossbars"] += c.crossbars
        b["buffer_bits"] += c.traffic.get("buffer_bits", 0)
        b["interconnect_bits"] += c.traffic.get("interconnect_bits", 0)
        b["energy_by_kind_pj"][k] = b["energy_by_kind_pj"].get(k, 0.0) + e
        b["latency_by_kind_ns"][k] = b["latency_by_kind_ns"].get(k, 0.0) + c.latency_ns
        s = slot.get(c.index)
        if s is not None:
            b["start_cycle"] = s.start if b["start_cycle"] is None else min(b["start_cycle"], s.start)
            b["end_cycle"] = max(b["end_cycle"], s.end)
    by_block = []
    for key in sorted(blocks, key=lambda b: (b is None, b if b is not None else 0)):
        b = blocks[key]
        b["start_cycle"] = b["start_cycle"] or 0
        b["span_ns"] = (b["end_cycle"] - b["start_cycle"]) / f
        b["macs"] //= an.totals.get("batch", 1)
        by_block.append(b)
    t = an.totals
    dyn = sum(v["energy_pj"] for v in kinds.values())
    busy = sum(v["latency_ns"] for v in kinds.values())
    dedicated = sum(v["area_mm2"] for v in kinds.values())
    att = {m: sum(kinds[k][m] for k in ATTENTION_KINDS) for m in ("energy_pj", "latency_ns", "area_mm2")}
    return {
        "by_kind": {k: v for k, v in kinds.items() if v["ops"]},
        "by_block": by_block,
        "shared_area_mm2": max(0.0, t["area_mm2"] - dedicated),
        "attention_share": {"energy": att["energy_pj"] / dyn if dyn else 0.0,
                            "latency": att["latency_ns"] / busy if busy else 0.0,
                            "area": att["area_mm2"] / t["area_mm2"] if t["area_mm2"] else 0.0},
        "attention_kinds": list(ATTENTION_KINDS),
        "note": "energy: dynamic, per image; latency: busy time (sum over ops, which overlap in the schedule); "
                "area: dedicated to the ops (crossbars and their tiles); shared digital units are 'shared_area_mm2'",
    }


def pipeline_data(an) -> dict:
    """The steady state behind the throughput: the interval, the bottleneck, and every resource
    kind's occupancy of the interval (busy time per image / interval)."""
    sched, t = an.schedule, an.totals
    f = an.spec.freq_ghz
    counts = an.unit_counts
    kinds: dict[str, dict] = {}
    for r, b in sched.resource_busy.items():
        kind = r.split(":", 1)[0] if r else "none"
        k = kinds.setdefault(kind, {"resources": 0, "busy_ns_max": 0.0, "busy_ns_total": 0.0})
        n = counts.get(r, 1)
        k["resources"] += n
        k["busy_ns_total"] += b / f
        k["busy_ns_max"] = max(k["busy_ns_max"], b / f / n)
    interval = t["pipeline_interval_ns"]
    for k in kinds.values():
        k["occupancy"] = k["busy_ns_max"] / interval if interval else 0.0
    return {"interval_ns": interval, "interval_cycles": t["pipeline_interval_cycles"],
            "bottleneck": t["pipeline_bottleneck"], "batch": t.get("batch", 1), "by_resource_kind": kinds,
            "note": "one pipeline stage per crossbar op (its own crossbars) and per digital unit instance; "
                    "occupancy = the busiest resource of that kind's time per batch / the interval"}


def traffic_data(an) -> dict:
    """Bits moved per image through the buffers and the interconnect (crossbar and digital ops),
    and SRAM/DRAM words of a systolic unit when the target has one."""
    B = an.totals.get("batch", 1)
    out = {"buffer_bits": sum(c.traffic.get("buffer_bits", 0) for c in an.costs) / B,
           "interconnect_bits": sum(c.traffic.get("interconnect_bits", 0) for c in an.costs) / B}
    sy = an.sections.get("systolic")
    if sy:
        bits = sy.get("precision_bits", 16)
        out["sram_bits"] = sy["sram"]["words"] * bits / B
        out["dram_bits"] = sy["dram"]["words"] * bits / B
    return out


def _ops(an) -> list[dict]:
    per_image = 1.0 / an.totals.get("batch", 1)     # op energies carry the post-layout factor already
    by_index = {it.op.index: it for it in an.items}
    slot = {s.index: s for s in an.schedule.slots}
    out = []
    for c in an.costs:
        it = by_index[c.index]
        s = slot[c.index]
        out.append({"name": c.name, "op_type": it.op.op_type, "origin": it.op.origin, "layer": c.layer,
                    "kind_of_op": op_kind(it.role), "area_mm2": _op_area(an, c),
                    "kind": c.kind, "unit": c.unit, "resource": c.resource, "instance": s.instance,
                    "start": s.start, "end": s.end, "cycles": c.cycles,
                    "latency_ns": c.latency_ns, "energy_pj": c.energy_pj * per_image, "macs": c.macs,
                    "crossbars": c.crossbars, "crossbars_dynamic": c.crossbars_dynamic,
                    "replication": c.extra.get("replication", 1)})
    return out


def schedule_data(an) -> dict:
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


def report_data(an, pass_records: list[dict]) -> dict:
    t = an.totals
    util = np.concatenate([mm.utilisation(an.param("crossbar.rows"), an.param("crossbar.cols"))
                           for mm in (an.xbar.maps if an.xbar else []) if not mm.dynamic] or [np.zeros(0)])
    counts, edges = np.histogram(util, bins=np.linspace(0, 1, 11))
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
        "totals": {**t,
                   "dynamic_energy_share": {k: (t["energy_by_component_pj"][k] / t["dynamic_energy_pj"]
                                                if t["dynamic_energy_pj"] else 0.0) for k in DYNAMIC_COMPONENTS}},
        "rollups": rollups(an),
        "pipeline": pipeline_data(an),
        "traffic": traffic_data(an),
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
        "sections": dict(an.sections),
    }


def _lifetime(an) -> dict | None:
    if an.param("attention_products.mode") != "xbar-write" or not an.floorplan.get("crossbars_dynamic"):
        return None
    endurance = an.spec["attention_products.endurance_cycles"]
    thr = an.totals["throughput_ips"]
    return {"writes_per_cell_per_inference": 1, "endurance_cycles": endurance,
            "inferences_until_wearout": endurance,
            "seconds_until_wearout_at_throughput": endurance / thr if thr else None}


__all__ = ["report_data", "mapping_data", "schedule_data", "REPORT_SCHEMA", "MAPPING_SCHEMA", "SCHEDULE_SCHEMA",
           "BLOCK_FIELDS", "NOTES"]
