"""Model input specs and synthetic inputs for graphs with static or symbolic shapes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from vitc.compiler.errors import VitcInputError


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple  # ints, or str/None for symbolic dims


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    """Graph inputs that are not initializers."""
    inits = {t.name for t in model.graph.initializer}
    specs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        specs.append(InputSpec(vi.name, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)), dims))
    return specs


def _vocab_size(model: onnx.ModelProto, name: str) -> int | None:
    """Rows of the embedding table gathered by input ``name`` (token ids), if any."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    sizes = [shapes[n.input[0]][0] for n in model.graph.node
             if n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == name and n.input[0] in shapes]
    return min(sizes) if sizes else None


DEFAULT_IMAGE = (3, 224, 224)  # C, H, W used for images with symbolic sizes (override: --input-shape)


def concrete_shape(spec: InputSpec, batch: int, seq_len: int | None) -> tuple[int, ...]:
    """Fill symbolic dims: axis 0 with ``batch``; C/H/W of a 4-D float image from
    :data:`DEFAULT_IMAGE`; any other symbolic axis (sequence) with ``seq_len``."""
    shape = []
    for i, d in enumerate(spec.shape):
        if isinstance(d, int) and d > 0:
            shape.append(d)
        elif i == 0:
            shape.append(batch)
        elif len(spec.shape) == 4 and spec.dtype.kind == "f":
            shape.append(DEFAULT_IMAGE[i - 1])
        elif seq_len:
            shape.append(seq_len)
        else:
            raise VitcInputError(
                f"input '{spec.name}' has a symbolic dim {d!r} at axis {i}; give the sequence length (--seq-len, option seq_len) "
                f"or its shape (--input-shape {spec.name}:"
                f"{'x'.join(str(x) if isinstance(x, int) and x > 0 else '?' for x in spec.shape)})")
    return tuple(shape)


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


def parse_shape_overrides(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """``["input:1x3x224x224"]`` → {"input": (1, 3, 224, 224)}."""
    out = {}
    for item in items or []:
        name, _, dims = item.rpartition(":")
        try:
            out[name] = tuple(int(x) for x in dims.lower().split("x"))
        except ValueError:
            raise VitcInputError(f"bad --input-shape '{item}' (expected NAME:1x3x224x224)") from None
        if not name or any(x <= 0 for x in out[name]):
            raise VitcInputError(f"bad --input-shape '{item}' (expected NAME:1x3x224x224)")
    return out
