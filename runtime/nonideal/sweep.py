"""Accuracy against ADC resolution: simulate each model variant at several ADC bit widths
and measure top-1 accuracy (with labels), top-1 agreement and output cosine against the
variant's own float outputs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import onnx

from vitc.core.errors import VitcInputError
from vitc.runtime.batching import run_batched
from vitc.runtime.nonideal.arith import SimConfig
from vitc.runtime.nonideal.simulate import CALIB_SAMPLES, SimResult, simulate_model
from vitc.runtime.session import open_session
from vitc.runtime.validate import compare_outputs


def parse_bits(spec) -> list[int]:
    """``"4,5,6,7,8"`` → [4, 5, 6, 7, 8]; ``ideal`` / 0 = an ideal ADC; a range ``4-8`` works too."""
    if spec is None:
        return []
    if isinstance(spec, int):
        return [spec]
    if isinstance(spec, (list, tuple)):
        return [int(b) for b in spec]
    out = []
    for part in str(spec).split(","):
        part = part.strip().lower()
        if not part:
            raise VitcInputError(f"--adc-bits: empty entry in '{spec}' (use e.g. 4,5,6,7,8 or 4-8 or ideal)")
        try:
            if part == "ideal":
                out.append(0)
            elif "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise VitcInputError(f"--adc-bits: cannot read '{part}' (use e.g. 4,5,6,7,8 or 4-8 or ideal)") from None
    for b in out:
        if not 0 <= b <= 24:
            raise VitcInputError(f"--adc-bits: {b} is out of range (1..24, or 0/ideal)")
    return out


@dataclass
class SweepResult:
    """Top-1 accuracy per (variant, ADC bits) on labelled data."""

    config: SimConfig
    bits: list[int]
    variants: list[str]
    float_accuracy: dict[str, float | None]
    accuracy: dict[str, dict[int, float | None]]
    agreement: dict[str, dict[int, float]]
    cosine: dict[str, dict[int, float]]
    samples: int
    data: str
    calibration: str
    skipped: dict[str, list] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"schema": "vitc.nonideal/1", "config": self.config.to_dict(), "describe": self.config.describe(),
                "bits": self.bits, "variants": self.variants, "float_accuracy": self.float_accuracy,
                "accuracy": {v: {str(b): a for b, a in d.items()} for v, d in self.accuracy.items()},
                "top1_agreement": {v: {str(b): a for b, a in d.items()} for v, d in self.agreement.items()},
                "cosine_mean": {v: {str(b): a for b, a in d.items()} for v, d in self.cosine.items()},
                "samples": self.samples, "data": self.data, "calibration": self.calibration,
                "kept_ideal": self.skipped}

    @staticmethod
    def _pct(v) -> str:
        return "—" if v is None else f"{100 * v:.2f} %"

    def _label(self, b: int) -> str:
        return "ideal ADC" if b == 0 else str(b)

    def tables(self) -> list[dict]:
        """Accuracy and agreement per ADC setting and variant, as report tables."""
        out = []
        if any(a is not None for d in self.accuracy.values() for a in d.values()) or \
                any(v is not None for v in self.float_accuracy.values()):
            rows = [["float"] + [self._pct(self.float_accuracy[v]) for v in self.variants]]
            rows += [[self._label(b)] + [self._pct(self.accuracy[v][b]) for v in self.variants] for b in self.bits]
            out.append({"title": "Non-ideal accuracy vs ADC bits", "header": ["ADC bits"] + self.variants,
                        "rows": rows, "note": f"top-1 accuracy on {self.samples} labelled samples from {self.data}"})
        rows = [[self._label(b)] + [self._pct(self.agreement[v][b]) for v in self.variants] for b in self.bits]
        out.append({"title": "Non-ideal top-1 agreement with each variant's float model", "header": ["ADC bits"] + self.variants,
                    "rows": rows, "note": f"{self.samples} samples from {self.data}"})
        rows = [[self._label(b)] + [f"{self.cosine[v][b]:.4f}" for v in self.variants] for b in self.bits]
        out.append({"title": "Non-ideal output cosine with the float model", "header": ["ADC bits"] + self.variants,
                    "rows": rows, "note": f"mean over {self.samples} samples"})
        return out

    def section(self) -> dict:
        """The ``nonideal`` report section (data, tables, and the curve against ADC bits as a figure
        description), rendered by the driver like every other section."""
        c = self.config
        bits = [b for b in self.bits if b]
        labelled = any(a is not None for d in self.accuracy.values() for a in d.values())
        series = {v: [(self.accuracy if labelled else self.agreement)[v][b] for b in bits] for v in self.variants}
        figure = {"kind": "line", "title": f"{c.source or 'custom'}: {'accuracy' if labelled else 'top-1 agreement'} "
                                           "vs ADC resolution", "x": bits, "series": series, "xlabel": "ADC bits",
                  "ylabel": "top-1 accuracy" if labelled else "top-1 agreement with the float model", "percent": True}
        return {"key": "nonideal", "title": "Non-ideal crossbar simulation", **self.to_dict(),
                "tables": self.tables(), "figures": [figure] if bits else [],
                "summary": f"non-ideal     {c.source or 'custom'} simulated at ADC bits "
                           f"{', '.join(self._label(b) for b in self.bits)} on {self.samples} samples"}


def adc_sweep(variants: dict[str, onnx.ModelProto], cfg: SimConfig, bits: list[int], data, *,
              calib: Any = None, calib_samples: int = CALIB_SAMPLES, keep_models: bool = False,
              batch_size: int = 32, progress=None) -> tuple[SweepResult, dict[str, dict[int, SimResult]]]:
    """Simulate each variant at each ADC resolution and measure top-1 accuracy on ``data``.

    ``data``: a :class:`vitc.runtime.data.Dataset` (labels optional: without them only
    agreement with the float model is reported). Returns (sweep, {variant: {bits: SimResult}}
    when ``keep_models``).
    """
    labels = data.labels
    acc, agree, cos, facc, kept, skipped = {}, {}, {}, {}, {}, {}
    calib_src = "none"
    for vname, model in variants.items():
        ref_sess = open_session(model)
        names = [o.name for o in ref_sess.get_outputs()]
        feeds = {i.name: data.feeds[i.name] for i in ref_sess.get_inputs()}
        ref = run_batched(ref_sess, feeds, names[:1], batch_size)[0]
        m = compare_outputs(names[0], ref, ref, 1e-3, 1e-4, labels)
        facc[vname] = m.ref_accuracy
        acc[vname], agree[vname], cos[vname], kept[vname] = {}, {}, {}, {}
        for b in bits:
            res = simulate_model(model, cfg.with_(adc_bits=b), calib=calib, calib_samples=calib_samples)
            calib_src = res.calibration if res.calibration != "none" else calib_src
            skipped[vname] = [list(x) for x in res.skipped]
            out = run_batched(open_session(res.model), feeds, names[:1], batch_size)[0]
            mm = compare_outputs(names[0], ref, out, 1e-3, 1e-4, labels)
            acc[vname][b] = mm.cand_accuracy
            agree[vname][b] = mm.top1_agreement if mm.top1_agreement is not None else float("nan")
            cos[vname][b] = mm.cosine_mean
            if keep_models:
                kept[vname][b] = res
            if progress:
                progress(vname, b, mm)
    sweep = SweepResult(cfg, list(bits), list(variants), facc, acc, agree, cos, data.size, data.source, calib_src,
                        skipped)
    return sweep, kept


__all__ = ["adc_sweep", "SweepResult", "parse_bits"]
