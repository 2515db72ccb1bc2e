"""Model input specs and synthetic inputs for graphs with static or symbolic shapes."""
from __future__ import annotations

import numpy as np
import onnx

from vitc.core.errors import VitcInputError
from vitc.runtime.shapes import concrete_shape, input_specs


def _vocab_size(model: onnx.ModelProto, name: str) -> int | None:
    """Rows of the embedding table gathered by input ``name`` (token ids), if any."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    sizes = [shapes[n.input[0]][0] for n in model.graph.node
             if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == name and n.input[0] in shapes]
    return min(sizes) if sizes else None


def synthetic_inputs(model: onnx.ModelProto, batch: int = 1, seq_len: int = 16, seed: int = 0,
                     shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs for every graph input.

    Float inputs ~ N(0, 1). Integer token ids are uniform below the embedding table size;
    inputs named like ``*mask*`` are ones with the last quarter of the first sample's
    positions masked (so masks matter); ``token_type_ids`` zeros; ``position_ids`` arange.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in input_specs(model):
        shape = (shapes or {}).get(spec.name) or concrete_shape(spec, batch, seq_len)
        name = spec.name.lower()
        if spec.dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif "mask" in name:
            m = np.ones(shape, spec.dtype)
            if m.ndim >= 2 and m.shape[-1] >= 4:
                m[0, ..., -(m.shape[-1] // 4):] = 0
            feeds[spec.name] = m
        elif "position" in name:
            feeds[spec.name] = np.broadcast_to(np.arange(shape[-1]), shape).astype(spec.dtype)
        elif "type" in name:
            feeds[spec.name] = np.zeros(shape, spec.dtype)
        elif spec.dtype.kind in "iu":
            high = _vocab_size(model, spec.name) or 2
            feeds[spec.name] = rng.integers(0, high, size=shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            feeds[spec.name] = np.ones(shape, bool)
        else:
            raise VitcInputError(f"input '{spec.name}' has unsupported dtype {spec.dtype}")
    return feeds
