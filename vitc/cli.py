"""The ``vitc`` command line. Exit status: 0 success, 1 a check failed, 2 bad input or usage."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from vitc.core.errors import VitcCheckFailed, VitcError
from vitc.runtime.nonideal.simulate import CALIB_SAMPLES


def _add_common_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-shape", action="append", metavar="NAME:1x3x224x224",
                   help="concrete shape for an input with symbolic dims (repeatable)")


def _cmd_compile(args) -> int:
    from vitc.pipeline import compile_model
    from vitc.runtime.shapes import parse_shape_overrides
    options = {k: v for k, v in vars(args).items() if k.startswith("p_")}
    options = {k[2:]: v for k, v in options.items()}
    out = args.output or f"{Path(args.model).name.removesuffix('.onnx')}_vitc"
    backend_options = {k: v for k, v in (("batch", args.batch), ("seq_len", args.seq_len)) if v}
    result = compile_model(args.model, out=out, passes=args.passes, target=args.target, hw=args.hw,
                           calib=args.calib, calib_samples=args.calib_samples, preprocess=args.preprocess,
                           seed=args.seed, input_shapes=parse_shape_overrides(args.input_shape),
                           options=options, backend_options=backend_options,
                           sim=options_from_args(args) if args.emit_sim else None)
    cm = result.compiled
    print(f"{cm.name}: {len(cm.blocks)} encoder blocks, passes: {','.join(r.name for r in cm.records) or 'none'}")
    for rec in cm.records:
        print(f"  {rec.name}: blocks {rec.blocks}, weights {rec.weights}{_fidelity_summary(rec.fidelity)}")
    if cm.unrecognised:
        print(f"  {len(cm.unrecognised)} attention-like subgraphs not recognised (see `vitc inspect`)")
    if result.summary:
        print(result.summary.rstrip())
    if result.sim_summary:
        print(result.sim_summary.rstrip())
    print(f"wrote {len(result.written)} files to {Path(out)}/")
    return 0


def _fidelity_summary(fidelity: dict) -> str:
    """Scalar fidelity figures and the end-to-end ones; per-layer detail stays in blocks.json."""
    flat = {k: v for k, v in fidelity.items() if isinstance(v, (int, float, str)) and k != "calibration"}
    flat.update(fidelity.get("end_to_end") or {})
    text = ", ".join(f"{k} {v}" for k, v in flat.items())
    source = fidelity.get("calibration")
    return (f"; {text}" if text else "") + (f" (on {source})" if source else "")


def _cmd_validate(args) -> int:
    from vitc.runtime.shapes import parse_shape_overrides
    from vitc.runtime.validate import validate_models
    labels = args.labels if args.labels is not None else False
    result = validate_models(args.reference, args.candidate, inputs=args.inputs, samples=args.samples,
                             labels=labels if labels != "" else True, rtol=args.rtol, atol=args.atol,
                             seed=args.seed, input_shapes=parse_shape_overrides(args.input_shape))
    print(json.dumps(result.to_dict(), indent=1, sort_keys=True) if args.json else result.format())
    from vitc.simulation import nonideal_note
    note = "" if args.json else nonideal_note(args.candidate, result)
    if note:
        print(note)
    if not result.passed:
        raise VitcCheckFailed("validation failed: outputs differ beyond tolerance")
    return 0


def _cmd_inspect(args) -> int:
    from vitc.inspect import describe, describe_model
    from vitc.core.errors import VitcInputError
    target = Path(args.target)
    if target.is_dir():
        blocks = target / "blocks.json"
        if not blocks.is_file():
            raise VitcInputError(f"{target} is not a vitc output folder (no blocks.json)")
        summary = json.loads(blocks.read_text())
        if args.json:
            print(json.dumps(summary, indent=1, sort_keys=True))
            return 0
        print(describe(summary))
        if (target / "mapping.json").is_file():
            from vitc.inspect import format_mapping_table
            print(format_mapping_table(target))
        return 0
    from vitc.compiler.frontend import read_model
    from vitc.runtime.shapes import parse_shape_overrides
    cm = read_model(target, input_shapes=parse_shape_overrides(args.input_shape))
    if args.json:
        from vitc.pipeline import frontend_summary
        print(json.dumps(frontend_summary(cm), indent=1, sort_keys=True))
    else:
        print(describe_model(cm))
    return 0


def _cmd_zoo(args) -> int:
    from vitc.core.io import model_bytes, write_outputs
    from vitc.compiler.zoo import build_vit
    out = Path(args.output)
    model = build_vit(args.name, img_size=args.img_size, patch=args.patch, seed=args.seed, depth=args.depth)
    write_outputs(out.parent if str(out.parent) else ".", model_bytes(model, out.name, external=False))
    print(f"wrote {args.name} (img {args.img_size}, patch {args.patch}, seed {args.seed}) to {out}")
    return 0


def _cmd_hw(args) -> int:
    from vitc.core.hardware import describe, list_presets, load_hw
    if args.action == "list":
        for name, desc in list_presets():
            print(f"{name:16s} {desc}")
        return 0
    if not args.preset:
        from vitc.core.errors import VitcInputError
        raise VitcInputError("usage: vitc hw show PRESET|FILE")
    print(describe(load_hw(args.preset)))
    return 0


def add_sim_arguments(p, *, for_compile: bool = False) -> None:
    """Simulation flags, shared by ``vitc simulate`` and ``vitc compile --emit-sim``."""
    if for_compile:
        p.add_argument("--emit-sim", action="store_true",
                       help="also write <model>.sim.onnx: crossbar MVMs as ai.vitc::XbarMatMul (non-ideal arithmetic)")
    p.add_argument("--adc-bits", help="ADC resolution(s): one value or a sweep such as 4,5,6,7,8 (0/ideal: ideal ADC); "
                                      "default: the preset's")
    p.add_argument("--sim-mode", choices=["bitserial", "tile"], default="bitserial",
                   help="bitserial: one conversion per input bit-plane and weight slice, as the preset says; "
                        "tile: fast approximation, one conversion per row group on the full product")
    p.add_argument("--variation", type=float, default=0.0, help="conductance variation sigma (default 0)")
    p.add_argument("--variation-model", choices=["lognormal", "gaussian"], default="lognormal")
    p.add_argument("--on-off-ratio", type=float, default=0.0, help="cell on/off conductance ratio (0: ideal)")
    p.add_argument("--adc-range", choices=["fixed", "calibrated"], default="fixed",
                   help="ADC full scale: fixed fraction of the worst-case current, or calibrated from data")
    p.add_argument("--adc-fullscale", type=float, default=1.0,
                   help="fixed: fraction of the worst-case current; calibrated: margin on the percentile")
    p.add_argument("--adc-percentile", type=float, default=100.0, help="calibrated ADC range: percentile of currents")
    p.add_argument("--input-scaling", choices=["dynamic", "static"], default="dynamic",
                   help="input quantisation scale: per input vector at run time, or calibrated per layer")
    p.add_argument("--offset-correction", choices=["column", "digital"], default="column",
                   help="offset-mapped weights: subtract an ADC-converted reference column, or digitally")
    for flag in ("weight-bits", "input-bits", "cell-bits", "dac-bits"):
        p.add_argument(f"--sim-{flag}", type=int, help=f"override the preset's {flag.replace('-', '_')}")
    if for_compile:
        p.add_argument("--sim-inputs", help="labelled data (.npz with 'labels') for the accuracy-vs-ADC-bits table "
                                            "of the original and the compiled model")
        p.add_argument("--sim-samples", type=int, help="use the first N samples of --sim-inputs")


def options_from_args(args) -> dict:
    """The simulation options of parsed CLI ``args`` (see :func:`add_sim_arguments`)."""
    g = lambda k: getattr(args, k, None)  # noqa: E731
    return {"adc_bits": g("adc_bits"), "mode": g("sim_mode"), "variation": g("variation"),
            "variation_model": g("variation_model"), "on_off_ratio": g("on_off_ratio"), "adc_range": g("adc_range"),
            "adc_fullscale": g("adc_fullscale"), "adc_percentile": g("adc_percentile"),
            "input_scaling": g("input_scaling"), "offset_correction": g("offset_correction"),
            "weight_bits": g("sim_weight_bits"), "input_bits": g("sim_input_bits"), "cell_bits": g("sim_cell_bits"),
            "dac_bits": g("sim_dac_bits"), "inputs": g("sim_inputs"), "samples": g("sim_samples")}


def cmd_simulate(args) -> int:
    """``vitc simulate MODEL.onnx [MORE.onnx ...]`` (see ``vitc simulate --help``)."""
    from vitc.core.io import load_model, write_outputs
    from vitc.simulation import config_from_options, simulate_files
    opts = options_from_args(args)
    if args.inputs:
        opts["inputs"] = args.inputs
    if args.samples:
        opts["samples"] = args.samples
    cfg, bits = config_from_options(args.hw, opts, args.seed)
    variants, stems = {}, {}
    for path in args.models:
        stem = Path(path).name.removesuffix(".onnx")
        label = stem.removesuffix(".vitc")
        while label in variants:
            label += "'"
        variants[label] = load_model(path).model
        stems[label] = stem
    out = args.output or f"{Path(args.models[0]).name.removesuffix('.onnx')}_sim"
    print(f"simulating {len(variants)} model(s) on {cfg.source}: {cfg.describe()}"
          + (f"; ADC bits {', '.join(str(b) or 'ideal' for b in bits)}" if len(bits) > 1 else ""))
    files, sweep = simulate_files(variants, stems, cfg, bits, opts, calib=args.calib,
                                  calib_samples=args.calib_samples or CALIB_SAMPLES)
    written = write_outputs(out, files)
    if sweep is not None:
        print(sweep.markdown(plot=None).strip())
    print(f"wrote {len(written)} files to {out}/")
    return 0


def add_simulate_parser(sub) -> None:
    """Register ``vitc simulate`` on the CLI's sub-parsers."""
    p = sub.add_parser("simulate", help="run models as IMC crossbars compute (ADC, DAC, cells, variation); "
                                        "accuracy vs ADC bits")
    p.add_argument("models", nargs="+", help="ONNX model(s): an original and/or compiled (.vitc.onnx) variants")
    p.add_argument("--hw", default="rram-128", help="hardware preset name or TOML file (default rram-128)")
    p.add_argument("--inputs", help="labelled data (.npz with 'labels') for the accuracy table")
    p.add_argument("--samples", type=int, help="use the first N samples of --inputs")
    p.add_argument("--calib", help="calibration data for --input-scaling static / --adc-range calibrated "
                                   "(default: synthetic)")
    p.add_argument("--calib-samples", type=int, help=f"calibration samples (default {CALIB_SAMPLES})")
    p.add_argument("--seed", type=int, default=0, help="variation seed")
    p.add_argument("-o", "--output", help="output folder (default <model>_sim)")
    add_sim_arguments(p)
    p.set_defaults(func=cmd_simulate)


def build_parser() -> argparse.ArgumentParser:
    from vitc.passes.registry import load_all
    parser = argparse.ArgumentParser(prog="vitc", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="rewrite attention, map onto hardware, report costs")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--target", default="xbar", choices=["xbar", "systolic", "hybrid", "none"])
    p.add_argument("--passes", default="none", help="comma-separated passes (e.g. taylor,reorder) or none")
    p.add_argument("--hw", default="rram-128", help="hardware preset name or TOML file")
    p.add_argument("--calib", help="calibration data: .npy/.npz or a folder of images")
    p.add_argument("--calib-samples", type=int, help="use the first N calibration samples")
    p.add_argument("--preprocess", default="imagenet", choices=["imagenet", "unit"],
                   help="preprocessing preset for an image-folder --calib")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, help="batch size to cost (default 1)")
    p.add_argument("--seq-len", type=int, help="sequence length to cost for dynamic models")
    p.add_argument("-o", "--output", help="output folder (default <model>_vitc)")
    _add_common_input_args(p)
    for cls in sorted(load_all().values(), key=lambda c: c.name):
        if hasattr(cls, "add_arguments"):
            cls.add_arguments(p.add_argument_group(f"{cls.name} pass"))
    add_sim_arguments(p.add_argument_group("non-ideal crossbar simulation (docs/nonideal.md)"), for_compile=True)
    p.set_defaults(func=_cmd_compile)
    add_simulate_parser(sub)

    p = sub.add_parser("validate", help="compare a candidate model with its reference in onnxruntime")
    p.add_argument("reference")
    p.add_argument("candidate")
    p.add_argument("--inputs", help=".npy/.npz (or image folder) with inputs; default synthetic")
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
    p.add_argument("target", help="ONNX model or a vitc output folder")
    p.add_argument("--json", action="store_true")
    _add_common_input_args(p)
    p.set_defaults(func=_cmd_inspect)

    p = sub.add_parser("zoo", help="write a built-in ViT (seeded random weights) as ONNX, no torch needed")
    p.add_argument("name", choices=["deit-tiny", "deit-small", "deit-base"])
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--patch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--depth", type=int, help="number of blocks (default 12)")
    p.set_defaults(func=_cmd_zoo)

    p = sub.add_parser("hw", help="hardware presets")
    p.add_argument("action", choices=["list", "show"])
    p.add_argument("preset", nargs="?")
    p.set_defaults(func=_cmd_hw)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return args.func(args)
    except SystemExit as exc:  # argparse usage errors exit 2 with its own one-line message
        return int(exc.code or 0)
    except VitcCheckFailed as exc:
        print(f"vitc: {exc}", file=sys.stderr)
        return 1
    except VitcError as exc:
        if debug:
            raise
        print(f"vitc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - never a traceback without --debug
        if debug:
            raise
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"vitc: error: internal error ({type(exc).__name__}: {msg}); rerun with --debug for a traceback",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
