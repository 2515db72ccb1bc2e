"""Learning-rate schedules for the training passes (``recover``, the ``bilstm`` distillation).

Both decay the rate along a cosine over a planned number of epochs. A wall-clock budget that
ends training before that plan would leave the rate high at the end and the last epochs no
better than the first, so with a budget the plan is cut, after the first epoch, to the epochs
that fit (:func:`budgeted_epochs`).
"""
from __future__ import annotations

import math


def budgeted_epochs(epochs: int, budget: float, first_done: float, setup: float = 0.0) -> int:
    """How many of ``epochs`` fit in ``budget`` seconds when the first epoch ended ``first_done``
    seconds after the start and ``setup`` seconds of those came before it (all in seconds)."""
    per_epoch = max(first_done - setup, 1e-9)
    return max(1, min(epochs, 1 + int((budget - first_done) // per_epoch)))


def cosine_factor(step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Learning-rate multiplier at optimizer step ``step``: linear warm-up over ``warmup_steps``,
    then a cosine from 1 to 0 at ``total_steps`` (and 0 after)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min((step - warmup_steps) / span, 1.0)))
