"""Block-wise distillation of FAR BiLSTM blocks (PyTorch; optional extra ``vitc[distill]``).

Imported lazily by :mod:`vitc.passes.bilstm`; importing this module does not import torch
(the pass registry imports every module under ``vitc.passes`` at CLI start) — torch is
imported inside the functions.

Each block is trained on its own: input = the block's normalised input ``x_in`` of the
original model (teacher input), target = the original merged-heads attention output
concat_heads(softmax(QKᵀs)V), both [S, N, C] collected once from the calibration data.

Loss: 1 − cosine (over the channel axis, mean over tokens), optionally + MSE normalised by
the target's variance (``cosine+mse``, keeps the output scale the frozen output projection
expects). With pruning, the DeepHoyer group Hoyer-Square regulariser
(Σ_j ‖w_j‖)² / Σ_j ‖w_j‖² over the hidden units of the block (group j = unit j's input and
recurrent rows in all four gates, its biases, its recurrent column and its head_proj column)
is added with coefficient ``hoyer``; then units are removed (threshold or ratio, see
:func:`vitc.passes.bilstm.choose_units`) and the block is fine-tuned with the units masked.

Augmentation (``mixup``, default): every batch also gets as many mixed inputs
λ·x_i + (1 − λ)·x_j (λ ~ Beta(α, α), partner from the same batch) whose targets come from the
block's own attention (:class:`TeacherAttention`, the canonical q/k/v weights) — exact
targets for inputs the calibration set does not contain, which lets 256 calibration images
generalise nearly as well as 1257 training images.

The torch module uses FAR's ``MultiHeadLstm`` layout and names (``pre_proj``, one packed
bidirectional ``lstm`` with per-head block-diagonal weights, ``head_proj``), so FAR state
dicts load into it and it converts to per-head weights with
:func:`vitc.passes.bilstm.from_far_packed`.
"""
from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from vitc.core.errors import VitcInputError
from vitc.passes.bilstm_weights import BlockLstm, choose_units, from_far_packed, keep_units
from vitc.passes.schedule import budgeted_epochs, cosine_factor


def require_torch():
    """Import torch or raise ImportError (the caller turns it into a one-line message)."""
    import torch
    return torch


AUTO_STEPS, AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS = 2400, 20, 300


@dataclass
class DistillConfig:
    epochs: int | None = None        # None: auto_epochs() — about AUTO_STEPS optimizer steps
    lr: float = 1e-2
    batch: int = 32
    loss: str = "cosine+mse"         # cosine+mse | cosine
    time_budget: float | None = None  # seconds for all blocks (wall clock)
    device: str = "auto"
    seed: int = 0
    prune_threshold: float | None = None
    prune_ratio: float | None = None
    hoyer: float = 2e-3
    finetune_epochs: int | None = None
    weight_decay: float = 0.0
    warmup_fraction: float = 0.05
    clip: float = 1.0
    threads: int | None = None       # torch CPU threads while training; None: 1 for C ≤ 256 (see below)
    augment: str = "mixup"           # mixup | none (mixup needs BlockTask.teacher), see _train
    mix_alpha: float = 1.0           # mixup: λ ~ Beta(α, α); 1 = uniform
    progress: bool | None = None     # None: tqdm decides (a bar on terminals only)

    @property
    def prune(self) -> bool:
        return self.prune_threshold is not None or self.prune_ratio is not None

    def epochs_for(self, samples: int) -> int:
        """``epochs``, or (None) enough epochs for about AUTO_STEPS optimizer steps, within
        [AUTO_MIN_EPOCHS, AUTO_MAX_EPOCHS]."""
        if self.epochs is not None:
            return int(self.epochs)
        steps = max(1, math.ceil(samples / self.batch))
        return int(min(AUTO_MAX_EPOCHS, max(AUTO_MIN_EPOCHS, math.ceil(AUTO_STEPS / steps))))

    def describe(self) -> dict:
        d = asdict(self)
        d.pop("progress")
        d["optimizer"] = "AdamW, cosine schedule with linear warm-up, grad-norm clip"
        if not self.prune:
            for k in ("prune_threshold", "prune_ratio", "hoyer", "finetune_epochs"):
                d.pop(k)
        if self.augment == "none":
            d.pop("mix_alpha")
        return d


@dataclass
class BlockTask:
    index: int
    x: np.ndarray                     # teacher input [S, N, C]
    target: np.ndarray                # attention core output [S, N, C]
    num_heads: int
    init: tuple[np.ndarray, np.ndarray] | None = None   # (pre_proj weight [C, C] out×in, bias [C])
    teacher: "TeacherAttention | None" = None          # the block's own attention, for augmentation
    lengths: np.ndarray | None = None  # [S] real tokens per sample (right padding): packed LSTMs, loss on those only


@dataclass
class TeacherAttention:
    """The original attention of a block, computable on any input: q/k/v projections
    ([C, C] in×out MatMul layout, biases or None), softmax scale, heads, constant additive mask."""
    q_w: np.ndarray
    q_b: np.ndarray | None
    k_w: np.ndarray
    k_b: np.ndarray | None
    v_w: np.ndarray
    v_b: np.ndarray | None
    scale: float
    num_heads: int
    mask: np.ndarray | None = None

    def torch_fn(self, torch, device):
        """x [B, N, C] → concat_heads(softmax(q kᵀ·scale + mask) v) [B, N, C] (no grad)."""
        t = {k: None if getattr(self, k) is None else torch.as_tensor(np.asarray(getattr(self, k), np.float32),
                                                                      device=device)
             for k in ("q_w", "q_b", "k_w", "k_b", "v_w", "v_b", "mask")}
        H = self.num_heads

        def proj(x, w, b):
            y = x @ t[w]
            y = y if t[b] is None else y + t[b]
            return y.view(x.shape[0], x.shape[1], H, -1).transpose(1, 2)

        def fn(x):
            with torch.no_grad():
                q, k, v = proj(x, "q_w", "q_b"), proj(x, "k_w", "k_b"), proj(x, "v_w", "v_b")
                s = q @ k.transpose(-1, -2) * self.scale
                if t["mask"] is not None:
                    s = s + t["mask"]
                return (s.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
        return fn


@dataclass
class BlockResult:
    index: int
    block: BlockLstm
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- torch module


@functools.lru_cache(maxsize=1)
def far_module_class():
    """The torch module class (built on first use so that importing this file needs no torch)."""
    import torch
    from torch import nn

    class FarMultiHeadLstm(nn.Module):
        """FAR's ``MultiHeadLstm`` without post_proj: x [B, N, C] → head_proj output [B, N, C].

        ``lstm`` is one bidirectional ``nn.LSTM`` (input C, hidden H·h) whose weights are
        block-diagonal per head (gradients masked), i.e. H independent BiLSTMs (input d,
        hidden h per direction); ``head_proj`` Linear(2·H·h → C) reads [fwd all heads ‖ rev
        all heads] and is block-diagonal per head. ``unit_mask`` [2, H·h] removes hidden units
        (pruning) by zeroing their whole weight group — exactly equivalent to deleting them."""

        def __init__(self, embed_dim: int, num_heads: int, hidden: int | None = None):
            super().__init__()
            C, H = embed_dim, num_heads
            d = C // H
            h = hidden or d
            self.embed_dim, self.num_heads, self.head_dim, self.hidden = C, H, d, h
            HH = H * h
            self.pre_proj = nn.Linear(C, C)
            self.lstm = nn.LSTM(C, HH, batch_first=True, bidirectional=True)
            self.head_proj = nn.Linear(2 * HH, C)
            m_ih = torch.zeros(4 * HH, C)
            m_hh = torch.zeros(4 * HH, HH)
            m_head = torch.zeros(C, 2 * HH)
            for hd in range(H):
                for g in range(4):
                    rows = slice(g * HH + hd * h, g * HH + (hd + 1) * h)
                    m_ih[rows, hd * d:(hd + 1) * d] = 1
                    m_hh[rows, hd * h:(hd + 1) * h] = 1
                m_head[hd * d:(hd + 1) * d, hd * h:(hd + 1) * h] = 1
                m_head[hd * d:(hd + 1) * d, HH + hd * h:HH + (hd + 1) * h] = 1
            self.register_buffer("mask_ih", m_ih)
            self.register_buffer("mask_hh", m_hh)
            self.register_buffer("mask_head", m_head)
            self.register_buffer("unit_mask", torch.ones(2, HH))
            self._mask_cache = None
            for name, p in self.named_parameters():
                p.register_hook(functools.partial(self._mask_grad, name))
            self.apply_masks()

        # -- masks
        def set_unit_mask(self, mask) -> None:
            """Keep only the hidden units where ``mask`` [2, H·h] is 1 (and zero the rest)."""
            self.unit_mask.copy_(mask.to(self.unit_mask.device))
            self._mask_cache = None
            self.apply_masks()

        def _apply(self, fn, *args, **kwargs):      # .to(device) etc.: rebuild cached masks there
            self._mask_cache = None
            return super()._apply(fn, *args, **kwargs)

        def masks(self) -> dict:
            """Effective 0/1 mask per parameter (structure × kept units), cached."""
            if self._mask_cache is None:
                self._mask_cache = self._build_masks()
            return self._mask_cache

        def _build_masks(self) -> dict:
            um = self.unit_mask
            out = {}
            for di, suffix in enumerate(("", "_reverse")):
                rows = um[di].repeat(4)                                # [4HH]
                out[f"lstm.weight_ih_l0{suffix}"] = self.mask_ih * rows[:, None]
                out[f"lstm.weight_hh_l0{suffix}"] = self.mask_hh * rows[:, None] * um[di][None, :]
                out[f"lstm.bias_ih_l0{suffix}"] = rows
                out[f"lstm.bias_hh_l0{suffix}"] = rows
            out["head_proj.weight"] = self.mask_head * torch.cat([um[0], um[1]])[None, :]
            return out

        def _mask_grad(self, name, grad):
            m = self.masks().get(name)
            return grad if m is None else grad * m

        def apply_masks(self) -> None:
            with torch.no_grad():
                params = dict(self.named_parameters())
                for name, m in self.masks().items():
                    params[name].mul_(m)

        # -- forward
        def forward(self, x, lengths=None):
            """x [B, N, C]; ``lengths`` [B]: real tokens per sample (right padding) — the LSTMs
            run over those only (packed), as ONNX ``LSTM`` with ``sequence_lens`` does."""
            p = self.pre_proj(x)
            if lengths is None:
                y, _ = self.lstm(p)
            else:
                packed = nn.utils.rnn.pack_padded_sequence(p, lengths.cpu(), batch_first=True, enforce_sorted=False)
                y, _ = self.lstm(packed)
                y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
            return self.head_proj(y)

        def group_norms(self):
            """[2, H·h] L2 norm of each hidden unit's weight group (differentiable)."""
            HH = self.num_heads * self.hidden
            out = []
            for di, suffix in enumerate(("", "_reverse")):
                w_ih = getattr(self.lstm, f"weight_ih_l0{suffix}").view(4, HH, -1)
                w_hh = getattr(self.lstm, f"weight_hh_l0{suffix}")
                b = getattr(self.lstm, f"bias_ih_l0{suffix}").view(4, HH) ** 2 + \
                    getattr(self.lstm, f"bias_hh_l0{suffix}").view(4, HH) ** 2
                sq = (w_ih ** 2).sum((0, 2)) + (w_hh.view(4, HH, -1) ** 2).sum((0, 2)) + b.sum(0)
                sq = sq + (w_hh ** 2).sum(0) + (self.head_proj.weight[:, di * HH:(di + 1) * HH] ** 2).sum(0)
                out.append(sq)
            return torch.sqrt(torch.stack(out) + 1e-12)

        def hoyer(self):
            """Group Hoyer-Square (Σ‖w_j‖)² / Σ‖w_j‖² over the block's hidden units."""
            n = self.group_norms()
            return n.sum() ** 2 / (n ** 2).sum()

        # -- conversion
        def to_block(self) -> BlockLstm:
            sd = {k: v.detach().cpu().float().numpy() for k, v in self.state_dict().items()}
            um = self.unit_mask.detach().cpu().numpy()
            return from_far_packed(sd, self.num_heads, "distilled block", unit_masks=(um[0], um[1]),
                                   drop_zero_units=False)

    return FarMultiHeadLstm


def make_module(embed_dim: int, num_heads: int, hidden: int | None = None):
    return far_module_class()(embed_dim, num_heads, hidden)


# --------------------------------------------------------------------------- training


def _device(torch, name: str):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VitcInputError("bilstm: --bilstm-device cuda but torch sees no CUDA device")
    return torch.device(name)


def _loss_fn(torch, kind: str, target_var: float):
    def loss(y, t):
        cos = torch.nn.functional.cosine_similarity(y, t, dim=-1, eps=1e-8).mean()
        out = 1 - cos
        if kind == "cosine+mse":
            out = out + ((y - t) ** 2).mean() / target_var
        return out, cos
    return loss


def _token_mask(torch, lengths, n: int):
    """[B, N] bool: the first ``lengths[b]`` tokens of each sample."""
    return torch.arange(n, device=lengths.device)[None, :] < lengths[:, None]


def _evaluate(torch, module, X, T, batch: int = 256, L=None) -> dict:
    """Cosines per token (real tokens only with lengths ``L``) and per sample, relative MSE."""
    module.eval()
    num = 0.0
    tok = []
    smp = []
    with torch.no_grad():
        for s in range(0, len(X), batch):
            lb = None if L is None else L[s:s + batch]
            y = module(X[s:s + batch], lb).double()
            t = T[s:s + batch].double()
            if lb is not None:
                keep = _token_mask(torch, lb, y.shape[1])[..., None]
                y, t = y * keep, t * keep
                tok.append(torch.nn.functional.cosine_similarity(y, t, dim=-1, eps=1e-12)[keep[..., 0]])
            else:
                tok.append(torch.nn.functional.cosine_similarity(y, t, dim=-1, eps=1e-12).flatten())
            smp.append(torch.nn.functional.cosine_similarity(y.flatten(1), t.flatten(1), dim=-1, eps=1e-12))
            num += float(((y - t) ** 2).sum())
    module.train()
    tok, smp = torch.cat(tok), torch.cat(smp)
    return {"cosine": float(tok.mean()), "cosine_min_token": float(tok.min()), "cosine_sample": float(smp.mean()),
            "rel_mse": num / float((T.double() ** 2).sum())}


def _train(torch, module, X, T, cfg: DistillConfig, epochs: int, lr: float, hoyer: float, gen, deadline,
           desc: str, teacher=None, L=None) -> dict:
    """AdamW with warm-up and cosine decay, planned within ``deadline`` (:mod:`vitc.passes.schedule`);
    returns {"epochs_run", "epochs_planned", "final_loss"}."""
    from tqdm.auto import tqdm

    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    S = len(X)
    steps_per_epoch = max(1, math.ceil(S / cfg.batch))
    plan = {"epochs": epochs}          # the cosine decay's length; a deadline may shorten it
    warm = max(1, int(cfg.warmup_fraction * epochs * steps_per_epoch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_factor(s, plan["epochs"] * steps_per_epoch, warm))
    loss_fn = _loss_fn(torch, cfg.loss, float(T.double().var()) or 1.0)
    mix = teacher is not None and cfg.augment == "mixup"
    beta = torch.distributions.Beta(cfg.mix_alpha, cfg.mix_alpha) if mix else None
    run, last = 0, float("nan")
    bar = tqdm(range(epochs), desc=desc, leave=False, file=sys.stderr, disable=None if cfg.progress is None else not cfg.progress, dynamic_ncols=True)
    module.train()
    start = time.time()
    for _ in bar:
        if run >= plan["epochs"] or (deadline is not None and time.time() > deadline):
            break
        perm = torch.randperm(S, generator=gen).to(X.device)
        tot, cs = 0.0, 0.0
        for s in range(0, S, cfg.batch):
            idx = perm[s:s + cfg.batch]
            xb, tb = X[idx], T[idx]
            if L is not None:         # packed LSTMs; the loss sees the real tokens only
                lb = L[idx]
                keep = _token_mask(torch, lb, xb.shape[1])
                loss, cos = loss_fn(module(xb, lb)[keep], tb[keep])
            elif mix:   # add as many mixed inputs, with targets from the block's own attention
                partner = torch.randperm(len(idx), generator=gen).to(X.device)
                lam = beta.sample((len(idx), 1, 1)).to(X.device)
                xm = lam * xb + (1 - lam) * xb[partner]
                xb, tb = torch.cat([xb, xm]), torch.cat([tb, teacher(xm)])
            if L is None:
                loss, cos = loss_fn(module(xb), tb)
            if hoyer:
                loss = loss + hoyer * module.hoyer()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            opt.step()
            sched.step()
            module.apply_masks()
            tot += float(loss.detach()) * len(idx)
            cs += float(cos.detach()) * len(idx)
        run += 1
        last = tot / S
        if run == 1 and deadline is not None:
            plan["epochs"] = bar.total = budgeted_epochs(epochs, deadline - start, time.time() - start)
        bar.set_postfix(loss=f"{last:.4f}", cos=f"{cs / S:.4f}")
    bar.close()
    return {"epochs_run": run, "epochs_planned": plan["epochs"], "final_loss": last}


def distill_block(task: BlockTask, cfg: DistillConfig, deadline: float | None = None) -> BlockResult:
    """Distil one block (see module doc). Deterministic for a given seed, device and thread count."""
    torch = require_torch()
    t0, c0 = time.time(), time.process_time()
    dev = _device(torch, cfg.device)
    seed = cfg.seed * 1009 + task.index
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    S, N, C = task.x.shape
    module = make_module(C, task.num_heads).to(dev)
    if task.init is not None:
        with torch.no_grad():
            module.pre_proj.weight.copy_(torch.from_numpy(np.array(task.init[0], np.float32)))
            module.pre_proj.bias.copy_(torch.from_numpy(np.array(task.init[1], np.float32)))
    X = torch.from_numpy(np.ascontiguousarray(task.x, np.float32)).to(dev)
    T = torch.from_numpy(np.ascontiguousarray(task.target, np.float32)).to(dev)
    info: dict = {"device": str(dev), "init": "v_proj" if task.init is not None else "random"}
    hoyer = cfg.hoyer if cfg.prune else 0.0
    epochs = cfg.epochs_for(S)
    teacher = None
    if task.teacher is not None and cfg.augment != "none":
        teacher = task.teacher.torch_fn(torch, dev)
        check = teacher(X[:8])
        info["teacher_rel_err"] = float((check - T[:8]).abs().max() / T[:8].abs().max().clamp_min(1e-30))
        info["augment"] = f"{cfg.augment} (alpha {cfg.mix_alpha})"
    L = None if task.lengths is None else torch.from_numpy(np.asarray(task.lengths, np.int64)).to(dev)
    if L is not None:
        info["packed"] = "LSTMs over the real tokens only (attention mask → sequence lengths)"
    r = _train(torch, module, X, T, cfg, epochs, cfg.lr, hoyer, gen, deadline, f"bilstm block {task.index}",
               teacher, L)
    info.update(epochs=epochs, epochs_planned=r["epochs_planned"], epochs_run=r["epochs_run"],
                final_loss=r["final_loss"])
    ev = _evaluate(torch, module, X, T, L=L)
    if cfg.prune:
        info["before_pruning"] = ev
        norms = module.group_norms().detach().cpu().double().numpy()       # [2, H·h]
        H, h = task.num_heads, module.hidden
        per_head = [[norms[di, hd * h:(hd + 1) * h] for di in range(2)] for hd in range(H)]
        keep = choose_units(per_head, cfg.prune_threshold, cfg.prune_ratio)
        mask = torch.zeros(2, H * h)
        for hd in range(H):
            for di in range(2):
                mask[di, hd * h + torch.as_tensor(keep[hd][di], dtype=torch.long)] = 1
        module.set_unit_mask(mask)
        info["after_pruning_before_finetune"] = _evaluate(torch, module, X, T, L=L)
        ft = cfg.finetune_epochs if cfg.finetune_epochs is not None else max(1, epochs // 2)
        r = _train(torch, module, X, T, cfg, ft, cfg.lr / 3, 0.0, gen, deadline,
                   f"bilstm block {task.index} finetune", teacher, L)
        info["finetune_epochs_run"] = r["epochs_run"]
        ev = _evaluate(torch, module, X, T, L=L)
    info.update({f"{k}_calib": v for k, v in ev.items()})
    info["cpu_seconds"] = round(time.process_time() - c0, 2)
    info["wall_seconds"] = round(time.time() - t0, 2)
    block = module.to_block()
    return BlockResult(task.index, block, info)


def _threads(cfg: DistillConfig, tasks: list[BlockTask]) -> int | None:
    """CPU threads for training. The recurrence runs 2·N tiny matrix products per step, where
    thread hand-offs cost more than they save: for C ≤ 256 one thread is several times faster
    per step than two (and far faster on a loaded machine), so that is the default."""
    if cfg.threads:
        return int(cfg.threads)
    return 1 if max(t.x.shape[-1] for t in tasks) <= 256 else None


def distill_blocks(tasks: list[BlockTask], cfg: DistillConfig) -> list[BlockResult]:
    """Distil every block independently; a time budget is shared out evenly over the blocks
    not yet trained (a block that finishes early leaves its time to the rest)."""
    torch = require_torch()
    out = []
    start = time.time()
    old = torch.get_num_threads()
    threads = _threads(cfg, tasks)
    if threads:
        torch.set_num_threads(threads)
    try:
        for k, task in enumerate(tasks):
            deadline = None
            if cfg.time_budget:
                left = cfg.time_budget - (time.time() - start)
                deadline = time.time() + max(0.0, left) / (len(tasks) - k)
            r = distill_block(task, cfg, deadline)
            r.info["threads"] = torch.get_num_threads()
            out.append(r)
    finally:
        torch.set_num_threads(old)
    return out


def torch_module_from_block(block: BlockLstm):
    """A :func:`far_module_class` module computing ``block`` exactly (hidden sizes may differ per
    head and direction: the module uses the largest and masks the rest)."""
    torch = require_torch()
    C, H, d = block.embed_dim, block.num_heads, block.head_dim
    h = max(max(hd.hidden) for hd in block.heads)
    m = make_module(C, H, h)
    HH = H * h
    sd = {k: v.detach().clone() for k, v in m.state_dict().items()}
    for k in list(sd):
        if k.startswith(("lstm.", "head_proj.")):
            sd[k].zero_()
    sd["pre_proj.weight"] = torch.from_numpy(block.pre_w.copy())
    sd["pre_proj.bias"] = torch.from_numpy(block.pre_b.copy())
    um = torch.zeros(2, HH)
    sd["head_proj.bias"] = torch.from_numpy(np.concatenate([hd.proj_b for hd in block.heads]).astype(np.float32))
    for hi, head in enumerate(block.heads):
        col = 0
        for di, (dr, suffix) in enumerate(((head.fwd, ""), (head.rev, "_reverse"))):
            k = dr.hidden
            units = hi * h + np.arange(k)
            um[di, units] = 1
            for g in range(4):
                rows = g * HH + units
                sd[f"lstm.weight_ih_l0{suffix}"][rows, hi * d:(hi + 1) * d] = torch.from_numpy(dr.w_ih[g * k:(g + 1) * k])
                sd[f"lstm.weight_hh_l0{suffix}"][np.ix_(rows, units)] = torch.from_numpy(dr.w_hh[g * k:(g + 1) * k])
                sd[f"lstm.bias_ih_l0{suffix}"][rows] = torch.from_numpy(dr.b_ih[g * k:(g + 1) * k])
                sd[f"lstm.bias_hh_l0{suffix}"][rows] = torch.from_numpy(dr.b_hh[g * k:(g + 1) * k])
            sd["head_proj.weight"][hi * d:(hi + 1) * d, di * HH + units] = torch.from_numpy(head.proj_w[:, col:col + k])
            col += k
    sd["unit_mask"] = um
    m.load_state_dict(sd)
    m.set_unit_mask(um)
    return m


__all__ = ["DistillConfig", "BlockTask", "BlockResult", "distill_block", "distill_blocks", "far_module_class",
           "make_module", "torch_module_from_block", "require_torch", "keep_units"]
