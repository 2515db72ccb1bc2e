"""Trained recovery: distil the rewritten model against the original on calibration data.

``--passes taylor,recover`` (or ``vitc compile --recover train``) — needs the ``[distill]``
extra (torch; CPU is enough). After the rewriting passes, the whole rewritten model is mirrored
in torch (:mod:`vitc.passes.torch_mirror`), the weights of the rewritten blocks become
parameters, and they are trained end to end to reproduce the original model's outputs on the
calibration data; the trained weights are written back into the graph, so the output is still
one ONNX model that onnxruntime runs.

What is trained (``--recover-scope``): ``block`` (default) — every weight of the blocks a pass
rewrote (attention projections, the reuse transformation block, LayerNorms, that block's MLP),
the capacity the papers fine-tune while the rest of the network stays as trained; ``attention``
— only the attention part of those blocks (norm1, q/k/v/output projections, the transformation
block); ``model`` — every float weight (full fine-tuning; overfits small calibration sets).
Rewritten blocks are those without the exact ``ai.vitc::Attention`` core.

Loss, per float output (:mod:`vitc.runtime.output_kinds`): classifier logits — KL divergence to
the original's softmax; embeddings — (1 − cosine) + MSE over the original's variance; hidden
states — the same per token, over the real tokens only when the model takes an attention mask.
Text batches are cut to their longest real sequence (right padding) when the sequence axis is
dynamic, and are drawn from length-sorted pools so that little padding is left to compute.

Augmentation (``--recover-augment auto``): every batch is also fed altered copies of its
samples — mixup λ·x_i + (1 − λ)·x_j (λ ~ Beta(1, 1), partner from the same batch) for float
inputs such as images; for token inputs, 15 % of the real tokens (not the first and last)
replaced by tokens of other samples in the batch — with targets from a torch mirror of the
*original* model, exact for inputs the calibration set does not contain. Without it a few
hundred calibration samples overfit within an epoch.

Training: Adam with a cosine learning-rate decay over ``--recover-epochs``, seeded shuffles
(same seed → same weights on CPU), a held-out part of the calibration samples
(``--recover-holdout``) scored after every epoch; the best trained epoch's weights are kept —
unless its held-out loss is no lower than that of the weights before training: then nothing is
written back and the record says so (``weights: none``). The held-out samples are held out of the
whole compile (:meth:`~vitc.passes.context.PassContext.held_out`): the closed-form fits, measures
and searches before this pass never saw them, so "before" and "after" are scored on the same
unseen samples and the comparison is a strict one. Training stops after ``--recover-patience`` epochs without improvement, at
``--recover-epochs`` or at ``--time-budget`` seconds (checked before every batch, with the time
the held-out scoring takes kept in hand: an epoch the budget cuts short is scored and ends the
training). With a budget, the decay is planned over the epochs that fit in it, counted from
the first epoch's time (``epochs_planned`` in the record; without that, a budget that ends
training early leaves the rate high and the last epochs no better than the first — measured on
MiniLM with BiLSTM blocks: 7 of 30 epochs, no epoch beat the starting weights). The record gives the curve, the held-out
metrics before and after, and what was trained on what data for how long (wall times in the
timings only: OUTDIR files stay byte-identical for the same inputs and seed).
"""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from vitc.compiler.emit import emit_light
from vitc.core.errors import VitcInputError
from vitc.core.ir import CompiledModel, PassRecord
from vitc.passes.context import holdout_split
from vitc.passes.fidelity import emit_copy, end_to_end
from vitc.passes.options import PassOptions, at_least, in_range, option, positive
from vitc.passes.schedule import budgeted_epochs, cosine_factor
from vitc.runtime.output_kinds import KIND_RANK, embedding_metrics, hidden_widths, mask_input, output_kind, token_cosines

SCOPES = ("block", "attention", "model")
MLP_ROLES = {"mlp_fc1", "mlp_fc2", "mlp_fc1_bias", "mlp_fc2_bias", "norm2", "residual", "mlp_act"}


@dataclasses.dataclass(frozen=True)
class RecoverOptions(PassOptions):
    scope: str = option("block", "--recover-scope", choices=SCOPES, type=str,
                        help="recover: weights trained — block (every weight of rewritten blocks), attention "
                             "(their attention part), model (all)")
    epochs: int = option(40, "--recover-epochs", type=int, metavar="N", check=positive,
                         help="recover: most epochs over the training part of the calibration data")
    lr: float = option(2e-4, "--recover-lr", type=float, metavar="LR", check=positive,
                       help="recover: Adam learning rate")
    batch: int = option(16, "--recover-batch", type=int, metavar="N", check=positive, help="recover: batch size")
    holdout: float = option(0.2, "--recover-holdout", type=float, metavar="F", check=in_range(0.05, 0.5),
                            help="recover: share of calibration samples held out for early stopping")
    patience: int = option(5, "--recover-patience", type=int, metavar="N", check=positive,
                           help="recover: epochs without held-out improvement before stopping")
    augment: str = option("auto", "--recover-augment", choices=("auto", "none"), type=str,
                          help="recover: also train on augmented inputs whose targets the original model computes "
                               "(auto: mixup of float inputs, token substitution in token inputs)")
    temperature: float = option(1.0, "--recover-temperature", type=float, metavar="T", check=positive,
                                help="recover: distillation temperature for logits (KL of softmax(z/T), scaled by T²)")
    hints: float = option(1.0, "--recover-hints", type=float, metavar="W", check=at_least(0.0),
                          help="recover: weight of the per-block hidden-state loss (0: final outputs only)")
    time_budget: float | None = option(None, "--time-budget", type=float, metavar="SECONDS", check=at_least(1.0),
                                       help="stop training after this many seconds (bilstm, recover)")


def rewritten_blocks(model: onnx.ModelProto) -> list[int]:
    """Blocks of an emitted model whose attention is not the exact ai.vitc::Attention core."""
    blocks, exact = set(), set()
    for n in model.graph.node:
        meta = {p.key: p.value for p in n.metadata_props}
        if "vitc.block" in meta and meta["vitc.block"].isdigit():
            b = int(meta["vitc.block"])
            blocks.add(b)
            if n.domain == "ai.vitc" and n.op_type == "Attention":
                exact.add(b)
    return sorted(blocks - exact)


def trainable_names(model: onnx.ModelProto, blocks: list[int], scope: str) -> set[str]:
    """Float initializers of ``model`` the scope trains (module doc)."""
    floats = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 1}
    if scope == "model":
        return floats
    wanted = {str(b) for b in blocks}
    names = set()
    for n in model.graph.node:
        meta = {p.key: p.value for p in n.metadata_props}
        if meta.get("vitc.block") not in wanted:
            continue
        if scope == "attention" and meta.get("vitc.role") in MLP_ROLES:
            continue
        names.update(i for i in n.input if i in floats)
    return names


class _Objective:
    """Loss and held-out metrics over the model's float outputs (module doc)."""

    def __init__(self, names: list[str], teacher: dict[str, np.ndarray], widths: set[int], temperature: float = 1.0):
        self.temperature = temperature
        self.kinds = {n: output_kind(teacher[n], widths) for n in names}
        self.names = [n for n in names if self.kinds[n] != "other"]
        if not self.names:
            raise VitcInputError("recover: the model has no float output to distil against")
        self.var = {n: float(np.var(teacher[n])) or 1.0 for n in self.names}

    def loss(self, torch, out: dict, target: dict, mask):
        total = 0.0
        for n in self.names:
            s, t = out[n], target[n]
            kind = self.kinds[n]
            if kind == "logits":    # Hinton et al.'s distillation: softened by T, scaled by T² to keep gradients
                T = self.temperature
                total = total + T * T * torch.nn.functional.kl_div(
                    torch.log_softmax(s / T, -1), torch.log_softmax(t / T, -1), log_target=True, reduction="batchmean")
                continue
            if kind == "hidden":
                total = total + _hidden_loss(torch, s, t, mask)
                continue
            cos = torch.nn.functional.cosine_similarity(s.reshape(len(s), -1), t.reshape(len(t), -1), dim=1)
            total = total + (1 - cos).mean() + ((s - t) ** 2).mean() / self.var[n]
        return total

    def metrics(self, out: dict[str, np.ndarray], target: dict[str, np.ndarray], mask) -> dict:
        res = {}
        for n in self.names:
            kind = self.kinds[n]
            if kind == "logits":
                res[n] = {"agreement": float((out[n].argmax(1) == target[n].argmax(1)).mean())}
            elif kind == "embedding":
                res[n] = {k: round(v, 6) for k, v in embedding_metrics(target[n], out[n]).items()}
            else:
                cos = token_cosines(target[n], out[n], mask)
                res[n] = {"token_cosine_mean": round(float(cos.mean()), 6), "token_cosine_min": round(float(cos.min()), 6)}
        return res


def _trim(feeds: dict, targets: dict, mask: str | None, dynamic: bool):
    """Cut right-padded text batches to their longest real sequence."""
    if mask is None or not dynamic:
        return feeds, targets
    m = feeds[mask].astype(np.int64)
    if not np.all(np.diff(m, axis=1) <= 0):        # padding not only at the end
        return feeds, targets
    n, full = max(1, int(m.sum(1).max())), m.shape[1]
    cut = {k: (v[:, :n] if v.ndim >= 2 and v.shape[1] == full else v) for k, v in feeds.items()}
    tgt = {k: (v[:, :n] if v.ndim >= 3 and v.shape[1] == full else v) for k, v in targets.items()}
    return cut, tgt


class RecoverPass:
    name = "recover"
    help = "train the rewritten blocks end to end against the original on calibration data (needs vitc[distill])"
    Options = RecoverOptions
    after = ("reuse", "bilstm", "taylor", "reorder")
    requires = ("torch",)           # checked when the passes are selected, before any work

    def run(self, cm: CompiledModel, ctx, options: RecoverOptions | None = None) -> PassRecord:
        """Train, write back, record (module doc); ``options`` overrides the compile's (reuse auto's
        short recovery estimates)."""
        try:
            import torch    # noqa: PLC0415 - optional extra, only when the pass runs
            from vitc.passes.torch_mirror import TorchMirror   # noqa: PLC0415 - imports torch
        except ImportError:
            raise VitcInputError("recover: trained recovery needs PyTorch (pip install 'vitc[distill]', "
                                 "CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)") \
                from None
        o: RecoverOptions = options or ctx.opts(self.name)
        t0 = time.perf_counter()
        light, held = emit_light(dataclasses.replace(cm, graph=cm.graph.copy()))
        blocks = rewritten_blocks(light)
        if not blocks and o.scope != "model":
            raise VitcInputError("recover: no rewritten block to train (run it after taylor, reuse or bilstm)")
        names = trainable_names(light, blocks, o.scope)
        torch.manual_seed(ctx.seed)
        mirror = TorchMirror(light, held, names)
        teacher_mirror = TorchMirror(cm.original, cm.original_held)
        hints = block_outputs(light, cm.original) if o.hints else []
        data = ctx.calibration(cm, "all")
        feeds = {i.name: data.feeds[i.name] for i in light.graph.input if i.name in data.feeds}
        outputs = [x.name for x in light.graph.output]
        teacher = dict(zip(outputs, ctx.model_outputs(cm, "all")))
        mask = mask_input(feeds)
        objective = _Objective(outputs, teacher, hidden_widths(light), o.temperature)
        dynamic = any(d.dim_param or not d.HasField("dim_value")
                      for i in light.graph.input if i.name == mask for d in i.type.tensor_type.shape.dim[1:2])
        n = len(next(iter(feeds.values())))
        if n < 4:
            hint = " (no --calib given: synthetic inputs of the model's fixed batch size)" \
                if ctx.calibration_source == "synthetic" else ""
            raise VitcInputError(f"recover: {n} calibration sample(s){hint} are too few to train and hold some out; "
                                 "give --calib with at least 4 samples")
        # the rows every earlier pass was kept from (or, run on its own, recover's own split)
        train, hold = ctx.held_out(n) or holdout_split(n, o.holdout, ctx.seed)
        # real lengths (right-padded text with a dynamic axis): batches of similar length are cut shorter
        lengths = feeds[mask].astype(np.int64).sum(1) if mask is not None and dynamic else None

        def take(idx, targets: bool = True):
            """Feeds (and the stored teacher outputs) of samples ``idx``, trimmed."""
            f = {k: v[idx] for k, v in feeds.items()}
            return _trim(f, {k: teacher[k][idx] for k in objective.names} if targets else {}, mask, dynamic)

        def predict(f):
            tf = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.items()}
            with torch.no_grad():
                return mirror(tf, objective.names), (tf[mask] if mask else None)

        def evaluate() -> tuple[float, dict]:
            losses, outs, tgts, masks = [], {k: [] for k in objective.names}, {k: [] for k in objective.names}, []
            for start in range(0, len(hold), o.batch):
                f, t = take(hold[start:start + o.batch])
                out, m = predict(f)
                losses.append(float(objective.loss(torch, out, {k: torch.from_numpy(v) for k, v in t.items()}, m))
                              * len(next(iter(f.values()))))
                for k in objective.names:
                    outs[k].append(_pad(out[k].numpy(), feeds, k))
                    tgts[k].append(_pad(t[k], feeds, k))
                masks.append(f[mask] if mask else None)
            joined_mask = _join_masks(masks, feeds, mask)
            metrics = objective.metrics({k: np.concatenate(v) for k, v in outs.items()},
                                        {k: np.concatenate(v) for k, v in tgts.items()}, joined_mask)
            return sum(losses) / len(hold), metrics

        t_eval = time.perf_counter()
        before_loss, before = evaluate()
        t_eval = time.perf_counter() - t_eval

        def out_of_time() -> bool:
            """No time left in --time-budget for another batch and the held-out scoring after it."""
            return o.time_budget is not None and time.perf_counter() - t0 + t_eval > o.time_budget
        params = list(mirror.named_weights.values())
        opt = torch.optim.Adam(params, lr=o.lr)
        per_epoch = -(-len(train) // o.batch)
        plan = {"epochs": o.epochs}      # the cosine decay's length; a time budget may shorten it
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cosine_factor(i, plan["epochs"] * per_epoch))
        initial = {k: p.detach().clone() for k, p in mirror.named_weights.items()}
        best = (math.inf, initial, 0)
        curve, epoch_seconds, rng, stale, epoch = [], [], np.random.RandomState(ctx.seed), 0, 0
        bar = ctx.progress.bar(range(o.epochs), "recover: epochs")
        t_first = time.perf_counter() - t0      # spent before the first epoch (set-up, first scoring)
        stop = "epochs"
        for epoch in bar:
            total, seen = 0.0, 0
            for idx in epoch_batches(train, lengths, o.batch, rng):
                if out_of_time():                 # the budget ends the epoch early (scored, then stop)
                    break
                f, _ = take(idx, targets=False)   # targets: the teacher mirror's
                if o.augment != "none":
                    extra = _augment(f, mask, rng)
                    f = {k: np.concatenate([f[k], extra[k]]) for k in f}
                tf = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.items()}
                with torch.no_grad():
                    t = teacher_mirror(tf, objective.names + hints)
                with torch.enable_grad():
                    out = mirror(tf, objective.names + hints)
                m = tf[mask] if mask else None
                loss = objective.loss(torch, out, t, m)
                if hints:
                    loss = loss + o.hints * sum(_hidden_loss(torch, out[h], t[h], m) for h in hints) / len(hints)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            if not seen:
                stop = f"time budget {o.time_budget:g} s"
                break
            hold_loss, metrics = evaluate()
            curve.append({"epoch": epoch + 1, "train_loss": round(total / seen, 6),
                          "holdout_loss": round(hold_loss, 6), "holdout": metrics,
                          **({"share_of_epoch": round(seen / len(train), 3)} if seen < len(train) else {})})
            epoch_seconds.append(round(time.perf_counter() - t0, 1))
            if epoch == 0 and o.time_budget is not None:
                plan["epochs"] = budgeted_epochs(o.epochs, o.time_budget, epoch_seconds[0], t_first)
            if hold_loss < best[0] - 1e-6:
                best, stale = (hold_loss, {k: p.detach().clone() for k, p in mirror.named_weights.items()}, epoch + 1), 0
            else:
                stale += 1
            if stale >= o.patience:
                stop = f"no held-out improvement for {o.patience} epochs"
                break
            if seen < len(train) or out_of_time():
                stop = f"time budget {o.time_budget:g} s"
                break
            if epoch + 1 >= plan["epochs"] < o.epochs:
                stop = f"end of the {plan['epochs']} epoch(s) the time budget allows"
                break
        trained = best[2] > 0 and best[0] < before_loss
        if not trained:
            best = (before_loss, initial, 0)
            stop += ("; no trained epoch beat the weights before training on the held-out samples: they are kept"
                     if curve else "; the weights before training are kept")
        with torch.no_grad():
            for k, p in mirror.named_weights.items():
                p.copy_(best[1][k])
        after_loss, after = evaluate()
        if trained:
            _write_back(cm.graph, mirror.trained_arrays())
        seconds = round(time.perf_counter() - t0, 1)
        details = {
            "method": "end-to-end distillation against the original model's outputs (torch mirror of the graph)",
            "scope": o.scope, "blocks": blocks, "tensors": len(names),
            "parameters": int(sum(p.numel() for p in params)),
            "data": ctx.calibration_source, "samples": {"train": int(len(train)), "holdout": int(len(hold))},
            "losses": {k: objective.kinds[k] for k in objective.names}, "attention_mask": mask,
            "temperature": o.temperature,
            "optimizer": {"name": "adam", "lr": o.lr, "batch": o.batch},
            "epochs_run": len(curve), "epochs_planned": plan["epochs"], "best_epoch": best[2], "stopped": stop,
            "holdout_before": {"loss": round(before_loss, 6), **before},
            "holdout_after": {"loss": round(after_loss, 6), **after}, "curve": curve,
        }
        primary = after[min(objective.names, key=lambda k: KIND_RANK[objective.kinds[k]])]
        fidelity = {f"holdout_{k}": round(v, 4) for k, v in primary.items()}
        fidelity.update({"holdout_samples": int(len(hold)), "epochs": best[2], "calibration": data.source,
                         "end_to_end": end_to_end(emit_copy(cm), data, ctx.model_outputs(cm, "all"))})
        timings = {"seconds": seconds, **{f"epoch{i + 1}_seconds": v for i, v in enumerate(epoch_seconds)}}
        return PassRecord(self.name, blocks, "trained" if trained else "none", fidelity, details,
                          timings=timings)


def epoch_batches(train: np.ndarray, lengths: np.ndarray | None, batch: int,
                  rng: np.random.RandomState, pool: int = 32) -> list[np.ndarray]:
    """One epoch's batches of sample indices ``train``: a seeded shuffle; with real ``lengths``
    (text, trimmed per batch), each run of ``pool`` batches of the shuffle is sorted by length
    before it is cut, and the batches are shuffled again — every batch is cut to a length close
    to its samples' own (3–4× less padding on sentences), with the same samples per epoch."""
    order = train[rng.permutation(len(train))]
    if lengths is None:
        return [order[i:i + batch] for i in range(0, len(order), batch)]
    batches = []
    for start in range(0, len(order), batch * pool):
        chunk = order[start:start + batch * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch] for i in range(0, len(chunk), batch)]
    return [batches[i] for i in rng.permutation(len(batches))]


def block_outputs(light: onnx.ModelProto, original: onnx.ModelProto) -> list[str]:
    """Output tensors of every block of ``light`` (its last residual Add) that the original model
    computes under the same name: per-block targets for the hidden-state loss."""
    last: dict[str, str] = {}
    for n in light.graph.node:
        meta = {p.key: p.value for p in n.metadata_props}
        if meta.get("vitc.role") == "residual" and meta.get("vitc.block", "").isdigit():
            last[meta["vitc.block"]] = n.output[0]
    produced = {o for n in original.graph.node for o in n.output}
    return [last[b] for b in sorted(last, key=int) if last[b] in produced]


def _hidden_loss(torch, s, t, mask):
    """(1 − cosine) + MSE over the target's variance, per token (real tokens only with a mask)."""
    s, t = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])
    if mask is not None and mask.numel() == s.shape[0]:
        keep = mask.reshape(-1).bool()
        s, t = s[keep], t[keep]
    cos = torch.nn.functional.cosine_similarity(s, t, dim=1)
    return (1 - cos).mean() + ((s - t) ** 2).mean() / t.var().clamp_min(1e-12)


def _augment(feeds: dict[str, np.ndarray], mask: str | None, rng: np.random.RandomState) -> dict[str, np.ndarray]:
    """Altered copies of a batch (module doc): mixup of float inputs, token substitution in the
    integer inputs that are not the mask."""
    n = len(next(iter(feeds.values())))
    partner = rng.permutation(n)
    lam = rng.beta(1.0, 1.0, size=n)
    out = {}
    for k, v in feeds.items():
        if v.dtype.kind == "f":
            shape = (n,) + (1,) * (v.ndim - 1)
            out[k] = (lam.reshape(shape) * v + (1 - lam.reshape(shape)) * v[partner]).astype(v.dtype)
        elif k != mask and v.ndim == 2 and v.dtype.kind in "iu":
            real = feeds[mask].astype(bool) if mask is not None else np.ones(v.shape, bool)
            inner = real & (np.cumsum(real, 1) > 1)                    # not the first real token
            inner &= np.roll(real, -1, axis=1) & (np.arange(v.shape[1]) < v.shape[1] - 1)   # nor the last
            pool = v[inner]
            swap = inner & (rng.rand(*v.shape) < 0.15)
            out[k] = v.copy()
            if pool.size and swap.any():
                out[k][swap] = pool[rng.randint(0, pool.size, size=int(swap.sum()))]
        else:
            out[k] = v.copy()
    return out


def _pad(value: np.ndarray, feeds: dict, name: str) -> np.ndarray:
    """Hidden states of a trimmed batch padded back to the full sequence length with zeros."""
    full = next((v.shape[1] for v in feeds.values() if v.ndim == 2), None)
    if value.ndim >= 3 and full is not None and value.shape[1] < full:
        pad = [(0, 0)] * value.ndim
        pad[1] = (0, full - value.shape[1])
        return np.pad(value, pad)
    return value


def _join_masks(masks: list, feeds: dict, mask: str | None):
    if mask is None:
        return None
    full = feeds[mask].shape[1]
    return np.concatenate([np.pad(m, [(0, 0), (0, full - m.shape[1])]) for m in masks])


def _write_back(graph: gs.Graph, arrays: dict[str, np.ndarray]) -> None:
    tensors = graph.tensors()
    for name, value in arrays.items():
        t = tensors.get(name)
        if not isinstance(t, gs.Constant):
            raise VitcInputError(f"recover: trained weight {name!r} is not a constant of the graph")
        t.values = value.reshape(t.shape).astype(t.dtype if t.dtype is not None else np.float32)
