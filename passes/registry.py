"""The pass registry: every pass, by name (``--passes taylor,reorder``).

A pass is a class with ``name``, ``help``, ``Options`` (a :class:`~vitc.passes.options.PassOptions`
dataclass: its flags, config keys and checks), optional ``after`` (passes that must run before
it when both are selected) and ``run(cm, ctx) -> PassRecord``. Adding a pass = one module plus
one line here (docs/architecture.md, "Adding a pass").
"""
from __future__ import annotations

from vitc.passes.bilstm import BiLstmPass
from vitc.passes.recover import RecoverPass
from vitc.passes.reorder import ReorderPass
from vitc.passes.reuse import ReusePass
from vitc.passes.taylor import TaylorPass

PASSES: dict[str, type] = {p.name: p for p in (ReusePass, BiLstmPass, TaylorPass, ReorderPass, RecoverPass)}

__all__ = ["PASSES"]
