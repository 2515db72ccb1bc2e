"""The main job: check every input → read → canonicalise → passes → emit → cost → render → write.

Everything a compile needs is checked before the long work starts (:func:`plan_compile`):
target and hardware (a target without ``--hw`` takes its default preset), pass names, order
and options, backend options, simulation options, the calibration data (finite numbers that
fit the model), ``--input-shape`` against the model's inputs, and the output folder. OUTDIR
is written atomically at the end and holds exactly this run's files.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from vitc.backends.api import cost_oracle, target_named, xbar_traces
from vitc.compiler.emit import emit, emit_light
from vitc.compiler.frontend import canonicalize_model
from vitc.core.errors import VitcInputError
from vitc.core.hardware import DEFAULT_PRESET, HardwareSpec, load_hw, override
from vitc.core.io import check_outdir, load_model, model_bytes, write_outputs
from vitc.core.ir import CompiledModel
from vitc.core.progress import SILENT, Progress
from vitc.passes import manager
from vitc.passes.context import PassContext
from vitc.report import evaluate
from vitc.runtime import shapes
from vitc.runtime.data import Dataset, load_dataset
from vitc.simulation import config_from_options, emit_sim_files

@dataclass
class CompileResult:
    """What a compile made. ``light`` is the compiled model with the input's large weights as
    placeholders (``held`` keeps them; enough for costing and for writing the file); ``model``
    is the whole model, built on first use."""
    compiled: CompiledModel
    light: onnx.ModelProto
    held: dict
    files: dict[str, bytes]
    written: list[Path] = field(default_factory=list)
    summary: str = ""
    sim_summary: str = ""
    report: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _model: onnx.ModelProto | None = field(default=None, repr=False)

    @property
    def model(self) -> onnx.ModelProto:
        if self._model is None:
            self._model = emit(self.compiled) if self.held else self.light
        return self._model


@dataclass
class CompilePlan:
    """A compile with every input checked (what :func:`plan_compile` returns)."""

    source: onnx.ModelProto
    path: Path | None
    name: str
    external_data: bool
    passes: list[str]
    pass_options: dict
    target: str
    hw: HardwareSpec | None
    backend_options: dict
    input_shapes: dict
    calib: Dataset | None
    calib_samples: int | None
    preprocess: str
    seed: int
    sim: dict | None
    out: Path | None
    weights: dict = field(default_factory=dict)   # data of ``source``'s mapped placeholders


def frontend_summary(cm: CompiledModel) -> dict:
    """``blocks.json`` (:meth:`CompiledModel.summary`)."""
    return cm.summary()


def _positive_int(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VitcInputError(f"{name} must be a positive integer (got {value!r})")
    return value


def plan_compile(model, *, out=None, passes="none", target="xbar", hw=None, calib=None, calib_samples=None,
                 preprocess="imagenet", seed=0, input_shapes=None, options=None, backend_options=None, name=None,
                 sim=None, pass_tables=None, hw_overrides=None, tokenizer=None, weights=None) -> CompilePlan:
    """Check every input of a compile (one-line :class:`VitcInputError` for the first bad one).
    ``weights``: the data of a light ``model``'s placeholder initializers (a plan's ``weights``)."""
    names = manager.select(passes)
    pass_options = manager.build_options(names, options, pass_tables)
    spec = None
    if target != "none":
        tgt = target_named(target)
        spec = load_hw(hw if hw is not None else tgt.default_hw)
        if hw_overrides:
            spec = override(spec, hw_overrides)
        tgt.check_hw(spec)
    elif hw_overrides:
        raise VitcInputError("[hardware] overrides need a cost target (not --target none)")
    bopts = dict(backend_options or {})
    unknown = sorted(set(bopts) - {"batch", "seq_len", "input_shapes", "plots", "sensitivity", "dataflow",
                                   "gemm_mode", "attention_dataflow", "attention_schedule", "stalls",
                                   "energy_model"})
    if unknown:
        raise VitcInputError(f"unknown backend option(s): {', '.join(unknown)}")
    _positive_int("--batch", bopts.get("batch"))
    _positive_int("--seq-len", bopts.get("seq_len"))
    _positive_int("--calib-samples", calib_samples)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise VitcInputError(f"--seed must be a non-negative integer (got {seed!r})")
    if sim is not None:
        sim_hw = spec if spec is not None and spec.kind == "xbar" else load_hw(hw or DEFAULT_PRESET["xbar"])
        config_from_options(sim_hw, sim, seed)      # raises on any bad simulation setting
    outdir = check_outdir(out) if out is not None else None
    if isinstance(model, onnx.ModelProto):
        source, path, external, weights = model, None, False, dict(weights or {})
        label = name or model.graph.name or "model"
    else:
        loaded = load_model(model, mapped=True)
        source, path, external, weights = loaded.model, loaded.path, loaded.external_data, loaded.weights
        label = name or Path(model).name.removesuffix(".onnx")
    shapes.check_overrides(source, input_shapes)
    batch = bopts.get("batch")
    if input_shapes and batch is not None:
        for n, shp in input_shapes.items():
            if shp and shp[0] != batch:
                raise VitcInputError(f"--input-shape {n} gives batch {shp[0]} but --batch is {batch}")
    shapes.check_sizes(source, input_shapes, batch or 1, bopts.get("seq_len"))
    data = None
    if isinstance(calib, Dataset):
        data = calib
    elif calib is not None:
        data = load_dataset(calib, source, preprocess, tokenizer)
    if data is not None and calib_samples is not None:
        data = data.take(calib_samples)
    return CompilePlan(source, path, label, external, names, pass_options, target, spec, bopts,
                       dict(input_shapes or {}), data, calib_samples, preprocess, seed, sim, outdir, weights)


def compile_model(model: str | os.PathLike | onnx.ModelProto, *, out: str | os.PathLike | None = None,
                  passes: str | list[str] | None = "none", target: str = "xbar", hw: Any = None,
                  calib: Any = None, calib_samples: int | None = None, preprocess: str = "imagenet",
                  seed: int = 0, input_shapes: dict | None = None,
                  options: dict | None = None, backend_options: dict | None = None,
                  name: str | None = None, sim: dict | None = None, pass_tables: dict | None = None,
                  hw_overrides: dict | None = None, progress: Progress | None = None,
                  tokenizer: str | os.PathLike | None = None) -> CompileResult:
    """Compile ``model`` (path or ModelProto). Writes OUTDIR only if ``out`` is given.

    ``options``: pass options (e.g. ``{"layers": [0, 1], "variant": "paper"}``; keys in
    ``vitc compile --help``); ``pass_tables``: ``[passes.<name>]`` tables of a config file;
    ``hw``: preset, TOML file or spec (default: the target's preset); ``sim``: non-ideal
    simulation options (``--emit-sim``, :mod:`vitc.simulation`); ``progress``: stage lines.
    """
    progress = progress or SILENT
    with progress.stage("checking inputs"):
        plan = plan_compile(model, out=out, passes=passes, target=target, hw=hw, calib=calib,
                            calib_samples=calib_samples, preprocess=preprocess, seed=seed, input_shapes=input_shapes,
                            options=options, backend_options=backend_options, name=name, sim=sim,
                            pass_tables=pass_tables, hw_overrides=hw_overrides, tokenizer=tokenizer)
    return run_plan(plan, progress)


def copy_canonical(cm: CompiledModel) -> CompiledModel:
    """An independent copy of a canonical model for another set of passes (graph and block
    records copied; weights shared, passes never edit a weight in place)."""
    return dataclasses.replace(cm, graph=cm.graph.copy(), blocks=copy.deepcopy(cm.blocks),
                               cores=copy.deepcopy(cm.cores), unrecognised=list(cm.unrecognised),
                               records=[], node_meta={k: dict(v) for k, v in cm.node_meta.items()})


def front_end(plan: CompilePlan, progress: Progress = SILENT) -> CompiledModel:
    """The canonical model of a checked compile."""
    with progress.stage("front end (recognise, confirm, canonicalise)"):
        return canonicalize_model(plan.source, name=plan.name, source=plan.path, external_data=plan.external_data,
                                  input_shapes=plan.input_shapes or None, weights=plan.weights)


def run_plan(plan: CompilePlan, progress: Progress = SILENT, canonical: CompiledModel | None = None,
             render: bool = True) -> CompileResult:
    """Run a checked compile (see :func:`plan_compile`). ``canonical``: the front end's result
    from an earlier run of the same model (a copy is used); ``render``: cost and write reports."""
    timings: dict[str, float] = {}
    cm = front_end(plan, progress) if canonical is None else copy_canonical(canonical)
    backend_options = dict(plan.backend_options)
    if "seq_len" not in backend_options and any(b.tokens_dynamic for b in cm.blocks):
        backend_options["seq_len"] = cm.blocks[0].tokens      # a dynamic sequence is costed at the probe length
    if plan.input_shapes:
        backend_options.setdefault("input_shapes", dict(plan.input_shapes))
        backend_options.setdefault("batch", next(iter(plan.input_shapes.values()))[0])
    cost = cost_for = None
    if plan.passes:
        cost_for = lambda t, h: cost_oracle(t, h, backend_options)  # noqa: E731
        cost = cost_oracle(plan.target, plan.hw, backend_options) if plan.hw is not None else None
    ctx = PassContext(plan.pass_options, plan.calib, plan.seed, calib_samples=plan.calib_samples,
                      preset=plan.preprocess, target=plan.target, hw=plan.hw, cost=cost, cost_for=cost_for,
                      progress=progress)
    baseline = emit_light(dataclasses.replace(cm, graph=cm.graph.copy()))[0] \
        if render and plan.passes and plan.hw is not None else None
    manager.run(cm, ctx, plan.passes, timings, progress=progress)
    for record in cm.records:
        record.details.setdefault("calibration", ctx.calibration_source)
        timings.update({f"pass.{record.name}.{k}": v for k, v in record.timings.items()})
    with progress.stage("emit"):
        light, held = emit_light(cm)
        manager.check_graph(light, "emit")
        files = model_bytes(light, f"{cm.name}.vitc.onnx", cm.external_data, held)
    files["blocks.json"] = (json.dumps(frontend_summary(cm), indent=1, sort_keys=True) + "\n").encode()
    for record in cm.records:
        files.update(record.files)
    result = CompileResult(cm, light, held, files, timings=timings)
    sections = {k: v for r in cm.records for k, v in r.sections.items()}
    if plan.sim is not None:
        with progress.stage("non-ideal simulation"):
            sim_hw = plan.hw if plan.hw is not None and plan.hw.kind == "xbar" else load_hw(DEFAULT_PRESET["xbar"])
            sim_files, result.sim_summary, section = emit_sim_files(cm, result.model, sim_hw, plan.sim, plan.seed,
                                                                    plan.calib, plan.calib_samples)
            files.update(sim_files)
            if section is not None:
                sections[section["key"]] = section
    if plan.target != "none" and render:
        if plan.hw.get("adc_circuit.model") == "neurosim-mlsa" and plan.calib is not None:
            # data-dependent read energy from the compiled model's MVM operands on the first calibration sample
            with progress.stage("crossbar read activity (one onnxruntime run)"):
                backend_options["xbar_traces"] = xbar_traces(
                    light, plan.hw, {**backend_options, "held": held, "activity_data": plan.calib, "seed": plan.seed})
        with progress.stage(f"cost on {plan.hw.name} ({plan.target}) and reports"):
            rendered = evaluate(light, plan.target, plan.hw, model_name=cm.name, options=backend_options,
                                pass_records=[r.to_dict() for r in cm.records], sections=sections, baseline=baseline)
        files.update(rendered.files)
        result.summary, result.report = rendered.summary, rendered.report
    if plan.out is not None:
        with progress.stage(f"write {plan.out}"):
            result.written = write_outputs(plan.out, files)
    timings.update({f"stage.{k}": v for k, v in progress.timings.items()})
    return result


__all__ = ["compile_model", "plan_compile", "run_plan", "front_end", "copy_canonical", "CompileResult", "CompilePlan",
           "frontend_summary"]
