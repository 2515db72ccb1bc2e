"""Human-readable views for ``vitc inspect``: recognised blocks, unrecognised subgraphs."""
from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from vitc.compiler.model import CompiledModel


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
        table.add_row(str(b["index"]), str(b["num_heads"]), str(b["head_dim"]), str(b["embed_dim"]), str(b["tokens"]),
                      "pre" if b["pre_ln"] else "post", f.get("qkv", "?"), f.get("scale", "?"),
                      f.get("k_transpose", "?"), f.get("mask", "?"), f.get("layernorm", "?"), f.get("gelu", "?"),
                      f"{b.get('probe_rel_error', 0):.1e}")
    return table


def describe(summary: dict) -> str:
    """Text for a ``blocks.json``-shaped summary (see ``pipeline.frontend_summary``)."""
    parts = [blocks_table(summary["blocks"], f"{summary['model']}: {len(summary['blocks'])} encoder blocks recognised "
                                            f"(opset {summary['opset']})")]
    norm = summary.get("normalized") or {}
    if any(norm.values()):
        parts.append("normalised: " + ", ".join(f"{v} {k} removed" for k, v in sorted(norm.items()) if v))
    if summary["unrecognised"]:
        t = Table(title="attention-like subgraphs not recognised", title_justify="left")
        for col in ("anchor", "op", "reason"):
            t.add_column(col)
        for u in summary["unrecognised"]:
            t.add_row(u["anchor"], u["op"], u["reason"])
        parts.append(t)
    else:
        parts.append("no unrecognised attention-like subgraphs")
    for rec in summary.get("passes", []):
        parts.append(f"pass {rec['name']}: blocks {rec['blocks']}, weights {rec['weights']}, fidelity {rec['fidelity']}")
    return render(parts)


def describe_model(cm: CompiledModel) -> str:
    from vitc.compiler.pipeline import frontend_summary
    return describe(frontend_summary(cm))
