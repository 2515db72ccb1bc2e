"""Human-readable views for ``vitc inspect``: recognised blocks, unrecognised subgraphs, and the
per-layer mapping table of a compiled output folder."""
from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from vitc.core.errors import VitcInputError
from vitc.core.ir import CompiledModel
from vitc.fmt import si


def render(renderables) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=160, color_system=None, force_terminal=False)
    for r in renderables:
        console.print(r)
    return buf.getvalue()


def blocks_table(blocks: list[dict], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("block", "heads", "head dim", "dim", "tokens", "LN", "qkv split", "scale", "kᵀ", "mask", "norm",
                "GELU", "probe err"):
        table.add_column(col, justify="right" if col in ("block", "heads", "head dim", "dim", "tokens") else "left")
    for b in blocks:
        f = b["forms"]
        tokens = f"{b['tokens']}" + (" (dynamic)" if b.get("tokens_dynamic") else "")
        table.add_row(str(b["index"]), str(b["num_heads"]), str(b["head_dim"]), str(b["embed_dim"]), tokens,
                      "pre" if b["pre_ln"] else "post", f.get("qkv", "?"), f.get("scale", "?"),
                      f.get("k_transpose", "?"), f.get("mask", "?"), f.get("layernorm", "?"), f.get("gelu", "?"),
                      f"{b.get('probe_rel_error', 0):.1e}")
    return table


def cores_table(cores: list[dict]) -> Table:
    """Attention sites rewritten to a canonical core without a canonical block around them."""
    table = Table(title=f"{len(cores)} attention cores without a canonical encoder block (numbered after the "
                        "blocks)", title_justify="left")
    for col in ("site", "op", "groups", "heads", "Nq", "Nkv", "d_k", "d_v", "bias", "score chain", "why not a block",
                "err"):
        table.add_column(col, justify="right" if col in ("site", "groups", "heads", "Nq", "Nkv", "d_k", "d_v")
                         else "left", overflow="fold")
    for c in cores:
        op = {"softmax": "Attention", "factorized": "FactorizedAttention", "separable": "SeparableAttention",
              "linear": "LinearAttention"}.get(c.get("kind", "softmax"), c.get("kind"))
        table.add_row(str(c["index"]), op, str(c["groups"]), str(c["heads"]), str(c["q_tokens"]), str(c["kv_tokens"]),
                      str(c["head_dim"]), str(c["value_dim"]), c["bias"], c["forms"].get("score_chain", "–"),
                      c.get("why_not_block") or "–", f"{c.get('probe_rel_error', 0):.1e}")
    return table


def describe(summary: dict) -> str:
    """Text for a ``blocks.json``-shaped summary (see ``pipeline.frontend_summary``): every block,
    every core, every unrecognised site with its reason."""
    parts = [blocks_table(summary["blocks"], f"{summary['model']}: {len(summary['blocks'])} encoder blocks recognised "
                                            f"(opset {summary['opset']})")]
    if summary.get("cores"):
        parts.append(cores_table(summary["cores"]))
    norm = summary.get("normalized") or {}
    if any(norm.values()):
        parts.append("normalised: " + ", ".join(f"{v} {k} removed" for k, v in sorted(norm.items()) if v))
    if summary["unrecognised"]:
        t = Table(title=f"{len(summary['unrecognised'])} attention-like subgraphs not rewritten", title_justify="left")
        for col in ("anchor", "op", "reason"):
            t.add_column(col, overflow="fold")
        for u in summary["unrecognised"]:
            t.add_row(u["anchor"], u["op"], u["reason"])
        parts.append(t)
    else:
        parts.append("no unrecognised attention-like subgraphs")
    for rec in summary.get("passes", []):
        parts.append(f"pass {rec['name']}: blocks {rec['blocks']}, weights {rec['weights']}, fidelity {rec['fidelity']}")
    return render(parts)


def describe_model(cm: CompiledModel) -> str:
    return describe(cm.summary())


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VitcInputError(f"{path.parent}: no {path.name} (is this a vitc compile output directory?)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise VitcInputError(f"cannot read {path}: {e}") from None


def format_mapping_table(outdir: Path, width: int = 140) -> str:
    """The per-layer table for ``vitc inspect OUTDIR`` as a string (rich-rendered, no colour)."""
    outdir = Path(outdir)
    rep = _load(outdir / "report.json")
    mapping = _load(outdir / "mapping.json") if (outdir / "mapping.json").exists() else {}
    if rep.get("schema") != "vitc.report":
        raise VitcInputError(f"{outdir / 'report.json'} is not a vitc report (schema {rep.get('schema')!r})")
    t = rep["totals"]
    hw = rep["hardware"]
    xb = mapping.get("crossbar", {})
    title = f"{rep['model']['name']} on {hw['name']} ({rep['target']})"
    if xb:
        title += (f" — {xb['rows']}x{xb['cols']} crossbars, {xb['slices']} slice(s)/weight, "
                  f"{xb['columns_per_weight']} column(s)/weight ({xb['signed']})")
    table = Table(title=title, show_lines=False, header_style="bold")
    for col, just in (("layer", "left"), ("unit", "left"), ("crossbars", "right"), ("repl.", "right"),
                      ("util.", "right"), ("MACs", "right"), ("cycles", "right"), ("latency µs", "right"),
                      ("energy µJ", "right"), ("top component", "left")):
        table.add_column(col, justify=just)
    for L in rep["layers"]:
        e = L["energy_by_component_pj"]
        top = max(sorted(e), key=lambda k: e[k]) if any(e.values()) else "–"
        util = L.get("utilisation_mean")
        table.add_row(
            L["layer"], "/".join(L["units"]), f"{L['crossbars']:,}" if L["crossbars"] else "–",
            str(L["replication"]) if L["crossbars"] else "–",
            f"{100 * util:.1f}%" if util is not None else "–", f"{L['macs']:,}" if L["macs"] else "–",
            f"{L['end_cycle'] - L['start_cycle']:,}", f"{L['latency_ns'] / 1e3:.4g}", f"{L['energy_pj'] / 1e6:.4g}",
            top)
    console = Console(width=width, record=True, color_system=None, force_terminal=False, highlight=False)
    with console.capture() as cap:
        console.print(table)
        console.print(
            f"latency {si(t['latency_ns'] * 1e-9, 's')}/image · throughput {t['throughput_ips']:.4g} images/s · "
            f"energy {si(t['energy_pj'] * 1e-12, 'J')}/image · area {t['area_mm2']:.4g} mm² · "
            f"EDAP {t['edap_j_s_mm2']:.4g} J·s·mm² · {t['tops_per_w']:.4g} TOPS/W · "
            f"{t['tops_per_mm2']:.4g} TOPS/mm² · crossbars {t['crossbars']:,}"
            + (f" ({t['crossbars_with_replicas']:,} with replicas)" if t["crossbars_with_replicas"] != t["crossbars"]
               else ""))
    return cap.get()


def mapping_json(outdir: Path) -> dict:
    """The mapping of a compiled output folder for ``vitc inspect OUTDIR --json``: per layer (units,
    crossbars, replication, utilisation, cycles, latency, energy), the totals, and every matrix's
    crossbar placement from ``mapping.json``."""
    outdir = Path(outdir)
    rep = _load(outdir / "report.json")
    mapping = _load(outdir / "mapping.json")
    return {"hardware": rep.get("hardware", {}).get("name"), "target": rep.get("target"), "totals": rep.get("totals"),
            "layers": rep.get("layers", []), "crossbar": mapping.get("crossbar", {}),
            "matrices": mapping.get("matrices", [])}


__all__ = ["describe", "describe_model", "format_mapping_table", "mapping_json"]
