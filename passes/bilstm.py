"""FAR (``--passes bilstm``): replace attention by per-head bidirectional LSTMs.

Per encoder block the q/k/v projections and the ``ai.vitc::Attention`` core are replaced by

    x_in [B,N,C] ─ pre_proj MatMul+Add (C→C) ─ Transpose → [N,B,C] ─ Split into H heads [N,B,d]
      head h:  LSTM (ONNX, hidden h_fwd = h_rev, direction="bidirectional") → Y [N,2,B,h]
               → Transpose/Reshape → [N,B,2h]                      (unpruned / equal sizes)
           or  LSTM(direction="forward", h_fwd) ‖ LSTM(direction="reverse", h_rev)
               → Reshape [N,B,h_*] each → Concat → [N,B,h_fwd+h_rev]    (pruned, sizes differ)
               → head_proj MatMul+Add (h_fwd+h_rev → d)
      Concat heads → [N,B,C] → Transpose → [B,N,C] ─ original output projection (kept)

The LSTMs run over the token axis (CLS first, no special handling), so batch and sequence
length stay dynamic. Weights come from block-wise distillation (:mod:`vitc.passes.bilstm_distill`,
needs the optional extra ``vitc[distill]`` = torch), from a file (``--bilstm-weights``: our
``.npz`` or a FAR PyTorch state dict), or are random (``--bilstm-weights untrained``, for
costing only).

Weight convention of this module (:class:`BlockLstm`) is PyTorch's: ``Linear`` weights are
[out, in]; LSTM weights are stacked in PyTorch gate order i, f, g, o. The ONNX ``LSTM`` op
wants i, o, f, c; :func:`onnx_gate_order` permutes (``W`` [dirs, 4h, in], ``R`` [dirs, 4h, h],
``B`` [dirs, 8h] = W-bias ‖ R-bias).

This module must not import torch (the pass registry imports every pass at CLI start).
"""

import dataclasses
import time
from pathlib import Path

import numpy as np

from vitc.core.errors import VitcInputError
from vitc.core.graph import const_value
from vitc.core.ir import CompiledModel, PassRecord
from vitc.passes import bilstm_distill
from vitc.passes.bilstm_graph import replace_block
from vitc.passes.bilstm_weights import (DISTILL_EXTRA, BlockLstm, choose_units, group_norms, keep_units,
                                        load_weights, npz_bytes, numpy_forward, random_block)
from vitc.passes.fidelity import emit_copy, end_to_end, mean_cosine
from vitc.passes.options import PassOptions, at_least, block_list, in_range, option, parse_block_list, positive

WEIGHTS_FILE = "bilstm_weights.npz"     # written into OUTDIR next to the rewritten model


# --------------------------------------------------------------------------- costs


def attention_counts(blk, tokens: int) -> dict[str, int]:
    """What the replaced part of a block costs with attention: q/k/v projections (+ core)."""
    C, N = blk.embed_dim, tokens
    params = sum(p.in_features * p.out_features + (p.out_features if p.bias else 0)
                 for p in (blk.q_proj, blk.k_proj, blk.v_proj))
    return {"params": params, "weight_macs": 3 * N * C * C, "activation_macs": 2 * N * N * C,
            "macs": 3 * N * C * C + 2 * N * N * C}


def bilstm_counts(b: BlockLstm, tokens: int) -> dict[str, int]:
    """Parameters and per-inference MACs (batch 1, ``tokens`` steps) of a replacement block."""
    C, N, d = b.embed_dim, tokens, b.head_dim
    macs = N * C * C
    for head in b.heads:
        for dr in (head.fwd, head.rev):
            macs += N * 4 * dr.hidden * (d + dr.hidden)
        macs += N * sum(head.hidden) * d
    units = sum(sum(h.hidden) for h in b.heads)
    return {"params": b.params, "weight_macs": macs, "activation_macs": 0, "macs": macs, "hidden_units": units,
            "serial_steps": N}


def attention_matrices(blk) -> list[tuple[int, int, int]]:
    """(K, N, count) of the weight matrices the replaced part of a block stores (q, k, v)."""
    return [(p.in_features, p.out_features, 1) for p in (blk.q_proj, blk.k_proj, blk.v_proj)]


def bilstm_matrices(b: BlockLstm) -> list[tuple[int, int, int]]:
    """(K, N, count) of the weight matrices a replacement block stores: pre_proj, per head and
    direction W (d × 4h) and R (h × 4h), per head head_proj ((h_f + h_r) × d)."""
    mats = [(b.embed_dim, b.embed_dim, 1)]
    for head in b.heads:
        for dr in (head.fwd, head.rev):
            mats += [(b.head_dim, 4 * dr.hidden, 1), (dr.hidden, 4 * dr.hidden, 1)]
        mats.append((sum(head.hidden), b.head_dim, 1))
    return mats


def crossbar_count(hw, mats: list[tuple[int, int, int]]) -> int | None:
    """Crossbars the matrices take on ``hw`` (one copy each, :meth:`HardwareSpec.crossbars_for`),
    or None when there is no crossbar target."""
    if hw is None or getattr(hw, "kind", None) != "xbar":
        return None
    return int(sum(hw.crossbars_for(K, N, c) for K, N, c in mats))


def _tokens(blk, cm: CompiledModel, fallback: int) -> int:
    return blk.tokens or fallback


# --------------------------------------------------------------------------- the pass


def _cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Token-wise cosine (mean over tokens and samples) and per-sample flattened cosine."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    num = (a64 * b64).sum(-1)
    den = np.linalg.norm(a64, axis=-1) * np.linalg.norm(b64, axis=-1)
    tok = np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)
    return {"cosine": float(tok.mean()), "cosine_min_token": float(tok.min()), "cosine_sample": mean_cosine(a, b)}


def core_target_names(cm: CompiledModel, blocks: list[int]) -> dict[int, str]:
    """Per block, the ORIGINAL model's tensor that the output projection reads — the merged-heads
    attention output concat_heads(softmax(QKᵀs)V), i.e. the distillation target."""
    by_name = {n.name: n for n in cm.original.graph.node}
    out = {}
    for i in blocks:
        node = by_name.get(cm.blocks[i].out_proj.matmul)
        if node is None:
            raise VitcInputError(f"bilstm: output projection of block {i} not found in the original graph")
        out[i] = node.input[0]
    return out


def _mask_value(cm: CompiledModel, i: int) -> np.ndarray | None:
    """The constant additive mask of block ``i``'s core, if it has one that is a constant."""
    core = cm.node(cm.blocks[i].attention)
    return const_value(core.inputs[3]) if len(core.inputs) > 3 else None


def has_live_mask(cm: CompiledModel, i: int) -> bool:
    """True if block ``i``'s attention applies a mask that is not a constant all-zero tensor
    (dynamo exports of unmasked models carry such zeros)."""
    if not cm.blocks[i].has_mask:
        return False
    m = _mask_value(cm, i)
    return m is None or bool(np.any(m != 0))


def key_padding_lengths(cm: CompiledModel, ctx, blocks: list[int]) -> dict[int, tuple[np.ndarray, int]]:
    """(real tokens per calibration sample [S], the mask's rank) for each block in ``blocks`` whose attention mask is
    a key-padding mask (the same keys masked for every query and head) with right padding (what LSTMs over each sample's real tokens — packed
    in training, ONNX ``sequence_lens`` in the graph — reproduce); any other mask is an error
    naming the block (``--bilstm-ignore-mask`` replaces it anyway)."""
    out = {}
    for i in blocks:
        name = cm.node(cm.blocks[i].attention).inputs[3].name
        try:
            m = ctx.activations(cm, [name])[name]
        except Exception:  # noqa: BLE001 - onnxruntime: the tensor is not in the original model
            m = None
        why = None
        if m is None or m.ndim < 2 or not np.array_equal(m, np.broadcast_to(
                m[(slice(None),) + (slice(0, 1),) * (m.ndim - 2)], m.shape)):
            why = "it is not a key-padding mask (the same keys masked for every query and head)"
        else:
            row = m[(slice(None),) + (0,) * (m.ndim - 2)]                  # [S, N]
            keep = row > -1.0 if m.dtype != np.bool_ else row
            if not np.all(np.diff(keep.astype(np.int8), axis=1) <= 0) or not keep[:, 0].all():
                why = "its padding is not at the end of every sample"
            else:
                out[i] = (keep.sum(1).astype(np.int64), m.ndim)
        if why:
            raise VitcInputError(f"bilstm: block {i}'s attention mask cannot be applied by LSTMs: {why} "
                                 "(pass --bilstm-ignore-mask to replace it anyway)")
    return out


def teacher_attention(cm: CompiledModel, i: int, mod):
    """``mod.TeacherAttention`` of block ``i`` (canonical q/k/v weights, scale, constant mask)."""
    blk = cm.blocks[i]
    t = cm.graph.tensors()
    val = lambda name: None if name is None else np.asarray(t[name].values, np.float32)  # noqa: E731
    return mod.TeacherAttention(val(blk.q_proj.weight), val(blk.q_proj.bias), val(blk.k_proj.weight),
                                val(blk.k_proj.bias), val(blk.v_proj.weight), val(blk.v_proj.bias),
                                float(cm.node(blk.attention).attrs["scale"]), blk.num_heads,
                                _mask_value(cm, i) if blk.has_mask else None)


def numpy_attention_core(cm: CompiledModel, i: int, x: np.ndarray) -> np.ndarray:
    """concat_heads(softmax(q kᵀ · scale) v) recomputed in numpy from x_in [S, N, C] with the
    canonical projection weights (cross-check of the collected target; no mask)."""
    blk = cm.blocks[i]
    t = cm.graph.tensors()
    core = cm.node(blk.attention)
    vals = []
    for p in (blk.q_proj, blk.k_proj, blk.v_proj):
        y = x.astype(np.float64) @ np.asarray(t[p.weight].values, np.float64)
        if p.bias:
            y = y + np.asarray(t[p.bias].values, np.float64)
        vals.append(y.reshape(x.shape[0], x.shape[1], blk.num_heads, blk.head_dim).transpose(0, 2, 1, 3))
    q, k, v = vals
    s = q @ k.transpose(0, 1, 3, 2) * float(core.attrs["scale"])
    if blk.has_mask:
        s = s + _mask_value(cm, i)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    return (s @ v).transpose(0, 2, 1, 3).reshape(x.shape)


def _below_one(v) -> None:
    if not 0 <= v < 1:
        raise ValueError("must be in [0, 1)")


def _weights_source(v) -> None:
    if v != "untrained" and not Path(v).exists():
        raise ValueError("file not found (a .npz, a FAR state dict, or 'untrained')")


@dataclasses.dataclass(frozen=True)
class BiLstmOptions(PassOptions):
    weights: str | None = option(None, "--bilstm-weights", type=str, metavar="PATH|untrained", check=_weights_source,
                                 help="bilstm: load weights (our .npz or a FAR PyTorch state dict) instead of "
                                      "distilling; 'untrained' = random init (costing only)")
    save: str | None = option(None, "--bilstm-save", type=str, metavar="PATH.npz",
                              help="bilstm: save the weights used")
    blocks: str | None = option(None, "--bilstm-blocks", metavar="0,1,4-7", check=block_list,
                                help="bilstm: blocks to replace (default all)")
    epochs: int | None = option(None, "--epochs", "--bilstm-epochs", type=int, metavar="N", check=positive,
                                help="training epochs per block (bilstm default: enough for ~2400 optimizer steps, "
                                     "20–300)")
    lr: float = option(1e-2, "--lr", "--bilstm-lr", type=float, metavar="LR", check=positive,
                       help="learning rate (bilstm default 1e-2, AdamW)")
    batch: int = option(32, "--bilstm-batch", type=int, metavar="N", check=positive,
                        help="bilstm: distillation batch size (default 32)")
    time_budget: float | None = option(None, "--time-budget", "--bilstm-time-budget", type=float, metavar="SECONDS",
                                       check=positive,
                                       help="bilstm: wall-clock budget for all distillation (split evenly over blocks)")
    loss: str = option("cosine+mse", "--bilstm-loss", choices=("cosine", "cosine+mse"), type=str,
                       help="bilstm: distillation loss: 1 − cosine + MSE/var(target) (default), or 1 − cosine only")
    init: str = option("v", "--bilstm-init", choices=("v", "random"), type=str,
                       help="bilstm: pre_proj initialised from the v projection (default) or random (FAR)")
    augment: str = option("mixup", "--bilstm-augment", choices=("mixup", "none"), type=str,
                          help="bilstm: add mixed inputs λ·x_i + (1−λ)·x_j (λ ~ U(0,1)) with targets from the block's "
                               "own attention (default mixup; 2× training cost, generalises from small calibration sets)")
    mix_alpha: float = option(1.0, type=float, check=positive, help="bilstm: mixup Beta(α, α) parameter (API only)")
    device: str = option("auto", "--bilstm-device", choices=("auto", "cpu", "cuda"), type=str,
                         help="bilstm: torch device (default auto: CUDA when available)")
    prune_threshold: float | None = option(None, "--prune-threshold", type=float, metavar="T", check=in_range(0.0, 1.0),
                                           help="bilstm: remove hidden units whose group norm < THRESHOLD × the "
                                                "block's largest")
    prune_ratio: float | None = option(None, "--prune-ratio", type=float, metavar="R", check=_below_one,
                                       help="bilstm: remove this fraction of each block's hidden units (smallest group "
                                            "norms), in [0, 1)")
    hoyer: float = option(2e-3, "--bilstm-hoyer", type=float, metavar="COEF", check=at_least(0.0),
                          help="bilstm: DeepHoyer group Hoyer-Square coefficient while pruning (default 2e-3)")
    finetune_epochs: int | None = option(None, "--bilstm-finetune-epochs", type=int, metavar="N", check=at_least(0),
                                         help="bilstm: epochs after pruning (default epochs/2)")
    ignore_mask: bool = option(False, "--bilstm-ignore-mask",
                               help="bilstm: replace masked (padded) attention too; the LSTMs read padding tokens")
    measure: bool = option(True, "--bilstm-no-measure", negate="--bilstm-no-measure",
                           help="bilstm: skip the calibration fidelity measurement of loaded weights")


class BiLstmPass:
    name = "bilstm"
    help = "FAR: replace attention by per-head bidirectional LSTMs (distilled, loaded, or untrained)"
    Options = BiLstmOptions
    after = ("reuse",)      # replaces the attention reuse leaves

    def run(self, cm: CompiledModel, ctx) -> PassRecord:
        t_start = time.process_time()
        w_start = time.time()
        o: BiLstmOptions = ctx.opts(self.name)
        blocks = parse_block_list(o.blocks, len(cm.blocks), "--bilstm-blocks")
        if not cm.blocks:
            raise VitcInputError("bilstm: the model has no canonical encoder blocks (the BiLSTM replaces a block's "
                                 "attention with its projections; see vitc inspect)")
        masked = [i for i in blocks if has_live_mask(cm, i)]
        lengths = {} if o.ignore_mask else key_padding_lengths(cm, ctx, masked)
        threshold, ratio = o.prune_threshold, o.prune_ratio
        prune = threshold is not None or ratio is not None
        source = o.weights
        details: dict = {"blocks": {}, "calibration_samples": None}
        fidelity: dict = {}
        tokens_default = 197
        if source == "untrained":
            rng = np.random.default_rng(ctx.seed)
            weights = {i: random_block(cm.blocks[i].embed_dim, cm.blocks[i].num_heads, rng) for i in blocks}
            kind, details["weights_source"] = "untrained", "random (PyTorch default init)"
            if prune:
                weights = {i: keep_units(w, choose_units(group_norms(w), threshold, ratio)) for i, w in weights.items()}
        elif source:
            loaded, fmt = load_weights(source, cm)
            absent = [i for i in blocks if i not in loaded]
            if absent and o.blocks is not None:
                raise VitcInputError(f"bilstm: {Path(source).name} has no weights for blocks {absent}")
            blocks = [i for i in blocks if i in loaded]
            weights = {i: loaded[i] for i in blocks}
            kind, details["weights_source"] = "loaded", f"{source} ({fmt})"
            for i in blocks:
                post = weights[i].post_proj
                if post is not None:
                    kept = np.asarray(cm.tensor(cm.blocks[i].out_proj.weight).values, np.float32).T
                    details["blocks"].setdefault(i, {})["post_proj_max_diff"] = float(np.abs(post - kept).max()) \
                        if post.shape == kept.shape else "shape mismatch"
            if prune:
                weights = {i: keep_units(w, choose_units(group_norms(w), threshold, ratio)) for i, w in weights.items()}
            if o.measure:
                fidelity.update(self._measure(cm, ctx, weights, details))
        else:
            weights, train_info = self._distill(cm, ctx, blocks, threshold, ratio, lengths)
            kind, details["weights_source"] = "trained", "block-wise distillation (teacher inputs)"
            details["training"] = train_info["training"]
            for i, info in train_info["blocks"].items():
                details["blocks"].setdefault(i, {}).update(info)
            fidelity.update(train_info["fidelity"])
            details["calibration_samples"] = train_info["samples"]
        hw = getattr(ctx, "hw", None)
        totals = {k: {"params": 0, "macs": 0, "crossbars": 0} for k in ("attention", "bilstm_unpruned", "bilstm")}
        for i in blocks:
            blk = cm.blocks[i]
            n = _tokens(blk, cm, tokens_default)
            name = replace_block(cm, i, weights[i], packed=lengths[i][1] if i in lengths else 0)
            full = random_block(blk.embed_dim, blk.num_heads, np.random.default_rng(0))   # shapes only
            counts = {"attention": attention_counts(blk, n), "bilstm_unpruned": bilstm_counts(full, n),
                      "bilstm": bilstm_counts(weights[i], n)}
            for key, mats in (("attention", attention_matrices(blk)), ("bilstm_unpruned", bilstm_matrices(full)),
                              ("bilstm", bilstm_matrices(weights[i]))):
                counts[key]["crossbars"] = crossbar_count(hw, mats)
            info = details["blocks"].setdefault(i, {})
            info.update({"output": name, "tokens_costed": n, "hidden": weights[i].hidden_sizes(),
                         "hidden_units": counts["bilstm"]["hidden_units"],
                         "hidden_units_unpruned": 2 * blk.num_heads * blk.head_dim, **counts})
            for key, c in counts.items():
                for k in ("params", "macs", "crossbars"):
                    totals[key][k] = None if c[k] is None or totals[key][k] is None else totals[key][k] + c[k]
        if kind != "untrained" and blocks and o.measure:
            fidelity["end_to_end"] = self._end_to_end(cm, ctx)
        units = sum(details["blocks"][i]["hidden_units"] for i in blocks)
        units0 = sum(details["blocks"][i]["hidden_units_unpruned"] for i in blocks)
        details["totals"] = totals
        details["hidden_units"] = {"kept": units, "unpruned": units0,
                                   "removed_fraction": 1 - units / units0 if units0 else 0.0}
        if prune:
            details["pruning"] = {"threshold": threshold, "ratio": ratio,
                                  "hoyer": o.hoyer if kind == "trained" else None}
        details["blocks"] = {str(k): v for k, v in sorted(details["blocks"].items())}
        if hw is not None and totals["attention"]["crossbars"] is not None:
            details["crossbars_hw"] = getattr(hw, "name", str(hw))
        blob = npz_bytes(weights, {"model": cm.name, "weights": kind, "blocks": blocks, "fidelity": fidelity})
        save = o.save
        if save:
            Path(save).parent.mkdir(parents=True, exist_ok=True)
            Path(save).write_bytes(blob)
            details["saved"] = str(save)
        details["weights_file"] = WEIGHTS_FILE
        cm.graph.cleanup(remove_unused_graph_inputs=False).toposort()
        record = PassRecord(self.name, blocks, kind, fidelity, details)
        record.files[WEIGHTS_FILE] = blob      # written into OUTDIR; reload with --bilstm-weights
        record.timings.update({"cpu_seconds": round(time.process_time() - t_start, 2),
                               "wall_seconds": round(time.time() - w_start, 2)})
        for i, info in details["blocks"].items():
            for k in ("cpu_seconds", "wall_seconds"):
                if k in info:
                    record.timings[f"block{i}_{k}"] = info.pop(k)
        return record

    @staticmethod
    def _end_to_end(cm, ctx) -> dict:
        """Rewritten vs original model on the calibration data: output cosine, top-1 agreement
        and (with labels) accuracy, in % (``passes/fidelity.py``)."""
        return end_to_end(emit_copy(cm), ctx.calibration(cm), ctx.model_outputs(cm))

    # ----------------------------------------------------------------- data
    def _collect(self, cm, ctx, blocks):
        targets = core_target_names(cm, blocks)
        names = [cm.blocks[i].x_in for i in blocks] + [targets[i] for i in blocks]
        acts = ctx.activations(cm, names)
        return {i: (acts[cm.blocks[i].x_in], acts[targets[i]]) for i in blocks}, targets

    def _measure(self, cm, ctx, weights, details) -> dict:
        """Block cosine (teacher inputs) of loaded/untrained weights on the calibration data."""
        data, targets = self._collect(cm, ctx, list(weights))
        fid = {}
        for i, w in weights.items():
            x, t = data[i]
            c = _cosines(numpy_forward(w, x).astype(np.float32), t)
            details["blocks"].setdefault(i, {}).update({"cosine_calib": c["cosine"], "target": targets[i]})
            fid[f"block{i}_cosine"] = round(c["cosine"], 6)
        if fid:
            fid["min_block_cosine"] = min(v for v in fid.values())
        return fid

    def _distill(self, cm, ctx, blocks, threshold, ratio, lengths):
        try:
            bilstm_distill.require_torch()
        except ImportError:
            raise VitcInputError(f"bilstm distillation needs PyTorch: pip install '{DISTILL_EXTRA}' "
                                 "(or give --bilstm-weights FILE, or --bilstm-weights untrained)") from None
        data, targets = self._collect(cm, ctx, blocks)
        check = {}
        for i in blocks:   # cross-check the collected target against a numpy recomputation
            x, t = data[i]
            if not has_live_mask(cm, i):
                ref = numpy_attention_core(cm, i, x[:4])
                check[i] = float(np.abs(ref - t[:4]).max() / max(np.abs(ref).max(), 1e-30))
        inits = {}
        o: BiLstmOptions = ctx.opts(self.name)
        if o.init == "v":
            for i in blocks:
                vp = cm.blocks[i].v_proj
                w = np.asarray(cm.tensor(vp.weight).values, np.float32).T
                bias = np.asarray(cm.tensor(vp.bias).values, np.float32) if vp.bias else np.zeros(w.shape[0], np.float32)
                inits[i] = (w, bias)
        cfg = bilstm_distill.DistillConfig(
            epochs=o.epochs, lr=o.lr, batch=o.batch, loss=o.loss, time_budget=o.time_budget, device=o.device,
            seed=int(ctx.seed), prune_threshold=threshold, prune_ratio=ratio,
            hoyer=o.hoyer, finetune_epochs=o.finetune_epochs, augment=o.augment, mix_alpha=o.mix_alpha)
        tasks = [bilstm_distill.BlockTask(i, data[i][0], data[i][1], cm.blocks[i].num_heads, inits.get(i),
                                          None if has_live_mask(cm, i) else teacher_attention(cm, i, bilstm_distill),
                                          lengths[i][0] if i in lengths else None)
                 for i in blocks]
        results = bilstm_distill.distill_blocks(tasks, cfg)
        weights, info, fid = {}, {}, {}
        for r in results:
            weights[r.index] = r.block
            info[r.index] = dict(r.info, target=targets[r.index], target_crosscheck_rel_err=check.get(r.index))
            fid[f"block{r.index}_cosine"] = round(r.info["cosine_calib"], 6)
        if fid:
            fid["min_block_cosine"] = min(fid.values())
        return weights, {"blocks": info, "fidelity": fid, "samples": int(len(next(iter(data.values()))[0])),
                         "training": cfg.describe()}
