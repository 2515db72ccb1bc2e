"""The one plotting path: plotly figures for report.html, compare.html and sweep.html.

Every figure is built from report data (dicts), rendered with a fixed ``div_id`` so pages are
byte-identical for identical inputs, and the plotly.js bundle is inlined once per page, so a
page works offline and from a file. Figures are interactive (hover shows values, legends
toggle components, drag zooms). Markdown reports carry the same numbers as tables.
"""
from __future__ import annotations

import json

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

# stable colours
KIND_COLORS = {"patch_embedding": "#8c564b", "qkv_projection": "#1f77b4", "attention_core": "#d62728",
               "output_projection": "#9467bd", "reuse_tb": "#e377c2", "bilstm": "#bcbd22", "mlp": "#2ca02c",
               "norm_nonlinear": "#ff7f0e", "head": "#7f7f7f", "other": "#c7c7c7"}
COMPONENT_COLORS = {"adc": "#d62728", "accumulation": "#ff7f0e", "array": "#1f77b4", "other_periph": "#9467bd",
                    "buffer": "#8c564b", "interconnect": "#7f7f7f", "digital": "#2ca02c", "write": "#e377c2",
                    "leakage": "#bcbd22"}
UNIT_COLORS = {"xbar": "#1f77b4", "xbar-write": "#e377c2", "mac": "#2ca02c", "sfu": "#ff7f0e", "vector": "#9467bd",
               "sa": "#17becf", "pp": "#8c564b"}
PAIR_COLORS = ("#7f7f7f", "#1f77b4")

_LAYOUT = dict(template="plotly_white", font=dict(size=11), margin=dict(l=60, r=20, t=40, b=60), height=360,
               legend=dict(orientation="h", y=-0.2))
_CONFIG = {"displaylogo": False, "responsive": True}


#: defines ``vitcPlot(id, spec)``: a figure is drawn when its placeholder comes within 400 px of
#: the viewport (figures further down, or in closed <details>, cost nothing until looked at)
_LAZY = ("window.vitcPlot=(function(){var cfg=%s;function draw(d){Plotly.newPlot(d,d._vitc.data,d._vitc.layout,cfg);}"
         "var io=('IntersectionObserver' in window)?new IntersectionObserver(function(es){es.forEach(function(e){"
         "if(e.isIntersecting){io.unobserve(e.target);draw(e.target);}});},{rootMargin:'400px'}):null;"
         "return function(id,s){var d=document.getElementById(id);d._vitc=s;if(io){io.observe(d);}else{draw(d);}};})();")


class Page:
    """Figures for one HTML page: the first carries the plotly.js bundle and the lazy-drawing
    helper; div ids are sequential (deterministic pages)."""

    def __init__(self, prefix: str = "fig"):
        self.prefix, self.count = prefix, 0

    def html(self, fig: go.Figure) -> str:
        self.count += 1
        div = f"{self.prefix}{self.count}"
        # plotly's to_html adds a random id; a fixed div id and our own script keep pages deterministic
        spec = json.dumps(fig.to_plotly_json(), sort_keys=True, separators=(",", ":"), default=_json_default)
        lib = (f"<script type='text/javascript'>{get_plotlyjs()}</script>"
               f"<script type='text/javascript'>{_LAZY % json.dumps(_CONFIG)}</script>") if self.count == 1 else ""
        height = fig.layout.height or _LAYOUT["height"]
        return (f"{lib}<div id='{div}' class='plot' style='min-height:{int(height)}px'></div>"
                f"<script type='text/javascript'>vitcPlot('{div}',{spec});</script>")


def _json_default(o):
    try:
        return o.tolist()
    except AttributeError:
        return str(o)


def _block_label(b) -> str:
    return "outside blocks" if b is None else f"block {b}"


def _fig(title: str, **layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(title=dict(text=title, x=0.01), **{**_LAYOUT, **layout})
    return fig


def by_block_kind(by_block: list[dict], key: str, title: str, unit: str, scale: float) -> go.Figure:
    """Per encoder block, stacked by op kind (click the legend to hide kinds)."""
    fig = _fig(title, barmode="stack", yaxis_title=unit)
    x = [_block_label(b["block"]) for b in by_block]
    kinds = [k for k in KIND_COLORS if any(b[key].get(k) for b in by_block)]
    for k in kinds:
        fig.add_bar(name=k, x=x, y=[b[key].get(k, 0.0) / scale for b in by_block], marker_color=KIND_COLORS[k],
                    hovertemplate="%{x}<br>" + k + ": %{y:.4g} " + unit + "<extra></extra>")
    return fig


def by_kind_pie(by_kind: dict, key: str, title: str) -> go.Figure:
    fig = _fig(title, height=320, legend=dict(orientation="v"), uniformtext=dict(minsize=10, mode="hide"))
    names = [k for k in KIND_COLORS if k in by_kind and by_kind[k][key] > 0]
    fig.add_pie(labels=names, values=[by_kind[k][key] for k in names], sort=False, hole=0.35,
                marker=dict(colors=[KIND_COLORS[k] for k in names]), textinfo="percent", textposition="inside",
                hovertemplate="%{label}: %{percent}<extra></extra>")
    return fig


def components(energy: dict, area: dict) -> go.Figure:
    """Energy per image and area by hardware component, one stacked bar each (toggle components)."""
    fig = _fig("Energy and area by component", barmode="stack", height=300,
               xaxis=dict(domain=[0, 0.45]), xaxis2=dict(domain=[0.55, 1.0]), yaxis=dict(title="µJ / image"),
               yaxis2=dict(title="mm²", anchor="x2"))
    for k, v in energy.items():
        if v:
            fig.add_bar(name=k, x=["energy"], y=[v / 1e6], marker_color=COMPONENT_COLORS.get(k), legendgroup=k,
                        hovertemplate=k + ": %{y:.4g} µJ<extra></extra>")
    for k, v in area.items():
        if v:
            fig.add_bar(name=k, x=["area"], y=[v], marker_color=COMPONENT_COLORS.get(k), legendgroup=k,
                        showlegend=k not in energy or not energy.get(k), xaxis="x2", yaxis="y2",
                        hovertemplate=k + ": %{y:.4g} mm²<extra></extra>")
    return fig


def comparison_bars(cmp: dict) -> go.Figure:
    """Baseline and candidate per metric, normalised to the baseline (1 = unchanged)."""
    la, lb = cmp["labels"]
    rows = [r for r in cmp["totals"] if isinstance(r.get(la), (int, float)) and r.get(la)]
    fig = _fig(f"{lb} relative to {la}", barmode="group", yaxis_title=f"relative to {la}", height=320)
    x = [r["label"] for r in rows]
    fig.add_bar(name=la, x=x, y=[1.0] * len(rows), marker_color=PAIR_COLORS[0],
                customdata=[r[la] for r in rows], hovertemplate="%{x}: %{customdata:.4g}<extra>" + la + "</extra>")
    fig.add_bar(name=lb, x=x, y=[(r[lb] or 0) / r[la] for r in rows], marker_color=PAIR_COLORS[1],
                customdata=[r[lb] for r in rows], hovertemplate="%{x}: %{customdata:.4g} (%{y:.3g}×)<extra>" + lb
                + "</extra>")
    return fig


def per_block_pair(cmp: dict, key: str, title: str, unit: str, scale: float) -> go.Figure:
    la, lb = cmp["labels"]
    fig = _fig(title, barmode="group", yaxis_title=unit)
    x = [_block_label(r["block"]) for r in cmp["per_block"]]
    for label, color in zip((la, lb), PAIR_COLORS):
        fig.add_bar(name=label, x=x, y=[r[key][label] / scale for r in cmp["per_block"]], marker_color=color,
                    hovertemplate="%{x}: %{y:.4g} " + unit + "<extra>" + label + "</extra>")
    return fig


def occupancy(pipeline: dict) -> go.Figure:
    """Each resource kind's busiest instance as a share of the pipeline interval."""
    kinds = pipeline["by_resource_kind"]
    names = sorted(kinds, key=lambda k: -kinds[k]["occupancy"])
    fig = _fig(f"Pipeline: occupancy of the interval (bottleneck {pipeline['bottleneck']})", height=280,
               yaxis=dict(title="busy / interval", range=[0, 1.05]))
    fig.add_bar(x=names, y=[kinds[k]["occupancy"] for k in names],
                marker_color=[UNIT_COLORS.get(k, "#888") for k in names],
                customdata=[[kinds[k]["resources"], kinds[k]["busy_ns_max"]] for k in names],
                hovertemplate="%{x}: %{y:.1%} of the interval<br>%{customdata[0]} resource(s), busiest "
                              "%{customdata[1]:.4g} ns<extra></extra>")
    return fig


def tornado(sens: dict, top: int = 12) -> go.Figure:
    rows = sens["rows"][:top][::-1]
    fig = _fig("Surrogate sensitivity: EDAP change with each surrogate at ×0.5 / ×1.5", barmode="overlay",
               height=max(260, 28 * len(rows) + 90), xaxis=dict(title="relative change of EDAP", tickformat=".0%"),
               margin=dict(l=260, r=20, t=40, b=50))
    y = [r["parameter"] for r in rows]
    for f, color in zip(sens["factors"], ("#1f77b4", "#d62728")):
        fig.add_bar(name=f"×{f:g}", y=y, x=[r[f"x{f:g}"]["edap_j_s_mm2"] or 0.0 for r in rows], orientation="h",
                    marker_color=color, hovertemplate="%{y}: %{x:.2%}<extra>×" + f"{f:g}" + "</extra>")
    return fig


def utilisation(edges: list, counts: list) -> go.Figure:
    fig = _fig("Crossbar utilisation (cells used per crossbar)", height=280,
               xaxis=dict(title="utilisation", tickformat=".0%"), yaxis_title="crossbars")
    fig.add_bar(x=[(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])], y=counts, width=[b - a for a, b in
                                                                                        zip(edges[:-1], edges[1:])],
                marker_color="#1f77b4", hovertemplate="%{x:.0%}: %{y} crossbars<extra></extra>")
    return fig


def gantt(sched: dict, max_ops: int = 4000) -> go.Figure:
    """The schedule of one image: one row per resource instance, bars named by canonical layer."""
    ops = sched["ops"][:max_ops]
    f = sched["clock_mhz"] / 1e3
    rows = sorted({(o["resource"] or "-", o["instance"]) for o in ops}, key=lambda r: (r[0].split(":")[0], r))
    index = {r: i for i, r in enumerate(rows)}
    fig = _fig("Schedule of one image (hover: layer, start/end)", barmode="overlay",
               height=min(900, 120 + 14 * len(rows)), xaxis_title="µs", showlegend=True,
               yaxis=dict(tickvals=list(range(len(rows))), ticktext=[f"{r[0]}#{r[1]}" if r[1] else r[0] for r in rows],
                          autorange="reversed"), margin=dict(l=160, r=20, t=40, b=50))
    for unit in sorted({o["unit"] for o in ops}):
        sel = [o for o in ops if o["unit"] == unit]
        fig.add_bar(name=unit, orientation="h", y=[index[(o["resource"] or "-", o["instance"])] for o in sel],
                    x=[(o["end"] - o["start"]) / f / 1e3 for o in sel], base=[o["start"] / f / 1e3 for o in sel],
                    marker_color=UNIT_COLORS.get(unit, "#888"), customdata=[o["layer"] for o in sel],
                    hovertemplate="%{customdata}<br>from %{base:.4g} µs, %{x:.4g} µs long<extra>" + unit + "</extra>")
    return fig


def line(title: str, x: list, series: dict[str, list], xlabel: str, ylabel: str, percent: bool = False) -> go.Figure:
    fig = _fig(title, xaxis_title=xlabel, yaxis=dict(title=ylabel, tickformat=".0%" if percent else None))
    for name, ys in series.items():
        fig.add_scatter(name=name, x=x, y=ys, mode="lines+markers")
    return fig


def scatter(title: str, points: list[dict], x: str, y: str, xlabel: str, ylabel: str, color: str | None = None,
            label: str = "label", log_x: bool = False, log_y: bool = False, front: list[dict] | None = None) -> go.Figure:
    """Points with hover text; ``front``: a Pareto front drawn as a line over them."""
    fig = _fig(title, xaxis=dict(title=xlabel, type="log" if log_x else None),
               yaxis=dict(title=ylabel, type="log" if log_y else None), height=420)
    groups: dict = {}
    for p in points:
        groups.setdefault(str(p.get(color)) if color else "points", []).append(p)
    for name, pts in sorted(groups.items()):
        fig.add_scatter(name=f"{color}={name}" if color else name, x=[p[x] for p in pts], y=[p[y] for p in pts],
                        mode="markers", text=[p.get(label, "") for p in pts],
                        hovertemplate="%{text}<br>" + xlabel + ": %{x:.4g}<br>" + ylabel + ": %{y:.4g}<extra></extra>")
    if front:
        fig.add_scatter(name="Pareto front", x=[p[x] for p in front], y=[p[y] for p in front], mode="lines",
                        line=dict(color="black", dash="dot"), hoverinfo="skip")
    return fig


__all__ = ["Page", "by_block_kind", "by_kind_pie", "components", "comparison_bars", "per_block_pair", "occupancy",
           "tornado", "utilisation", "gantt", "line", "scatter", "KIND_COLORS"]
