"""More operators for the torch mirror (:mod:`vitc.passes.torch_mirror`): what real exports
carry beyond the core transformer set.

* resampling and padding — ``Resize`` (position-embedding interpolation of dynamic-size
  exports, detector necks), ``Pad``;
* convolutional stems and hybrids — ``BatchNormalization`` (inference form),
  ``InstanceNormalization``, ``GlobalAveragePool``, ``HardSwish``, ``HardSigmoid``,
  ``LeakyRelu``, ``Softplus``;
* element-wise odds and ends — ``Sin``, ``Cos`` (sinusoidal position codes), ``IsNaN``, ``IsInf``
  (the dynamo exporter's guards around scaled-dot-product attention), ``Sign``, ``Round``, ``Mod``,
  ``ArgMax``;
* ONNX ``Attention`` (opset 23): 3-D or 4-D Q/K/V, grouped key/value heads, boolean or additive
  mask, causal flag, past keys/values, soft cap;
* ``com.microsoft`` fused operators of onnxruntime-optimised exports: ``SkipLayerNormalization``,
  ``EmbedLayerNormalization``, ``BiasGelu``, ``FastGelu`` and the packed-QKV ``Attention``.

Each follows the operator's specification (onnx.ai / onnxruntime's ContribOperators.md); a
mode outside what is implemented is a clear error naming it. Every function takes the node's
attributes ``a`` then its inputs, as in the core table.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vitc.core.errors import VitcInputError


def _text(v, default: str) -> str:
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else v


def ints(t) -> list[int]:
    """A shape/axes tensor or list as Python ints."""
    return [int(v) for v in (t.tolist() if isinstance(t, torch.Tensor) else t)]


def _pad(a, x, pads=None, value=None, axes=None):
    """ONNX ``Pad`` (opset ≥ 11): pads [begins…, ends…] over ``axes`` (all by default); negative
    pads crop; modes constant, reflect, edge, wrap (the last three as an index gather per axis)."""
    pads = ints(pads) if pads is not None else list(a.get("pads", []))
    axes = [v % x.dim() for v in ints(axes)] if axes is not None else list(range(x.dim()))
    k = len(axes)
    mode = _text(a.get("mode"), "constant")
    if mode == "constant":
        spec = [0] * (2 * x.dim())
        for ax, lo, hi in zip(axes, pads[:k], pads[k:]):
            spec[2 * (x.dim() - 1 - ax)], spec[2 * (x.dim() - 1 - ax) + 1] = lo, hi
        fill = float(value.reshape(-1)[0]) if value is not None and value.numel() else 0.0
        return F.pad(x, spec, value=fill)
    if mode not in ("reflect", "edge", "wrap"):
        raise VitcInputError(f"torch mirror: Pad mode {mode!r} is not supported")
    for ax, lo, hi in zip(axes, pads[:k], pads[k:]):
        if lo or hi:
            n = x.shape[ax]
            idx = torch.arange(-lo, n + hi)
            if mode == "edge":
                idx = idx.clamp(0, n - 1)
            elif mode == "wrap":
                idx = idx % n
            else:                                  # reflect about the first and last element
                period = max(2 * (n - 1), 1)
                idx = idx % period
                idx = torch.where(idx >= n, period - idx, idx)
            x = x.index_select(ax, idx)
    return x


def _resize(a, x, roi=None, scales=None, sizes=None):
    """ONNX ``Resize`` (opset ≥ 11) of the last one to three axes: nearest (asymmetric/floor,
    half-pixel), linear and cubic (half_pixel, pytorch_half_pixel or align_corners): the
    combinations torch's ``interpolate`` computes — cubic coefficient −0.75 without antialiasing,
    and what the exporter writes for torch's antialiased resampling (``exclude_outside`` 1; cubic
    coefficient −0.5)."""
    if a.get("axes") is not None or _text(a.get("keep_aspect_ratio_policy"), "stretch") != "stretch":
        raise VitcInputError("torch mirror: Resize with axes or a keep-aspect-ratio policy is not supported")
    mode = _text(a.get("mode"), "nearest")
    coord = _text(a.get("coordinate_transformation_mode"), "half_pixel")
    spatial = x.dim() - 2
    if sizes is not None and sizes.numel():
        out = ints(sizes)
        if out[:2] != list(x.shape[:2]):
            raise VitcInputError("torch mirror: Resize of the batch or channel axis is not supported")
        kw = {"size": out[2:]}
    elif scales is not None and scales.numel():
        sc = [float(v) for v in scales.tolist()]
        if sc[:2] != [1.0, 1.0]:
            raise VitcInputError("torch mirror: Resize of the batch or channel axis is not supported")
        kw = {"scale_factor": sc[2:], "recompute_scale_factor": False}
    else:
        raise VitcInputError("torch mirror: Resize needs scales or sizes")
    if not 1 <= spatial <= 3:
        raise VitcInputError(f"torch mirror: Resize of a rank-{x.dim()} tensor is not supported")
    antialias = bool(a.get("antialias", 0))
    if mode == "nearest":
        nearest = _text(a.get("nearest_mode"), "round_prefer_floor")
        if not antialias and coord == "asymmetric" and nearest == "floor":
            return F.interpolate(x, mode="nearest", **kw)
        if not antialias and coord in ("half_pixel", "pytorch_half_pixel") and nearest in ("round_prefer_floor", "floor"):
            return F.interpolate(x, mode="nearest-exact", **kw)
        raise VitcInputError(f"torch mirror: Resize nearest with {coord}/{nearest}"
                             f"{' and antialias' if antialias else ''} is not supported")
    if mode in ("linear", "cubic"):
        # torch's sampling: cubic coefficient −0.75, or −0.5 with edge weights renormalised when antialiased
        coeff, exclude = float(a.get("cubic_coeff_a", -0.75)), int(a.get("exclude_outside", 0))
        if (mode == "cubic" and (coeff, exclude) != ((-0.5, 1) if antialias else (-0.75, 0))) \
                or (mode == "linear" and antialias and not exclude):
            raise VitcInputError(f"torch mirror: Resize {mode} with cubic_coeff_a {coeff:g}, exclude_outside {exclude}, "
                                 f"antialias {int(antialias)} is not supported")
        if coord not in ("half_pixel", "pytorch_half_pixel", "align_corners"):
            raise VitcInputError(f"torch mirror: Resize {mode} with {coord} coordinates is not supported")
        name = {("linear", 1): "linear", ("linear", 2): "bilinear", ("linear", 3): "trilinear",
                ("cubic", 2): "bicubic"}.get((mode, spatial))
        if name is None:
            raise VitcInputError(f"torch mirror: Resize {mode} over {spatial} axes is not supported")
        return F.interpolate(x, mode=name, align_corners=coord == "align_corners", antialias=antialias, **kw)
    raise VitcInputError(f"torch mirror: Resize mode {mode!r} is not supported")


def _batchnorm(a, x, scale, bias, mean, var):
    """Inference-mode ``BatchNormalization`` over axis 1."""
    if a.get("training_mode", 0):
        raise VitcInputError("torch mirror: BatchNormalization in training mode is not supported")
    shape = (1, -1) + (1,) * (x.dim() - 2)
    inv = torch.rsqrt(var + a.get("epsilon", 1e-5)).reshape(shape)
    return (x - mean.reshape(shape)) * inv * scale.reshape(shape) + bias.reshape(shape)


def _argmax(a, x):
    ax = a.get("axis", 0) % x.dim()
    keep = bool(a.get("keepdims", 1))
    if a.get("select_last_index", 0):
        return (x.shape[ax] - 1 - torch.argmax(x.flip(ax), dim=ax, keepdim=keep)).long()
    return torch.argmax(x, dim=ax, keepdim=keep)


def _isinf(a, x):
    pos, neg = a.get("detect_positive", 1), a.get("detect_negative", 1)
    return (torch.isposinf(x) & bool(pos)) | (torch.isneginf(x) & bool(neg))


def _sdpa(q, k, v, mask, scale: float, causal: bool, softcap: float = 0.0, filter_value: float | None = None):
    """softmax(q·kᵀ·scale (+ mask) [soft-capped, causal]) · v for [B, H, S, D] q and [B, H, L, D] k, v;
    a boolean mask marks the keys to attend; a float mask is added (``filter_value``: where an
    integer 0/1 mask is 0, that value is added instead)."""
    scores = (q @ k.transpose(-1, -2)) * scale
    if softcap:
        scores = softcap * torch.tanh(scores / softcap)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        elif filter_value is not None:
            scores = scores + (1 - mask.to(scores.dtype)) * filter_value
        else:
            scores = scores + mask.to(scores.dtype)
    if causal:
        s, n = scores.shape[-2:]
        allowed = torch.ones(s, n, dtype=torch.bool).tril(n - s)
        scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, -1) @ v, scores


def _attention(a, q, k, v, mask=None, past_k=None, past_v=None):
    """ONNX ``Attention`` (opset 23): outputs Y, present_key, present_value, qk_matmul_output."""
    if a.get("qk_matmul_output_mode", 0):
        raise VitcInputError("torch mirror: Attention qk_matmul_output_mode is not supported")
    three = q.dim() == 3
    if three:
        hq, hkv = int(a.get("q_num_heads", 0)), int(a.get("kv_num_heads", 0))
        if not hq or not hkv:
            raise VitcInputError("torch mirror: 3-D Attention needs q_num_heads and kv_num_heads")
        b, s, _ = q.shape
        q = q.reshape(b, s, hq, -1).transpose(1, 2)
        k = k.reshape(b, k.shape[1], hkv, -1).transpose(1, 2)
        v = v.reshape(b, v.shape[1], hkv, -1).transpose(1, 2)
    if past_k is not None:
        k, v = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
    present_k, present_v = k, v
    if k.shape[1] != q.shape[1]:            # grouped key/value heads
        k = k.repeat_interleave(q.shape[1] // k.shape[1], 1)
        v = v.repeat_interleave(q.shape[1] // v.shape[1], 1)
    scale = a.get("scale") or 1.0 / math.sqrt(q.shape[-1])
    y, scores = _sdpa(q, k, v, mask, scale, bool(a.get("is_causal", 0)), float(a.get("softcap", 0.0)))
    if three:
        y = y.transpose(1, 2).reshape(y.shape[0], y.shape[2], -1)
    return y, present_k, present_v, scores


def _layernorm_last(x, gamma, beta, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    inv = torch.rsqrt(var + eps)
    y = (x - mean) * inv * gamma
    return (y if beta is None else y + beta), mean, inv


def _skip_layernorm(a, x, skip, gamma, beta=None, bias=None):
    """com.microsoft ``SkipLayerNormalization``: LN(x + skip + bias); outputs the normalised sum,
    mean, inverse standard deviation and the sum itself."""
    s = x + skip if bias is None else x + skip + bias
    y, mean, inv = _layernorm_last(s, gamma, beta, a.get("epsilon", 1e-12))
    return y, mean, inv, s


def _embed_layernorm(a, ids, segment_ids, word, position, segment, gamma, beta, mask=None, position_ids=None):
    """com.microsoft ``EmbedLayerNormalization``: LN(word[ids] + position[pos] + segment[seg]);
    outputs the normalised embedding, the mask index (real tokens per sample, int32) and the sum."""
    b, s = ids.shape
    pos = position_ids.long() if position_ids is not None else torch.arange(s).expand(b, s)
    e = word[ids.long()] + position[pos.expand(b, s) if pos.dim() == 2 else pos]
    if segment is not None and segment_ids is not None:
        e = e + segment[segment_ids.long()]
    y, _, _ = _layernorm_last(e, gamma, beta, a.get("epsilon", 1e-12))
    mask_index = (mask.sum(1) if mask is not None else torch.full((b,), s)).to(torch.int32)
    return y, mask_index, e


def _ms_attention(a, x, weights, bias=None, mask_index=None, past=None, attention_bias=None):
    """com.microsoft ``Attention`` (packed Q/K/V projection): a 2-D 0/1 key mask [B, L] or a
    1-D index of real lengths [B] (right padding); masked keys get ``mask_filter_value``."""
    if past is not None or attention_bias is not None or a.get("unidirectional", 0) or a.get("qkv_hidden_sizes"):
        raise VitcInputError("torch mirror: com.microsoft Attention with past, attention_bias, unidirectional or "
                             "qkv_hidden_sizes is not supported")
    h = int(a["num_heads"])
    qkv = x @ weights + (bias if bias is not None else 0)
    b, s, three = qkv.shape
    q, k, v = (t.reshape(b, s, h, -1).transpose(1, 2) for t in qkv.split(three // 3, -1))
    mask = None
    if mask_index is not None:
        if mask_index.dim() == 2:
            mask = mask_index[:, None, None, :]
        elif mask_index.dim() == 1 and mask_index.shape[0] == b:
            mask = (torch.arange(s)[None, :] < mask_index[:, None].long()).int()[:, None, None, :]
        else:
            raise VitcInputError("torch mirror: com.microsoft Attention mask_index of this shape is not supported")
    filt = float(a.get("mask_filter_value", -10000.0))
    y, _ = _sdpa(q, k, v, mask, a.get("scale") or 1.0 / math.sqrt(q.shape[-1]), False, filter_value=filt)
    return y.transpose(1, 2).reshape(b, s, -1)


def _fast_gelu(a, x, bias=None):
    return F.gelu(x if bias is None else x + bias, approximate="tanh")


EXTRA_OPS = {
    "Pad": _pad, "Resize": _resize,
    "BatchNormalization": _batchnorm,
    "InstanceNormalization": lambda a, x, scale, bias: F.instance_norm(x, weight=scale, bias=bias,
                                                                       eps=a.get("epsilon", 1e-5)),
    "GlobalAveragePool": lambda a, x: x.mean(dim=list(range(2, x.dim())), keepdim=True),
    "HardSwish": lambda a, x: x * torch.clamp(x / 6 + 0.5, 0, 1),
    "HardSigmoid": lambda a, x: torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1),
    "LeakyRelu": lambda a, x: F.leaky_relu(x, a.get("alpha", 0.01)),
    "Softplus": lambda a, x: F.softplus(x),
    "Sin": lambda a, x: torch.sin(x), "Cos": lambda a, x: torch.cos(x),
    "IsNaN": lambda a, x: torch.isnan(x), "IsInf": _isinf,
    "Sign": lambda a, x: torch.sign(x), "Round": lambda a, x: torch.round(x),
    "Mod": lambda a, x, y: torch.fmod(x, y) if a.get("fmod", 0) else torch.remainder(x, y),
    "ArgMax": _argmax,
    "Attention": _attention,
}

MICROSOFT_OPS = {
    "SkipLayerNormalization": _skip_layernorm, "EmbedLayerNormalization": _embed_layernorm,
    "BiasGelu": lambda a, x, bias: F.gelu(x + bias), "FastGelu": _fast_gelu,
    "Attention": _ms_attention,
}
