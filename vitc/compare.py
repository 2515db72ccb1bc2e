"""Two cost reports side by side: what a rewrite (or another preset, plan or model) buys.

:func:`compare` takes two ``report.json`` dicts — a baseline A and a candidate B — and gives
the totals of each with the ratios A/B ("×2.3 lower EDAP" reads B's EDAP is A's / 2.3), the
per-block deltas where both have the block, the share of attention in energy, latency and
area before and after, and B's pass records' fidelity. ``vitc compile`` with passes compares
the unrewritten canonical model (A) with the rewritten one (B) on the same hardware; ``vitc
compare OUTDIR_A OUTDIR_B`` compares any two compiled outputs.
"""
from __future__ import annotations

import json
from pathlib import Path

from vitc.core.errors import VitcInputError

METRICS = (  # (key, label, unit, lower is better)
    ("energy_pj", "energy per image", "pJ", True),
    ("latency_ns", "latency per image", "ns", True),
    ("area_mm2", "area", "mm²", True),
    ("edap_j_s_mm2", "EDAP", "J·s·mm²", True),
    ("tops_per_w", "TOPS/W", "", False),
    ("tops_per_mm2", "TOPS/mm²", "", False),
    ("throughput_ips", "throughput", "images/s", False),
    ("macs", "MACs per image", "", True),
    ("crossbars", "crossbars", "", True),
)
COMPARE_SCHEMA = ("vitc.compare", 1)


def _ratio(a, b):
    return (a / b) if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def _fidelity(records: list[dict]) -> list[dict]:
    out = []
    for r in records:
        f = r.get("fidelity") or {}
        e2e = f.get("end_to_end") or {}
        out.append({"pass": r.get("name"), "blocks": r.get("blocks"), "weights": r.get("weights"),
                    "calibration": f.get("calibration") or (r.get("details") or {}).get("calibration"),
                    **{k: v for k, v in e2e.items() if isinstance(v, (int, float))}})
    return out


def compare(a: dict, b: dict, label_a: str = "baseline", label_b: str = "rewritten") -> dict:
    """The comparison of report dicts ``a`` (baseline) and ``b`` (candidate); see the module docstring."""
    ta, tb = a["totals"], b["totals"]
    totals = []
    for key, label, unit, lower in METRICS:
        va, vb = ta.get(key), tb.get(key)
        r = _ratio(va, vb) if lower else _ratio(vb, va)
        totals.append({"metric": key, "label": label, "unit": unit, label_a: va, label_b: vb,
                       "improvement": r, "lower_is_better": lower})
    blocks_a = {x["block"]: x for x in a.get("rollups", {}).get("by_block", [])}
    blocks_b = {x["block"]: x for x in b.get("rollups", {}).get("by_block", [])}
    per_block = []
    for blk in sorted(set(blocks_a) | set(blocks_b), key=lambda k: (k is None, k if k is not None else 0)):
        xa, xb = blocks_a.get(blk, {}), blocks_b.get(blk, {})
        row = {"block": blk}
        for key in ("energy_pj", "latency_ns", "area_mm2", "macs"):
            va, vb = xa.get(key, 0.0), xb.get(key, 0.0)
            row[key] = {label_a: va, label_b: vb, "delta": vb - va}
        per_block.append(row)
    share = {label_a: a.get("rollups", {}).get("attention_share"), label_b: b.get("rollups", {}).get("attention_share")}
    kinds = sorted(set(a.get("rollups", {}).get("by_kind", {})) | set(b.get("rollups", {}).get("by_kind", {})))
    by_kind = {k: {label_a: a["rollups"]["by_kind"].get(k, {}).get("energy_pj", 0.0),
                   label_b: b["rollups"]["by_kind"].get(k, {}).get("energy_pj", 0.0)} for k in kinds}
    return {"schema": COMPARE_SCHEMA[0], "schema_version": COMPARE_SCHEMA[1],
            "labels": [label_a, label_b],
            "models": {label_a: a["model"]["name"], label_b: b["model"]["name"]},
            "hardware": {label_a: a["hardware"]["name"], label_b: b["hardware"]["name"]},
            "totals": totals, "per_block": per_block, "attention_share": share, "energy_by_kind_pj": by_kind,
            "fidelity": _fidelity(b.get("pass_records", [])),
            "note": "improvement = baseline / candidate for costs (lower is better), candidate / baseline for "
                    "rates; > 1 means the candidate is better"}


def verdict(improvement: float | None, lower_is_better: bool) -> str:
    """``improvement`` (> 1 = better) in words: "2.3× lower", "1.25× higher", "unchanged"."""
    if improvement is None:
        return "–"
    if abs(improvement - 1.0) < 5e-4:
        return "unchanged"
    better, worse = ("lower", "higher") if lower_is_better else ("higher", "lower")
    return f"{improvement:.3g}× {better}" if improvement > 1 else f"{1 / improvement:.3g}× {worse}"


def headline(cmp: dict) -> str:
    """One sentence: what the candidate buys against the baseline."""
    la, lb = cmp["labels"]
    t = {r["metric"]: r for r in cmp["totals"]}

    def x(key):
        return verdict(t[key]["improvement"], t[key]["lower_is_better"])
    share = cmp["attention_share"]
    sa, sb = (share.get(la) or {}).get("energy"), (share.get(lb) or {}).get("energy")
    parts = [f"EDAP {x('edap_j_s_mm2')}", f"energy {x('energy_pj')}", f"latency {x('latency_ns')}",
             f"area {x('area_mm2')}"]
    text = f"{lb} vs {la}: " + ", ".join(parts)
    if sa is not None and sb is not None:
        text += f"; attention's share of energy {100 * sa:.1f} % → {100 * sb:.1f} %"
    fid = [f for f in cmp["fidelity"] if f.get("output_cosine") is not None or f.get("agreement") is not None]
    if fid:
        f = fid[-1]
        bits = [f"{k} {f[k]:.4g}" + (" %" if k != "output_cosine" else "")
                for k in ("agreement", "accuracy", "output_cosine") if k in f]
        text += f"; fidelity ({f['pass']}, {f.get('calibration') or 'calibration data'}): " + ", ".join(bits)
    return text


def load_report(outdir: str | Path) -> dict:
    """``report.json`` of a compiled output folder (one-line errors for anything else)."""
    p = Path(outdir)
    f = p / "report.json" if p.is_dir() else p
    if not f.is_file():
        raise VitcInputError(f"{p} is not a vitc output folder with a report.json (compile with a --target)")
    try:
        rep = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError):
        raise VitcInputError(f"{f} is not a vitc report (not JSON)") from None
    if not isinstance(rep, dict) or rep.get("schema") != "vitc.report":
        raise VitcInputError(f"{f} is not a vitc report (schema {rep.get('schema') if isinstance(rep, dict) else '?'})")
    if rep.get("schema_version", 1) < 2:
        raise VitcInputError(f"{f} is a version-{rep.get('schema_version', 1)} report; recompile it with this vitc")
    return rep


__all__ = ["compare", "headline", "verdict", "load_report", "METRICS", "COMPARE_SCHEMA"]
