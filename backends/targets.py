"""The cost targets, by name (``--target``). Adding one = its module (cost models + a
:class:`~vitc.backends.cost.Target`) and one line here."""
from __future__ import annotations

from vitc.backends import hybrid, systolic, xbar
from vitc.backends.cost import Target

TARGETS: dict[str, Target] = {t.name: t for t in (xbar.TARGET, systolic.TARGET, hybrid.TARGET)}


def register(target: Target) -> None:
    """Add a target at run time (plug-ins, tests)."""
    TARGETS[target.name] = target


__all__ = ["TARGETS", "register", "Target"]
