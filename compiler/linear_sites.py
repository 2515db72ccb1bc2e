"""Attention that is already linear in the tokens: three rules, each pattern + check + replacement.

* factorised (CoaT): ``Softmax`` over the token axis of k, ``kᵀ·v``, ``q·(·)``, a scalar scale
  → ``ai.vitc::FactorizedAttention``;
* separable (MobileViTv2): ``Softmax`` over the tokens of a one-channel context logit ``s``,
  ``Σ k·softmax(s)`` over the tokens, times ``v`` → ``ai.vitc::SeparableAttention``;
* kernel / ReLU linear attention (EfficientViT's LiteMLA): ``kᵀ·[v | 1]``, ``q·(·)``, the last
  column as the normaliser ``num / (den + eps)`` → ``ai.vitc::LinearAttention``.

The ops are defined in :mod:`vitc.runtime.linear_attention_ops`. As for the softmax cores, each
rewrite is re-run in onnxruntime against the export by the front end before it is kept.
Taylor linearisation declines them (they are linear already); the backends cost them from
their declared work.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx_graphsurgeon as gs

from vitc.compiler.core_sites import Builder
from vitc.compiler.recognize import NotRecognised
from vitc.core.graph import const_value, producer
from vitc.core.ir import AttentionCore
from vitc.runtime.function_builder import DOMAIN
from vitc.runtime.linear_attention_ops import FACTORIZED, LINEAR, SEPARABLE

_PASS = ("Cast", "Identity", "Dropout")


def _through(t: gs.Tensor) -> gs.Node | None:
    """The single consumer of ``t`` after Cast/Identity/Dropout, or None."""
    for _ in range(6):
        if len(t.outputs) != 1:
            return None
        c = t.outputs[0]
        if c.op not in _PASS:
            return c
        t = c.outputs[0]
    return None


def _back(t: gs.Tensor) -> gs.Tensor:
    """``t`` before Cast/Identity."""
    for _ in range(6):
        p = producer(t)
        if p is None or p.op not in ("Cast", "Identity"):
            return t
        t = p.inputs[0]
    return t


def _swaps_last_two(node: gs.Node | None) -> bool:
    if node is None or node.op != "Transpose":
        return False
    perm = list(node.attrs.get("perm", []))
    r = len(perm)
    return r >= 2 and perm[:-2] == list(range(r - 2)) and perm[-2:] == [r - 1, r - 2]


def _scalar(t: gs.Tensor) -> float | None:
    v = const_value(t)
    return float(v.reshape(-1)[0]) if v is not None and v.size == 1 else None


@dataclass
class LinearSite:
    """One linear-attention site: its operands (in the op's order), the tensor it writes, the
    product/softmax nodes it replaces, and the op's attributes."""
    kind: str                                 # factorized | separable | linear
    anchor: gs.Node
    operands: list[gs.Tensor]                 # factorized/linear: q, k [.., N, dk], v; separable: s, k, v
    result: gs.Tensor                         # the export's output of the site
    last: gs.Node                             # the node that writes ``result`` (detached on rewrite)
    attrs: dict = field(default_factory=dict)
    products: list[gs.Node] = field(default_factory=list)
    forms: dict[str, str] = field(default_factory=dict)
    why_not_block: str = ""
    k_transposed: bool = False                # operands[1] is kᵀ [.., dk, N]
    padded: gs.Tensor | None = None           # linear: [v | 1] as the export builds it

    def probe_names(self) -> list[str]:
        extra = [self.padded.name] if self.padded is not None else []
        return list(dict.fromkeys([t.name for t in self.operands] + [self.result.name] + extra))

    def rewrite(self, graph: gs.Graph, values: dict, index: int) -> tuple[AttentionCore, None]:
        ops = [values[t.name] for t in self.operands]
        prefix = f"/core{index}/{self.kind}"
        b = Builder(graph, prefix)
        if self.padded is not None:
            vp, v = values[self.padded.name], ops[2]
            if vp.shape[:-1] != v.shape[:-1] or vp.shape[-1] != v.shape[-1] + 1 or not np.array_equal(
                    vp[..., :-1], v) or not np.all(vp[..., -1] == 1):
                raise NotRecognised("linear attention pads V with something other than one column of ones")
        if self.kind == "separable":
            inputs, geom = list(self.operands), _separable_geometry(*ops)
        else:
            q, k, v = ops
            kt = k if self.k_transposed else np.swapaxes(k, -1, -2)
            if not (q.ndim == kt.ndim == v.ndim >= 2 and q.shape[:-2] == kt.shape[:-2] == v.shape[:-2]
                    and q.shape[-1] == kt.shape[-2] and kt.shape[-1] == v.shape[-2]):
                raise NotRecognised(f"{self.kind} attention with inconsistent shapes q {q.shape}, "
                                    f"k{'ᵀ' if self.k_transposed else ''} {k.shape}, v {v.shape}")
            kf = b.op("Transpose", [b.flatten_groups(self.operands[1])], {"perm": [0, 2, 1]}) \
                if self.k_transposed else b.flatten_groups(self.operands[1])
            inputs = [b.flatten_groups(self.operands[0]), kf, b.flatten_groups(self.operands[2])]
            geom = dict(groups=int(np.prod(q.shape[:-2])) if q.ndim > 2 else 1,
                        heads=int(q.shape[-3]) if q.ndim >= 3 else 1, q_tokens=int(q.shape[-2]),
                        kv_tokens=int(v.shape[-2]), head_dim=int(q.shape[-1]), value_dim=int(v.shape[-1]))
        op_type = {"factorized": FACTORIZED, "separable": SEPARABLE, "linear": LINEAR}[self.kind]
        core_out = gs.Variable(f"{prefix}/{op_type}_output_0", dtype=self.result.dtype)
        core = gs.Node(op_type, f"{prefix}/{op_type}", domain=DOMAIN, attrs=dict(self.attrs), inputs=inputs,
                       outputs=[core_out])
        graph.nodes.append(core)
        out = self.result
        self.last.outputs.clear()
        if self.kind == "separable":
            b.op("Identity", [core_out], outputs=[out])
        else:
            b.restore(core_out, self.operands[0], self.operands[2], out)
        rec = AttentionCore(index=index, attention=core.name, tokens_dynamic=False, scale=float(
            self.attrs.get("scale", 1.0)), bias="none", kind=self.kind, forms=dict(self.forms),
            why_not_block=self.why_not_block, output=out.name, **geom)
        return rec, None


def _separable_geometry(s: np.ndarray, k: np.ndarray, v: np.ndarray) -> dict:
    full = np.broadcast_shapes(s.shape, k.shape, v.shape)
    if s.shape[-1] != full[-1] or s.ndim < 2 or s.shape[1] != 1:
        raise NotRecognised(f"separable attention logits of shape {list(s.shape)} (one channel expected)")
    return dict(groups=int(np.prod(full[:-1]) // max(1, full[1])), heads=1, q_tokens=int(full[-1]),
                kv_tokens=int(full[-1]), head_dim=int(full[1]), value_dim=int(full[1]))


# --------------------------------------------------------------------------- patterns
def match_factorized(softmax: gs.Node) -> LinearSite:
    """Softmax(k, token axis) → Transpose → MatMul(·, v) → MatMul(q, ·) [→ Mul scale]."""
    k = softmax.inputs[0]
    t = _through(softmax.outputs[0]) if softmax.outputs else None
    if not _swaps_last_two(t):
        raise NotRecognised("Softmax over the token axis not followed by a transpose of its last two axes")
    kv = _through(t.outputs[0])
    if kv is None or kv.op != "MatMul" or kv.inputs[0] is not t.outputs[0] or const_value(kv.inputs[1]) is not None:
        raise NotRecognised("softmax(K)ᵀ is not multiplied by V")
    qkv = _through(kv.outputs[0])
    if qkv is None or qkv.op != "MatMul" or qkv.inputs[1] is not kv.outputs[0] or const_value(qkv.inputs[0]) is not None:
        raise NotRecognised("softmax(K)ᵀV is not multiplied by Q")
    last, scale = qkv, 1.0
    nxt = _through(qkv.outputs[0])
    if nxt is not None and nxt.op in ("Mul", "Div"):
        other = [i for i in nxt.inputs if i is not qkv.outputs[0]]
        val = _scalar(other[0]) if len(other) == 1 else None
        if val is not None and (nxt.op == "Mul" or nxt.inputs[1] is other[0]) and val != 0:
            last, scale = nxt, (val if nxt.op == "Mul" else 1.0 / val)
    return LinearSite("factorized", softmax, [qkv.inputs[0], k, kv.inputs[1]], last.outputs[0], last,
                      {"scale": float(scale)}, [kv, qkv], {"core": "factorized"})


def match_separable(softmax: gs.Node) -> LinearSite:
    """Softmax(s) → Mul(k, ·) → ReduceSum(last axis, keepdims) [→ Expand] → Mul(v, ·)."""
    mul = _through(softmax.outputs[0])
    if mul is None or mul.op != "Mul":
        raise NotRecognised("separable-attention form not matched")
    k = next(i for i in mul.inputs if i is not softmax.outputs[0] and producer(i) is not mul)
    red = _through(mul.outputs[0])
    if red is None or red.op != "ReduceSum" or not red.attrs.get("keepdims", 1):
        raise NotRecognised("separable-attention form not matched (no token sum)")
    axes = red.attrs.get("axes") if "axes" in red.attrs else (const_value(red.inputs[1]) if len(red.inputs) > 1
                                                              else None)
    rank = len(k.shape) if k.shape is not None else None
    if axes is None or len(np.atleast_1d(axes)) != 1 or int(np.atleast_1d(axes)[0]) not in (-1, (rank or 0) - 1):
        raise NotRecognised("separable-attention sum is not over the token (last) axis")
    ctx = red.outputs[0]
    nxt = _through(ctx)
    if nxt is not None and nxt.op == "Expand":
        ctx, nxt = nxt.outputs[0], _through(nxt.outputs[0])
    if nxt is None or nxt.op != "Mul":
        raise NotRecognised("separable-attention context is not multiplied by V")
    v = next(i for i in nxt.inputs if i is not ctx)
    return LinearSite("separable", softmax, [softmax.inputs[0], k, v], nxt.outputs[0], nxt, {}, [],
                      {"core": "separable"})


def match_linear(product: gs.Node) -> LinearSite:
    """MatMul(kᵀ, Pad(v, 1)) → MatMul(q, ·) → Slice num / Slice den → Div(num, den + eps)."""
    kt, vpad = product.inputs[0], product.inputs[1]
    pad = producer(_back(vpad))
    if pad is None or pad.op != "Pad" or pad.attrs.get("mode", "constant") != "constant":
        raise NotRecognised("activation×activation product without a Softmax (not the kᵀ·[v | 1] form)")
    if len(pad.inputs) < 3:
        raise NotRecognised("linear attention padding V with zeros (not [v | 1])")
    qkv = _through(product.outputs[0])
    if qkv is None or qkv.op != "MatMul" or qkv.inputs[1] is not product.outputs[0]:
        raise NotRecognised("kᵀ·[v | 1] is not multiplied by Q")
    out = qkv.outputs[0]
    slices = [c for c in out.outputs if c.op == "Slice"]
    div = next((c for s in slices for c in s.outputs[0].outputs if c.op == "Div"), None)
    if len(slices) != 2 or div is None or not any(producer(div.inputs[0]) is x for x in slices):
        raise NotRecognised("linear attention output is not normalised by its last column")
    den = producer(div.inputs[1])
    eps = 0.0
    if den is not None and den.op == "Add":
        eps = next((_scalar(i) for i in den.inputs if _scalar(i) is not None), None)
        if eps is None or not any(producer(next(i for i in den.inputs if _scalar(i) is None)) is x for x in slices):
            raise NotRecognised("linear attention normaliser is not last column + eps")
    elif not any(den is x for x in slices):
        raise NotRecognised("linear attention normaliser is not the last column")
    kt_node = producer(_back(kt))
    k, transposed = (kt_node.inputs[0], False) if _swaps_last_two(kt_node) else (kt, True)
    return LinearSite("linear", product, [qkv.inputs[0], k, pad.inputs[0]], div.outputs[0], div,
                      {"eps": float(eps)}, [product, qkv], {"core": "relu-linear"},
                      why_not_block="no Softmax: kernel (ReLU) linear attention", k_transposed=transposed,
                      padded=pad.outputs[0])


__all__ = ["LinearSite", "match_factorized", "match_separable", "match_linear"]
