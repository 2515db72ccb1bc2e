#!/usr/bin/env python
"""FAR (``--passes bilstm``) acceptance run: distillation on the reference ViT, pruning, and
crossbar costs for zoo DeiT-Small with and without the rewrite.

    python benchmarks/bilstm_acceptance.py                       # everything (minutes on 2 CPU cores)
    python benchmarks/bilstm_acceptance.py --skip-deit           # reference ViT only
    python benchmarks/bilstm_acceptance.py --only-deit           # DeiT-Small costs only

What it measures (printed as markdown, and written as JSON to ``--out``):

1. Parity: the ONNX LSTM block vs the torch module it came from (max abs diff), on the
   reference ViT's teacher inputs of the test split.
2. Reference ViT (``models/reference/vit_digits_p4.onnx``), distilled block-wise with teacher
   inputs on ``--data`` (``calib``: the 256-image calibration split, default; ``train``: the
   whole training split, rebuilt with tools/train_reference.py's preprocessing): per-block
   cosine on the distillation data and on the test split (teacher inputs), the chained
   (end-to-end) per-block cosine on the test split, test accuracy of original and rewritten
   model, top-1 agreement, CPU and wall time of the distillation.
3. The same with pruning (``--prune-ratio``, DeepHoyer regulariser ``--hoyer``): hidden sizes
   per block/head/direction, accuracy, parameters and crossbars before/after.
4. Crossbar costs (``--hw``, default rram-128) of the reference ViT and of zoo DeiT-Small
   (224², 197 tokens; untrained bilstm weights — costs do not depend on values): energy,
   latency, area, EDAP, crossbars, and the LSTM recurrence latency.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(ROOT / "models/reference/vit_digits_p4.onnx"))
    p.add_argument("--calib", default=None, help="default: digits_calib.npz next to --model")
    p.add_argument("--test", default=None, help="default: digits_test.npz next to --model")
    p.add_argument("--data", choices=["calib", "train"], default="calib", help="distillation data (see doc)")
    p.add_argument("--epochs", type=int, default=None, help="default: the pass default")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--loss", default=None, choices=["cosine", "cosine+mse"])
    p.add_argument("--augment", default=None, choices=["mixup", "none"], help="default: the pass default (mixup)")
    p.add_argument("--prune-ratio", type=float, default=0.3)
    p.add_argument("--hoyer", type=float, default=None)
    p.add_argument("--finetune-epochs", type=int, default=None)
    p.add_argument("--hw", default="rram-128")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-deit", action="store_true")
    p.add_argument("--only-deit", action="store_true")
    p.add_argument("--skip-prune", action="store_true")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "bilstm_acceptance.json"))
    return p.parse_args()


# --------------------------------------------------------------------------- helpers


def train_split_npz(model_dir: Path, tmp: Path) -> Path:
    """The whole training split of sklearn digits with tools/train_reference.py's preprocessing
    (same seed / test fraction as the reference; the calibration split is a subset of it)."""
    sys.path.insert(0, str(ROOT / "tools"))
    import train_reference as tr
    meta = np.load(model_dir / "digits_calib.npz")
    seed = int(meta["seed"]) if "seed" in meta.files else 0
    x, labels, tr_idx, _, _ = tr.make_splits(seed, 0.3, 256)
    path = tmp / "digits_train.npz"
    np.savez(path, input=x[tr_idx], labels=labels[tr_idx])
    return path


def backend_summary(report: dict) -> dict:
    t = report["totals"]
    lstm = [o for o in report["ops"] if o["op_type"] == "LSTM"]
    out = {k: t[k] for k in ("energy_pj", "latency_ns", "pipeline_interval_ns", "area_mm2", "edap_j_s_mm2",
                             "crossbars", "macs")}
    if lstm:
        out["lstm_ops"] = len(lstm)
        out["lstm_latency_ns_max"] = max(o["latency_ns"] for o in lstm)
        out["lstm_latency_ns_sum"] = sum(o["latency_ns"] for o in lstm)
        out["lstm_energy_pj"] = sum(o["energy_pj"] for o in lstm)
        out["lstm_crossbars"] = sum(o["crossbars"] for o in lstm)
    return out


def teacher_cosines(cm_orig, weights, data, blocks) -> dict[int, float]:
    """Per-block token-mean cosine with teacher inputs (original x_in) on ``data``."""
    from vitc.passes.context import PassContext
    from vitc.passes.bilstm import _cosines, core_target_names
    from vitc.passes.bilstm_weights import numpy_forward
    ctx = PassContext(calib=data)
    targets = core_target_names(cm_orig, blocks)
    acts = ctx.activations(cm_orig, [cm_orig.blocks[i].x_in for i in blocks] + [targets[i] for i in blocks])
    return {i: _cosines(numpy_forward(weights[i], acts[cm_orig.blocks[i].x_in]).astype(np.float32),
                        acts[targets[i]])["cosine"] for i in blocks}


def chained_cosines(cm_orig, original, rewritten, rec, data, blocks) -> dict[int, float]:
    """Per-block cosine inside the rewritten model (errors of earlier blocks included)."""
    from vitc.passes.bilstm import _cosines, core_target_names
    from vitc.runtime.batching import run_batched
    from vitc.runtime.session import open_session
    targets = core_target_names(cm_orig, blocks)
    outs = [rec.details["blocks"][str(i)]["output"] for i in blocks]
    ref = run_batched(open_session(original, outputs=[targets[i] for i in blocks]), data.feeds,
                      [targets[i] for i in blocks])
    cand = run_batched(open_session(rewritten, outputs=outs), data.feeds, outs)
    return {i: _cosines(c, r)["cosine"] for i, r, c in zip(blocks, ref, cand)}


def parity(weights, cm_orig, data, block: int) -> float:
    """max |ONNX block − torch module| on teacher inputs of ``data``."""
    import torch

    from vitc.passes.context import PassContext
    from vitc.passes.bilstm_graph import block_model
    from vitc.passes.bilstm_distill import torch_module_from_block
    from vitc.runtime.session import open_session
    x = PassContext(calib=data).activations(cm_orig, [cm_orig.blocks[block].x_in])[cm_orig.blocks[block].x_in]
    module = torch_module_from_block(weights[block]).eval()
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    y = open_session(block_model(weights[block])).run(None, {"x": x})[0]
    return float(np.abs(y - ref).max())


def load_npz_weights(blob: bytes, cm):
    from vitc.passes.bilstm_weights import load_weights
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "w.npz"
        p.write_bytes(blob)
        return load_weights(p, cm)[0]


# --------------------------------------------------------------------------- runs


def reference_run(args, res: dict) -> None:
    import onnx

    from vitc.runtime.data import load_dataset
    from vitc.compiler.frontend import read_model
    from vitc.pipeline import compile_model
    from vitc.runtime.validate import validate_models

    model_path = Path(args.model)
    mdir = model_path.parent
    calib = Path(args.calib or mdir / "digits_calib.npz")
    test_path = Path(args.test or mdir / "digits_test.npz")
    original = onnx.load(model_path)
    cm_orig = read_model(model_path)
    test = load_dataset(test_path, cm_orig.original)
    tmp = Path(tempfile.mkdtemp(prefix="bilstm_acc_"))
    distill_data = calib if args.data == "calib" else train_split_npz(mdir, tmp)
    dd = load_dataset(distill_data, cm_orig.original)
    res["reference"] = {"model": str(model_path), "blocks": len(cm_orig.blocks),
                        "heads": cm_orig.blocks[0].num_heads, "embed_dim": cm_orig.blocks[0].embed_dim,
                        "tokens": cm_orig.blocks[0].tokens, "distillation_data": f"{args.data}: {distill_data}",
                        "distillation_samples": dd.size, "test_samples": test.size}
    base = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("bilstm_batch", args.batch),
                              ("bilstm_loss", args.loss), ("bilstm_augment", args.augment)) if v is not None}
    variants = [("distilled", dict(base))]
    if not args.skip_prune:
        pr = dict(base, prune_ratio=args.prune_ratio)
        if args.hoyer is not None:
            pr["bilstm_hoyer"] = args.hoyer
        if args.finetune_epochs is not None:
            pr["bilstm_finetune_epochs"] = args.finetune_epochs
        variants.append(("pruned", pr))
    blocks = list(range(len(cm_orig.blocks)))
    base_cost = compile_model(model_path, passes="none", target="xbar", hw=args.hw)
    res["reference"]["original_cost"] = backend_summary(base_cost.report)
    for name, opts in variants:
        print(f"== reference ViT: {name} ({opts})", flush=True)
        w0, c0 = time.time(), time.process_time()
        r = compile_model(model_path, passes="bilstm", target="xbar", hw=args.hw, calib=str(distill_data),
                          options=opts, seed=args.seed)
        wall, cpu = time.time() - w0, time.process_time() - c0
        rec = r.compiled.records[0]
        weights = load_npz_weights(r.files["bilstm_weights.npz"], cm_orig)
        val = validate_models(original, r.model, inputs=test, labels=True)
        o = val.outputs[0]
        entry = {
            "options": opts, "compile_wall_s": round(wall, 1), "compile_cpu_s": round(cpu, 1),
            "distill_cpu_s": rec.details["cpu_seconds"], "distill_wall_s": rec.details["wall_seconds"],
            "training": rec.details.get("training"),
            "cosine_distill_data": {i: rec.details["blocks"][str(i)]["cosine_calib"] for i in blocks},
            "cosine_test_teacher": teacher_cosines(cm_orig, weights, test, blocks),
            "cosine_test_chained": chained_cosines(cm_orig, original, r.model, rec, test, blocks),
            "test_acc_original": o.ref_accuracy, "test_acc_bilstm": o.cand_accuracy,
            "top1_agreement": o.top1_agreement, "logits_cosine": o.cosine_mean,
            "hidden": {i: rec.details["blocks"][str(i)]["hidden"] for i in blocks},
            "hidden_units": rec.details["hidden_units"], "totals": rec.details["totals"],
            "cost": backend_summary(r.report),
            "parity_onnx_vs_torch_max_abs": parity(weights, cm_orig, test, 0),
        }
        if name == "pruned":
            entry["before_pruning_cosine"] = {i: rec.details["blocks"][str(i)]["before_pruning"]["cosine"]
                                              for i in blocks}
        res["reference"][name] = entry
        print(json.dumps(entry, indent=1, default=str), flush=True)


def deit_run(args, res: dict) -> None:
    from vitc.pipeline import compile_model
    from vitc.compiler.zoo import build_vit
    m = build_vit("deit-small", img_size=224, patch=16, seed=0)
    out = {}
    for name, passes, opts in (("original", "none", {}),
                               ("bilstm", "bilstm", {"bilstm_weights": "untrained"}),
                               ("bilstm_pruned30", "bilstm", {"bilstm_weights": "untrained", "prune_ratio": 0.3})):
        t0 = time.time()
        r = compile_model(m, passes=passes, target="xbar", hw=args.hw, options=opts, name="deit-small")
        out[name] = backend_summary(r.report)
        out[name]["compile_s"] = round(time.time() - t0, 1)
        if r.compiled.records:
            out[name]["pass_totals"] = r.compiled.records[0].details["totals"]
        print(f"== DeiT-Small {name}: {json.dumps(out[name], default=str)}", flush=True)
    res["deit_small"] = out


def markdown(res: dict) -> str:
    lines = []
    ref = res.get("reference")
    if ref:
        lines.append(f"Reference ViT {ref['model']}: {ref['blocks']} blocks, {ref['heads']} heads, C={ref['embed_dim']}, "
                     f"{ref['tokens']} tokens; distilled on {ref['distillation_data']} ({ref['distillation_samples']} "
                     f"images), tested on {ref['test_samples']} images")
        for name in ("distilled", "pruned"):
            e = ref.get(name)
            if not e:
                continue
            lines.append(f"\n### {name}\n")
            lines.append("| block | cosine (distill data) | cosine (test, teacher inputs) | cosine (test, chained) | hidden [fwd, rev] per head |")
            lines.append("|---|---|---|---|---|")
            for i in e["cosine_distill_data"]:
                lines.append(f"| {i} | {e['cosine_distill_data'][i]:.4f} | {e['cosine_test_teacher'][i]:.4f} | "
                             f"{e['cosine_test_chained'][i]:.4f} | {e['hidden'][i]} |")
            lines.append(f"\ntest accuracy: original {100 * e['test_acc_original']:.2f} %, bilstm "
                         f"{100 * e['test_acc_bilstm']:.2f} %; top-1 agreement {100 * e['top1_agreement']:.2f} %")
            lines.append(f"distillation: {e['distill_cpu_s']} s CPU, {e['distill_wall_s']} s wall "
                         f"(threads {res['threads']}); ONNX vs torch max abs diff {e['parity_onnx_vs_torch_max_abs']:.2e}")
            t = e["totals"]
            lines.append(f"replaced part, all blocks: params attention {t['attention']['params']} → bilstm unpruned "
                         f"{t['bilstm_unpruned']['params']} → this {t['bilstm']['params']}; crossbars "
                         f"{t['attention']['crossbars']} → {t['bilstm_unpruned']['crossbars']} → {t['bilstm']['crossbars']}; "
                         f"hidden units removed {100 * e['hidden_units']['removed_fraction']:.1f} %")
            c = e["cost"]
            lines.append(f"{res['hw']}: energy {c['energy_pj'] / 1e6:.3f} µJ, latency {c['latency_ns'] / 1e3:.2f} µs, "
                         f"area {c['area_mm2']:.2f} mm², EDAP {c['edap_j_s_mm2']:.3e} J·s·mm², crossbars {c['crossbars']}, "
                         f"LSTM op latency max {c.get('lstm_latency_ns_max', 0) / 1e3:.2f} µs")
        oc = ref.get("original_cost")
        if oc:
            lines.append(f"\noriginal on {res['hw']}: energy {oc['energy_pj'] / 1e6:.3f} µJ, latency "
                         f"{oc['latency_ns'] / 1e3:.2f} µs, area {oc['area_mm2']:.2f} mm², EDAP {oc['edap_j_s_mm2']:.3e}, "
                         f"crossbars {oc['crossbars']}")
    ds = res.get("deit_small")
    if ds:
        lines.append(f"\n### DeiT-Small (zoo, 224², 197 tokens) on {res['hw']}\n")
        lines.append("| model | energy µJ | latency µs | interval µs | area mm² | EDAP J·s·mm² | crossbars | LSTM op latency µs (max) |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for name, c in ds.items():
            lines.append(f"| {name} | {c['energy_pj'] / 1e6:.2f} | {c['latency_ns'] / 1e3:.1f} | "
                         f"{c['pipeline_interval_ns'] / 1e3:.1f} | {c['area_mm2']:.1f} | {c['edap_j_s_mm2']:.3e} | "
                         f"{c['crossbars']} | {c.get('lstm_latency_ns_max', 0) / 1e3:.1f} |")
    return "\n".join(lines)


def main():
    args = parse_args()
    import torch
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    res = {"hw": args.hw, "threads": args.threads, "torch": torch.__version__, "seed": args.seed}
    if not args.only_deit:
        reference_run(args, res)
    if not args.skip_deit:
        deit_run(args, res)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print("\n" + markdown(res))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
