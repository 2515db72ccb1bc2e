#!/usr/bin/env python
"""Train the small reference ViTs on scikit-learn's bundled digits and export them to ONNX.

Dev-only tool (needs torch, timm, scikit-learn, onnx, onnxruntime); the vitc package
itself does not import it.  It produces, under ``--out`` (default ``models/reference``):

* ``vit_digits_p4.onnx``  - DeiT-style ViT, 32x32x1 input, patch 4  ->  64 patches + CLS = 65 tokens
* ``vit_digits_p2.onnx``  - same model with patch 2 -> 256 patches + CLS = 257 tokens,
                            initialised from the trained patch-4 model and fine-tuned
* ``digits_test.npz``     - held-out test split   (``input`` float32 [N,1,32,32], ``labels`` int64 [N])
* ``digits_calib.npz``    - 256-image calibration split, a stratified subset of the TRAINING split
* ``digits_train.npz``    - the whole training split (1257 images; calibration data for trained recovery)
* ``vit_digits_p{4,2}.pt`` - torch state dicts (small; for distillation / parity checks)
* ``metrics.json``        - torch and ONNX Runtime test accuracies, ORT-vs-torch max abs diff

Data pipeline (identical for every split):
  ``load_digits().images`` (8x8, values 0..16) / 16  ->  bilinear upsample to 32x32
  (``F.interpolate(mode="bilinear", align_corners=False)``)  ->  ``(x - MEAN) / STD``
  with MEAN/STD the constants below (the pixel mean/std of the upsampled training split,
  rounded to 4 decimals; they are also stored in each npz as ``norm_mean`` / ``norm_std``).

Reproducible: fixed seed, deterministic torch algorithms, fixed thread count (2); the same
command gives the same weights and the same accuracy on the same torch build.

    python tools/train_reference.py            # full run (several minutes on 2 CPU cores)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import time

import numpy as np

# Normalisation constants: mean / std of the [0,1]-scaled, 32x32-upsampled training split
# (seed 0 split).  Printed again by the script (``measured ...``) as a cross-check.
MEAN = 0.3056
STD = 0.3237

IMG = 32
NUM_CLASSES = 10


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="models/reference", help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--test-size", type=float, default=0.3, help="held-out test fraction")
    p.add_argument("--calib-size", type=int, default=256)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--depth", type=int, default=6)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--mlp-ratio", type=float, default=2.0)
    p.add_argument("--epochs-p4", type=int, default=60)
    p.add_argument("--epochs-p2", type=int, default=6)
    p.add_argument("--lr-p4", type=float, default=2e-3)
    p.add_argument("--lr-p2", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=5, help="warmup epochs (p4; p2 uses 1)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--drop-path", type=float, default=0.1)
    p.add_argument("--shift", type=int, default=2, help="max random shift in pixels (augmentation)")
    p.add_argument("--monitor", action="store_true",
                   help="also print test accuracy every 5 epochs (monitoring only; never used for selection)")
    p.add_argument("--skip-p2", action="store_true", help="only train/export the patch-4 model")
    return p.parse_args()


# --------------------------------------------------------------------------- data
def make_splits(seed, test_size, calib_size):
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    imgs = d.images.astype(np.float32) / 16.0  # [1797, 8, 8] in [0, 1]
    labels = d.target.astype(np.int64)
    idx = np.arange(len(labels))
    tr_idx, te_idx = train_test_split(idx, test_size=test_size, stratify=labels, random_state=seed)
    cal_idx, _ = train_test_split(tr_idx, train_size=calib_size, stratify=labels[tr_idx], random_state=seed)
    tr_idx, te_idx, cal_idx = np.sort(tr_idx), np.sort(te_idx), np.sort(cal_idx)

    with torch.no_grad():
        up = F.interpolate(torch.from_numpy(imgs)[:, None], size=(IMG, IMG), mode="bilinear",
                           align_corners=False).numpy()  # [1797, 1, 32, 32]
    m, s = float(up[tr_idx].mean()), float(up[tr_idx].std())
    print(f"[data] measured train pixel mean={m:.4f} std={s:.4f}; using MEAN={MEAN} STD={STD}")
    x = ((up - MEAN) / STD).astype(np.float32)
    return x, labels, tr_idx, te_idx, cal_idx


def shift_batch(x, max_shift, gen, fill):
    """Random integer translation by up to +-max_shift px (independently in x and y), padding with
    the normalised background value ``fill``."""
    import torch
    import torch.nn.functional as F

    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=fill)
    off = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(off[i, 0]), int(off[i, 1])
        out[i] = pad[i, :, dy:dy + h, dx:dx + w]
    return out


# --------------------------------------------------------------------------- model
def make_vit(patch, args):
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=IMG, patch_size=patch, in_chans=1, num_classes=NUM_CLASSES,
        embed_dim=args.embed_dim, depth=args.depth, num_heads=args.heads, mlp_ratio=args.mlp_ratio,
        qkv_bias=True, class_token=True, global_pool="token", drop_path_rate=args.drop_path,
    )


def init_p2_from_p4(p2, p4):
    """Copy all weights of the patch-4 model into the patch-2 model; the patch-embedding kernel is
    resampled 4x4 -> 2x2 (timm's pseudo-inverse resize, preserves the patch response to resized
    input) and the 8x8 positional-embedding grid is bilinearly resampled to 16x16."""
    from timm.layers import resample_abs_pos_embed, resample_patch_embed

    sd = {k: v.clone() for k, v in p4.state_dict().items()}
    sd["patch_embed.proj.weight"] = resample_patch_embed(sd["patch_embed.proj.weight"], [2, 2])
    sd["pos_embed"] = resample_abs_pos_embed(sd["pos_embed"], new_size=[IMG // 2, IMG // 2],
                                             old_size=[IMG // 4, IMG // 4], num_prefix_tokens=1)
    p2.load_state_dict(sd)


def evaluate(model, x, y, batch=256):
    import torch

    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(x[i:i + batch]))
    logits = torch.cat(outs)
    return float((logits.argmax(1) == y).float().mean()), logits


def train(model, x_tr, y_tr, epochs, lr, warmup, args, tag, monitor=None):
    import torch

    gen = torch.Generator().manual_seed(args.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=args.wd, betas=(0.9, 0.999))
    steps_per_epoch = math.ceil(len(x_tr) / args.batch)
    total, warm = epochs * steps_per_epoch, warmup * steps_per_epoch
    min_lr = lr * 0.01

    def lr_at(step):
        if step < warm:
            return lr * (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * t))

    crit = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    fill = (0.0 - MEAN) / STD
    step = 0
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        tot_loss, correct = 0.0, 0
        for i in range(0, len(x_tr), args.batch):
            b = perm[i:i + args.batch]
            xb = shift_batch(x_tr[b], args.shift, gen, fill)
            yb = y_tr[b]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            out = model(xb)
            loss = crit(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            tot_loss += loss.item() * len(b)
            correct += int((out.argmax(1) == yb).sum())
        if ep % 5 == 4 or ep == epochs - 1:
            print(f"[{tag}] epoch {ep + 1:3d}/{epochs} loss {tot_loss / len(x_tr):.4f} "
                  f"train-acc(aug) {correct / len(x_tr):.4f} lr {lr_at(step - 1):.2e} "
                  f"{time.time() - t0:.0f}s", flush=True)
            if monitor is not None:
                print(f"[{tag}]   (monitor) test acc {evaluate(model, *monitor)[0]:.4f}", flush=True)
    return time.time() - t0


# --------------------------------------------------------------------------- export / check
def export_and_check(model, path, x_te, y_te, torch_logits):
    import onnxruntime as ort
    import torch

    model.eval()
    dummy = x_te[:2].clone()
    torch.onnx.export(model, dummy, path, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ort_logits = sess.run(["logits"], {"input": x_te.numpy()})[0]
    diff = float(np.abs(ort_logits - torch_logits.numpy()).max())
    ort_acc = float((ort_logits.argmax(1) == y_te.numpy()).mean())
    agree = float((ort_logits.argmax(1) == torch_logits.numpy().argmax(1)).mean())
    print(f"[export] {path}: {os.path.getsize(path)} bytes, ORT acc {ort_acc:.4f}, "
          f"max|ORT-torch| = {diff:.3e}, argmax agreement {agree:.4f}")
    return ort_acc, diff


def main():
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.use_deterministic_algorithms(True)

    os.makedirs(args.out, exist_ok=True)
    x, labels, tr_idx, te_idx, cal_idx = make_splits(args.seed, args.test_size, args.calib_size)
    print(f"[data] train {len(tr_idx)}  test {len(te_idx)}  calib {len(cal_idx)} (subset of train)")
    meta = dict(norm_mean=np.float32(MEAN), norm_std=np.float32(STD), seed=np.int64(args.seed))
    np.savez_compressed(os.path.join(args.out, "digits_test.npz"), input=x[te_idx], labels=labels[te_idx],
                        indices=te_idx.astype(np.int64), **meta)
    np.savez_compressed(os.path.join(args.out, "digits_train.npz"), input=x[tr_idx], labels=labels[tr_idx],
                        indices=tr_idx.astype(np.int64), **meta)
    np.savez_compressed(os.path.join(args.out, "digits_calib.npz"), input=x[cal_idx], labels=labels[cal_idx],
                        indices=cal_idx.astype(np.int64), **meta)

    x_tr, y_tr = torch.from_numpy(x[tr_idx]), torch.from_numpy(labels[tr_idx])
    x_te, y_te = torch.from_numpy(x[te_idx]), torch.from_numpy(labels[te_idx])

    import timm
    import onnx
    import onnxruntime
    import sklearn
    metrics = {
        "dataset": "sklearn.datasets.load_digits, 8x8 -> 32x32 bilinear, (x/16 - mean)/std",
        "norm_mean": MEAN, "norm_std": STD, "seed": args.seed,
        "split_sizes": {"train": int(len(tr_idx)), "test": int(len(te_idx)), "calib_subset_of_train": int(len(cal_idx))},
        "versions": {"torch": torch.__version__, "timm": timm.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__, "sklearn": sklearn.__version__,
                     "python": platform.python_version()},
        "models": {},
    }

    mon = (x_te, y_te) if args.monitor else None
    runs = [("p4", 4)] + ([] if args.skip_p2 else [("p2", 2)])
    p4 = None
    for tag, patch in runs:
        torch.manual_seed(args.seed)
        model = make_vit(patch, args)
        if tag == "p4":
            secs = train(model, x_tr, y_tr, args.epochs_p4, args.lr_p4, args.warmup, args, tag, mon)
            p4 = model
            epochs, lr, init = args.epochs_p4, args.lr_p4, "timm default init"
        else:
            init_p2_from_p4(model, p4)
            acc0, _ = evaluate(model, x_te, y_te)
            print(f"[p2] test acc right after init from p4 (before fine-tuning): {acc0:.4f}")
            secs = train(model, x_tr, y_tr, args.epochs_p2, args.lr_p2, 1, args, tag, mon)
            epochs, lr, init = args.epochs_p2, args.lr_p2, "from trained p4 (patch kernel + pos-embed resampled)"
        acc, logits = evaluate(model, x_te, y_te)
        print(f"[{tag}] torch test acc {acc:.4f}  ({secs:.0f}s training)")
        onnx_path = os.path.join(args.out, f"vit_digits_{tag}.onnx")
        ort_acc, diff = export_and_check(model, onnx_path, x_te, y_te, logits)
        torch.save(model.state_dict(), os.path.join(args.out, f"vit_digits_{tag}.pt"))
        metrics["models"][tag] = {
            "onnx": os.path.basename(onnx_path), "patch_size": patch, "tokens": (IMG // patch) ** 2 + 1,
            "embed_dim": args.embed_dim, "depth": args.depth, "num_heads": args.heads,
            "head_dim": args.embed_dim // args.heads, "mlp_ratio": args.mlp_ratio,
            "params": int(sum(p.numel() for p in model.parameters())),
            "init": init, "epochs": epochs, "lr": lr, "train_seconds": round(secs, 1),
            "test_acc_torch": round(acc, 6), "test_acc_ort": round(ort_acc, 6),
            "test_correct_torch": int(round(acc * len(te_idx))), "test_total": int(len(te_idx)),
            "max_abs_diff_ort_vs_torch": diff,
        }
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")
    print(json.dumps(metrics["models"], indent=2))


if __name__ == "__main__":
    main()
