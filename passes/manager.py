"""The pass manager: which passes run, in what order, with which options, and the checks after each.

* :func:`select` parses ``--passes`` (``none`` / empty → no pass; unknown, repeated, empty entries
  or ``none`` mixed with passes → one-line error) and checks the declared order constraints
  (``after``) — before any work starts;
* :func:`build_options` turns the API ``options`` dict / CLI values / ``--config`` tables into
  every selected pass's validated options dataclass;
* :func:`run` runs the passes; after each one the graph is emitted and checked with the ONNX
  checker (structure, on a weight-less copy) and, on a few calibration samples, that the
  model's outputs are finite. A pass whose result fails a check is an error naming the pass.
  Each pass's record gets the check results (``details.checks``); wall-clock times go to the
  caller (``timings``), never into the records, so outputs stay byte-identical.
"""
from __future__ import annotations

import importlib.util

import dataclasses
import time
from typing import Any

import numpy as np
import onnx

from vitc.compiler.emit import emit
from vitc.core.errors import VitcInputError
from vitc.core.io import check_structure
from vitc.core.progress import SILENT, Progress
from vitc.core.ir import CompiledModel
from vitc.passes.context import PassContext
from vitc.passes.options import PassOptions
from vitc.passes.registry import PASSES
from vitc.runtime.batching import run_batched
from vitc.runtime.session import open_session

CHECK_SAMPLES = 4


def select(spec: str | list[str] | None) -> list[str]:
    """``"taylor,reorder"`` → ["taylor", "reorder"]; ``"none"`` / None / [] → []; errors name the problem."""
    if spec is None:
        return []
    if isinstance(spec, str):
        if spec.strip().lower() == "none":
            return []
        parts = [s.strip() for s in spec.split(",")]
        if not spec.strip() or any(not p for p in parts):
            raise VitcInputError(f"--passes: empty entry in '{spec}' (use e.g. taylor,reorder or none)")
    else:
        parts = [str(s).strip() for s in spec]
    if "none" in parts:
        raise VitcInputError("--passes: 'none' cannot be combined with other passes")
    for n in parts:
        if n not in PASSES:
            raise VitcInputError(f"unknown pass '{n}' (available: none, {', '.join(sorted(PASSES))})")
    for n in parts:                 # optional extras a pass always needs: say so before any work
        missing = [m for m in getattr(PASSES[n], "requires", ()) if importlib.util.find_spec(m) is None]
        if missing:
            raise VitcInputError(f"--passes: {n} needs {', '.join(missing)} (pip install 'vitc[distill]'; "
                                 "a CPU build of torch is enough)")
    dup = sorted({n for n in parts if parts.count(n) > 1})
    if dup:
        raise VitcInputError(f"--passes: {', '.join(dup)} given more than once (each pass runs once)")
    for i, n in enumerate(parts):
        for before in getattr(PASSES[n], "after", ()):
            if before in parts[i + 1:]:
                raise VitcInputError(f"--passes: {n} must come after {before} (e.g. --passes "
                                     f"{','.join(sorted(parts, key=_rank))})")
    return parts


def _rank(name: str) -> int:
    order = list(PASSES)
    return order.index(name)


def option_keys(pass_name: str) -> dict[str, str]:
    """API ``options`` keys accepted for ``pass_name`` → its field name."""
    out = {}
    for f in PASSES[pass_name].Options.option_fields():
        for key in (f.name, f"{pass_name}_{f.name}") + tuple(f.metadata["vitc"]["keys"]):
            out[key] = f.name
    return out


def build_options(names: list[str], options: dict[str, Any] | None = None,
                  tables: dict[str, dict] | None = None) -> dict[str, PassOptions]:
    """Validated options of every pass in ``names``.

    ``options``: flat API/CLI keys (``layers``, ``taylor_layers``, ``max_drop`` …; a key several
    selected passes share sets all of them); ``tables``: ``[passes.<name>]`` tables of a config
    file (field names); ``options`` win over ``tables``. Keys no selected pass knows are an error.
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    tables = tables or {}
    for name in tables:
        if name not in PASSES:
            raise VitcInputError(f"config: unknown pass table [passes.{name}] (passes: {', '.join(sorted(PASSES))})")
    used: set[str] = set()
    out = {}
    for name in names:
        keys = option_keys(name)
        values = dict(tables.get(name, {}))
        for k, v in options.items():
            if k in keys:
                values[keys[k]] = v
                used.add(k)
        out[name] = PASSES[name].Options.build(name, values)
    known = {k for n in PASSES for k in option_keys(n)}
    unknown = sorted(set(options) - used - (known if not names else set()))
    stray = sorted(k for k in unknown if k not in known)
    if stray:
        raise VitcInputError(f"unknown pass option(s): {', '.join(stray)}")
    for name in tables:
        if name not in names:
            raise VitcInputError(f"config: [passes.{name}] given but pass {name} is not selected (--passes)")
    return out


def context(names: list[str], options: dict | None = None, **kw) -> PassContext:
    """A :class:`PassContext` for running the passes ``names`` directly (API, tests)."""
    return PassContext(build_options(names, options), **kw)


def check_graph(model: onnx.ModelProto, where: str) -> None:
    """ONNX checker on a weight-less view of ``model`` (structure, types, opset use)."""
    try:
        check_structure(model, "")
    except VitcInputError as exc:
        raise VitcInputError(f"{where} produced an invalid graph: {str(exc).split(': ', 1)[-1]}") from None


def check_finite(model: onnx.ModelProto, ctx: PassContext, cm: CompiledModel, where: str) -> None:
    """The model's outputs are finite on a few calibration samples."""
    data = ctx.calibration(cm).take(CHECK_SAMPLES)
    sess = open_session(model)
    outs = run_batched(sess, {i.name: data.feeds[i.name] for i in sess.get_inputs()})
    bad = [o.name for o, v in zip(sess.get_outputs(), outs) if not np.all(np.isfinite(v))]
    if bad:
        raise VitcInputError(f"{where} produced non-finite outputs ({', '.join(bad)}) on the calibration data "
                             f"({data.source})")


def run(cm: CompiledModel, ctx: PassContext, names: list[str], timings: dict | None = None,
        progress: Progress = SILENT) -> None:
    """Run ``names`` on ``cm`` in order, appending one record per pass (see module docstring)."""
    for name in names:
        t0 = time.perf_counter()
        with progress.stage(f"pass {name}"):
            record = PASSES[name]().run(cm, ctx)
            model = emit(dataclasses.replace(cm, graph=cm.graph.copy()))
            check_graph(model, f"pass {name}")
            check_finite(model, ctx, cm, f"pass {name}")
        record.details["checks"] = {"onnx_checker": "passed", "finite_outputs": f"{CHECK_SAMPLES} samples"}
        cm.records.append(record)
        if timings is not None:
            timings[f"pass.{name}"] = round(time.perf_counter() - t0, 3)


__all__ = ["select", "build_options", "run", "context", "option_keys", "check_graph", "check_finite", "PASSES"]
