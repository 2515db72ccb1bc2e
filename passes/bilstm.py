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
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx_graphsurgeon as gs

from vitc.core.errors import VitcInputError
from vitc.core.ir import CompiledModel, PassRecord
from vitc.passes.fidelity import mean_cosine
from vitc.passes.registry import add_option, parse_block_list, register

NPZ_FORMAT = "vitc.bilstm/1"
DISTILL_EXTRA = "vitc[distill]"
WEIGHTS_FILE = "bilstm_weights.npz"     # written into OUTDIR next to the rewritten model
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)   # PyTorch (i, f, g, o) → ONNX (i, o, f, c)

# --------------------------------------------------------------------------- weights


@dataclass
class LstmDirection:
    """One LSTM direction of one head, PyTorch layout and gate order (i, f, g, o)."""
    w_ih: np.ndarray   # [4h, d]
    w_hh: np.ndarray   # [4h, h]
    b_ih: np.ndarray   # [4h]
    b_hh: np.ndarray   # [4h]

    @property
    def hidden(self) -> int:
        return int(self.w_hh.shape[1])

    @property
    def params(self) -> int:
        return int(self.w_ih.size + self.w_hh.size + self.b_ih.size + self.b_hh.size)

    def unit_rows(self, units: np.ndarray) -> np.ndarray:
        """Row indices of hidden ``units`` in all four gates."""
        h = self.hidden
        return np.concatenate([g * h + np.asarray(units, np.int64) for g in range(4)])

    def keep(self, units: np.ndarray) -> "LstmDirection":
        """The same direction with only hidden ``units`` (sorted indices) left."""
        rows = self.unit_rows(units)
        return LstmDirection(self.w_ih[rows], self.w_hh[rows][:, units], self.b_ih[rows], self.b_hh[rows])


@dataclass
class HeadLstm:
    """One head: forward and reverse LSTM over its d channels, then head_proj (h_f + h_r → d)."""
    fwd: LstmDirection
    rev: LstmDirection
    proj_w: np.ndarray  # [d, h_f + h_r]   (columns: forward units, then reverse units)
    proj_b: np.ndarray  # [d]

    @property
    def hidden(self) -> tuple[int, int]:
        return self.fwd.hidden, self.rev.hidden

    @property
    def params(self) -> int:
        return self.fwd.params + self.rev.params + int(self.proj_w.size + self.proj_b.size)


@dataclass
class BlockLstm:
    """The replacement of one block's attention (without the kept output projection)."""
    pre_w: np.ndarray   # [C, C]  (out × in)
    pre_b: np.ndarray   # [C]
    heads: list[HeadLstm] = field(default_factory=list)
    post_proj: np.ndarray | None = None   # FAR post_proj [C, C] if a loaded file had one (checked, not used)

    @property
    def embed_dim(self) -> int:
        return int(self.pre_w.shape[0])

    @property
    def num_heads(self) -> int:
        return len(self.heads)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def params(self) -> int:
        return int(self.pre_w.size + self.pre_b.size) + sum(h.params for h in self.heads)

    def hidden_sizes(self) -> list[list[int]]:
        return [list(h.hidden) for h in self.heads]

    def check(self, embed_dim: int, num_heads: int, where: str) -> None:
        """Raise :class:`VitcInputError` unless shapes fit a block of ``embed_dim``/``num_heads``."""
        d = embed_dim // num_heads
        problems = []
        if self.pre_w.shape != (embed_dim, embed_dim) or self.pre_b.shape != (embed_dim,):
            problems.append(f"pre_proj {self.pre_w.shape} (want {(embed_dim, embed_dim)})")
        if len(self.heads) != num_heads:
            problems.append(f"{len(self.heads)} heads (want {num_heads})")
        for i, hd in enumerate(self.heads):
            for name, dr in (("fwd", hd.fwd), ("rev", hd.rev)):
                h = dr.hidden
                if dr.w_ih.shape != (4 * h, d) or dr.w_hh.shape != (4 * h, h) or dr.b_ih.shape != (4 * h,) \
                        or dr.b_hh.shape != (4 * h,) or h < 1:
                    problems.append(f"head {i} {name} LSTM shapes {dr.w_ih.shape}/{dr.w_hh.shape}")
            if hd.proj_w.shape != (d, sum(hd.hidden)) or hd.proj_b.shape != (d,):
                problems.append(f"head {i} head_proj {hd.proj_w.shape} (want {(d, sum(hd.hidden))})")
        if problems:
            raise VitcInputError(f"{where}: weights do not fit block (C={embed_dim}, H={num_heads}): "
                                 + "; ".join(problems[:3]))


def random_block(embed_dim: int, num_heads: int, rng: np.random.Generator,
                 hidden: int | None = None) -> BlockLstm:
    """PyTorch-default initialisation (U(±1/√fan)), hidden = head_dim unless given."""
    d = embed_dim // num_heads
    h = hidden or d

    def u(shape, fan):
        b = 1.0 / math.sqrt(fan)
        return rng.uniform(-b, b, size=shape).astype(np.float32)

    def direction():
        return LstmDirection(u((4 * h, d), h), u((4 * h, h), h), u((4 * h,), h), u((4 * h,), h))

    heads = [HeadLstm(direction(), direction(), u((d, 2 * h), 2 * h), u((d,), 2 * h)) for _ in range(num_heads)]
    return BlockLstm(u((embed_dim, embed_dim), embed_dim), u((embed_dim,), embed_dim), heads)


# --------------------------------------------------------------------------- FAR state dicts

FAR_PACKED_KEYS = ("pre_proj.weight", "pre_proj.bias", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
                   "lstm.bias_ih_l0", "lstm.bias_hh_l0", "lstm.weight_ih_l0_reverse",
                   "lstm.weight_hh_l0_reverse", "lstm.bias_ih_l0_reverse", "lstm.bias_hh_l0_reverse",
                   "head_proj.weight", "head_proj.bias")


def from_far_packed(sd: dict[str, np.ndarray], num_heads: int, where: str = "FAR state dict",
                    unit_masks: tuple[np.ndarray, np.ndarray] | None = None,
                    drop_zero_units: bool = True, tol: float = 1e-6) -> BlockLstm:
    """FAR's ``MultiHeadLstm`` (one packed bidirectional ``nn.LSTM``, hidden H·h, per-head
    block-diagonal weights; ``head_proj`` Linear(2·H·h → C) reading [fwd all heads ‖ rev all
    heads]) → per-head :class:`BlockLstm`.

    ``sd``: keys of :data:`FAR_PACKED_KEYS` (numpy). Off-block weights must be zero (the
    per-head split is only exact then). ``unit_masks`` (fwd, rev) [H·h] of 0/1 remove units;
    with ``drop_zero_units`` units whose weights are all zero (pruned by FAR) are removed too.
    """
    missing = [k for k in FAR_PACKED_KEYS if k not in sd]
    if missing:
        raise VitcInputError(f"{where}: missing {', '.join(missing[:4])}")
    f = {k: np.asarray(v, np.float32) for k, v in sd.items()}
    C = f["pre_proj.weight"].shape[0]
    HH = f["lstm.weight_hh_l0"].shape[1]                 # total hidden H·h
    if C % num_heads or HH % num_heads:
        raise VitcInputError(f"{where}: C={C}, hidden={HH} not divisible by {num_heads} heads")
    d, h = C // num_heads, HH // num_heads
    if f["lstm.weight_ih_l0"].shape != (4 * HH, C) or f["head_proj.weight"].shape != (C, 2 * HH):
        raise VitcInputError(f"{where}: LSTM/head_proj shapes {f['lstm.weight_ih_l0'].shape}, "
                             f"{f['head_proj.weight'].shape} do not match C={C}, hidden={HH}")
    off = 0.0
    scale = max(float(np.abs(f["lstm.weight_ih_l0"]).max()), 1e-30)
    heads_dirs = []
    for suffix in ("", "_reverse"):
        w_ih, w_hh = f[f"lstm.weight_ih_l0{suffix}"], f[f"lstm.weight_hh_l0{suffix}"]
        b_ih, b_hh = f[f"lstm.bias_ih_l0{suffix}"], f[f"lstm.bias_hh_l0{suffix}"]
        m_ih, m_hh = np.zeros_like(w_ih, bool), np.zeros_like(w_hh, bool)
        per_head = []
        for hd in range(num_heads):
            rows = np.concatenate([g * HH + hd * h + np.arange(h) for g in range(4)])
            cin, chh = slice(hd * d, (hd + 1) * d), slice(hd * h, (hd + 1) * h)
            m_ih[np.ix_(rows, np.arange(C)[cin])] = True
            m_hh[np.ix_(rows, np.arange(HH)[chh])] = True
            per_head.append(LstmDirection(w_ih[rows][:, cin], w_hh[rows][:, chh], b_ih[rows], b_hh[rows]))
        off = max(off, float(np.abs(w_ih[~m_ih]).max(initial=0)), float(np.abs(w_hh[~m_hh]).max(initial=0)))
        heads_dirs.append(per_head)
    pw = f["head_proj.weight"]
    m_p = np.zeros_like(pw, bool)
    heads = []
    for hd in range(num_heads):
        out = slice(hd * d, (hd + 1) * d)
        cols = np.concatenate([hd * h + np.arange(h), HH + hd * h + np.arange(h)])
        m_p[np.ix_(np.arange(C)[out], cols)] = True
        heads.append(HeadLstm(heads_dirs[0][hd], heads_dirs[1][hd], pw[out][:, cols], f["head_proj.bias"][out]))
    off = max(off, float(np.abs(pw[~m_p]).max(initial=0)))
    if off > tol * scale:
        raise VitcInputError(f"{where}: weights are not block-diagonal per head (largest off-block weight "
                             f"{off:.3g}); cannot split into per-head LSTMs exactly")
    block = BlockLstm(f["pre_proj.weight"], f["pre_proj.bias"], heads)
    keep = []
    for di in range(2):
        mask = np.ones(HH, bool) if unit_masks is None else np.asarray(unit_masks[di]).reshape(HH) > 0
        keep.append(mask)
    if drop_zero_units:
        norms = group_norms(block)
        for di in range(2):
            keep[di] &= np.concatenate([norms[hd][di] > 0 for hd in range(num_heads)])
    if not all(k.all() for k in keep):
        block = keep_units(block, [[np.flatnonzero(keep[di][hd * h:(hd + 1) * h]) for di in range(2)]
                                   for hd in range(num_heads)])
    return block


def from_far_parallel(sd: dict[str, np.ndarray], num_heads: int, where: str = "FAR state dict") -> BlockLstm:
    """FAR's ``ParallelLSTM`` naming: ``lstms.{h}.weight_ih_l0[_reverse]`` …, ``head_projs.{h}.*``."""
    f = {k: np.asarray(v, np.float32) for k, v in sd.items()}
    try:
        heads = []
        for hd in range(num_heads):
            p = f"lstms.{hd}."
            dirs = [LstmDirection(f[p + "weight_ih_l0" + s], f[p + "weight_hh_l0" + s], f[p + "bias_ih_l0" + s],
                                  f[p + "bias_hh_l0" + s]) for s in ("", "_reverse")]
            heads.append(HeadLstm(dirs[0], dirs[1], f[f"head_projs.{hd}.weight"], f[f"head_projs.{hd}.bias"]))
        return BlockLstm(f["pre_proj.weight"], f["pre_proj.bias"], heads)
    except KeyError as exc:
        raise VitcInputError(f"{where}: missing {exc.args[0]}") from None


def _far_blocks(sd: dict[str, np.ndarray], cm: CompiledModel, where: str) -> dict[int, BlockLstm]:
    """Blocks found in a (whole-model or single-module) FAR state dict, keyed by block index.

    Accepted prefixes: ``blocks.{i}.attn.`` (a FAR DeiT), optionally behind ``module.``;
    a bare ``MultiHeadLstm`` / ``ParallelLSTM`` state dict applies to every block."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    groups: dict[int, dict[str, np.ndarray]] = {}
    for k, v in sd.items():
        parts = k.split(".")
        if len(parts) > 3 and parts[0] == "blocks" and parts[1].isdigit() and parts[2] == "attn":
            groups.setdefault(int(parts[1]), {})[".".join(parts[3:])] = v
    if not groups and "pre_proj.weight" in sd:
        groups = {b.index: sd for b in cm.blocks}
    out = {}
    for i, g in sorted(groups.items()):
        if i >= len(cm.blocks):
            raise VitcInputError(f"{where}: has block {i}, model has {len(cm.blocks)} blocks")
        if "lstm.weight_ih_l0" not in g and "lstms.0.weight_ih_l0" not in g:
            continue                     # a block FAR left as attention
        H = cm.blocks[i].num_heads
        blk = (from_far_packed(g, H, f"{where} block {i}") if "lstm.weight_ih_l0" in g
               else from_far_parallel(g, H, f"{where} block {i}"))
        post = g.get("post_proj.weight")
        blk.post_proj = None if post is None else np.asarray(post, np.float32)
        out[i] = blk
    if not out:
        raise VitcInputError(f"{where}: no FAR MultiHeadLstm weights found (keys like "
                             "'blocks.0.attn.lstm.weight_ih_l0' or 'lstm.weight_ih_l0')")
    return out


# --------------------------------------------------------------------------- our .npz


def save_npz(path: str | Path, blocks: dict[int, BlockLstm], meta: dict | None = None) -> Path:
    """Write ``blocks`` as ``.npz`` (format ``vitc.bilstm/1``, PyTorch layouts, see module doc)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(npz_bytes(blocks, meta))
    return path


def npz_bytes(blocks: dict[int, BlockLstm], meta: dict | None = None) -> bytes:
    """``blocks`` as the bytes of a ``vitc.bilstm/1`` ``.npz``: ``block{i}.pre_proj.weight``
    [C, C], ``block{i}.pre_proj.bias``, ``block{i}.head{h}.{fwd,rev}.{w_ih,w_hh,b_ih,b_hh}``
    (PyTorch gate order i, f, g, o), ``block{i}.head{h}.head_proj.{weight,bias}`` [d, h_f + h_r]."""
    import io
    arrays = {"format": np.array(NPZ_FORMAT), "meta": np.array(json.dumps(meta or {}, sort_keys=True))}
    for i, b in blocks.items():
        p = f"block{i}."
        arrays[p + "pre_proj.weight"], arrays[p + "pre_proj.bias"] = b.pre_w, b.pre_b
        for hd, head in enumerate(b.heads):
            q = f"{p}head{hd}."
            for name, dr in (("fwd", head.fwd), ("rev", head.rev)):
                for key in ("w_ih", "w_hh", "b_ih", "b_hh"):
                    arrays[f"{q}{name}.{key}"] = getattr(dr, key)
            arrays[q + "head_proj.weight"], arrays[q + "head_proj.bias"] = head.proj_w, head.proj_b
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npz_blocks(arrays: dict[str, np.ndarray], where: str) -> dict[int, BlockLstm]:
    idx = sorted({int(k.split(".")[0][5:]) for k in arrays if k.startswith("block") and k.split(".")[0][5:].isdigit()})
    out = {}
    try:
        for i in idx:
            p = f"block{i}."
            nh = len({k.split(".")[1] for k in arrays if k.startswith(p + "head")})
            heads = []
            for hd in range(nh):
                q = f"{p}head{hd}."
                dirs = [LstmDirection(*(np.asarray(arrays[f"{q}{n}.{k}"], np.float32)
                                        for k in ("w_ih", "w_hh", "b_ih", "b_hh"))) for n in ("fwd", "rev")]
                heads.append(HeadLstm(dirs[0], dirs[1], np.asarray(arrays[q + "head_proj.weight"], np.float32),
                                      np.asarray(arrays[q + "head_proj.bias"], np.float32)))
            out[i] = BlockLstm(np.asarray(arrays[p + "pre_proj.weight"], np.float32),
                               np.asarray(arrays[p + "pre_proj.bias"], np.float32), heads)
    except KeyError as exc:
        raise VitcInputError(f"{where}: missing array {exc.args[0]}") from None
    return out


def load_weights(path: str | Path, cm: CompiledModel) -> tuple[dict[int, BlockLstm], str]:
    """Blocks from ``path``: our ``.npz``, an ``.npz`` of FAR state-dict arrays, or a PyTorch
    checkpoint (``.pt``/``.pth``/``.bin``: a state dict, or ``{"model": state_dict}``; needs torch).
    Returns (blocks by index, format description)."""
    p = Path(path)
    if not p.is_file():
        raise VitcInputError(f"bilstm weights not found: {p}")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (ValueError, OSError) as exc:
            raise VitcInputError(f"cannot read {p.name} as .npz ({type(exc).__name__})") from None
        if "format" in arrays:
            if str(arrays["format"]) != NPZ_FORMAT:
                raise VitcInputError(f"{p.name}: format {arrays['format']} is not {NPZ_FORMAT}")
            return _npz_blocks(arrays, p.name), "vitc-npz"
        return _far_blocks(arrays, cm, p.name), "far-state-dict-npz"
    try:
        import torch
    except ImportError:
        raise VitcInputError(f"reading the PyTorch checkpoint {p.name} needs torch: "
                             f"pip install '{DISTILL_EXTRA}' (or convert it to .npz)") from None
    obj = torch.load(p, map_location="cpu", weights_only=False)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if hasattr(obj, "state_dict"):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise VitcInputError(f"{p.name}: not a state dict ({type(obj).__name__})")
    sd = {k: v.detach().cpu().float().numpy() for k, v in obj.items() if hasattr(v, "detach")}
    return _far_blocks(sd, cm, p.name), "far-state-dict"


# --------------------------------------------------------------------------- structure


def group_norms(b: BlockLstm) -> list[list[np.ndarray]]:
    """Per head, per direction: the L2 norm of each hidden unit's weight group — its input
    weights and recurrent rows across the four gates, its biases, its recurrent column and
    its head_proj column (the group removed together when the unit is pruned)."""
    out = []
    for head in b.heads:
        per_dir = []
        offset = 0
        for dr in (head.fwd, head.rev):
            h = dr.hidden
            g = lambda a: (a.reshape(4, h, -1) ** 2).sum(axis=(0, 2))  # noqa: E731
            sq = g(dr.w_ih) + g(dr.w_hh) + g(dr.b_ih[:, None]) + g(dr.b_hh[:, None])
            sq += (dr.w_hh ** 2).sum(0) + (head.proj_w[:, offset:offset + h] ** 2).sum(0)
            per_dir.append(np.sqrt(sq.astype(np.float64)))
            offset += h
        out.append(per_dir)
    return out


def keep_units(b: BlockLstm, keep: list[list[np.ndarray]]) -> BlockLstm:
    """``b`` with only the hidden units ``keep[head][dir]`` (indices) left (structured pruning)."""
    heads = []
    for head, (kf, kr) in zip(b.heads, keep):
        kf, kr = np.sort(np.asarray(kf, np.int64)), np.sort(np.asarray(kr, np.int64))
        cols = np.concatenate([kf, head.fwd.hidden + kr])
        heads.append(HeadLstm(head.fwd.keep(kf), head.rev.keep(kr), head.proj_w[:, cols], head.proj_b))
    return BlockLstm(b.pre_w, b.pre_b, heads)


def choose_units(norms: list[list[np.ndarray]], threshold: float | None = None,
                 ratio: float | None = None, min_units: int = 1) -> list[list[np.ndarray]]:
    """Units to keep, per head and direction.

    ``threshold``: drop units whose group norm is below ``threshold`` × the block's largest
    group norm. ``ratio``: drop the ``ratio`` fraction of the block's units with the smallest
    norms (across heads and directions, so they shrink unevenly). At least ``min_units`` stay
    per head and direction."""
    flat = np.concatenate([n for per_dir in norms for n in per_dir])
    drop = np.zeros(flat.shape, bool)
    if threshold is not None:
        drop |= flat < threshold * flat.max()
    if ratio is not None:
        k = math.ceil(ratio * flat.size - 1e-9)        # at least the asked fraction
        if k > 0:
            drop[np.argsort(flat, kind="stable")[:k]] = True
    keep, pos = [], 0
    for per_dir in norms:
        kd = []
        for n in per_dir:
            d = drop[pos:pos + n.size]
            kept = np.flatnonzero(~d)
            if kept.size < min_units:
                kept = np.sort(np.argsort(-n, kind="stable")[:min_units])
            kd.append(kept)
            pos += n.size
        keep.append(kd)
    return keep


def numpy_forward(b: BlockLstm, x: np.ndarray) -> np.ndarray:
    """Reference forward in float64: x [B, N, C] → head_proj outputs concatenated [B, N, C]."""
    x = np.asarray(x, np.float64)
    p = x @ b.pre_w.T.astype(np.float64) + b.pre_b
    d = b.head_dim
    outs = []
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    for hd, head in enumerate(b.heads):
        xs = p[..., hd * d:(hd + 1) * d]
        ys = []
        for dr, reverse in ((head.fwd, False), (head.rev, True)):
            h = dr.hidden
            hs, cs = np.zeros((x.shape[0], h)), np.zeros((x.shape[0], h))
            y = np.zeros(x.shape[:2] + (h,))
            order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
            for t in order:
                z = xs[:, t] @ dr.w_ih.T + dr.b_ih + hs @ dr.w_hh.T + dr.b_hh
                i, f, g, o = (z[:, k * h:(k + 1) * h] for k in range(4))
                cs = sig(f) * cs + sig(i) * np.tanh(g)
                hs = sig(o) * np.tanh(cs)
                y[:, t] = hs
            ys.append(y)
        outs.append(np.concatenate(ys, -1) @ head.proj_w.T + head.proj_b)
    return np.concatenate(outs, -1)


def onnx_gate_order(a: np.ndarray, hidden: int) -> np.ndarray:
    """Rows of a [4h, …] (or [4h]) PyTorch-ordered stack in ONNX gate order (i, o, f, c)."""
    return np.concatenate([a[g * hidden:(g + 1) * hidden] for g in TORCH_TO_ONNX_GATES], axis=0)


def onnx_lstm_weights(dirs: list[LstmDirection]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W [D, 4h, in], R [D, 4h, h], B [D, 8h] for directions of equal hidden size."""
    h = dirs[0].hidden
    W = np.stack([onnx_gate_order(d.w_ih, h) for d in dirs]).astype(np.float32)
    R = np.stack([onnx_gate_order(d.w_hh, h) for d in dirs]).astype(np.float32)
    B = np.stack([np.concatenate([onnx_gate_order(d.b_ih, h), onnx_gate_order(d.b_hh, h)]) for d in dirs])
    return W, R, B.astype(np.float32)


# --------------------------------------------------------------------------- graph rewrite


class _Builder:
    """Appends nodes to a gs graph under one name prefix; remembers (node, role) for tagging."""

    def __init__(self, graph: gs.Graph, prefix: str, opset: int):
        self.graph, self.prefix, self.opset = graph, prefix, opset
        self.tagged: list[tuple[str, str]] = []

    def const(self, name: str, value) -> gs.Constant:
        arr = np.asarray(value)
        arr = arr.astype(np.float32) if arr.dtype.kind == "f" else arr.astype(np.int64)
        return gs.Constant(f"{self.prefix}/{name}", np.ascontiguousarray(arr))

    def node(self, op: str, name: str, inputs, n_out: int = 1, role: str | None = None, **attrs):
        outs = [gs.Variable(f"{self.prefix}/{name}_output_{i}", dtype=np.float32) for i in range(n_out)]
        node = gs.Node(op, f"{self.prefix}/{name}", attrs=attrs, inputs=list(inputs), outputs=outs)
        self.graph.nodes.append(node)
        if role:
            self.tagged.append((node.name, role))
        return outs[0] if n_out == 1 else outs

    def linear(self, x, w_out_in: np.ndarray, b: np.ndarray, name: str, role: str):
        """x @ Wᵀ + b with W in [out, in] layout (emitted as MatMul [in, out] + Add)."""
        y = self.node("MatMul", f"{name}/MatMul", [x, self.const(f"{name}.weight", w_out_in.T)], role=role)
        return self.node("Add", f"{name}/Add", [y, self.const(f"{name}.bias", b)], role=role + "_bias")

    def split(self, x, sizes: list[int], axis: int, name: str):
        if self.opset >= 13:
            return self.node("Split", name, [x, self.const(f"{name}.split", sizes)], n_out=len(sizes), axis=axis)
        return self.node("Split", name, [x], n_out=len(sizes), axis=axis, split=list(sizes))


def build_block(graph: gs.Graph, x_in: gs.Tensor, b: BlockLstm, prefix: str, opset: int,
                force_split_directions: bool = False) -> tuple[gs.Tensor, list[tuple[str, str]]]:
    """Append the BiLSTM replacement of one block reading ``x_in`` [B, N, C]; returns the
    [B, N, C] tensor the output projection should read, and (node name, role) pairs."""
    bd = _Builder(graph, prefix, opset)
    d = b.head_dim
    p = bd.linear(x_in, b.pre_w, b.pre_b, "pre_proj", "pre_proj")
    p_t = bd.node("Transpose", "to_seq_major", [p], perm=[1, 0, 2], role="lstm_layout")          # [N, B, C]
    heads_in = bd.split(p_t, [d] * b.num_heads, 2, "split_heads")
    heads_in = heads_in if isinstance(heads_in, list) else [heads_in]
    flat = bd.const("shape_nb_flat", [0, 0, -1])
    outs = []
    for hd, (xh, head) in enumerate(zip(heads_in, b.heads)):
        hp = f"head{hd}"
        hf, hr = head.hidden
        if hf == hr and not force_split_directions:
            W, R, B = onnx_lstm_weights([head.fwd, head.rev])
            y = bd.node("LSTM", f"{hp}/LSTM", [xh, bd.const(f"{hp}/lstm.W", W), bd.const(f"{hp}/lstm.R", R),
                                                bd.const(f"{hp}/lstm.B", B)],
                        role="lstm", hidden_size=int(hf), direction="bidirectional")             # [N, 2, B, h]
            y = bd.node("Transpose", f"{hp}/dirs_last", [y], perm=[0, 2, 1, 3], role="lstm_layout")  # [N, B, 2, h]
            y = bd.node("Reshape", f"{hp}/merge_dirs", [y, flat], role="lstm_layout")            # [N, B, 2h]
        else:
            ys = []
            for name, dr, direction in (("fwd", head.fwd, "forward"), ("rev", head.rev, "reverse")):
                W, R, B = onnx_lstm_weights([dr])
                yd = bd.node("LSTM", f"{hp}/LSTM_{name}", [xh, bd.const(f"{hp}/lstm_{name}.W", W),
                                                            bd.const(f"{hp}/lstm_{name}.R", R),
                                                            bd.const(f"{hp}/lstm_{name}.B", B)],
                             role="lstm", hidden_size=int(dr.hidden), direction=direction)      # [N, 1, B, h]
                shape = bd.const(f"{hp}/shape_{name}", [0, -1, dr.hidden])
                ys.append(bd.node("Reshape", f"{hp}/squeeze_{name}", [yd, shape], role="lstm_layout"))  # [N, B, h]
            y = bd.node("Concat", f"{hp}/concat_dirs", ys, axis=2, role="lstm_layout")          # [N, B, hf+hr]
        outs.append(bd.linear(y, head.proj_w, head.proj_b, f"{hp}/head_proj", "head_proj"))     # [N, B, d]
    cat = bd.node("Concat", "concat_heads", outs, axis=2, role="lstm_layout")                   # [N, B, C]
    out = bd.node("Transpose", "to_batch_major", [cat], perm=[1, 0, 2], role="lstm_layout")     # [B, N, C]
    out.name = f"{prefix}/output"
    return out, bd.tagged


def replace_block(cm: CompiledModel, index: int, b: BlockLstm, force_split_directions: bool = False) -> str:
    """Rewire block ``index`` of ``cm`` to ``b``; the q/k/v projections and the core become dead
    (removed by cleanup). Returns the name of the new pre-output-projection tensor."""
    blk = cm.blocks[index]
    b.check(blk.embed_dim, blk.num_heads, f"block {index}")
    tensors = cm.graph.tensors()
    x_in = tensors[blk.x_in]
    out, tagged = build_block(cm.graph, x_in, b, f"/block{index}/bilstm", cm.opset, force_split_directions)
    proj = cm.node(blk.out_proj.matmul)
    proj.inputs[0] = out
    for name, role in tagged:
        cm.tag(name, index, role)
    return out.name


def block_model(b: BlockLstm, opset: int = 17, force_split_directions: bool = False):
    """A stand-alone ONNX model of one replacement block: ``x`` [B, N, C] → ``y`` [B, N, C]
    (batch and N dynamic), for parity checks against torch / :func:`numpy_forward`."""
    import onnx

    from vitc.runtime.session import max_ir_version
    C = b.embed_dim
    x = gs.Variable("x", dtype=np.float32, shape=["batch", "tokens", C])
    graph = gs.Graph(inputs=[x], opset=opset, name="bilstm_block")
    y, _ = build_block(graph, x, b, "/bilstm", opset, force_split_directions)
    y.name, y.shape = "y", ["batch", "tokens", C]
    graph.outputs = [y]
    graph.cleanup().toposort()
    model = gs.export_onnx(graph, do_type_check=False)
    model.ir_version = min(max_ir_version(), 10)
    onnx.checker.check_model(model)
    return model


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
    """Crossbars the matrices take on ``hw`` (``backends.xbar.hand_count``; no replication),
    or None when there is no crossbar target."""
    if hw is None or getattr(hw, "kind", None) != "xbar":
        return None
    from vitc.backends.xbar import hand_count
    return int(sum(hand_count(hw, K, N, c) for K, N, c in mats))


def _tokens(blk, cm: CompiledModel, fallback: int) -> int:
    if isinstance(blk.tokens, int):
        return blk.tokens
    text = str(blk.tokens)
    digits = "".join(ch for ch in text if ch.isdigit())
    return int(digits) if digits else fallback


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
    from vitc.core.graph import const_value
    core = cm.node(cm.blocks[i].attention)
    return const_value(core.inputs[3]) if len(core.inputs) > 3 else None


def has_live_mask(cm: CompiledModel, i: int) -> bool:
    """True if block ``i``'s attention applies a mask that is not a constant all-zero tensor
    (dynamo exports of unmasked models carry such zeros)."""
    if not cm.blocks[i].has_mask:
        return False
    m = _mask_value(cm, i)
    return m is None or bool(np.any(m != 0))


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


@register
class BiLstmPass:
    name = "bilstm"
    help = "FAR: replace attention by per-head bidirectional LSTMs (distilled, loaded, or untrained)"

    @classmethod
    def add_arguments(cls, g) -> None:
        add_option(g, "--bilstm-weights", dest="p_bilstm_weights", metavar="PATH|untrained",
             help="bilstm: load weights (our .npz or a FAR PyTorch state dict) instead of distilling; "
                  "'untrained' = random init (costing only)")
        add_option(g, "--bilstm-save", dest="p_bilstm_save", metavar="PATH.npz", help="bilstm: save the weights used")
        add_option(g, "--bilstm-blocks", dest="p_bilstm_blocks", metavar="0,1,4-7", help="bilstm: blocks to replace (default all)")
        add_option(g, "--epochs", "--bilstm-epochs", dest="p_epochs", type=int, metavar="N", help="training epochs per block (bilstm default: enough for ~2400 optimizer steps, 20–300)")
        add_option(g, "--lr", "--bilstm-lr", dest="p_lr", type=float, metavar="LR", help="learning rate (bilstm default 1e-2, AdamW)")
        add_option(g, "--bilstm-batch", dest="p_bilstm_batch", type=int, metavar="N", help="bilstm: distillation batch size (default 32)")
        add_option(g, "--time-budget", "--bilstm-time-budget", dest="p_time_budget", type=float, metavar="SECONDS",
             help="bilstm: wall-clock budget for all distillation (split evenly over blocks)")
        add_option(g, "--bilstm-loss", dest="p_bilstm_loss", choices=["cosine", "cosine+mse"],
             help="bilstm: distillation loss: 1 − cosine + MSE/var(target) (default), or 1 − cosine only")
        add_option(g, "--bilstm-init", dest="p_bilstm_init", choices=["v", "random"],
             help="bilstm: pre_proj initialised from the v projection (default) or random (FAR)")
        add_option(g, "--bilstm-augment", dest="p_bilstm_augment", choices=["mixup", "none"],
             help="bilstm: add mixed inputs λ·x_i + (1−λ)·x_j (λ ~ U(0,1)) with targets from the block's own "
                  "attention (default mixup; 2× training cost, generalises from small calibration sets)")
        add_option(g, "--bilstm-device", dest="p_bilstm_device", choices=["auto", "cpu", "cuda"],
             help="bilstm: torch device (default auto: CUDA when available)")
        add_option(g, "--prune-threshold", dest="p_prune_threshold", type=float, metavar="T",
             help="bilstm: remove hidden units whose group norm < THRESHOLD × the block's largest")
        add_option(g, "--prune-ratio", dest="p_prune_ratio", type=float, metavar="R",
             help="bilstm: remove this fraction of each block's hidden units (smallest group norms)")
        add_option(g, "--bilstm-hoyer", dest="p_bilstm_hoyer", type=float, metavar="COEF",
             help="bilstm: DeepHoyer group Hoyer-Square coefficient while pruning (default 2e-3)")
        add_option(g, "--bilstm-finetune-epochs", dest="p_bilstm_finetune_epochs", type=int, metavar="N",
             help="bilstm: epochs after pruning (default epochs/2)")
        add_option(g, "--bilstm-ignore-mask", dest="p_bilstm_ignore_mask", action="store_true", default=None,
             help="bilstm: replace masked (padded) attention too; the LSTMs read padding tokens")

    def run(self, cm: CompiledModel, ctx) -> PassRecord:
        t_start = time.process_time()
        w_start = time.time()
        opt = ctx.option
        blocks = parse_block_list(opt("bilstm_blocks"), len(cm.blocks), "--bilstm-blocks")
        masked = [i for i in blocks if has_live_mask(cm, i)]
        if masked and not opt("bilstm_ignore_mask"):
            raise VitcInputError(f"bilstm: blocks {masked} have an attention mask; the LSTMs cannot apply it "
                                 "(pass --bilstm-ignore-mask to replace them anyway)")
        threshold, ratio = opt("prune_threshold"), opt("prune_ratio")
        if ratio is not None and not 0 <= float(ratio) < 1:
            raise VitcInputError("bilstm: --prune-ratio must be in [0, 1)")
        prune = threshold is not None or ratio is not None
        source = opt("bilstm_weights")
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
            if absent and opt("bilstm_blocks") is not None:
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
            if ctx.option("bilstm_measure", default=True):
                fidelity.update(self._measure(cm, ctx, weights, details))
        else:
            weights, train_info = self._distill(cm, ctx, blocks, threshold, ratio)
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
            name = replace_block(cm, i, weights[i])
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
        if kind != "untrained" and blocks and opt("bilstm_measure", default=True):
            fidelity["end_to_end"] = self._end_to_end(cm, ctx)
        units = sum(details["blocks"][i]["hidden_units"] for i in blocks)
        units0 = sum(details["blocks"][i]["hidden_units_unpruned"] for i in blocks)
        details["totals"] = totals
        details["hidden_units"] = {"kept": units, "unpruned": units0,
                                   "removed_fraction": 1 - units / units0 if units0 else 0.0}
        if prune:
            details["pruning"] = {"threshold": threshold, "ratio": ratio,
                                  "hoyer": opt("bilstm_hoyer", default=2e-3) if kind == "trained" else None}
        details["blocks"] = {str(k): v for k, v in sorted(details["blocks"].items())}
        if hw is not None and totals["attention"]["crossbars"] is not None:
            details["crossbars_hw"] = getattr(hw, "name", str(hw))
        blob = npz_bytes(weights, {"model": cm.name, "weights": kind, "blocks": blocks, "fidelity": fidelity})
        save = opt("bilstm_save")
        if save:
            Path(save).parent.mkdir(parents=True, exist_ok=True)
            Path(save).write_bytes(blob)
            details["saved"] = str(save)
        details["weights_file"] = WEIGHTS_FILE
        cm.graph.cleanup(remove_unused_graph_inputs=False).toposort()
        details["cpu_seconds"] = round(time.process_time() - t_start, 2)
        details["wall_seconds"] = round(time.time() - w_start, 2)
        record = PassRecord(self.name, blocks, kind, fidelity, details)
        if hasattr(record, "files"):
            record.files[WEIGHTS_FILE] = blob      # written into OUTDIR; reload with --bilstm-weights
        return record

    @staticmethod
    def _end_to_end(cm, ctx) -> dict:
        """Rewritten vs original model on the calibration data: output cosine, top-1 agreement
        and (with labels) accuracy, in % (``passes/fidelity.py``)."""
        from vitc.passes.fidelity import emit_copy, end_to_end
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

    def _distill(self, cm, ctx, blocks, threshold, ratio):
        try:
            from vitc.passes import bilstm_distill
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
        if ctx.option("bilstm_init", default="v") == "v":
            for i in blocks:
                vp = cm.blocks[i].v_proj
                w = np.asarray(cm.tensor(vp.weight).values, np.float32).T
                bias = np.asarray(cm.tensor(vp.bias).values, np.float32) if vp.bias else np.zeros(w.shape[0], np.float32)
                inits[i] = (w, bias)
        cfg = bilstm_distill.DistillConfig(
            epochs=None if ctx.option("epochs") is None else int(ctx.option("epochs")),
            lr=float(ctx.option("lr", default=1e-2)),
            batch=int(ctx.option("bilstm_batch", default=32)), loss=ctx.option("bilstm_loss", default="cosine+mse"),
            time_budget=ctx.option("time_budget"), device=ctx.option("bilstm_device", default="auto"),
            seed=int(ctx.seed), prune_threshold=threshold, prune_ratio=ratio,
            hoyer=float(ctx.option("bilstm_hoyer", default=2e-3)),
            finetune_epochs=ctx.option("bilstm_finetune_epochs"), augment=ctx.option("bilstm_augment", default="mixup"),
            mix_alpha=float(ctx.option("bilstm_mix_alpha", default=1.0)))
        tasks = [bilstm_distill.BlockTask(i, data[i][0], data[i][1], cm.blocks[i].num_heads, inits.get(i),
                                          None if has_live_mask(cm, i) else teacher_attention(cm, i, bilstm_distill))
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
