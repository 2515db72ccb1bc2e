"""The pass registry: passes plug in by name (``--passes taylor,reorder``).

A pass is a class with ``name``, ``help``, an optional ``add_arguments(parser)`` classmethod
(its CLI flags) and ``run(cm, ctx) -> PassRecord``. Modules under ``vitc.passes`` register
themselves with :func:`register` when imported by :func:`load_all`.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import re

from vitc.core.errors import VitcInputError

PASSES: dict[str, type] = {}


def register(cls: type) -> type:
    PASSES[cls.name] = cls
    return cls


def load_all() -> dict[str, type]:
    import vitc.passes as pkg
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "registry":
            importlib.import_module(f"vitc.passes.{mod.name}")
    return PASSES


def parse_passes(spec: str | list[str] | None) -> list[str]:
    """``"taylor,reorder"`` → ["taylor", "reorder"]; ``"none"``/empty → []; unknown → error."""
    if spec is None:
        return []
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    names = [n for n in names if n != "none"]
    available = load_all()
    for n in names:
        if n not in available:
            raise VitcInputError(f"unknown pass '{n}' (available: none, {', '.join(sorted(available))})")
    return names


def add_option(group, *flags, **kwargs) -> None:
    """``add_argument`` that skips option strings another pass already registered, so passes can
    share a flag (e.g. ``--max-drop``, ``--epochs``): one definition, one ``dest``."""
    taken = getattr(group, "_option_string_actions", {})
    free = [f for f in flags if f not in taken]
    if free:
        try:
            group.add_argument(*free, **kwargs)
        except argparse.ArgumentError:  # the dest or a flag was taken meanwhile: keep the first
            pass


def parse_block_list(spec, n_blocks: int, flag: str = "--layers") -> list[int]:
    """``None``/"all" → all blocks; "0,2,5" / "0-3,7" / [0, 2] / negative indices → sorted, unique,
    checked against the model's ``n_blocks`` (one-line error naming ``flag``)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(range(n_blocks))
    if isinstance(spec, int):
        items = [spec]
    elif isinstance(spec, str):
        items = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            m = re.fullmatch(r"(-?\d+)\s*-\s*(\d+)", part)
            try:
                items.extend(range(int(m.group(1)), int(m.group(2)) + 1) if m else [int(part)])
            except ValueError:
                raise VitcInputError(f"{flag}: cannot read '{part}' (use e.g. 0,2,5 or 0-3 or all)") from None
    else:
        items = [int(x) for x in spec]
    out = set()
    for i in items:
        j = i + n_blocks if i < 0 else i
        if not 0 <= j < n_blocks:
            raise VitcInputError(f"{flag}: block {i} does not exist (model has {n_blocks} blocks: 0-{n_blocks - 1})")
        out.add(j)
    return sorted(out)
