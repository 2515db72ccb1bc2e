"""Numeric confirmation of recognised attention sites.

One onnxruntime run of the (normalised) original model exposes, per site, the projection
outputs, the tensor entering QKᵀ, the mask, run-time scale scalars and the merged output.
For each site we then test hypotheses — which columns of a packed projection are q, k and v
(part-major [3, H, d] or head-major [H, 3, d], any part order) — by recomputing attention in
numpy on a few query rows and comparing with the model's own output. Only a hypothesis that
reproduces the output (relative error below ``TOLERANCE``) is accepted, so a site is never
rewritten on a structural guess.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from vitc.core.graph import const_value
from vitc.compiler.recognize import AttentionSite, NotRecognised

TOLERANCE = 1e-3
PROBE_ROWS = 24


@dataclass
class CoreSpec:
    """What a site computes: attention over ``num_heads`` heads of size ``head_dim``."""
    num_heads: int
    head_dim: int
    scale: float
    q_cols: np.ndarray   # column indices into q_src's last axis, length C, head-major order
    k_cols: np.ndarray
    v_cols: np.ndarray
    tokens: int          # tokens seen in the probe run
    rel_error: float     # of the accepted hypothesis
    mask_is_bool: bool = False


def probe_names(site: AttentionSite) -> list[str]:
    names = [site.q_src.name, site.k_src.name, site.v_src.name, site.out.name]
    if site.q_in is not None:
        names.append(site.q_in.name)
    if site.mask is not None:
        names.append(site.mask.name)
    names += [f.tensor.name for f in site.factors if not f.constant]
    return list(dict.fromkeys(names))


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def attention_rows(q, k, v, mask, heads: int, scale: float, rows: np.ndarray) -> np.ndarray:
    """softmax(q kᵀ·scale + mask) v for query ``rows`` only; q, k, v [B, N, C] → [B, len(rows), C]."""
    b, n, c = k.shape
    d = c // heads
    qh = q[:, rows].reshape(b, len(rows), heads, d).transpose(0, 2, 1, 3).astype(np.float64)
    kh = k.reshape(b, n, heads, d).transpose(0, 2, 3, 1).astype(np.float64)
    vh = v.reshape(b, n, heads, d).transpose(0, 2, 1, 3).astype(np.float64)
    s = (qh @ kh) * scale
    if mask is not None:
        m = mask.astype(np.float64)
        if m.ndim >= 2 and m.shape[-2] == n and n > 1:
            m = m[..., rows, :]
        s = s + m
    return (_softmax(s) @ vh).transpose(0, 2, 1, 3).reshape(b, len(rows), c)


def _column_hypotheses(width: int, packed: bool, heads: int):
    """Yield (label, q_cols, k_cols, v_cols) candidates for the source width."""
    if not packed:
        cols = np.arange(width)
        yield "separate", cols, cols, cols
        return
    c = width // 3
    d = c // heads
    part_major = [np.arange(p * c, (p + 1) * c) for p in range(3)]
    head_major = [np.concatenate([np.arange(h * 3 * d + p * d, h * 3 * d + (p + 1) * d) for h in range(heads)])
                  for p in range(3)]
    for label, parts in (("part-major", part_major), ("head-major", head_major)):
        for order in itertools.permutations(range(3)):
            yield f"{label}{order}", parts[order[0]], parts[order[1]], parts[order[2]]


def resolve(site: AttentionSite, values: dict[str, np.ndarray]) -> CoreSpec:
    """Find the interpretation of ``site`` that reproduces the probed output."""
    q_src, k_src, v_src = (values[t.name] for t in (site.q_src, site.k_src, site.v_src))
    out = values[site.out.name]
    if q_src.ndim != 3 or out.ndim != 3:
        raise NotRecognised(f"projection outputs have rank {q_src.ndim}, expected [B, N, C]")
    width = q_src.shape[-1]
    c = width // 3 if site.packed else width
    if out.shape[-1] != c:
        raise NotRecognised(f"attention output width {out.shape[-1]} ≠ projection width {c}")
    if site.num_heads:
        heads = int(site.num_heads)
    else:
        d = values[site.q_in.name].shape[-1]
        if d <= 0 or c % d:
            raise NotRecognised(f"head dim {d} does not divide width {c}")
        heads = c // d
    d = c // heads
    scale = float(site.fixed_scale) if site.fixed_scale else (1.0 if site.kind == "softmax" else d ** -0.5)
    for f in site.factors:
        v = const_value(f.tensor) if f.constant else values[f.tensor.name]
        scale *= float(np.asarray(v).reshape(-1)[0]) ** f.power
    mask = values.get(site.mask.name) if site.mask is not None else None
    mask_is_bool = mask is not None and mask.dtype == bool
    if mask_is_bool:
        mask = np.where(mask, 0.0, -1e30)
    n = out.shape[1]
    rows = np.unique(np.linspace(0, n - 1, min(n, PROBE_ROWS)).astype(np.int64))
    ref = out[:, rows].astype(np.float64)
    denom = max(float(np.abs(ref).max()), 1e-12)
    best = np.inf
    for _label, qc, kc, vc in _column_hypotheses(width, site.packed, heads):
        got = attention_rows(q_src[..., qc], k_src[..., kc], v_src[..., vc], mask, heads, scale, rows)
        err = float(np.abs(got - ref).max()) / denom
        best = min(best, err)
        if err < TOLERANCE:
            return CoreSpec(heads, d, scale, qc, kc, vc, n, err, mask_is_bool)
    raise NotRecognised(f"numerical check failed: no q/k/v interpretation reproduces the output "
                        f"(best relative error {best:.2e})")
