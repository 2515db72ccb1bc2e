"""FAR BiLSTM replacement weights (numpy, PyTorch conventions): per-head bidirectional LSTMs of one
encoder block (:class:`BlockLstm`), conversion from FAR checkpoints, our ``.npz`` format,
DeepHoyer structured pruning of hidden units, and a numpy forward pass (the reference the ONNX
graph and the torch module are checked against). ``Linear`` weights are [out, in]; LSTM weights
are stacked in PyTorch gate order i, f, g, o. No torch here."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitc.core.errors import VitcInputError
from vitc.core.ir import CompiledModel

NPZ_FORMAT = "vitc.bilstm/1"
DISTILL_EXTRA = "vitc[distill]"




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


