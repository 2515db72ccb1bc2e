"""Non-ideal simulation as the driver runs it: options → :class:`SimConfig`, simulated models and
the accuracy-vs-ADC-bits files for OUTDIR (``vitc simulate``, ``vitc compile --emit-sim``)."""
from __future__ import annotations

import json
from typing import Any

import onnx

from vitc.core.errors import VitcInputError
from vitc.core.hardware import load_hw
from vitc.core.io import model_bytes
from vitc.runtime.data import Dataset, load_dataset
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.nonideal.arith import SimConfig
from vitc.runtime.nonideal.simulate import CALIB_SAMPLES, sim_config_of, simulate_model
from vitc.report import section_markdown, section_page
from vitc.runtime.nonideal.sweep import SweepResult, adc_sweep, parse_bits

SYNTHETIC_SAMPLES = 32     # samples of the agreement table when no --inputs are given


def config_from_options(hw, opts: dict, seed: int = 0) -> tuple[SimConfig, list[int]]:
    """(base SimConfig, list of ADC bits to simulate) from :func:`options_from_args` output."""
    keys = ("mode", "variation", "variation_model", "on_off_ratio", "adc_range", "adc_fullscale", "adc_percentile",
            "input_scaling", "offset_correction", "weight_bits", "input_bits", "cell_bits", "dac_bits")
    spec = load_hw(hw) if not hasattr(hw, "section") else hw
    if spec.kind != "xbar":
        raise VitcInputError(f"non-ideal simulation needs a crossbar preset (--hw); '{spec.name}' is a {spec.kind} "
                             "description")
    cfg = SimConfig.from_hw(spec, seed=seed, **{k: opts.get(k) for k in keys})
    bits = parse_bits(opts.get("adc_bits")) or [cfg.adc_bits]
    return cfg, bits


def sweep_files(sweep: SweepResult, prefix: str = "nonideal") -> dict[str, bytes]:
    """``nonideal.json`` (data), ``nonideal.md`` (tables) and ``nonideal.html`` (tables and the curve)."""
    sec = sweep.section()
    return {f"{prefix}.json": (json.dumps(sweep.to_dict(), indent=1, sort_keys=True) + "\n").encode(),
            f"{prefix}.md": section_markdown(sec, level=1).encode(),
            f"{prefix}.html": section_page(sec, f"Non-ideal simulation on {sweep.config.source or 'custom'}").encode()}


def _sim_name(stem: str, bits: list[int], b: int) -> str:
    return f"{stem}.sim.onnx" if len(bits) == 1 else f"{stem}.sim-adc{b or 'ideal'}.onnx"


def simulate_files(variants: dict[str, onnx.ModelProto], stems: dict[str, str], cfg: SimConfig, bits: list[int],
                   opts: dict, *, calib: Any = None, calib_samples: int = CALIB_SAMPLES, write_models: bool = True,
                   log=print) -> tuple[dict[str, bytes], SweepResult | None]:
    """Files for OUTDIR: the agreement/cosine (and, with labels, accuracy) tables against each variant's
    float model over the ADC settings (``nonideal.{json,md}``, with labels ``nonideal_adc.png``), on
    ``opts['inputs']`` or, without, on synthetic inputs (``opts['table']`` false: no table); with
    ``write_models`` the simulated models too (one per variant and ADC setting)."""
    files: dict[str, bytes] = {}
    sweep = None
    first = next(iter(variants.values()))
    if opts.get("inputs"):
        data = load_dataset(opts["inputs"], first).take(opts.get("samples"))
    elif opts.get("table", True):
        data = Dataset(synthetic_inputs(first, batch=opts.get("samples") or SYNTHETIC_SAMPLES, seed=0), None,
                       "synthetic")
    else:
        data = None
    if data is not None:

        def progress(v, b, m):
            acc = "" if m.cand_accuracy is None else f"accuracy {100 * m.cand_accuracy:.2f} %, "
            log(f"  {v} @ {'ideal ADC' if b == 0 else f'{b}-bit ADC'}: {acc}top-1 agreement "
                f"{100 * (m.top1_agreement or 0):.2f} %, cosine {m.cosine_mean:.4f}")
        sweep, kept = adc_sweep(variants, cfg, bits, data, calib=calib, calib_samples=calib_samples,
                                keep_models=write_models, progress=progress)
        files.update(sweep_files(sweep))
        if write_models:
            for v, per in kept.items():
                for b, res in per.items():
                    files.update(model_bytes(res.model, _sim_name(stems[v], bits, b), external=False))
    else:
        for v, model in variants.items():
            for b in bits:
                res = simulate_model(model, cfg.with_(adc_bits=b), calib=calib, calib_samples=calib_samples)
                if b == bits[0]:
                    log(res.summary())
                files.update(model_bytes(res.model, _sim_name(stems[v], bits, b), external=False))
    return files, sweep


def emit_sim_files(cm, result_model: onnx.ModelProto, hw, opts: dict, seed: int = 0, calib: Any = None,
                   calib_samples: int | None = None) -> tuple[dict[str, bytes], str, dict | None]:
    """For ``vitc compile --emit-sim``: the simulated rewritten graph(s) and, with labelled
    ``--sim-inputs``, the accuracy table for the original and the rewritten model, as files and as
    the report's ``nonideal`` section."""
    cfg, bits = config_from_options(hw, opts, seed)
    lines: list[str] = []
    variants = {"compiled": result_model}
    stems = {"compiled": cm.name}
    rewritten = bool(cm.records)
    if opts.get("inputs") and rewritten and cm.original is not None:
        variants = {"original": cm.original_model(), ",".join(r.name for r in cm.records): result_model}
        stems = {"original": f"{cm.name}.original", list(variants)[1]: cm.name}
    files, sweep = simulate_files(variants, stems, cfg, bits, {**opts, "table": bool(opts.get("inputs"))},
                                  calib=calib, calib_samples=calib_samples or CALIB_SAMPLES, log=lines.append)
    if sweep is not None:
        lines.append(section_markdown(sweep.section()).strip())
    return files, "\n".join(lines), (sweep.section() if sweep is not None else None)


def nonideal_note(candidate, result) -> str:
    """For ``vitc validate``: a line naming the non-ideal accuracy when ``candidate`` is a
    simulated model (empty string otherwise)."""
    try:
        model = candidate if isinstance(candidate, onnx.ModelProto) else onnx.load(str(candidate),
                                                                                    load_external_data=False)
    except Exception:  # noqa: BLE001 - the validation itself reports unreadable models
        return ""
    cfg = sim_config_of(model)
    if cfg is None:
        return ""
    accs = [o.cand_accuracy for o in result.outputs if o.cand_accuracy is not None]
    what = (f"non-ideal accuracy {100 * accs[0]:.2f} %" if accs else
            "non-ideal outputs (pass --labels for the non-ideal accuracy)")
    adc = f"{cfg['adc_bits']}-bit ADC" if cfg.get("adc_bits") else "ideal ADC"
    return (f"{what}: candidate simulates crossbars ({cfg.get('source') or 'custom'}, {cfg.get('mode')}, {adc}); "
            "differences from the reference are the modelled non-idealities")


__all__ = ["config_from_options", "simulate_files", "emit_sim_files", "nonideal_note", "CALIB_SAMPLES"]
