"""Built-in ViT graphs, written directly as ONNX (no torch), in the form the legacy
TorchScript exporter writes for timm's ``VisionTransformer`` with fused (SDPA) attention:

    Conv patch embedding → Reshape/Transpose → Concat CLS → Add pos-embed →
    L × [ LayerNormalization → packed qkv MatMul+Add → Reshape [B,N,3,H,d] → Transpose
          [2,0,3,1,4] → Split → Squeeze ×3 → q·√s, kᵀ·√s with s computed at run time from
          Shape(q) → MatMul → Softmax → MatMul v → Transpose → Reshape → proj MatMul+Add →
          residual; LayerNormalization → fc1 → Erf-GELU → fc2 → residual ] →
    LayerNormalization → Gather CLS → head MatMul+Add.

Batch is dynamic (Reshape shapes computed from ``Shape`` at run time). Weights are seeded
random (N(0, 1/fan_in)), so outputs are meaningless but activations have realistic scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vitc.core.errors import VitcInputError

OPSET = 17


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    in_chans: int = 3


CONFIGS = {
    "deit-tiny": ViTConfig(192, 12, 3),
    "deit-small": ViTConfig(384, 12, 6),
    "deit-base": ViTConfig(768, 12, 12),
    "vit-large": ViTConfig(1024, 24, 16),         # ViT-L/16: 304 M parameters, a 1.2 GB file
}


class _Graph:
    """Accumulates nodes and initializers with exporter-style names."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.nodes, self.inits = rng, [], []

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32)
                                                  if arr.dtype.kind == "f" else arr, name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        w = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(fan_in ** -0.5)
        return self.init(name, w)

    def const(self, name: str, value) -> str:
        self.nodes.append(helper.make_node("Constant", [], [name], name=name,
                                           value=numpy_helper.from_array(np.asarray(value), name)))
        return name

    def node(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs):
        outs = [f"{name}_output_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs


def _linear(g: _Graph, x: str, prefix: str, k: int, n: int) -> str:
    w = g.weight(f"{prefix}.weight_T", (k, n), k)
    b = g.init(f"{prefix}.bias", g.rng.standard_normal(n, dtype=np.float32) * np.float32(0.02))
    return g.node("Add", [g.node("MatMul", [x, w], f"/{prefix}/MatMul"), b], f"/{prefix}/Add")


def _layernorm(g: _Graph, x: str, prefix: str, c: int) -> str:
    gamma = g.init(f"{prefix}.weight", 1 + 0.05 * g.rng.standard_normal(c, dtype=np.float32))
    beta = g.init(f"{prefix}.bias", 0.05 * g.rng.standard_normal(c, dtype=np.float32))
    return g.node("LayerNormalization", [x, gamma, beta], f"/{prefix}/LayerNormalization",
                  axis=-1, epsilon=1e-6)


def _gelu_erf(g: _Graph, x: str, prefix: str) -> str:
    d = g.node("Div", [x, g.const(f"/{prefix}/Constant", np.float32(1.4142135381698608))], f"/{prefix}/Div")
    e = g.node("Erf", [d], f"/{prefix}/Erf")
    a = g.node("Add", [e, g.const(f"/{prefix}/Constant_1", np.float32(1.0))], f"/{prefix}/Add")
    m = g.node("Mul", [x, a], f"/{prefix}/Mul")
    return g.node("Mul", [m, g.const(f"/{prefix}/Constant_2", np.float32(0.5))], f"/{prefix}/Mul_1")


def _dim(g: _Graph, x: str, axis: int, prefix: str) -> str:
    """Unsqueezed dim ``axis`` of ``x`` computed at run time, as the legacy exporter writes it."""
    shape = g.node("Shape", [x], f"{prefix}/Shape")
    dim = g.node("Gather", [shape, g.const(f"{prefix}/Constant", np.int64(axis))], f"{prefix}/Gather", axis=0)
    return g.node("Unsqueeze", [dim, g.const(f"{prefix}/Constant_1", np.array([0], np.int64))], f"{prefix}/Unsqueeze")


def _attention(g: _Graph, x: str, i: int, cfg: ViTConfig) -> str:
    c, h = cfg.embed_dim, cfg.num_heads
    d = c // h
    p = f"blocks.{i}.attn"
    qkv = _linear(g, x, f"{p}.qkv", c, 3 * c)
    b, n = _dim(g, x, 0, f"/{p}/b"), _dim(g, x, 1, f"/{p}/n")
    shape5 = g.node("Concat", [b, n, g.const(f"/{p}/Constant_3", np.array([3, h, d], np.int64))], f"/{p}/Concat", axis=0)
    qkv5 = g.node("Reshape", [qkv, shape5], f"/{p}/Reshape")
    qkv5 = g.node("Transpose", [qkv5], f"/{p}/Transpose", perm=[2, 0, 3, 1, 4])
    parts = g.node("Split", [qkv5, g.const(f"/{p}/Constant_4", np.array([1, 1, 1], np.int64))], f"/{p}/Split",
                   n_out=3, axis=0)
    axes0 = g.const(f"/{p}/Constant_5", np.array([0], np.int64))
    q, k, v = (g.node("Squeeze", [t, axes0], f"/{p}/Squeeze_{j}") for j, t in enumerate(parts))
    # scale = sqrt(1/sqrt(d)) applied to q and kᵀ, d read from Shape(q) at run time (SDPA export).
    hd = g.node("Slice", [g.node("Shape", [q], f"/{p}/Shape_q"), g.const(f"/{p}/Constant_6", np.array([-1], np.int64)),
                          g.const(f"/{p}/Constant_7", np.array([np.iinfo(np.int64).max], np.int64))], f"/{p}/Slice")
    hd = g.node("Cast", [hd], f"/{p}/Cast", to=TensorProto.FLOAT)
    inv = g.node("Div", [g.const(f"/{p}/Constant_8", np.array([1.0], np.float32)), g.node("Sqrt", [hd], f"/{p}/Sqrt")],
                 f"/{p}/Div")
    sqrt_scale = g.node("Sqrt", [inv], f"/{p}/Sqrt_1")
    qs = g.node("Mul", [q, sqrt_scale], f"/{p}/Mul")
    kt = g.node("Transpose", [k], f"/{p}/Transpose_1", perm=[0, 1, 3, 2])
    ks = g.node("Mul", [kt, sqrt_scale], f"/{p}/Mul_1")
    attn = g.node("Softmax", [g.node("MatMul", [qs, ks], f"/{p}/MatMul")], f"/{p}/Softmax", axis=-1)
    o = g.node("MatMul", [attn, v], f"/{p}/MatMul_1")
    o = g.node("Transpose", [o], f"/{p}/Transpose_2", perm=[0, 2, 1, 3])
    shape3 = g.node("Concat", [b, n, g.const(f"/{p}/Constant_9", np.array([c], np.int64))], f"/{p}/Concat_1", axis=0)
    o = g.node("Reshape", [o, shape3], f"/{p}/Reshape_1")
    return _linear(g, o, f"{p}.proj", c, c)


def _block(g: _Graph, x: str, i: int, cfg: ViTConfig) -> str:
    c, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
    x = g.node("Add", [x, _attention(g, _layernorm(g, x, f"blocks.{i}.norm1", c), i, cfg)], f"/blocks.{i}/Add")
    h = _linear(g, _layernorm(g, x, f"blocks.{i}.norm2", c), f"blocks.{i}.mlp.fc1", c, hidden)
    h = _linear(g, _gelu_erf(g, h, f"blocks.{i}/mlp/act"), f"blocks.{i}.mlp.fc2", hidden, c)
    return g.node("Add", [x, h], f"/blocks.{i}/Add_1")


def build_vit(name: str = "deit-tiny", img_size: int = 224, patch: int = 16, seed: int = 0,
              depth: int | None = None) -> onnx.ModelProto:
    """Build ``name`` (deit-tiny/small/base) as an ONNX model with seeded random weights.

    Input ``input`` [batch, 3, img_size, img_size] float32; output ``logits`` [batch, 1000].
    Tokens = (img_size / patch)² + 1. ``depth`` overrides the number of blocks.
    """
    if name not in CONFIGS:
        raise VitcInputError(f"unknown zoo model '{name}' (choose from {', '.join(CONFIGS)})")
    if img_size <= 0 or patch <= 0 or img_size % patch:
        raise VitcInputError(f"img-size {img_size} must be a positive multiple of patch {patch}")
    cfg = CONFIGS[name]
    if depth is not None:
        cfg = ViTConfig(cfg.embed_dim, depth, cfg.num_heads, cfg.mlp_ratio, cfg.num_classes, cfg.in_chans)
    c, grid = cfg.embed_dim, img_size // patch
    g = _Graph(np.random.default_rng(seed))
    w = g.weight("patch_embed.proj.weight", (c, cfg.in_chans, patch, patch), cfg.in_chans * patch * patch)
    bias = g.init("patch_embed.proj.bias", np.zeros(c, np.float32))
    x = g.node("Conv", ["input", w, bias], "/patch_embed/proj/Conv", kernel_shape=[patch, patch],
               strides=[patch, patch], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
    bdim = _dim(g, x, 0, "/patch_embed")
    flat_shape = g.node("Concat", [bdim, g.const("/patch_embed/Constant_2", np.array([c, -1], np.int64))],
                        "/patch_embed/Concat", axis=0)
    x = g.node("Transpose", [g.node("Reshape", [x, flat_shape], "/patch_embed/Reshape")], "/patch_embed/Transpose",
               perm=[0, 2, 1])
    cls = g.init("cls_token", g.rng.standard_normal((1, 1, c), dtype=np.float32))
    cls_shape = g.node("Concat", [bdim, g.const("/Constant_cls", np.array([1, c], np.int64))], "/Concat_cls", axis=0)
    cls = g.node("Expand", [cls, cls_shape], "/Expand")
    x = g.node("Concat", [cls, x], "/Concat", axis=1)
    pos = g.init("pos_embed", 0.02 * g.rng.standard_normal((1, grid * grid + 1, c), dtype=np.float32))
    x = g.node("Add", [x, pos], "/Add")
    for i in range(cfg.depth):
        x = _block(g, x, i, cfg)
    x = _layernorm(g, x, "norm", c)
    x = g.node("Gather", [x, g.const("/Constant_head", np.int64(0))], "/Gather", axis=1)
    logits = _linear(g, x, "head", c, cfg.num_classes)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="/Identity_logits"))
    graph = helper.make_graph(
        g.nodes, f"{name.replace('-', '_')}_{img_size}_p{patch}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", cfg.in_chans, img_size, img_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", cfg.num_classes])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="vitc.zoo", producer_version="0.1")
    model.ir_version = 8
    return model
