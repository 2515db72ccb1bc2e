"""Render a cost analysis (:class:`~vitc.backends.api.Analysis`) into the five output files and a
terminal summary. The data comes from :mod:`vitc.backends.results`; sections that cost models,
passes and the simulator contribute (each a dict with ``title`` and ``tables``) are rendered
the same way.

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
from dataclasses import dataclass

import numpy as np

from vitc import plots
from vitc.fmt import num, si
from vitc.backends.api import Analysis, analyse
from vitc.backends.cost import DYNAMIC_COMPONENTS, LATENCY_COMPONENTS
from vitc.backends.results import mapping_data, report_data, schedule_data


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


def _totals_rows(t: dict) -> list[list]:
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


def _layer_rows(rep: dict) -> list[list]:
    rows = []
    for L in rep["layers"]:
        rows.append([L["layer"], "/".join(L["units"]), num(L["crossbars"]), num(L["replication"]),
                     "–" if L["utilisation_mean"] is None else f"{100 * L['utilisation_mean']:.1f}%",
                     num(L["macs"]), num(L["start_cycle"]), num(L["end_cycle"]),
                     num(L["latency_ns"] / 1e3), num(L["energy_pj"] / 1e6)])
    return rows


_LAYER_HEADER = ["layer", "unit", "crossbars", "repl.", "util.", "MACs", "start", "end", "latency µs", "energy µJ"]


def section_tables(sec: dict) -> list[tuple[str, list[str], list[list], str]]:
    """(title, header, rows, note) of a contributed section's tables."""
    return [(t["title"], t["header"], t["rows"], t.get("note", "")) for t in sec.get("tables", [])]


def render_md(rep: dict, summary_text: str) -> str:
    t = rep["totals"]
    parts = [f"# vitc report — {rep['model']['name']} on {rep['hardware']['name']} ({rep['target']})", "",
             f"Schema {rep['schema']} v{rep['schema_version']}. Hardware: {rep['hardware']['description']}.", "",
             "## Totals", "", _md_table(["metric", "value"], _totals_rows(t)), "",
             "## Energy by component", "",
             _md_table(["component", "µJ / image", "share of dynamic"],
                       [[k, num(v / 1e6), "–" if k == "leakage" else f"{100 * t['dynamic_energy_share'].get(k, 0):.1f}%"]
                        for k, v in t["energy_by_component_pj"].items()]), "",
             "## Area by component", "",
             _md_table(["component", "mm²"], [[k, num(v)] for k, v in t["area_by_component_mm2"].items()]), "",
             "## Layers", "", _md_table(_LAYER_HEADER, _layer_rows(rep)), "",
             "## Critical path", "",
             _md_table(["op", "layer", "resource", "start", "end"],
                       [[c["op"], c["layer"], c["resource"], num(c["start"]), num(c["end"])]
                        for c in rep["critical_path"]]), ""]
    for sec in rep.get("sections", {}).values():
        for title, header, rows, note in section_tables(sec):
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
                  f"until wear-out ({num(lt['seconds_until_wearout_at_throughput'])} s at full throughput)."]
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
    body = "".join("<tr>" + "".join(f"<td>{html.escape(num(c))}</td>" for c in r) + "</tr>" for r in rows)
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
        sy = rep.get("sections", {}).get("systolic")
        if sy:
            figs.append(("Systolic unit: busy time and energy per unit", plots.systolic_units(sy)))
            for tab in sy["steps"]:
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
                          [[k, num(v / 1e6), "–" if k == "leakage" else f"{100 * t['dynamic_energy_share'].get(k, 0):.1f}%"]
                           for k, v in t["energy_by_component_pj"].items()]),
              "<h2>Layers</h2>", _html_table(_LAYER_HEADER, _layer_rows(rep)),
              "<h2>Critical path</h2>",
              _html_table(["op", "layer", "resource", "start", "end"],
                          [[c["op"], c["layer"], c["resource"], num(c["start"]), num(c["end"])]
                           for c in rep["critical_path"]])]
    for sec in rep.get("sections", {}).values():
        for title, header, rows, note in section_tables(sec):
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


@dataclass
class Rendered:
    """What the driver writes for one analysis: file contents (written atomically by the caller),
    the short terminal summary, and the report.json content as a dict."""

    files: dict[str, bytes]
    summary: str
    report: dict


OUTPUT_FILES = ("mapping.json", "schedule.json", "report.json", "report.md", "report.html")


def render(an: Analysis, pass_records: list[dict], sections: dict | None = None) -> Rendered:
    """All output files, the summary and the report dict for ``an``; ``sections`` (key → section)
    are added to those the cost models contributed (e.g. the non-ideal simulation's)."""
    mapping = mapping_data(an)
    sched = schedule_data(an)
    data = report_data(an, pass_records)
    data["sections"] = {**data["sections"], **(sections or {})}
    rep = _r(data)
    text = summary(an)
    plots_on = bool(an.options.get("plots", True))
    files = {
        "mapping.json": _dumps_mapping(mapping),
        "schedule.json": _dumps(sched),
        "report.json": _dumps(rep),
        "report.md": render_md(rep, text).encode("utf-8"),
        "report.html": render_html(rep, an, mapping, sched, plots_on).encode("utf-8"),
    }
    return Rendered(files=files, summary=text, report=rep)


def evaluate(model, target: str = "xbar", hw="rram-128", *, model_name: str, pass_records: list[dict] | None = None,
             options: dict | None = None, sections: dict | None = None) -> Rendered:
    """Map, cost, schedule and render ``model`` on ``hw`` (:func:`vitc.backends.api.analyse` + :func:`render`)."""
    return render(analyse(model, target, hw, model_name=model_name, options=options), pass_records or [], sections)


def sweep(model, presets: list, target: str = "xbar", *, model_name: str, pass_records: list[dict] | None = None,
          options: dict | None = None) -> dict[str, Rendered]:
    """:func:`evaluate` for each preset; the model is shaped once (the backend caches it)."""
    out = {}
    for hw in presets:
        key = getattr(hw, "name", None) or str(hw)
        out[key] = evaluate(model, target, hw, model_name=model_name, pass_records=pass_records, options=options)
    return out


__all__ = ["render", "evaluate", "sweep", "summary", "Rendered", "OUTPUT_FILES"]
