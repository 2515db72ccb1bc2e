"""Block and role guesses for *raw* models — ONNX files vitc did not compile.

A compiled model carries ``vitc.block`` / ``vitc.role`` metadata on every node the front end
recognised, and the backends use nothing else. A raw model (e.g. a CNN, or a transformer
costed without ``vitc compile``) has only its exporter's node names; this adapter reads the
common naming conventions of timm, transformers and the torch exporters so that its report
still groups ops by block and role. It is the only backend module that knows exporter names.
"""
from __future__ import annotations

import re

_BLOCK_RES = [re.compile(p) for p in (
    r"blocks?[._](\d+)", r"layers?[._](\d+)", r"encoder[._/]layer[._/](\d+)", r"/layer\.(\d+)/", r"h\.(\d+)",
)]

_ROLE_PATTERNS = [
    ("patch_embedding", ("patch_embed", "embeddings/patch", "patch_embeddings")),
    ("qkv_proj", ("qkv",)),
    ("q_proj", ("q_proj", "query", "/q/", ".q.", "to_q")),
    ("k_proj", ("k_proj", "/key", "/k/", ".k.", "to_k")),
    ("v_proj", ("v_proj", "/value", "/v/", ".v.", "to_v")),
    ("out_proj", ("attn.proj", "attn/proj", "attention/output/dense", "out_proj", "o_proj")),
    ("mlp_fc1", ("fc1", "intermediate/dense", "mlp.0", "mlp/0")),
    ("mlp_fc2", ("fc2", "/output/dense", "mlp.2", "mlp/2")),
    ("norm1", ("norm1", "layernorm_before", "attention/output/layernorm", "ln_1")),
    ("norm2", ("norm2", "layernorm_after", "/output/layernorm", "ln_2")),
    ("attention", ("attn", "attention", "self/")),
    ("head", ("head", "classifier", "pooler")),
    ("norm", ("norm", "layernorm")),
]


def block_from_name(name: str) -> int | None:
    """Encoder block index from an exporter node name (``/blocks.3/...``, ``/encoder/layer.3/...``)."""
    for rx in _BLOCK_RES:
        m = rx.search(name)
        if m:
            return int(m.group(1))
    return None


def role_from_name(name: str) -> str | None:
    """A role guess from an exporter node name; ``None`` when nothing matches."""
    low = name.lower()
    for role, pats in _ROLE_PATTERNS:
        if any(p in low for p in pats):
            return role
    return None


__all__ = ["block_from_name", "role_from_name"]
