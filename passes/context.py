"""What a pass may ask for while it runs: its options, a seed, calibration activations, and costs.

* ``ctx.opts(name)`` — the pass's validated options dataclass (:mod:`vitc.passes.options`);
* activations — intermediate tensors of the *original* (normalised) model on the calibration
  inputs, computed once per tensor name and cached. Without ``--calib`` the context generates
  seeded synthetic inputs and says so (``calibration_source``), so reports can state that
  fidelity figures come from synthetic data;
* the samples a pass sees — when the compile trains (``recover``), its held-out samples are held
  out of every pass: fits, measures and searches see ``scope="fit"`` (the default: the samples
  ``recover`` trains on), and only ``recover`` asks for ``scope="all"``, so its held-out figures
  are of samples no closed-form fit has seen;
* costs — ``ctx.cost(model) -> CostBreakdown`` on the compile's target and hardware (None with
  ``--target none``), ``ctx.cost_for(target, hw)`` for another one; the driver wires both to a
  backend, so passes never import one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from vitc.core.ir import CompiledModel
from vitc.core.progress import SILENT
from vitc.passes.options import PassOptions
from vitc.runtime.data import Dataset, load_dataset
from vitc.runtime.batching import run_batched
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.output_kinds import mask_input
from vitc.runtime.session import open_session

SYNTHETIC_SAMPLES = 32


def holdout_split(n: int, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, held-out rows) of ``n`` samples: a seeded ``share`` held out, both sorted."""
    order = np.random.RandomState(seed).permutation(n)
    k = max(1, int(round(n * share)))
    return np.sort(order[k:]), np.sort(order[:k])


class PassContext:
    def __init__(self, options: dict[str, PassOptions] | None = None, calib: str | Path | Dataset | None = None,
                 seed: int = 0, calib_samples: int | None = None, preset: str = "imagenet", *,
                 target: str = "none", hw=None, cost: Callable | None = None, cost_for: Callable | None = None,
                 progress=None):
        self.options = dict(options or {})
        self.seed = seed
        self._calib_arg, self._calib_samples, self._preset = calib, calib_samples, preset
        self._data: Dataset | None = None
        self._cache: dict[str, np.ndarray] = {}
        self.target, self.hw = target, hw
        self.cost, self.cost_for = cost, cost_for
        self.progress = progress if progress is not None else SILENT

    def opts(self, pass_name: str) -> PassOptions | None:
        """The validated options of ``pass_name`` (None if that pass is not part of this compile)."""
        return self.options.get(pass_name)

    def _dataset(self, cm: CompiledModel) -> Dataset:
        """Every calibration sample (loaded once)."""
        if self._data is None:
            if isinstance(self._calib_arg, Dataset):
                data = self._calib_arg
            elif self._calib_arg is not None:
                data = load_dataset(self._calib_arg, cm.original, self._preset)
            else:
                feeds = synthetic_inputs(cm.original, batch=self._calib_samples or SYNTHETIC_SAMPLES,
                                         seed=self.seed, shapes=cm.input_shapes or None)
                data = Dataset(feeds, None, "synthetic")
            self._data = data.take(self._calib_samples)
        return self._data

    def held_out(self, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(train rows, held-out rows) of ``n`` calibration samples when the compile trains
        (``recover``'s ``--recover-holdout`` share, seeded), else None."""
        o = self.opts("recover")
        return None if o is None or n < 4 else holdout_split(n, o.holdout, self.seed)

    def calibration(self, cm: CompiledModel, scope: str = "fit") -> Dataset:
        """The calibration samples of ``scope``: "fit" — what passes fit and measure on (all of
        them unless the compile trains, then all but ``recover``'s held-out ones); "all"."""
        data = self._dataset(cm)
        split = self.held_out(data.size) if scope == "fit" else None
        return data if split is None else data.rows(split[0])

    @property
    def calibration_source(self) -> str:
        return "synthetic" if self._data is None or self._data.source == "synthetic" else self._data.source

    def activations(self, cm: CompiledModel, names: list[str], scope: str = "fit") -> dict[str, np.ndarray]:
        """Values of original-model tensors ``names`` over the calibration samples of ``scope``
        (computed over every sample once, then cut to the scope)."""
        missing = [n for n in dict.fromkeys(names) if n not in self._cache]
        if missing:
            data = self._dataset(cm)
            sess = open_session(cm.original, outputs=missing, held=cm.original_held)
            for name, value in zip(missing, run_batched(sess, data.feeds, missing)):
                self._cache[name] = value
        split = self.held_out(self._dataset(cm).size) if scope == "fit" else None
        return {n: self._cache[n] if split is None else self._cache[n][split[0]] for n in names}

    def token_mask(self, cm: CompiledModel, tokens: int) -> np.ndarray | None:
        """[samples, tokens] bool: the real (not padding) tokens of the fit samples, from the
        model's attention-mask input, or None (no such input, or another token count). Fits and
        measures that average over tokens use it to ignore padding, as pooling does."""
        feeds = self.calibration(cm).feeds
        name = mask_input(feeds)
        if name is None or feeds[name].shape[1] != tokens:
            return None
        return feeds[name].astype(bool)

    def model_outputs(self, cm: CompiledModel, scope: str = "fit") -> list[np.ndarray]:
        """The original model's outputs on the calibration samples of ``scope``."""
        names = [o.name for o in cm.original.graph.output]
        acts = self.activations(cm, names, scope)
        return [acts[n] for n in names]
