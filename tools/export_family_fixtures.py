#!/usr/bin/env python
"""Export the committed family fixtures (``tests/fixtures/families/``) and their manifest.

Each fixture is one attention form from issue 14's list, exported at a tiny size (random
init, seeded) by the exporter named, with ``manifest.json`` recording the family, exporter,
opset, patterns, the attention modules torch ran, and the max abs error of onnxruntime vs torch.
``tests/test_family_fixtures.py`` asserts what vitc must find in each (blocks, cores by kind,
bias classes, named declines) and that every rewrite validates.

Dev-only (needs torch, timm, transformers, onnxscript):

    python tools/export_family_fixtures.py [--only swin,gpt2] [--out tests/fixtures/families]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from families import _hf, _timm, _timm_cls  # noqa: E402

def _mobilevitv2(multiplier: float, size: int):
    """MobileViTv2 at a width multiplier below the registered ones (timm's ByobNet config)."""
    def build():
        from families import SEED, _image, install_torchvision_stub, randomize_
        install_torchvision_stub()
        import torch
        from timm.models import byobnet, mobilevit
        torch.manual_seed(SEED)
        m = byobnet.ByobNet(mobilevit._mobilevitv2_cfg(multiplier), num_classes=10)
        return randomize_(m).eval(), (_image(size),), ["pixel_values"]
    return build


#: name -> (builder, exporter, patterns)
FIXTURES = {
    "swin_windows": (_timm("swin_tiny_patch4_window7_224", 16, img_size=16, patch_size=2, window_size=4,
                           embed_dim=16, depths=(2,), num_heads=(2,)), "dynamo",
                     ["windows", "relpos-bias", "shifted-window-mask"]),
    "pvt_spatial_reduction": (_timm_cls("pvt_v2", "PyramidVisionTransformerV2", 32, depths=(1, 1), embed_dims=(16, 32),
                                        num_heads=(1, 2), sr_ratios=(4, 1), mlp_ratios=(2, 2)), "legacy",
                              ["spatial-reduction", "N_q != N_kv"]),
    "gpt2_causal": (_hf("GPT2Config", "GPT2Model", "text", n_embd=32, n_layer=2, n_head=2, vocab_size=64,
                        n_positions=32), "legacy", ["flattened-projections", "causal"]),
    "llama_rope_gqa": (_hf("LlamaConfig", "LlamaModel", "text", hidden_size=32, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2, intermediate_size=64, vocab_size=64,
                           max_position_embeddings=32), "dynamo", ["rope", "gqa", "causal"]),
    "yolos_shape_readers": (_hf("YolosConfig", "YolosModel", hidden_size=32, num_hidden_layers=2,
                                num_attention_heads=2, intermediate_size=64, image_size=[16, 16], patch_size=8,
                                num_detection_tokens=2), "legacy", ["shape-consumers"]),
    "xcit_temperature": (_timm("xcit_nano_12_p16_224", 32, img_size=32, depth=1, cls_attn_layers=1, embed_dim=32,
                               num_heads=2), "legacy",
                         ["per-head-scale", "cross-covariance", "class-attention"]),
    "cait_talking_heads": (_timm("cait_xxs24_224", 16, img_size=16, patch_size=8, depth=1, depth_token_only=1,
                                 embed_dim=32, num_heads=2), "dynamo", ["talking-heads", "class-attention"]),
    "coat_factorized": (_timm_cls("coat", "CoaT", 32, img_size=32, patch_size=4, embed_dims=(16, 16, 16, 16),
                                  serial_depths=(1, 1, 1, 1), num_heads=2, mlp_ratios=(2, 2, 2, 2),
                                  crpe_window={3: 2}), "dynamo", ["factorised-attention"]),
    "mobilevitv2_separable": (_mobilevitv2(0.25, 64), "legacy", ["separable-attention"]),
    "efficientvit_relu_linear": (_timm_cls("efficientvit_mit", "EfficientVit", 32, widths=(8, 16, 16, 32),
                                           depths=(1, 1, 1, 1), head_dim=8, head_widths=(64, 64)), "dynamo",
                                 ["relu-linear-attention"]),
    "levit_hardswish": (_timm_cls("levit", "Levit", 64, img_size=64, embed_dim=(32, 48), key_dim=8,
                                  num_heads=(2, 3), depth=(1, 1), attn_ratio=(2.0, 2.0), mlp_ratio=(2.0, 2.0),
                                  down_op="subsample"), "legacy", ["hardswish", "dv-ne-dk", "relpos-bias"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "families"))
    ap.add_argument("--only")
    args = ap.parse_args()
    import onnx
    import onnxruntime as ort
    import torch
    import family_coverage as fc
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mpath = out / "manifest.json"
    manifest = json.loads(mpath.read_text()) if mpath.is_file() else {}
    only = set(args.only.split(",")) if args.only else None
    for name, (build, exporter, patterns) in FIXTURES.items():
        if only and name not in only:
            continue
        model, margs, names = build()
        sites = fc.count_sites(model, margs)
        path = out / f"{name}.onnx"
        fc.export(model, margs, names, exporter, path)
        m = onnx.load(str(path))
        onnx.checker.check_model(m)
        with torch.no_grad():
            ref = model(*margs)
        ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).numpy()
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), margs)}
        got = sess.run(None, feeds)[0]
        err = float(np.abs(got.astype(np.float64) - ref).max())
        manifest[name] = {"exporter": exporter, "opset": fc.EXPORTERS[exporter], "patterns": patterns,
                          "torch_attention_modules": sites, "ort_vs_torch_max_abs": err,
                          "bytes": path.stat().st_size}
        print(f"{name:26s} {exporter:7s} {path.stat().st_size / 1e3:7.1f} kB  sites {sites}  |ort-torch| {err:.1e}")
        assert err < 1e-3, name
    versions = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    for mod in ("timm", "transformers", "onnxscript"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            pass
    manifest["_versions"] = versions
    mpath.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
