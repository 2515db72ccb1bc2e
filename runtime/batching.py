"""Run a session over a dataset in batches (models with a static batch size included)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort


def static_batch(sess: ort.InferenceSession) -> int | None:
    """The fixed batch size of the first input, or None if dynamic."""
    dim = sess.get_inputs()[0].shape[0] if sess.get_inputs()[0].shape else None
    return dim if isinstance(dim, int) and dim > 0 else None


def run_batched(sess: ort.InferenceSession, feeds: dict[str, np.ndarray], outputs: list[str] | None = None,
                batch_size: int = 32) -> list[np.ndarray]:
    """Outputs of ``sess`` over all samples of ``feeds`` (concatenated along axis 0)."""
    n = len(next(iter(feeds.values())))
    step = static_batch(sess) or batch_size
    names = outputs or [o.name for o in sess.get_outputs()]
    chunks: list[list[np.ndarray]] = [[] for _ in names]
    for start in range(0, n, step):
        part = {k: v[start:start + step] for k, v in feeds.items()}
        for lst, value in zip(chunks, sess.run(names, part)):
            lst.append(value)
    return [np.concatenate(c, axis=0) if c[0].ndim else np.stack(c) for c in chunks]
