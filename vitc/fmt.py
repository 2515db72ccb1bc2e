"""One number format for every command: SI prefixes for physical quantities (``854.9 µs``,
``1.88 µJ``), four significant digits, thousands separators for counts."""
from __future__ import annotations


def si(x: float, unit: str) -> str:
    """``x`` (in base units: s, J, W ...) with an SI prefix, e.g. ``si(8.549e-4, "s") == "854.9 µs"``."""
    if x == 0:
        return f"0 {unit}"
    for f, p in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"),
                 (1e-12, "p")):
        if abs(x) >= f:
            return f"{x / f:.4g} {p}{unit}"
    return f"{x:.3g} {unit}"


def num(x, nd: int = 4) -> str:
    """A table cell: integers with thousands separators, floats to ``nd`` significant digits, – for None."""
    if x is None:
        return "–"
    if isinstance(x, (bool, str)):
        return str(x)
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{nd}g}"


__all__ = ["si", "num"]
