"""The ``vitc`` command line. Exit status: 0 success, 1 a check failed, 2 bad input or usage.

Errors are one line on stderr (``--debug`` shows the traceback); progress goes to stderr (a
live status on a terminal, one line per stage otherwise, nothing with ``-q``); results go to
stdout. Every argument is checked before the long work starts.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import onnxruntime

import vitc
from vitc.backends.api import TARGETS
from vitc.compiler.frontend import read_model
from vitc.compiler.zoo import CONFIGS as ZOO
from vitc.compiler.zoo import build_vit
from vitc.core.config import load_config
from vitc.core.errors import VitcCheckFailed, VitcError, VitcInputError
from vitc.core.hardware import describe as describe_hw
from vitc.core.hardware import DEFAULT_PRESET, list_presets, load_hw
from vitc.compare import compare, load_report
from vitc.core.io import check_outdir, load_model, model_bytes, write_outputs
from vitc.core.progress import Progress
from vitc.inspect import describe, describe_model, format_mapping_table, mapping_json
from vitc.passes.registry import PASSES
from vitc.pipeline import compile_model, frontend_summary
from vitc.runtime.nonideal.simulate import CALIB_SAMPLES
from vitc.runtime.shapes import parse_shape_overrides
from vitc.runtime.validate import validate_models
from vitc.neurosim_export import export_files, trace_layers
from vitc.report import comparison_files, comparison_markdown, section_markdown
from vitc.runtime.data import load_dataset
from vitc.simulation import config_from_options, nonideal_note, simulate_files
from vitc.sweep import load_grid, run_sweep

SIM_KEYS = ("adc_bits", "mode", "variation", "variation_model", "on_off_ratio", "adc_range", "adc_fullscale",
            "adc_percentile", "input_scaling", "offset_correction", "weight_bits", "input_bits", "cell_bits",
            "dac_bits", "inputs", "samples")


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line (``vitc: error: ...``) and exit status 2."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise VitcInputError(f"{self.prog.split()[-1] if ' ' in self.prog else 'usage'}: {message}")


def _progress(args) -> Progress:
    return Progress(quiet=getattr(args, "quiet", False))


# --------------------------------------------------------------------------- pass and sim options
def _pass_dest(pass_name: str, field: str) -> str:
    return f"p__{pass_name}__{field}"


def add_pass_arguments(parser: argparse.ArgumentParser) -> None:
    """Every pass's options as flags; a flag several passes declare is added once and sets them all."""
    seen: dict[str, str] = {}
    for name, cls in PASSES.items():
        group = parser.add_argument_group(f"{name} pass ({cls.help})")
        for f in cls.Options.option_fields():
            m = f.metadata["vitc"]
            flags = [fl for fl in m["flags"] if fl not in seen]
            for fl in m["flags"]:
                if fl in seen and seen[fl] != f.name:
                    raise AssertionError(f"flag {fl} means {seen[fl]} and {f.name}")
            if not m["flags"] or not flags:
                continue
            dest = f"p__shared__{f.name}" if any(
                fl in o.metadata["vitc"]["flags"] for other in PASSES.values() if other is not cls
                for o in other.Options.option_fields() for fl in m["flags"]) else _pass_dest(name, f.name)
            kw = {"dest": dest, "default": None, "help": m["help"]}
            if m["negate"]:
                kw.update(action="store_const", const=False)
            elif isinstance(f.default, bool):
                kw.update(action="store_const", const=True)
            else:
                kw.update(metavar=m["metavar"] or f.name.upper())
                if m["choices"]:
                    kw["choices"] = list(m["choices"])
            group.add_argument(*flags, **kw)
            for fl in m["flags"]:
                seen[fl] = f.name


def pass_options_from_args(args) -> dict:
    """The pass options the user gave on the command line, as API ``options`` keys."""
    out = {}
    for key, value in vars(args).items():
        if value is None or not key.startswith("p__"):
            continue
        _, pass_name, field = key.split("__", 2)
        out[field if pass_name == "shared" else f"{pass_name}_{field}"] = value
    return out


def add_sim_arguments(p, *, for_compile: bool = False) -> None:
    """Simulation flags, shared by ``vitc simulate`` and ``vitc compile --emit-sim``."""
    g = p.add_argument_group("non-ideal crossbar simulation (docs/nonideal.md)")
    if for_compile:
        g.add_argument("--emit-sim", action="store_true",
                       help="also write <model>.sim.onnx: crossbar MVMs as ai.vitc::XbarMatMul (non-ideal arithmetic)")
    g.add_argument("--adc-bits", help="ADC resolution(s): one value or a sweep such as 4,5,6,7,8 (0/ideal: ideal ADC); "
                                      "default: the preset's")
    g.add_argument("--sim-mode", dest="mode", choices=["bitserial", "tile"],
                   help="bitserial (default): one conversion per input bit-plane and weight slice, as the preset "
                        "says; tile: fast approximation, one conversion per row group on the full product")
    g.add_argument("--variation", type=float, help="conductance variation sigma (default 0)")
    g.add_argument("--variation-model", choices=["lognormal", "gaussian"])
    g.add_argument("--on-off-ratio", type=float, help="cell on/off conductance ratio (default 0: ideal)")
    g.add_argument("--adc-range", choices=["fixed", "calibrated"],
                   help="ADC full scale: fixed fraction of the worst-case current (default), or calibrated from data")
    g.add_argument("--adc-fullscale", type=float,
                   help="fixed: fraction of the worst-case current; calibrated: margin on the percentile (default 1)")
    g.add_argument("--adc-percentile", type=float, help="calibrated ADC range: percentile of currents (default 100)")
    g.add_argument("--input-scaling", choices=["dynamic", "static"],
                   help="input quantisation scale: per input vector at run time (default), or calibrated per layer")
    g.add_argument("--offset-correction", choices=["column", "digital"],
                   help="offset-mapped weights: subtract an ADC-converted reference column (default), or digitally")
    for flag in ("weight-bits", "input-bits", "cell-bits", "dac-bits"):
        g.add_argument(f"--sim-{flag}", dest=flag.replace("-", "_"), type=int,
                       help=f"override the preset's {flag.replace('-', '_')}")
    if for_compile:
        g.add_argument("--sim-inputs", dest="inputs",
                       help="data (.npz; with 'labels': accuracy) for the ADC-bits table of the original and the "
                            "compiled model")
        g.add_argument("--sim-samples", dest="samples", type=int, help="use the first N samples of --sim-inputs")


def sim_options_from_args(args) -> dict:
    return {k: getattr(args, k, None) for k in SIM_KEYS}


# --------------------------------------------------------------------------- commands
def _with_recover(passes) -> str:
    """``--recover train``: the passes, then trained recovery (the ``recover`` pass)."""
    names = [p.strip() for p in (passes.split(",") if isinstance(passes, str) else passes)]
    if names in ([], ["none"]):
        raise VitcInputError("--recover train needs a rewriting pass (e.g. --passes taylor)")
    return ",".join(names if "recover" in names else names + ["recover"])


def _cmd_compile(args) -> int:
    progress = _progress(args)
    cfg = load_config(args.config) if args.config else {}
    run = cfg.get("compile", {})

    def pick(flag_value, key, default=None):
        return flag_value if flag_value is not None else run.get(key, default)

    shapes = parse_shape_overrides(args.input_shape) or {k: tuple(v) for k, v in run.get("input_shape", {}).items()}
    options = pass_options_from_args(args)
    backend_options = {k: v for k, v in (("batch", pick(args.batch, "batch")), ("seq_len", pick(args.seq_len, "seq_len")))
                       if v is not None}
    sim = None
    if args.emit_sim or cfg.get("simulate"):
        sim = {**cfg.get("simulate", {}), **{k: v for k, v in sim_options_from_args(args).items() if v is not None}}
    target = pick(args.target, "target", "xbar")
    out = pick(args.output, "output") or f"{Path(args.model).name.removesuffix('.onnx')}_vitc"
    passes = pick(args.passes, "passes", "none")
    recover = pick(args.recover, "recover", "fit")
    if recover not in ("fit", "train"):
        raise VitcInputError(f"recover = {recover!r}: choose fit or train")
    if recover == "train":
        passes = _with_recover(passes)
    result = compile_model(args.model, out=out, passes=passes, target=target,
                           hw=pick(args.hw, "hw"), calib=pick(args.calib, "calib"),
                           calib_samples=pick(args.calib_samples, "calib_samples"),
                           preprocess=pick(args.preprocess, "preprocess", "imagenet"), seed=pick(args.seed, "seed", 0),
                           input_shapes=shapes or None, options=options, backend_options=backend_options, sim=sim,
                           pass_tables=cfg.get("passes"), hw_overrides=cfg.get("hardware"), progress=progress,
                           tokenizer=pick(args.tokenizer, "tokenizer"))
    cm = result.compiled
    print(f"{cm.name}: {len(cm.blocks)} encoder blocks, passes: {','.join(r.name for r in cm.records) or 'none'}")
    for rec in cm.records:
        declined = rec.details.get("declined") or {}
        note = f"; declined {len(declined)}: {_declines(declined)}" if declined else ""
        print(f"  {rec.name}: blocks {rec.blocks}, weights {rec.weights}{_fidelity_summary(rec.fidelity)}{note}")
        for text in rec.details.get("notes") or []:
            print(f"    note: {text}")
    if cm.unrecognised:
        print(f"  {len(cm.unrecognised)} attention-like subgraphs not recognised (see `vitc inspect`)")
    if result.summary:
        print(result.summary.rstrip())
    if result.sim_summary:
        print(result.sim_summary.rstrip())
    print(f"wrote {len(result.written)} files to {Path(out)}/")
    if args.timings:
        Path(args.timings).write_text(json.dumps(result.timings, indent=1, sort_keys=True) + "\n")
    return 0


def _fidelity_summary(fidelity: dict) -> str:
    """Scalar fidelity figures and the end-to-end ones; per-layer detail stays in blocks.json."""
    flat = {k: v for k, v in fidelity.items() if isinstance(v, (int, float, str)) and k != "calibration"}
    flat.update(fidelity.get("end_to_end") or {})
    text = ", ".join(f"{k} {_num(v)}" for k, v in flat.items())
    source = fidelity.get("calibration")
    return (f"; {text}" if text else "") + (f" (on {source})" if source else "")


def _num(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _cmd_validate(args) -> int:
    labels = args.labels if args.labels is not None else False
    result = validate_models(args.reference, args.candidate, inputs=args.inputs, samples=args.samples,
                             tokenizer=args.tokenizer,
                             labels=labels if labels != "" else True, rtol=args.rtol, atol=args.atol,
                             seed=args.seed, input_shapes=parse_shape_overrides(args.input_shape))
    print(json.dumps(result.to_dict(), indent=1, sort_keys=True) if args.json else result.format())
    note = "" if args.json else nonideal_note(args.candidate, result)
    if note:
        print(note)
    if not result.passed:
        raise VitcCheckFailed("validation failed: outputs differ beyond tolerance")
    return 0


def _cmd_inspect(args) -> int:
    target = Path(args.target)
    if target.is_dir():
        blocks = target / "blocks.json"
        if not blocks.is_file():
            raise VitcInputError(f"{target} is not a vitc output folder (no blocks.json)")
        try:
            summary = json.loads(blocks.read_text())
        except (ValueError, UnicodeDecodeError):
            raise VitcInputError(f"{blocks} is not a vitc blocks.json") from None
        has_mapping = (target / "mapping.json").is_file()
        if args.json:
            if has_mapping:
                summary = {**summary, "mapping": mapping_json(target)}
            print(json.dumps(summary, indent=1, sort_keys=True))
            return 0
        print(describe(summary))
        if has_mapping:
            print(format_mapping_table(target))
        return 0
    cm = read_model(target, input_shapes=parse_shape_overrides(args.input_shape), require_rewritable=False)
    if args.json:
        print(json.dumps(frontend_summary(cm), indent=1, sort_keys=True))
    else:
        print(describe_model(cm))
    return 0


def _cmd_compare(args) -> int:
    if args.labels is not None:
        labels = [x.strip() for x in args.labels.split(",")]
        if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
            raise VitcInputError(f"--labels needs two different names separated by a comma (got {args.labels!r})")
    else:
        labels = [Path(args.a).resolve().name, Path(args.b).resolve().name]
        if labels[0] == labels[1] or not all(labels):
            labels = ["A", "B"]
    out = check_outdir(args.output) if args.output else None
    a, b = load_report(args.a), load_report(args.b)
    cmp = compare(a, b, labels[0], labels[1])
    title = f"vitc compare — {labels[1]} vs {labels[0]}"
    if args.json:
        print(json.dumps(cmp, indent=1, sort_keys=True))
    else:
        print(comparison_markdown(cmp, title).strip())
    if out is not None:
        written = write_outputs(out, comparison_files(cmp, title))
        print(f"wrote {len(written)} files to {out}/", file=sys.stderr if args.json else sys.stdout)
    return 0


def _declines(declined: dict) -> str:
    """``{block: reason}`` grouped by reason: "causal mask … (blocks 0, 1)"."""
    by_reason: dict[str, list[str]] = {}
    for block, reason in declined.items():
        by_reason.setdefault(reason.split(":")[0].split(" (")[0], []).append(str(block))
    return "; ".join(f"{r} (blocks {', '.join(b)})" for r, b in by_reason.items())


def _cmd_export(args) -> int:
    out = check_outdir(args.output)
    for flag, value, lo, hi in (("--weight-bits", args.weight_bits, 1, 16), ("--input-bits", args.input_bits, 1, 16),
                                ("--rows", args.rows, 8, 4096)):
        if not lo <= value <= hi:
            raise VitcInputError(f"{flag} must be between {lo} and {hi} (got {value})")
    loaded = load_model(args.model)
    model = loaded.model
    data = load_dataset(args.calib, model, tokenizer=args.tokenizer) if args.calib else None
    layers, skipped = trace_layers(model, data, seed=args.seed, input_shapes=parse_shape_overrides(args.input_shape))
    files = export_files(layers, skipped, args.weight_bits, args.input_bits, args.rows,
                         Path(args.model).name.removesuffix(".onnx"))
    written = write_outputs(out, files)
    print(f"{len(layers)} NeuroSim layers ({', '.join(sorted({L.op for L in layers}))}) from "
          f"{'the first sample of ' + args.calib if args.calib else 'a synthetic sample'}; "
          f"{len(skipped)} not exported; wrote {len(written)} files to {out}/ "
          f"(run: NEUROSIM=.../NeuroSIM/main sh {out}/run_neurosim.sh)")
    return 0


def _cmd_sweep(args) -> int:
    grid = load_grid(args.grid)
    res = run_sweep(args.model, grid, args.output, cluster=args.cluster, workers=args.workers,
                    progress=_progress(args))
    t = res.table
    print(f"{len(t)} points ({res.computed} computed, {res.reused} from an earlier run); front end run "
          f"{res.front_end_runs} time(s); wrote results.parquet, results.csv, sweep.html to {args.output}/")
    if len(t):
        best = t.loc[t["edap_j_s_mm2"].idxmin()]
        varied = [c for c in t.columns if c.startswith(("hw.", "opt.")) or c in ("target", "base", "passes")]
        print("lowest EDAP: " + ", ".join(f"{c} = {best[c]}" for c in varied) +
              f" → {best['edap_j_s_mm2']:.4g} J·s·mm²")
    return 0


def _cmd_zoo(args) -> int:
    out = Path(args.output)
    for name, value in (("--img-size", args.img_size), ("--patch", args.patch), ("--depth", args.depth)):
        if value is not None and value < 1:
            raise VitcInputError(f"{name} must be a positive integer (got {value})")
    if args.seed < 0:
        raise VitcInputError(f"--seed must be a non-negative integer (got {args.seed})")
    model = build_vit(args.name, img_size=args.img_size, patch=args.patch, seed=args.seed, depth=args.depth)
    write_outputs(out.parent if str(out.parent) else ".", model_bytes(model, out.name, external=False), manifest=False)
    print(f"wrote {args.name} (img {args.img_size}, patch {args.patch}, seed {args.seed}) to {out}")
    return 0


def _cmd_hw(args) -> int:
    if args.action == "list":
        defaults = {v: k for k, v in DEFAULT_PRESET.items()}
        print(f"{'preset':<16} {'kind':<9} description")
        for name, kind, desc in list_presets():
            mark = f" [default for --target {defaults[name]}]" if name in defaults else ""
            print(f"{name:<16} {kind:<9} {desc}{mark}")
        print(f"{'rram-128+vitality':<16} {'hybrid':<9} any crossbar + systolic pair joined by '+' "
              "[default for --target hybrid]")
        return 0
    if not args.preset:
        raise VitcInputError("usage: vitc hw show PRESET|FILE")
    print(describe_hw(load_hw(args.preset)))
    return 0


def _simulate_model_path(path: str) -> Path:
    """A model file, or the compiled model of a vitc output folder."""
    p = Path(path)
    if p.is_dir():
        found = sorted(f for f in p.glob("*.vitc.onnx"))
        if len(found) != 1:
            raise VitcInputError(f"{p} is not a vitc output folder with one <model>.vitc.onnx "
                                 f"({len(found)} found)")
        return found[0]
    return p


def _cmd_simulate(args) -> int:
    progress = _progress(args)
    opts = sim_options_from_args(args)
    if args.labels and not args.inputs:
        raise VitcInputError("--labels needs --inputs (data with a 'labels' array)")
    _positive(args, "samples", "calib_samples")
    with progress.stage("checking inputs"):
        cfg, bits = config_from_options(args.hw, opts, args.seed)
        variants, stems = {}, {}
        for path in args.models:
            p = _simulate_model_path(path)
            stem = p.name.removesuffix(".onnx")
            label = stem.removesuffix(".vitc")
            while label in variants:
                label += "'"
            variants[label] = load_model(p).model
            stems[label] = stem
    out = args.output or f"{_simulate_model_path(args.models[0]).name.removesuffix('.onnx')}_sim"
    print(f"simulating {len(variants)} model(s) on {cfg.source}: {cfg.describe()}"
          + (f"; ADC bits {', '.join(str(b) if b else 'ideal' for b in bits)}" if len(bits) > 1 else ""))
    with progress.stage("simulate"):
        files, sweep = simulate_files(variants, stems, cfg, bits, opts, calib=args.calib,
                                      calib_samples=args.calib_samples or CALIB_SAMPLES, write_models=args.write_models)
    if args.labels and sweep is not None and sweep.accuracy and all(
            a is None for d in sweep.accuracy.values() for a in d.values()):
        raise VitcInputError("--labels given but the input data has no 'labels' array")
    written = write_outputs(out, files)
    if sweep is not None:
        print(section_markdown(sweep.section()).strip())
    print(f"wrote {len(written)} files to {out}/")
    return 0


def _positive(args, *names) -> None:
    for n in names:
        v = getattr(args, n, None)
        if v is not None and v < 1:
            raise VitcInputError(f"--{n.replace('_', '-')} must be a positive integer (got {v})")


# --------------------------------------------------------------------------- parser
def _add_common_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-shape", action="append", metavar="NAME:1x3x224x224",
                   help="concrete shape for a model input (repeatable); the batch is its first dim")


def _add_global(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vitc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"vitc {vitc.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("compile", help="rewrite attention, map onto hardware, report costs")
    _add_global(p)
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--config", metavar="FILE.toml", help="compile settings, pass options, hardware overrides "
                                                         "(docs/config.md); flags override it")
    p.add_argument("--target", choices=sorted(TARGETS) + ["none"], help="cost target (default xbar)")
    p.add_argument("--passes", help="comma-separated passes in order (e.g. taylor,reorder) or none (default)")
    p.add_argument("--recover", choices=["fit", "train"],
                   help="weights of rewritten blocks: fit = the passes' closed-form fits (default); train = "
                        "then distil the whole rewritten model on --calib (the recover pass; needs vitc[distill])")
    p.add_argument("--hw", help="hardware preset, TOML file, or XBAR+SYSTOLIC (default: the target's preset, "
                                "see `vitc hw list`)")
    p.add_argument("--calib", help="calibration data: .npy/.npz or a folder of images")
    p.add_argument("--calib-samples", type=int, help="use the first N calibration samples")
    p.add_argument("--preprocess", choices=["imagenet", "unit"], help="preprocessing preset for an image-folder --calib")
    p.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json or WordPiece vocab.txt for a text --calib "
                                                       "(default: one beside the text file)")
    p.add_argument("--seed", type=int, help="seed of synthetic data, fits and weights (default 0)")
    p.add_argument("--batch", type=int, help="batch size to cost (default 1; figures are reported per image)")
    p.add_argument("--seq-len", type=int, help="sequence length to cost for models with a symbolic sequence")
    p.add_argument("-o", "--output", help="output folder (default <model>_vitc)")
    p.add_argument("--timings", metavar="FILE.json", help="write stage and pass wall times here (not into OUTDIR)")
    _add_common_input_args(p)
    add_pass_arguments(p)
    add_sim_arguments(p, for_compile=True)
    p.set_defaults(func=_cmd_compile)

    p = sub.add_parser("simulate", help="run models as IMC crossbars compute (ADC, DAC, cells, variation); "
                                        "agreement and accuracy vs ADC bits")
    _add_global(p)
    p.add_argument("models", nargs="+", help="ONNX model(s) or vitc output folder(s): an original and/or compiled "
                                             "(.vitc.onnx) variants")
    p.add_argument("--hw", default=DEFAULT_PRESET["xbar"], help="crossbar preset or TOML file (default rram-128)")
    p.add_argument("--inputs", help="data (.npy/.npz or image folder) for the table (default: synthetic inputs)")
    p.add_argument("--labels", action="store_true", help="report top-1 accuracy (needs 'labels' in --inputs)")
    p.add_argument("--samples", type=int, help="use the first N samples of --inputs (synthetic: N samples, default 32)")
    p.add_argument("--calib", help="calibration data for --input-scaling static / --adc-range calibrated "
                                   "(default: synthetic)")
    p.add_argument("--calib-samples", type=int, help=f"calibration samples (default {CALIB_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="variation seed")
    p.add_argument("--write-models", action="store_true",
                   help="also write the simulated models (one per model and ADC setting; large)")
    p.add_argument("-o", "--output", help="output folder (default <model>_sim)")
    add_sim_arguments(p)
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("validate", help="compare a candidate model with its reference in onnxruntime")
    _add_global(p)
    p.add_argument("reference")
    p.add_argument("candidate")
    p.add_argument("--inputs", help=".npy/.npz, an image folder or a text file (.txt, one example per line) with "
                                    "inputs; default synthetic")
    p.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json or WordPiece vocab.txt for text --inputs "
                                                       "(default: one beside the text file)")
    p.add_argument("--samples", type=int, help="use the first N samples (synthetic: generate N, default 8)")
    p.add_argument("--labels", nargs="?", const="", default=None,
                   help="report top-1 accuracy; labels from the inputs' 'labels' array or from a .npy file")
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    _add_common_input_args(p)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("inspect", help="show recognised blocks (MODEL.onnx) or the mapping (OUTDIR)")
    _add_global(p)
    p.add_argument("target", help="ONNX model or a vitc output folder")
    p.add_argument("--json", action="store_true", help="everything as JSON (an OUTDIR's includes the mapping)")
    _add_common_input_args(p)
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("compare", help="two compiled outputs side by side (baseline A, candidate B): totals with "
                                        "ratios, per-block deltas, attention share, fidelity")
    _add_global(p)
    p.add_argument("a", metavar="OUTDIR_A", help="baseline: a vitc output folder (or its report.json)")
    p.add_argument("b", metavar="OUTDIR_B", help="candidate: a vitc output folder (or its report.json)")
    p.add_argument("-o", "--output", help="also write compare.json, compare.md and compare.html here")
    p.add_argument("--labels", metavar="A,B", help="names for the two sides (default: the folder names)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("export", help="write a model's static-weight MVMs as input files of another tool "
                                       "(neurosim: DNN+NeuroSim V1.4 network CSV, weight and input traces)")
    _add_global(p)
    p.add_argument("format", choices=["neurosim"])
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--calib", help="data whose first sample gives the input traces (default: synthetic)")
    p.add_argument("--tokenizer", metavar="FILE", help="tokenizer for a text --calib")
    p.add_argument("--weight-bits", type=int, default=8)
    p.add_argument("--input-bits", type=int, default=8)
    p.add_argument("--rows", type=int, default=128, help="subarray rows for run_neurosim.sh (default 128)")
    p.add_argument("--seed", type=int, default=0)
    _add_common_input_args(p)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("sweep", help="design-space exploration: every point of a grid of hardware, targets, passes "
                                      "and options; Parquet/CSV table and Pareto fronts (docs/sweep.md)")
    _add_global(p)
    p.add_argument("model", metavar="MODEL.onnx")
    p.add_argument("--grid", required=True, metavar="GRID.toml", help="the grid file (docs/sweep.md)")
    p.add_argument("-o", "--output", required=True, help="output folder (rerun into it to resume)")
    p.add_argument("--cluster", metavar="tcp://HOST:PORT", help="run the points on this Dask scheduler")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per CPU)")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("zoo", help="write a built-in ViT (seeded random weights) as ONNX, no torch needed")
    _add_global(p)
    p.add_argument("name", choices=sorted(ZOO))
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, help="number of blocks (default 12)")
    p.set_defaults(func=_cmd_zoo)

    p = sub.add_parser("hw", help="hardware presets: list, or show one with every parameter's source")
    _add_global(p)
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("preset", nargs="?")
    p.set_defaults(func=_cmd_hw)
    return parser


def _validate_numbers(args) -> None:
    for key in ("calib_samples", "batch", "seq_len", "samples"):
        v = getattr(args, key, None)
        if v is not None and v < 1:
            raise VitcInputError(f"--{key.replace('_', '-')} must be a positive integer (got {v})")
    if getattr(args, "seed", None) is not None and args.seed < 0:
        raise VitcInputError(f"--seed must be a non-negative integer (got {args.seed})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    onnxruntime.set_default_logger_severity(3)        # onnxruntime's own warnings are not vitc's output
    try:
        args = build_parser().parse_args(argv)
        _validate_numbers(args)
        return args.func(args)
    except SystemExit as exc:         # --help / --version
        return int(exc.code or 0)
    except VitcCheckFailed as exc:
        print(f"vitc: {exc}", file=sys.stderr)
        return 1
    except VitcError as exc:
        if debug:
            raise
        print(f"vitc: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:           # `vitc ... | head`: the reader left; not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print("vitc: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except MemoryError:
        if debug:
            raise
        print("vitc: error: out of memory (the model or the requested sizes are too large for this machine)",
              file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - never a traceback without --debug
        if debug:
            raise
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"vitc: error: internal error ({type(exc).__name__}: {msg}); rerun with --debug for a traceback",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
