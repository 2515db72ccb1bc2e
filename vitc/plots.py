"""Matplotlib figures for report.html, rendered to deterministic inline SVG.

No pyplot (no global backend state): every figure is a :class:`matplotlib.figure.Figure`
saved with a fixed ``svg.hashsalt``, text kept as text, and no date metadata, so the same
report renders byte-identical SVG.
"""
from __future__ import annotations

import io

import matplotlib
import matplotlib.patches
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

# component colours (stable across reports)
COLORS = {
    "adc": "#d62728", "accumulation": "#ff7f0e", "array": "#1f77b4", "other_periph": "#9467bd",
    "buffer": "#8c564b", "interconnect": "#7f7f7f", "digital": "#2ca02c", "write": "#e377c2",
    "leakage": "#bcbd22",
}
UNIT_COLORS = {"xbar": "#1f77b4", "xbar-write": "#e377c2", "mac": "#2ca02c", "sfu": "#ff7f0e", "vector": "#9467bd",
               "sa": "#17becf", "pp": "#8c564b"}

_RC = {"svg.hashsalt": "vitc", "svg.fonttype": "none", "font.size": 8, "axes.titlesize": 10,
       "font.family": "DejaVu Sans"}


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": "vitc"})
    text = buf.getvalue()
    # drop the XML prolog/doctype so the SVG embeds inline in HTML
    i = text.find("<svg")
    return text[i:] if i >= 0 else text


def _figure(w: float, h: float) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(w, h), dpi=96)


def stacked_layers(layers: list[dict], key: str, comps: tuple[str, ...], title: str, unit: str, scale: float) -> str:
    """Per-layer stacked bars of ``layer[key][component]`` (divided by ``scale``)."""
    names = [l["layer"] for l in layers]
    n = max(1, len(names))
    with matplotlib.rc_context(_RC):
        w = min(18.0, 3.5 + 0.16 * n)
        fig = _figure(w, 4.6)
        fig.subplots_adjust(left=0.7 / w, right=1 - 1.4 / w, bottom=0.32, top=0.92)
        ax = fig.add_subplot(1, 1, 1)
        x = np.arange(len(names))
        bottom = np.zeros(len(names))
        for c in comps:
            vals = np.array([l[key].get(c, 0.0) for l in layers], dtype=float) / scale
            if not vals.any():
                continue
            # one PolyCollection per component: far faster than a Rectangle per bar
            x0, x1, y0, y1 = x - 0.4, x + 0.4, bottom, bottom + vals
            verts = np.stack([np.stack([x0, y0], 1), np.stack([x0, y1], 1), np.stack([x1, y1], 1),
                              np.stack([x1, y0], 1)], 1)
            ax.add_collection(PolyCollection(verts, facecolors=COLORS.get(c, "#333333"), linewidths=0, label=c))
            bottom += vals
        ax.set_ylim(0, max(1e-12, float(bottom.max())) * 1.05)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=90, fontsize=6 if n > 40 else 7)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.grid(axis="y", alpha=0.3)
        return _svg(fig)


def component_breakdown(energy: dict, area: dict) -> str:
    """Energy (µJ) and area (mm²) per component, side by side."""
    with matplotlib.rc_context(_RC):
        fig = _figure(10.0, 3.4)
        fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.9)
        for i, (data, title, unit, scale) in enumerate(((energy, "Energy per image by component", "µJ", 1e6),
                                                        (area, "Area by component", "mm²", 1.0))):
            ax = fig.add_subplot(1, 2, i + 1)
            items = [(k, v / scale) for k, v in data.items() if v > 0]
            ks = [k for k, _ in items]
            vs = [v for _, v in items]
            y = np.arange(len(ks))
            ax.barh(y, vs, color=[COLORS.get(k, "#333333") for k in ks])
            ax.set_yticks(y)
            ax.set_yticklabels(ks)
            ax.invert_yaxis()
            tot = sum(vs) or 1.0
            for yi, v in zip(y, vs):
                ax.text(v, yi, f" {100 * v / tot:.1f}%", va="center", fontsize=7)
            ax.set_xlabel(unit)
            ax.set_title(title)
            ax.set_xlim(0, max(vs or [1]) * 1.25)
        fig.subplots_adjust(wspace=0.45)
        return _svg(fig)


def utilisation_histogram(util: np.ndarray) -> str:
    """Histogram of per-crossbar utilisation (used cells / all cells)."""
    with matplotlib.rc_context(_RC):
        fig = _figure(6.0, 3.0)
        fig.subplots_adjust(left=0.13, right=0.97, bottom=0.17, top=0.9)
        ax = fig.add_subplot(1, 1, 1)
        bins = np.linspace(0, 1, 21)
        counts, _ = np.histogram(util, bins=bins)
        ax.bar(bins[:-1] * 100, counts, width=5, align="edge", color="#1f77b4", edgecolor="white", linewidth=0.5)
        ax.set_xlabel("crossbar utilisation (%)")
        ax.set_ylabel("crossbars")
        mean = float(util.mean()) if util.size else 0.0
        ax.set_title(f"Crossbar utilisation ({util.size} crossbars, mean {100 * mean:.1f}%)")
        ax.set_xlim(0, 100)
        return _svg(fig)


def gantt(slots: list[dict], makespan: int, freq_mhz: float, max_rows: int = 120) -> str:
    """Schedule timeline: one row per resource instance, bars per op, coloured by unit kind."""
    rows: dict[str, list[tuple[int, int, str]]] = {}
    for s in slots:
        if s["unit"] is None or s["end"] <= s["start"]:
            continue
        key = s["resource"] if s["unit"] in ("xbar", "xbar-write") else f"{s['unit']}[{s['instance']}]"
        rows.setdefault(key, []).append((s["start"], s["end"] - s["start"], s["unit"]))
    names = sorted(rows, key=lambda k: (min(r[0] for r in rows[k]), k))
    if len(names) > max_rows:
        names = names[:max_rows]
    with matplotlib.rc_context(_RC):
        h = max(2.5, 0.9 + 0.13 * len(names))
        fig = _figure(12.0, h)
        fig.subplots_adjust(left=0.2, right=0.9, bottom=0.5 / h, top=1 - 0.35 / h)
        ax = fig.add_subplot(1, 1, 1)
        us = 1.0 / freq_mhz  # µs per cycle
        for i, k in enumerate(names):
            bars = rows[k]
            by_unit: dict[str, list] = {}
            for st, d, u in bars:
                by_unit.setdefault(u, []).append((st * us, d * us))
            for u, b in sorted(by_unit.items()):
                ax.broken_barh(b, (i - 0.4, 0.8), facecolors=UNIT_COLORS.get(u, "#333333"), linewidth=0)
        ax.set_yticks(np.arange(len(names)))
        ax.set_yticklabels([n.replace("xbar:", "") for n in names], fontsize=5 if len(names) > 40 else 7)
        ax.invert_yaxis()
        ax.set_xlim(0, max(1, makespan) * us)
        ax.set_xlabel("time (µs)")
        ax.set_title("Schedule (one image, list scheduling)")
        handles = [matplotlib.patches.Patch(color=c, label=u) for u, c in UNIT_COLORS.items()]
        ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        ax.grid(axis="x", alpha=0.3)
        return _svg(fig)


def systolic_units(sy: dict) -> str:
    """Systolic target: busy time (µs) and energy (µJ) per unit, plus SRAM and DRAM energy."""
    f = sy["clock_mhz"]
    units = [(u, v) for u, v in sy["units"].items() if v["instantiated"]]
    with matplotlib.rc_context(_RC):
        fig = _figure(10.0, 3.2)
        fig.subplots_adjust(left=0.14, right=0.97, bottom=0.16, top=0.88, wspace=0.55)
        ax = fig.add_subplot(1, 2, 1)
        y = np.arange(len(units))
        ax.barh(y, [v["busy_cycles"] / f for _, v in units], color="#17becf")
        ax.set_yticks(y)
        ax.set_yticklabels([u for u, _ in units])
        ax.invert_yaxis()
        ax.set_xlabel("busy time (µs)")
        ax.set_title("Busy time per unit")
        ax = fig.add_subplot(1, 2, 2)
        rows = [(u, v["energy_pj"] / 1e6) for u, v in units] + [("SRAM", sy["sram"]["energy_pj"] / 1e6),
                                                                ("DRAM", sy["dram"]["energy_pj"] / 1e6)]
        y = np.arange(len(rows))
        ax.barh(y, [v for _, v in rows], color=["#17becf"] * len(units) + ["#8c564b", "#7f7f7f"])
        ax.set_yticks(y)
        ax.set_yticklabels([u for u, _ in rows])
        ax.invert_yaxis()
        ax.set_xlabel("energy (µJ)")
        ax.set_title("Energy per unit")
        return _svg(fig)


def step_shares(tab: dict) -> str:
    """Per-step busy time of the attention cores (ViTALiTy Table II analogue), one bar per step."""
    steps = tab["steps"]
    with matplotlib.rc_context(_RC):
        fig = _figure(8.0, 0.9 + 0.28 * len(steps))
        fig.subplots_adjust(left=0.36, right=0.9, bottom=0.5 / (0.9 + 0.28 * len(steps)), top=0.85)
        ax = fig.add_subplot(1, 1, 1)
        y = np.arange(len(steps))
        vals = [s["latency_ns"] / 1e3 for s in steps]
        ax.barh(y, vals, color="#17becf")
        for yi, s in zip(y, steps):
            ax.text(s["latency_ns"] / 1e3, yi, f" {100 * s['share']:.0f}%", va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels([f"{s['step']} [{s['unit']}]" for s in steps], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, max(vals or [1]) * 1.2)
        ax.set_xlabel(f"busy time, all {tab['instances']} heads (µs)")
        ax.set_title("Attention core: per-step busy time")
        return _svg(fig)


__all__ = ["stacked_layers", "component_breakdown", "utilisation_histogram", "gantt", "systolic_units",
           "step_shares", "COLORS"]
