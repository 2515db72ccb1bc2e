"""The main job: read → canonicalise → passes → emit → (backend) → write OUTDIR atomically."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from vitc.passes.context import PassContext
from vitc.compiler.emit import emit
from vitc.core.errors import VitcInputError
from vitc.compiler.frontend import canonicalize_model, read_model
from vitc.core.io import model_bytes, write_outputs
from vitc.core.ir import CompiledModel
from vitc.passes.registry import PASSES, parse_passes
from vitc.core.io import fits_in_protobuf

TARGETS = ("xbar", "systolic", "hybrid", "none")


@dataclass
class CompileResult:
    compiled: CompiledModel
    model: onnx.ModelProto
    files: dict[str, bytes]
    written: list[Path] = field(default_factory=list)
    summary: str = ""
    sim_summary: str = ""
    report: dict | None = None


def frontend_summary(cm: CompiledModel) -> dict:
    """``blocks.json``: the recognised blocks, what was not recognised, what was normalised."""
    return {"schema": "vitc.blocks/1", "model": cm.name, "opset": cm.opset,
            "blocks": [b.to_dict() for b in cm.blocks],
            "unrecognised": [u.__dict__ for u in cm.unrecognised], "normalized": cm.normalized,
            "passes": [r.to_dict() for r in cm.records]}


def _probe_tokens(cm: CompiledModel) -> int | None:
    """Token count the front end's probe ran with, for blocks whose token count is symbolic."""
    for b in cm.blocks:
        if isinstance(b.tokens, str) and b.tokens.startswith("dynamic("):
            return int(b.tokens[len("dynamic("):-1])
    return None


def compile_model(model: str | os.PathLike | onnx.ModelProto, *, out: str | os.PathLike | None = None,
                  passes: str | list[str] | None = "none", target: str = "xbar", hw: Any = "rram-128",
                  calib: Any = None, calib_samples: int | None = None, preprocess: str = "imagenet",
                  seed: int = 0, input_shapes: dict | None = None,
                  options: dict | None = None, backend_options: dict | None = None,
                  name: str | None = None, sim: dict | None = None) -> CompileResult:
    """Compile ``model`` (path or ModelProto). Writes OUTDIR only if ``out`` is given.

    ``options``: pass options (e.g. ``{"layers": [0, 1], "variant": "paper"}``).
    ``sim``: non-ideal crossbar simulation options (``--emit-sim``, :mod:`vitc.runtime.nonideal.simulate`).
    """
    pass_names = parse_passes(passes)
    if target not in TARGETS:
        raise VitcInputError(f"unknown target '{target}' (choose from {', '.join(TARGETS)})")
    hw_spec = None
    if target != "none":
        from vitc.core.hardware import load_hw
        hw_spec = load_hw(hw)
    if isinstance(model, onnx.ModelProto):
        cm = canonicalize_model(model, name=name or model.graph.name or "model", input_shapes=input_shapes)
    else:
        cm = read_model(model, input_shapes=input_shapes)
    ctx = PassContext(options, calib, seed, calib_samples=calib_samples, preset=preprocess)
    ctx.target, ctx.hw, ctx.backend_options = target, hw_spec, dict(backend_options or {})
    for pass_name in pass_names:
        cm.records.append(PASSES[pass_name]().run(cm, ctx))
    for record in cm.records:
        record.details.setdefault("calibration", ctx.calibration_source)
    result_model = emit(cm)
    if fits_in_protobuf(result_model):
        onnx.checker.check_model(result_model)
    files = model_bytes(result_model, f"{cm.name}.vitc.onnx", cm.external_data)
    files["blocks.json"] = (json.dumps(frontend_summary(cm), indent=1, sort_keys=True) + "\n").encode()
    for record in cm.records:
        files.update(record.files)
    result = CompileResult(cm, result_model, files)
    if target != "none":
        from vitc.backends.api import evaluate
        backend_options = dict(backend_options or {})
        probe_tokens = _probe_tokens(cm)
        if "seq_len" not in backend_options and probe_tokens is not None:
            backend_options["seq_len"] = probe_tokens  # dynamic sequence: cost what the probe ran
        if input_shapes:
            backend_options.setdefault("input_shapes", dict(input_shapes))
        backend = evaluate(result_model, target, hw_spec, model_name=cm.name,
                           pass_records=[r.to_dict() for r in cm.records], options=backend_options)
        files.update(backend.files)
        result.summary, result.report = backend.summary, backend.report
    if sim is not None:
        from vitc.simulation import emit_sim_files
        sim_files, result.sim_summary = emit_sim_files(cm, result_model, hw_spec or hw, sim, seed, calib, calib_samples,
                                                       reports=files)
        files.update(sim_files)
    if out is not None:
        result.written = write_outputs(out, files)
    return result
