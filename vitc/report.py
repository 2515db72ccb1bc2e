"""Render a cost analysis (:class:`~vitc.backends.api.Analysis`) into the five output files and a
terminal summary. The data comes from :mod:`vitc.backends.results`; sections that cost models,
passes and the simulator contribute (each a dict with ``title`` and ``tables``) are rendered
the same way.

Files (schemas in ``docs/report-schema.md``):

* ``mapping.json``  (``vitc.mapping`` v1) — every weight block on every crossbar;
* ``schedule.json`` (``vitc.schedule`` v1) — start/end cycle and unit of every costed op;
* ``report.json``   (``vitc.report`` v2) — totals, rollups per block and op kind, attention
  share, pipeline, traffic, the comparison with the unrewritten model (when passes ran),
  surrogate sensitivity, per-layer and per-op detail, pass records, sections, warnings;
* ``report.md``     — the same, as tables;
* ``report.html``   — one self-contained page (inline CSS and plotly.js, works offline): the
  answer first (what the rewrite bought, or where the cost is), rollups, then detail on demand.

Everything is deterministic: sorted keys, floats rounded to 6 significant digits, no
timestamps, figures with fixed ids.
"""
from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass

import numpy as np

import vitc.plots as plots
from vitc.fmt import num, si
from vitc.backends.api import Analysis, analyse
from vitc.backends.results import mapping_data, report_data, schedule_data
from vitc.compare import compare, headline, verdict
from vitc.sensitivity import sensitivity


# --------------------------------------------------------------------------- helpers
#: keys whose values keep 12 significant digits: ratios of two reported (6-digit) figures, so that
#: a ratio read from one report equals the ratio of the figures of two reports to 1e-9
_PRECISE_KEYS = frozenset({"improvement"})


def _r(x, digits: int = 6):
    """Round floats to 6 significant digits (12 under :data:`_PRECISE_KEYS`), recursively (for
    deterministic JSON)."""
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.{digits}g}")
    if isinstance(x, (np.floating,)):
        return _r(float(x), digits)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, dict):
        return {str(k): _r(v, 12 if k in _PRECISE_KEYS else digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_r(v, digits) for v in x]
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


# --------------------------------------------------------------------------- text
def summary(an) -> str:
    t = an.totals
    extra = []
    if t["crossbars_with_replicas"] != t["crossbars"]:
        extra.append(f"{t['crossbars_with_replicas'] - t['crossbars']:,} replicas")
    if t["crossbars_dynamic"]:
        extra.append(f"{t['crossbars_dynamic']:,} reprogrammed per inference")
    xb = f"{t['crossbars']:,}" + (f" (+ {', '.join(extra)})" if extra else "")
    b = t.get("batch", 1)
    batch_note = f" (batch of {b}: {si(t['batch_latency_ns'] * 1e-9, 's')})" if b > 1 else ""
    lines = [
        f"{an.model_name} on {an.spec.name} ({an.target})",
        f"  latency       {si(t['latency_ns'] * 1e-9, 's')} / image{batch_note}",
        f"  throughput    {t['throughput_ips']:.4g} images/s (pipelined; interval {si(t['pipeline_interval_ns'] * 1e-9, 's')}"
        f"{' per batch' if b > 1 else ''})",
        f"  energy        {si(t['energy_pj'] * 1e-12, 'J')} / image",
        f"  area          {t['area_mm2']:.4g} mm²",
        f"  EDAP          {t['edap_j_s_mm2']:.4g} J·s·mm²",
        f"  TOPS/W        {t['tops_per_w']:.4g}",
        f"  TOPS/mm²      {t['tops_per_mm2']:.4g}",
        f"  crossbars     {xb}",
    ]
    if an.xbar is None:
        lines.pop()                   # no crossbars on this target
    lines += [f"  {sec['summary']}" for sec in an.sections.values() if sec.get("summary")]
    return "\n".join(lines)


def _md_table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(num(c) for c in r) + " |")
    return "\n".join(out)


def html_table(header: list[str], rows: list[list], cls: str = "") -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(num(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table class='{cls}'><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


# --------------------------------------------------------------------------- tables (shared by md and html)
def totals_rows(t: dict) -> list[list]:
    b = t.get("batch", 1)
    return [
        ["batch (costed together)", f"{b}"],
        ["latency per image", si(t["latency_ns"] * 1e-9, "s")],
        ["latency of the batch", si(t["batch_latency_ns"] * 1e-9, "s")],
        ["pipeline interval (per batch)", si(t["pipeline_interval_ns"] * 1e-9, "s")
         + f" (bottleneck {t['pipeline_bottleneck']})"],
        ["throughput", f"{t['throughput_ips']:.4g} images/s"],
        ["energy per image", si(t["energy_pj"] * 1e-12, "J")],
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


def _quantity(v, unit: str) -> str:
    if not isinstance(v, (int, float)):
        return num(v)
    if unit == "pJ":
        return si(v * 1e-12, "J")
    if unit == "ns":
        return si(v * 1e-9, "s")
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4g}" + (f" {unit}" if unit else "")


def comparison_rows(cmp: dict) -> tuple[list[str], list[list]]:
    la, lb = cmp["labels"]
    rows = []
    for r in cmp["totals"]:
        rows.append([r["label"], _quantity(r[la], r["unit"]), _quantity(r[lb], r["unit"]),
                     verdict(r["improvement"], r["lower_is_better"])])
    return ["metric", la, lb, f"{lb} vs {la}"], rows


def share_rows(cmp: dict) -> list[list]:
    la, lb = cmp["labels"]
    s = cmp["attention_share"]
    return [[m, _pct((s.get(la) or {}).get(m)), _pct((s.get(lb) or {}).get(m))] for m in ("energy", "latency", "area")]


def block_delta_rows(cmp: dict) -> tuple[list[str], list[list]]:
    la, lb = cmp["labels"]
    rows = []
    for r in cmp["per_block"]:
        e, lat = r["energy_pj"], r["latency_ns"]
        rows.append(["outside blocks" if r["block"] is None else r["block"], e[la] / 1e6, e[lb] / 1e6,
                     e["delta"] / 1e6, lat[la] / 1e3, lat[lb] / 1e3, r["area_mm2"][la], r["area_mm2"][lb]])
    return (["block", f"energy µJ {la}", f"energy µJ {lb}", "Δ energy µJ", f"busy µs {la}", f"busy µs {lb}",
             f"area mm² {la}", f"area mm² {lb}"], rows)


def kind_rows(rep: dict) -> tuple[list[str], list[list]]:
    ro = rep["rollups"]
    kinds = ro["by_kind"]
    e_tot = sum(v["energy_pj"] for v in kinds.values()) or 1.0
    l_tot = sum(v["latency_ns"] for v in kinds.values()) or 1.0
    rows = [[k, v["energy_pj"] / 1e6, _pct(v["energy_pj"] / e_tot), v["latency_ns"] / 1e3,
             _pct(v["latency_ns"] / l_tot), v["area_mm2"], v["macs"], v["crossbars"]]
            for k, v in kinds.items()]
    rows.append(["shared digital units (area)", None, None, None, None, ro["shared_area_mm2"], None, None])
    return (["op kind", "energy µJ", "share", "busy µs", "share", "dedicated area mm²", "MACs", "crossbars"], rows)


def block_rows(rep: dict) -> tuple[list[str], list[list]]:
    rows = []
    for b in rep["rollups"]["by_block"]:
        rows.append(["outside blocks" if b["block"] is None else b["block"], b["energy_pj"] / 1e6, b["latency_ns"] / 1e3,
                     b["span_ns"] / 1e3, b["area_mm2"], b["crossbars"], b["macs"], b["buffer_bits"] / 8e3])
    return (["block", "energy µJ", "busy µs", "span µs", "area mm²", "crossbars", "MACs", "buffer kB"], rows)


def pipeline_rows(rep: dict) -> tuple[list[str], list[list]]:
    pl = rep["pipeline"]
    rows = [[k, v["resources"], v["busy_ns_max"] / 1e3, _pct(v["occupancy"])]
            for k, v in sorted(pl["by_resource_kind"].items(), key=lambda kv: -kv[1]["occupancy"])]
    return ["resource kind", "instances", "busiest instance, µs per batch", "occupancy of the interval"], rows


def layer_rows(rep: dict) -> tuple[list[str], list[list]]:
    rows = []
    for L in rep["layers"]:
        rows.append([L["layer"], L["kind_of_op"], "/".join(L["units"]), L["crossbars"], L["replication"],
                     "–" if L["utilisation_mean"] is None else f"{100 * L['utilisation_mean']:.1f}%", L["macs"],
                     L["start_cycle"], L["end_cycle"], L["latency_ns"] / 1e3, L["energy_pj"] / 1e6, L["area_mm2"]])
    return (["layer", "kind", "unit", "crossbars", "repl.", "util.", "MACs", "start (cycles)", "end (cycles)",
             "busy µs", "energy µJ", "area mm²"], rows)


def critical_rows(rep: dict, f_mhz: float) -> tuple[list[str], list[list]]:
    """The critical path by layer (canonical names): its ops' time per layer, in path order."""
    agg: dict[str, list] = {}
    for c in rep["critical_path"]:
        a = agg.setdefault(c["layer"], [c["layer"], 0, 0, c["start"]])
        a[1] += 1
        a[2] += c["end"] - c["start"]
    rows = [[k, n, cyc, cyc / f_mhz] for k, n, cyc, _ in sorted(agg.values(), key=lambda a: a[3])]
    return ["layer", "ops on the path", "cycles", "µs"], rows


def sensitivity_rows(sens: dict, top: int | None = None) -> tuple[list[str], list[list]]:
    rows = []
    for r in sens["rows"][:top]:
        lo, hi = r["x0.5"], r["x1.5"]
        rows.append([r["parameter"], r["value"], _pct(lo["energy_pj"]), _pct(hi["energy_pj"]), _pct(lo["latency_ns"]),
                     _pct(hi["latency_ns"]), _pct(lo["area_mm2"]), _pct(hi["area_mm2"]), _pct(lo["edap_j_s_mm2"]),
                     _pct(hi["edap_j_s_mm2"])])
    return (["surrogate", "value", "energy ×0.5", "energy ×1.5", "latency ×0.5", "latency ×1.5", "area ×0.5",
             "area ×1.5", "EDAP ×0.5", "EDAP ×1.5"], rows)


def pass_rows(rep: dict) -> list[list]:
    rows = []
    for r in rep["pass_records"]:
        f = r.get("fidelity") or {}
        e2e = f.get("end_to_end") or {}
        fid = ", ".join(f"{k} {v:.4g}" for k, v in e2e.items() if isinstance(v, (int, float)))
        rows.append([r["name"], ",".join(map(str, r["blocks"])) or "none", r["weights"], fid or "–",
                     f.get("calibration") or (r.get("details") or {}).get("calibration") or "–"])
    return rows


_PASS_HEADER = ["pass", "blocks", "replacement weights", "end-to-end fidelity", "measured on"]


# --------------------------------------------------------------------------- markdown
def render_md(rep: dict, summary_text: str) -> str:
    t = rep["totals"]
    hw = rep["hardware"]
    parts = [f"# vitc report — {rep['model']['name']} on {hw['name']} ({rep['target']})", "",
             f"Schema {rep['schema']} v{rep['schema_version']}. Hardware: {hw['description']}.", ""]
    cmp = rep.get("comparison")
    if cmp:
        parts += ["## What the rewrite bought", "", headline(cmp) + ".", ""]
        header, rows = comparison_rows(cmp)
        parts += [_md_table(header, rows), "", "Attention's share (QKV and output projections, attention cores, "
                  "their replacements):", "", _md_table(["share of", *cmp["labels"]], share_rows(cmp)), ""]
        header, rows = block_delta_rows(cmp)
        parts += ["### Per block", "", _md_table(header, rows), ""]
    parts += ["## Totals", "", _md_table(["metric", "value"], totals_rows(t)), ""]
    ro = rep["rollups"]
    header, rows = kind_rows(rep)
    parts += ["## By op kind", "", f"Attention's share: energy {_pct(ro['attention_share']['energy'])}, "
              f"busy time {_pct(ro['attention_share']['latency'])}, area {_pct(ro['attention_share']['area'])}.", "",
              _md_table(header, rows), "", ro["note"] + ".", ""]
    header, rows = block_rows(rep)
    parts += ["## By encoder block", "", _md_table(header, rows), ""]
    header, rows = pipeline_rows(rep)
    pl = rep["pipeline"]
    parts += ["## Pipeline", "", f"Interval {si(pl['interval_ns'] * 1e-9, 's')} per batch of {pl['batch']}, "
              f"bottleneck {pl['bottleneck']}.", "", _md_table(header, rows), "", pl["note"] + ".", ""]
    tr = rep["traffic"]
    parts += ["## Data movement per image", "",
              _md_table(["path", "kB"], [[k.removesuffix("_bits"), v / 8e3] for k, v in tr.items()]), ""]
    parts += ["## Energy by component", "",
              _md_table(["component", "µJ / image", "share of dynamic"],
                        [[k, v / 1e6, "–" if k == "leakage" else _pct(t["dynamic_energy_share"].get(k, 0))]
                         for k, v in t["energy_by_component_pj"].items()]), "",
              "## Area by component", "",
              _md_table(["component", "mm²"], [[k, v] for k, v in t["area_by_component_mm2"].items()]), ""]
    parts += ["## Passes", ""]
    parts += [_md_table(_PASS_HEADER, pass_rows(rep)), ""] if rep["pass_records"] else ["No rewrite passes.", ""]
    s = rep["surrogates"]
    parts += ["## Surrogate figures", "", s["hardware_note"] + ".", ""]
    if rep.get("sensitivity"):
        header, rows = sensitivity_rows(rep["sensitivity"])
        parts += ["Relative change of the per-image totals with each surrogate alone at ×0.5 and ×1.5 "
                  "(largest EDAP change first):", "", _md_table(header, rows), ""]
    else:
        parts += ["Hardware parameters that are surrogates: " + (", ".join(f"`{x}`" for x in s["hardware"]) or
                                                                 "none") + ".", ""]
    if s["passes"]:
        parts.append("Pass fidelity figures that are surrogates: " +
                     "; ".join(f"{p['pass']} ({p['weights']}): {p['why']}" for p in s["passes"]) + ".")
    for sec in rep.get("sections", {}).values():
        for title, header, rows, note in section_tables(sec):
            parts += [f"## {title}", "", _md_table(header, rows), ""] + ([note, ""] if note else [])
    header, rows = layer_rows(rep)
    parts += ["## Layers", "", _md_table(header, rows), ""]
    header, rows = critical_rows(rep, rep["hardware"]["parameters"]["clock"]["freq_mhz"])
    parts += ["## Critical path by layer", "", _md_table(header, rows), ""]
    if rep["lifetime"]:
        lt = rep["lifetime"]
        parts += ["## Crossbar write endurance", "",
                  f"Attention operands are written every inference: {lt['inferences_until_wearout']:.3g} inferences "
                  f"until wear-out ({num(lt['seconds_until_wearout_at_throughput'])} s at full throughput).", ""]
    if rep["warnings"]:
        parts += ["## Warnings", ""] + [f"- {w}" for w in rep["warnings"]] + [""]
    parts += ["## Notes", ""] + [f"- {n}" for n in rep["notes"]]
    parts += ["", "## Summary", "", "```", summary_text, "```", ""]
    return "\n".join(parts)


# --------------------------------------------------------------------------- html
PAGE_CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px auto;color:#222;max-width:1300px;padding:0 16px}
h1{font-size:21px;margin-bottom:4px}h2{font-size:16px;margin-top:30px;border-bottom:1px solid #ccc}
h3{font-size:14px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.note{color:#555;font-size:12px}
.headline{background:#f4f8fc;border:1px solid #c8d8ea;border-radius:6px;padding:10px 16px;margin:12px 0}
.headline p{font-size:15px;margin:6px 0}
.kpis{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0}
.kpi{border:1px solid #ddd;border-radius:6px;padding:6px 12px;min-width:120px;background:#fff}
.kpi b{display:block;font-size:17px}.kpi span{font-size:11px;color:#555}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
details{margin:10px 0}summary{cursor:pointer;font-weight:bold}
pre{background:#f7f7f7;padding:8px;font-size:11px;overflow-x:auto}
.plot{width:100%}
"""


def _kpis(t: dict, share: dict) -> str:
    items = [("latency / image", si(t["latency_ns"] * 1e-9, "s")), ("energy / image", si(t["energy_pj"] * 1e-12, "J")),
             ("throughput", f"{t['throughput_ips']:.4g} img/s"), ("area", f"{t['area_mm2']:.4g} mm²"),
             ("EDAP", f"{t['edap_j_s_mm2']:.3g} J·s·mm²"), ("TOPS/W", f"{t['tops_per_w']:.4g}"),
             ("TOPS/mm²", f"{t['tops_per_mm2']:.4g}"), ("crossbars", f"{t['crossbars']:,}"),
             ("attention share of energy", _pct(share["energy"]))]
    return "<div class='kpis'>" + "".join(f"<div class='kpi'><b>{html.escape(v)}</b><span>{html.escape(k)}</span>"
                                          "</div>" for k, v in items) + "</div>"


def render_html(rep: dict, sched: dict, with_plots: bool = True) -> str:
    t = rep["totals"]
    ro = rep["rollups"]
    page = plots.Page()

    def fig(f) -> str:
        return page.html(f) if with_plots else ""
    esc = html.escape
    title = f"vitc report — {rep['model']['name']} on {rep['hardware']['name']} ({rep['target']})"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)}</title><style>{PAGE_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>",
             f"<p class='note'>{esc(rep['hardware']['description'])}. Schema {rep['schema']} "
             f"v{rep['schema_version']}; one self-contained page (works offline).</p>"]
    cmp = rep.get("comparison")
    parts.append("<div class='headline'>")
    if cmp:
        parts.append(f"<p><b>What the rewrite bought.</b> {esc(headline(cmp))}.</p>")
        header, rows = comparison_rows(cmp)
        parts.append(html_table(header, rows))
    else:
        parts.append("<p><b>Where the cost is.</b> No rewrite pass ran; attention (QKV and output projections and "
                     f"the attention cores) takes {_pct(ro['attention_share']['energy'])} of the energy, "
                     f"{_pct(ro['attention_share']['latency'])} of the busy time and "
                     f"{_pct(ro['attention_share']['area'])} of the area.</p>")
    parts.append(_kpis(t, ro["attention_share"]) + "</div>")
    if cmp:
        parts += ["<h2>Baseline vs rewritten</h2>", "<div class='grid'>", fig(plots.comparison_bars(cmp)),
                  "<div><h3>Attention's share</h3>" + html_table(["share of", *cmp["labels"]], share_rows(cmp))
                  + "</div></div>",
                  fig(plots.per_block_pair(cmp, "energy_pj", "Energy per block", "µJ", 1e6)),
                  fig(plots.per_block_pair(cmp, "latency_ns", "Busy time per block", "µs", 1e3))]
        header, rows = block_delta_rows(cmp)
        parts.append(f"<details><summary>Per-block deltas ({len(rows)} rows)</summary>{html_table(header, rows)}"
                     "</details>")
    parts += ["<h2>By op kind and by block</h2>", "<div class='grid'>",
              fig(plots.by_kind_pie(ro["by_kind"], "energy_pj", "Energy by op kind")),
              fig(plots.by_kind_pie(ro["by_kind"], "latency_ns", "Busy time by op kind")), "</div>",
              fig(plots.by_block_kind([{**b, "e": b["energy_by_kind_pj"]} for b in ro["by_block"]], "e",
                                      "Energy per block by op kind (click the legend to hide kinds)", "µJ", 1e6)),
              fig(plots.by_block_kind([{**b, "l": b["latency_by_kind_ns"]} for b in ro["by_block"]], "l",
                                      "Busy time per block by op kind", "µs", 1e3))]
    header, rows = kind_rows(rep)
    parts += [html_table(header, rows), f"<p class='note'>{esc(ro['note'])}.</p>"]
    header, rows = block_rows(rep)
    parts.append(f"<details><summary>Per-block table ({len(rows)} rows)</summary>{html_table(header, rows)}"
                 "</details>")
    pl = rep["pipeline"]
    header, rows = pipeline_rows(rep)
    parts += ["<h2>Pipeline</h2>", f"<p>Interval {esc(si(pl['interval_ns'] * 1e-9, 's'))} per batch of "
              f"{pl['batch']}, bottleneck <b>{esc(pl['bottleneck'])}</b>: throughput "
              f"{t['throughput_ips']:.4g} images/s.</p>", "<div class='grid'>", fig(plots.occupancy(pl)),
              "<div>" + html_table(header, rows) + f"<p class='note'>{esc(pl['note'])}.</p></div></div>"]
    parts += ["<h2>Energy, area and data movement</h2>",
              fig(plots.components(t["energy_by_component_pj"], t["area_by_component_mm2"])),
              "<div class='grid'><div>" + html_table(["metric", "value"], totals_rows(t)) + "</div><div>"
              + html_table(["component", "µJ / image", "share of dynamic"],
                            [[k, v / 1e6, "–" if k == "leakage" else _pct(t["dynamic_energy_share"].get(k, 0))]
                             for k, v in t["energy_by_component_pj"].items()])
              + html_table(["data path", "kB / image"], [[k.removesuffix("_bits"), v / 8e3]
                                                          for k, v in rep["traffic"].items()]) + "</div></div>"]
    parts.append("<h2>Passes</h2>")
    parts.append(html_table(_PASS_HEADER, pass_rows(rep)) if rep["pass_records"] else "<p>No rewrite passes.</p>")
    for r in rep["pass_records"]:
        parts.append(f"<details><summary>{esc(r['name'])}: full record</summary><pre>"
                     + esc(json.dumps(_r(r), sort_keys=True, indent=1, ensure_ascii=False)) + "</pre></details>")
    s = rep["surrogates"]
    parts += ["<h2>Surrogate figures and their weight</h2>", f"<p class='note'>{esc(s['hardware_note'])}.</p>"]
    if rep.get("sensitivity"):
        header, rows = sensitivity_rows(rep["sensitivity"], top=10)
        parts += [fig(plots.tornado(rep["sensitivity"])), html_table(header, rows)]
        header, rows = sensitivity_rows(rep["sensitivity"])
        parts.append(f"<details><summary>All {len(rows)} surrogates</summary>{html_table(header, rows)}</details>")
    if s["passes"]:
        parts.append("<ul>" + "".join(f"<li>{esc(p['pass'])} ({esc(str(p['weights']))}): {esc(p['why'])}</li>"
                                      for p in s["passes"]) + "</ul>")
    for sec in rep.get("sections", {}).values():
        parts.append(f"<h2>{esc(sec.get('title', 'Section'))}</h2>")
        for title_, header, rows, note in section_tables(sec):
            parts += [f"<h3>{esc(title_)}</h3>", html_table(header, rows)]
            if note:
                parts.append(f"<p class='note'>{esc(note)}</p>")
        for f in sec.get("figures", []):
            parts.append(fig(_section_figure(f)))
    header, rows = layer_rows(rep)
    parts += ["<h2>Detail</h2>", f"<details><summary>Per-layer table ({len(rows)} layers)</summary>"
              f"{html_table(header, rows)}</details>"]
    if with_plots:
        parts.append(f"<details><summary>Schedule of one image ({len(sched['ops'])} ops)</summary>"
                     f"{fig(plots.gantt(sched))}</details>")
    header, rows = critical_rows(rep, sched["clock_mhz"])
    parts.append(f"<details><summary>Critical path by layer ({len(rows)} layers, "
                 f"{len(rep['critical_path'])} ops)</summary>{html_table(header, rows)}</details>")
    u = rep["utilisation"]
    if u["mean"] is not None and with_plots:
        parts.append(f"<details><summary>Crossbar utilisation (mean {_pct(u['mean'])})</summary>"
                     f"{fig(plots.utilisation(u['histogram_edges'], u['histogram_counts']))}</details>")
    if rep["warnings"]:
        parts += ["<h2>Warnings</h2><ul>"] + [f"<li>{esc(w)}</li>" for w in rep["warnings"]] + ["</ul>"]
    parts += ["<h2>Notes</h2><ul>"] + [f"<li>{esc(n)}</li>" for n in rep["notes"]] + ["</ul>"]
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def _section_figure(f: dict):
    """A figure a section describes as data: ``{"kind": "line"|"scatter", ...}`` (see vitc.plots)."""
    if f["kind"] == "line":
        return plots.line(f["title"], f["x"], f["series"], f["xlabel"], f["ylabel"], f.get("percent", False))
    return plots.scatter(f["title"], f["points"], f["x"], f["y"], f["xlabel"], f["ylabel"], f.get("color"),
                         f.get("label", "label"), f.get("log_x", False), f.get("log_y", False), f.get("front"))


def section_tables(sec: dict) -> list[tuple[str, list[str], list[list], str]]:
    """(title, header, rows, note) of a contributed section's tables."""
    return [(t["title"], t["header"], t["rows"], t.get("note", "")) for t in sec.get("tables", [])]


def section_markdown(sec: dict, level: int = 2) -> str:
    """A contributed section as Markdown tables."""
    parts = [f"{'#' * level} {sec.get('title', 'Section')}", ""]
    for title, header, rows, note in section_tables(sec):
        parts += [f"{'#' * (level + 1)} {title}", "", _md_table(header, rows), ""] + ([note, ""] if note else [])
    return "\n".join(parts)


def section_page(sec: dict, title: str) -> str:
    """A contributed section as its own self-contained HTML page (tables and plots)."""
    page = plots.Page()
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for f in sec.get("figures", []):
        parts.append(page.html(_section_figure(f)))
    for title_, header, rows, note in section_tables(sec):
        parts += [f"<h2>{html.escape(title_)}</h2>", html_table(header, rows)]
        if note:
            parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- vitc compare
def comparison_markdown(cmp: dict, title: str) -> str:
    """A comparison (:func:`vitc.compare.compare`) as Markdown: headline, totals, shares, per block."""
    la, lb = cmp["labels"]
    parts = [f"# {title}", "", headline(cmp) + ".", "",
             f"{la}: {cmp['models'][la]} on {cmp['hardware'][la]}; {lb}: {cmp['models'][lb]} on {cmp['hardware'][lb]}.",
             ""]
    header, rows = comparison_rows(cmp)
    parts += [_md_table(header, rows), "", cmp["note"] + ".", "", "## Attention's share", "",
              _md_table(["share of", la, lb], share_rows(cmp)), "", "## Energy by op kind (µJ / image)", "",
              _md_table(["op kind", la, lb], [[k, v[la] / 1e6, v[lb] / 1e6]
                                               for k, v in cmp["energy_by_kind_pj"].items()]), ""]
    header, rows = block_delta_rows(cmp)
    parts += ["## Per block", "", _md_table(header, rows), ""]
    if cmp["fidelity"]:
        keys = sorted({k for f in cmp["fidelity"] for k in f} - {"pass", "blocks", "weights", "calibration"})
        parts += [f"## Fidelity {lb}'s passes measured", "",
                  _md_table(["pass", "weights", "measured on", *keys],
                            [[f["pass"], f.get("weights") or "–", f.get("calibration") or "–",
                              *[f.get(k) for k in keys]] for f in cmp["fidelity"]]), ""]
    return "\n".join(parts)


def comparison_page(cmp: dict, title: str) -> str:
    """A comparison as one self-contained HTML page (headline and totals first, plots, per-block table)."""
    page = plots.Page()
    esc = html.escape
    la, lb = cmp["labels"]
    header, rows = comparison_rows(cmp)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)}</title><style>{PAGE_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>",
             f"<p class='note'>{esc(la)}: {esc(cmp['models'][la])} on {esc(cmp['hardware'][la])}; {esc(lb)}: "
             f"{esc(cmp['models'][lb])} on {esc(cmp['hardware'][lb])}. {esc(cmp['note'])}.</p>",
             f"<div class='headline'><p>{esc(headline(cmp))}.</p>{html_table(header, rows)}</div>",
             "<div class='grid'>", page.html(plots.comparison_bars(cmp)),
             "<div><h3>Attention's share</h3>" + html_table(["share of", la, lb], share_rows(cmp)) + "</div></div>",
             page.html(plots.per_block_pair(cmp, "energy_pj", "Energy per block", "µJ", 1e6)),
             page.html(plots.per_block_pair(cmp, "latency_ns", "Busy time per block", "µs", 1e3))]
    header, rows = block_delta_rows(cmp)
    parts += [f"<details><summary>Per-block deltas ({len(rows)} rows)</summary>{html_table(header, rows)}</details>",
              "</body></html>\n"]
    return "\n".join(parts)


def comparison_files(cmp: dict, title: str) -> dict[str, bytes]:
    """compare.json, compare.md and compare.html for a comparison."""
    return {"compare.json": _dumps(_r(cmp)), "compare.md": comparison_markdown(cmp, title).encode("utf-8"),
            "compare.html": comparison_page(cmp, title).encode("utf-8")}


# --------------------------------------------------------------------------- entry points
@dataclass
class Rendered:
    """What the driver writes for one analysis: file contents (written atomically by the caller),
    the short terminal summary, and the report.json content as a dict."""

    files: dict[str, bytes]
    summary: str
    report: dict


OUTPUT_FILES = ("mapping.json", "schedule.json", "report.json", "report.md", "report.html")


def render(an: Analysis, pass_records: list[dict], sections: dict | None = None, baseline: Analysis | None = None,
           sensitivity: dict | None = None) -> Rendered:
    """All output files, the summary and the report dict for ``an``. ``sections`` (key → section)
    join those the cost models contributed; ``baseline`` (the unrewritten model on the same
    hardware) adds the comparison; ``sensitivity`` the surrogate table (:mod:`vitc.sensitivity`)."""
    mapping = mapping_data(an)
    sched = schedule_data(an)
    data = report_data(an, pass_records)
    data["sections"] = {**data["sections"], **(sections or {})}
    if baseline is not None:
        data["comparison"] = compare(_r(report_data(baseline, [])), _r(data))
    if sensitivity is not None:
        data["sensitivity"] = sensitivity
    rep = _r(data)
    text = summary(an)
    if rep.get("comparison"):
        text += "\n  " + headline(rep["comparison"])
    plots_on = bool(an.options.get("plots", True))
    files = {
        "mapping.json": _dumps_mapping(mapping),
        "schedule.json": _dumps(sched),
        "report.json": _dumps(rep),
        "report.md": render_md(rep, text).encode("utf-8"),
        "report.html": render_html(rep, _r(sched), plots_on).encode("utf-8"),
    }
    return Rendered(files=files, summary=text, report=rep)


def evaluate(model, target: str = "xbar", hw="rram-128", *, model_name: str, pass_records: list[dict] | None = None,
             options: dict | None = None, sections: dict | None = None, baseline=None) -> Rendered:
    """Map, cost, schedule and render ``model`` on ``hw``.

    ``baseline`` (the model before the passes, optional) is costed the same way for the
    comparison section; the sensitivity table is computed unless ``options["sensitivity"]``
    is false.
    """
    options = options or {}
    an = analyse(model, target, hw, model_name=model_name, options=options)
    an0 = None if baseline is None else analyse(baseline, target, hw, model_name=model_name, options=options)
    sens = sensitivity(model, target, an.spec, an.totals, options, model_name) \
        if options.get("sensitivity", True) else None
    return render(an, pass_records or [], sections, baseline=an0, sensitivity=sens)


def sweep(model, presets: list, target: str = "xbar", *, model_name: str, pass_records: list[dict] | None = None,
          options: dict | None = None) -> dict[str, Rendered]:
    """:func:`evaluate` for each preset; the model is shaped once (the backend caches it)."""
    out = {}
    for hw in presets:
        key = getattr(hw, "name", None) or str(hw)
        out[key] = evaluate(model, target, hw, model_name=model_name, pass_records=pass_records, options=options)
    return out


__all__ = ["render", "evaluate", "sweep", "summary", "Rendered", "OUTPUT_FILES", "render_md", "render_html",
           "section_markdown", "section_page", "comparison_markdown", "comparison_page", "comparison_files"]
