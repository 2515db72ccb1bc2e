"""Attention-bearing model families users export, at tiny sizes (random init; nothing downloaded).

Each entry builds a torch module and example inputs; ``benchmarks/family_coverage.py``
exports every one with the legacy TorchScript exporter and with dynamo, then runs vitc on the
files. Needs the export extra (torch, timm, transformers, onnxscript); dev-only.

A family lists the patterns it exercises (the rank of issue 14's list) so the coverage table
says which form a failure belongs to.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from export_fixtures import install_torchvision_stub  # noqa: F401 - tools/ is on the path; re-exported

SEED = 0


@dataclass
class Family:
    name: str
    source: str                      # timm | transformers
    build: Callable[[], Any]         # -> (module, example args tuple, input names)
    patterns: list[str] = field(default_factory=list)
    note: str = ""


def randomize_(model, seed: int = SEED):
    """Seeded weights of useful magnitude (default inits make attention near uniform)."""
    import numpy as np
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() <= 1:
                base = 1.0 if name.endswith(("weight", "gamma", "scale")) and "bias" not in name else 0.0
                p.copy_(base + torch.randn(p.shape, generator=gen) * 0.1)
            else:
                fan_in = int(np.prod(p.shape[1:]))
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(fan_in, 1)))
        for name, b in model.named_buffers():
            if b.dtype.is_floating_point and "running_var" in name:
                b.copy_(1.0 + torch.rand(b.shape, generator=gen) * 0.1)
    return model


def _image(size: int = 224, batch: int = 1):
    import torch
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(SEED))


def _timm(name: str, size: int = 224, **kw):
    def build():
        install_torchvision_stub()
        import timm
        import torch
        torch.manual_seed(SEED)
        m = timm.create_model(name, pretrained=False, num_classes=10, **kw)
        return randomize_(m).eval(), (_image(size),), ["pixel_values"]
    return build


def _timm_cls(module: str, cls: str, size: int, **kw):
    """A timm model class built directly (its registered variants fix the depths we shrink)."""
    def build():
        install_torchvision_stub()
        import importlib
        import torch
        torch.manual_seed(SEED)
        m = getattr(importlib.import_module(f"timm.models.{module}"), cls)(num_classes=10, **kw)
        return randomize_(m).eval(), (_image(size),), ["pixel_values"]
    return build


class _FirstOutput:
    """Wrap a transformers model so the export has one output (the last hidden state)."""

    def __new__(cls, model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m(x)[0]
        return Wrapped(model)


def _hf(config_cls: str, model_cls: str, kind: str = "image", size: int = 32, **cfg):
    def build():
        import torch
        import transformers
        torch.manual_seed(SEED)
        config = getattr(transformers, config_cls)(**cfg)
        for k, v in (("attn_implementation", "eager"),):
            try:
                config._attn_implementation = v
            except Exception:  # noqa: BLE001
                pass
        m = _FirstOutput(randomize_(getattr(transformers, model_cls)(config)).eval()).eval()
        if kind == "image":
            return m, (_image(size),), ["pixel_values"]
        gen = torch.Generator().manual_seed(SEED)
        ids = torch.randint(0, cfg.get("vocab_size", 100), (1, 16), generator=gen)
        return m, (ids,), ["input_ids"]
    return build


TINY_VIT = dict(embed_dim=64, depth=2, num_heads=4)
FAMILIES: list[Family] = [
    # plain encoders (the forms the fixtures cover)
    Family("vit", "timm", _timm("vit_tiny_patch16_224", 64, img_size=64, **TINY_VIT), ["baseline"]),
    Family("deit3", "timm", _timm("deit3_small_patch16_224", 64, img_size=64, **TINY_VIT), ["baseline"]),
    Family("pit", "timm", _timm("pit_ti_224", 224, depth=(1, 1, 1)), ["baseline"]),
    Family("hf-vit", "transformers", _hf("ViTConfig", "ViTModel", hidden_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=8),
           ["baseline"]),
    Family("hf-bert", "transformers", _hf("BertConfig", "BertModel", "text", hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=128, vocab_size=100), ["baseline"]),
    Family("hf-clip-vision", "transformers", _hf("CLIPVisionConfig", "CLIPVisionModel", hidden_size=64,
                                                 num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                                 image_size=32, patch_size=8), ["baseline"]),
    Family("hf-yolos", "transformers", _hf("YolosConfig", "YolosModel", hidden_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=128, image_size=[32, 32],
                                           patch_size=8, num_detection_tokens=4), ["baseline"]),
    # 1. Shape consumers
    Family("hf-dinov2", "transformers", _hf("Dinov2Config", "Dinov2Model", hidden_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, image_size=32, patch_size=8), ["shape-consumers"]),
    Family("hf-swin", "transformers", _hf("SwinConfig", "SwinModel", embed_dim=32, depths=[1, 1], num_heads=[2, 4],
                                          image_size=32, patch_size=4, window_size=4),
           ["shape-consumers", "relpos-bias", "shifted-window-mask"]),
    Family("hf-mobilevit", "transformers", _hf("MobileViTConfig", "MobileViTModel", image_size=64,
                                               hidden_sizes=[32, 48, 64], neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
                                               num_attention_heads=2), ["shape-consumers"], ),
    Family("mobilevit", "timm", _timm("mobilevit_xxs", 64, img_size=64), ["shape-consumers"]),
    # 2. N_q != N_kv
    Family("pvt-v2", "timm", _timm("pvt_v2_b0", 64, depths=(1, 1, 1, 1)), ["spatial-reduction"]),
    Family("twins", "timm", _timm("twins_svt_small", 64, img_size=64, depths=(1, 1, 1, 1)),
           ["spatial-reduction", "windows"]),
    Family("hf-segformer", "transformers", _hf("SegformerConfig", "SegformerModel", image_size=64, depths=[1, 1, 1, 1],
                                               hidden_sizes=[16, 32, 64, 64], num_attention_heads=[1, 2, 4, 4],
                                               decoder_hidden_size=32), ["spatial-reduction"]),
    Family("hiera", "timm", _timm("hiera_tiny_224", 224, stages=(1, 1, 1, 1)), ["pooled-q", "windows"]),
    Family("crossvit", "timm", _timm("crossvit_tiny_240", 240, depth=((1, 1, 0),)), ["cross-attention"]),
    Family("cait", "timm", _timm("cait_xxs24_224", 64, img_size=64, depth=2, depth_token_only=1, embed_dim=64,
                                 num_heads=4), ["class-attention", "talking-heads"]),
    # 3. extra terms on the scores
    Family("beit", "timm", _timm("beit_base_patch16_224", 64, img_size=64, **TINY_VIT), ["relpos-bias"]),
    Family("hf-beit", "transformers", _hf("BeitConfig", "BeitModel", hidden_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, intermediate_size=128, image_size=32, patch_size=8,
                                          use_relative_position_bias=True), ["relpos-bias"]),
    Family("swin", "timm", _timm("swin_tiny_patch4_window7_224", 64, img_size=64, window_size=4, embed_dim=32,
                                 depths=(2, 2), num_heads=(2, 4)), ["relpos-bias", "shifted-window-mask"]),
    Family("swinv2", "timm", _timm("swinv2_tiny_window8_256", 64, img_size=64, window_size=4, embed_dim=32,
                                   depths=(2, 2), num_heads=(2, 4)), ["cosine-attention", "cpb", "per-head-scale"]),
    Family("tiny-vit", "timm", _timm("tiny_vit_5m_224", 224, depths=(1, 1, 1, 1)), ["relpos-bias-gather"]),
    Family("vit-relpos", "timm", _timm("vit_relpos_small_patch16_224", 64, img_size=64, **TINY_VIT), ["relpos-bias"]),
    # 4. windows
    Family("maxvit", "timm", _timm("maxvit_tiny_tf_224", 64, img_size=64, depths=(1, 1, 1, 1)), ["windows", "grid"]),
    Family("nest", "timm", _timm_cls("nest", "Nest", 64, img_size=64, embed_dims=(32, 64, 128), num_heads=(2, 2, 4), depths=(1, 1, 1)), ["windows"]),
    Family("gcvit", "timm", _timm_cls("gcvit", "GlobalContextVit", 224, depths=(1, 1, 1, 1), embed_dim=32, num_heads=(1, 2, 4, 8)), ["windows", "global-query"]),
    Family("davit", "timm", _timm("davit_tiny", 64, depths=(1, 1, 1, 1)), ["windows", "channel-attention"]),
    # 5. RoPE / GQA
    Family("eva02", "timm", _timm("eva02_tiny_patch14_224", 56, img_size=56, depth=2), ["rope"]),
    Family("vit-rope", "timm", _timm("vit_small_patch16_rope_224", 64, img_size=64, **TINY_VIT), ["rope"]),
    Family("hf-llama", "transformers", _hf("LlamaConfig", "LlamaModel", "text", hidden_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                                           vocab_size=100), ["rope", "gqa", "causal"]),
    # 6. flattened projections, causal
    Family("hf-gpt2", "transformers", _hf("GPT2Config", "GPT2Model", "text", n_embd=64, n_layer=2, n_head=4,
                                          vocab_size=100), ["flattened-projections", "causal"]),
    # 7. activation between core and output projection; d_v != d_k
    Family("levit", "timm", _timm("levit_128s", 224, depth=(1, 1, 1)), ["hardswish", "dv-ne-dk"]),
    Family("efficientformer", "timm", _timm("efficientformer_l1", 224, depths=(1, 1, 1, 1), num_vit=1),
           ["dv-ne-dk", "relpos-bias"]),
    Family("efficientformerv2", "timm", _timm("efficientformerv2_s0", 224, depths=(1, 1, 1, 1)),
           ["dv-ne-dk", "talking-heads"]),
    # 8. attention that is not softmax(QK^T)V
    Family("efficientvit", "timm", _timm("efficientvit_b0", 64, depths=(1, 1, 1, 1)),
           ["relu-linear-attention"]),
    Family("coat", "timm", _timm("coat_lite_tiny", 64, img_size=64, serial_depths=(1, 1, 1, 1)),
           ["factorised-attention"]),
    Family("mobilevitv2", "timm", _timm("mobilevitv2_050", 64, img_size=64), ["separable-attention"]),
    Family("xcit", "timm", _timm("xcit_nano_12_p16_224", 64, img_size=64, depth=2, cls_attn_layers=1),
           ["cross-covariance", "class-attention"]),
    Family("convit", "timm", _timm("convit_tiny", 64, img_size=64, depth=2, local_up_to_layer=1),
           ["gated-positional"]),
    Family("volo", "timm", _timm_cls("volo", "VOLO", 224, layers=(1, 1, 1, 1), embed_dims=(64, 128, 128, 128), num_heads=(2, 4, 4, 4)), ["outlook-attention", "class-attention"]),
]

BY_NAME = {f.name: f for f in FAMILIES}
