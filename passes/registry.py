"""The pass registry: passes plug in by name (``--passes taylor,reorder``).

A pass is a class with ``name``, ``help``, an optional ``add_arguments(parser)`` classmethod
(its CLI flags) and ``run(cm, ctx) -> PassRecord``. Modules under ``vitc.passes`` register
themselves with :func:`register` when imported by :func:`load_all`.
"""
from __future__ import annotations

import importlib
import pkgutil

from vitc.compiler.errors import VitcInputError

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
