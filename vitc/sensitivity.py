"""How much the headline figures depend on surrogate constants.

Every hardware parameter the preset marks as a surrogate (a figure from a related tool, a
calibration, or our choice — ``[meta] surrogates``) is moved by −50 % and +50 % on its own, the
model is costed again (the shaped graph is cached, so each point is a re-costing only), and the
relative change of energy, latency, area and EDAP per image is recorded. Rows are sorted by the
largest EDAP change, so the top of the table says which assumptions the result rests on.
"""
from __future__ import annotations

import onnx

from vitc.backends.api import analyse
from vitc.core.errors import VitcInputError
from vitc.core.hardware import HardwareSpec, override

FACTORS = (0.5, 1.5)
FIGURES = ("energy_pj", "latency_ns", "area_mm2", "edap_j_s_mm2")


def _moved(value, factor: float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return max(1, int(round(value * factor)))
    return value * factor


def sensitivity(model: onnx.ModelProto, target: str, spec: HardwareSpec, totals: dict,
                options: dict | None = None, model_name: str = "model") -> dict:
    """Relative change of :data:`FIGURES` for each surrogate at ×0.5 and ×1.5 (module docstring)."""
    rows, skipped = [], []
    for key in spec.surrogates:
        value = spec.get(key)
        row = {"parameter": key, "value": value}
        ok = True
        for f in FACTORS:
            moved = _moved(value, f)
            if moved is None or moved == value:
                ok = False
                break
            try:
                t = analyse(model, target, override(spec, {key: moved}), model_name=model_name,
                            options=options).totals
            except VitcInputError as exc:
                skipped.append({"parameter": key, "why": str(exc)})
                ok = False
                break
            row[f"x{f:g}"] = {k: (t[k] / totals[k] - 1.0) if totals.get(k) else None for k in FIGURES}
        if ok:
            rows.append(row)
        elif not any(s["parameter"] == key for s in skipped):
            skipped.append({"parameter": key, "why": "not a number that can move by ±50 %"})

    def worst(r):
        return max(abs(r[f"x{f:g}"]["edap_j_s_mm2"] or 0.0) for f in FACTORS)
    rows.sort(key=lambda r: (-worst(r), r["parameter"]))
    return {"factors": list(FACTORS), "figures": list(FIGURES), "rows": rows, "skipped": skipped,
            "note": "each surrogate alone at ×0.5 and ×1.5; values are relative changes of the per-image totals"}


__all__ = ["sensitivity", "FACTORS", "FIGURES"]
