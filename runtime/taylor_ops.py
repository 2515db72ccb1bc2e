"""``ai.vitc::TaylorAttention`` — first-order Taylor (ViTALiTy) linear attention.

Per head, with Q, K, V of shape [n, d], ``s`` the node's ``scale`` attribute (1/√d) and
key weights w_j ∈ {0, 1} (1 unless the key is masked out):

* ``paper`` variant (ViTALiTy, Dass et al. HPCA 2023, Algorithm 1, exp(x) ≈ 1 + x applied to softmax(s·q·k̂ᵀ))::

      n_w   = Σ_j w_j                              (= n without a mask)
      K̄     = Σ_j w_j k_j / n_w                    (centring over tokens; or per key over features)
      K̂     = diag(w)(K − 1·K̄)                     masked keys become zero rows
      G     = K̂ᵀ V                                 [d, d]
      k̂_sum = 1ᵀ K̂,   v_sum = Σ_j w_j v_j          [d]
      t_D   = n_w + s·Q k̂_sumᵀ                     [n]
      T_N   = 1 v_sum + s·Q G                      [n, d]
      Z     = diag(t_D)⁻¹ T_N

  This is the paper's formula divided by √d in numerator and denominator (identical
  result). With centring over tokens k̂_sum is zero in exact arithmetic, so t_D = n_w; the
  ``simplified`` form (what ``reorder --reorder-simplify`` asks for) folds 1/n_w into the
  d×d matrix: Z = v_sum/n_w + Q·(s/n_w · G) — no n-vector division at all.

* ``code`` variant (the released GATECH-EIC/ViTaLiTy inference path without its sparse
  term): Z = s·Q·(K̂ᵀV), no v_sum term and no denominator; keys centred per key over
  features by default.

* ``order2`` variant (beyond the paper: the second-order expansion exp(x) ≈ 1 + x + x²/2, as in
  the feature map of Based, Arora et al. 2024): the ``paper`` form plus the quadratic term, with
  (q·k̂)² = (q⊗q)·(k̂⊗k̂) over d² outer-product features per token::

      G₂    = Σ_j (k̂_j⊗k̂_j) v_jᵀ,   k̂₂_sum = Σ_j k̂_j⊗k̂_j            [d², d], [d²]
      t_D   = n_w + s·Q k̂_sumᵀ + s²/2·(Q⊗Q) k̂₂_sumᵀ
      T_N   = 1 v_sum + s·Q G + s²/2·(Q⊗Q) G₂

  The weights 1 + x + x²/2 are never negative (an even-order truncation of exp), so the
  denominator stays positive. Still linear in n, but O(n·d³) per head: at the token counts of
  today's ViTs and sentence encoders it costs more than softmax (the taylor pass reports it).

Products are always ordered Q·(K̂ᵀV): no intermediate has two token axes.

Masks: the canonical additive mask (broadcastable to [B, H, N, N]) is read as a key-padding
mask: key j is excluded (w_j = 0) where the mask is ≤ ``MASK_THRESHOLD`` for every query
(a query-dependent mask cannot be expressed in linear attention; it is reduced to the keys
visible to all queries).

Hybrid heads: a node with a non-empty ``softmax_heads`` attribute keeps those heads as exact
softmax attention (per head softmax(s·q·kᵀ + mask)·v, n×n for those heads only) and runs the
others (``taylor_heads``) through the Taylor form; ``head_order`` puts the concatenated
[softmax heads, Taylor heads] back in the original head order. The taylor pass chooses the heads
from their teacher-forced fidelity (``--head-cos-floor``); a key-padding mask must be the same
for every head ([B, 1, q, N]).

Overloads (selected from the node's ``variant``/``centering``/``simplified`` attributes,
``softmax_heads`` and arity by :func:`overload_name`): ``"{variant}-{centering}[-const][-masked][-hybrid]"``,
with the default paper/tokens form as ``""`` / ``"masked"`` (``"hybrid"`` / ``"masked-hybrid"``).
"""
from __future__ import annotations

import numpy as np
from onnx import FunctionProto, NodeProto, TensorProto, helper

from vitc.runtime.attention_op import softmax_heads, softmax_steps
from vitc.runtime.function_builder import FunctionBuilder, merge_heads, split_heads
from vitc.runtime.op_registry import Step, WorkList, custom_op, head_views, register_node_overload, register_work

OP_TYPE = "TaylorAttention"
VARIANTS = ("paper", "code", "order2")
CENTERINGS = ("tokens", "features", "none")
DEFAULT_CENTERING = {"paper": "tokens", "code": "features", "order2": "tokens"}
ATTRIBUTES = ["num_heads", "scale", "variant", "centering", "simplified"]
HYBRID_ATTRIBUTES = ["softmax_heads", "taylor_heads", "head_order"]
MASK_THRESHOLD = -1.0e3   # additive mask values at or below this exclude the key


def overload_name(variant: str, centering: str, simplified: bool, masked: bool, hybrid: bool = False) -> str:
    """The function overload implementing one configuration."""
    if variant == "paper" and centering == "tokens" and not simplified:
        name = "masked" if masked else ""
    else:
        name = f"{variant}-{centering}" + ("-const" if simplified else "") + ("-masked" if masked else "")
    return (f"{name}-hybrid" if name else "hybrid") if hybrid else name


def hybrid_attributes(num_heads: int, softmax_heads) -> dict:
    """``softmax_heads``/``taylor_heads``/``head_order`` node attributes for keeping the heads
    ``softmax_heads`` exact (empty dict when none is kept)."""
    soft = sorted(int(h) for h in softmax_heads)
    if not soft:
        return {}
    if soft[0] < 0 or soft[-1] >= num_heads or len(set(soft)) != len(soft):
        raise ValueError(f"softmax heads {soft} are not distinct heads of {num_heads}")
    lin = [h for h in range(num_heads) if h not in soft]
    order = np.argsort(np.array(soft + lin)).tolist()      # position of head h in [softmax..., taylor...]
    return {"softmax_heads": soft, "taylor_heads": lin, "head_order": order}


def can_simplify(variant: str, centering: str) -> bool:
    """k̂_sum = 0 (so t_D = n_w) holds exactly only for the paper variant centred over tokens."""
    return variant == "paper" and centering == "tokens"


def _attr(node: NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _node_overload(node: NodeProto) -> str:
    variant = _attr(node, "variant", "paper")
    centering = _attr(node, "centering", DEFAULT_CENTERING.get(variant, "tokens"))
    return overload_name(variant, centering, bool(_attr(node, "simplified", 0)), len(node.input) == 4,
                         bool(_attr(node, "softmax_heads", [])))


def _key_weights(b: FunctionBuilder) -> str:
    """Additive mask [B, h, q, N] → key weights [B, h, 1, N] (1 keep / 0 masked), float."""
    keep = b.op("Greater", "mask", b.const(np.float32(MASK_THRESHOLD), "mask_threshold"))
    keep = b.op("Cast", keep, to=TensorProto.FLOAT)
    return b.reduce("ReduceMin", keep, [2], keepdims=1)            # visible to every query


def _taylor_attention(variant: str, centering: str, simplified: bool, masked: bool, opset: int,
                      hybrid: bool = False) -> FunctionProto:
    inputs = ["q", "k", "v"] + (["mask"] if masked else [])
    b = FunctionBuilder(OP_TYPE, inputs, ATTRIBUTES + (HYBRID_ATTRIBUTES if hybrid else []), opset,
                        overload=overload_name(variant, centering, simplified, masked, hybrid),
                        doc=f"Taylor linear attention, variant={variant}, centering={centering}, "
                            f"simplified={int(simplified)}, masked={int(masked)}, hybrid={int(hybrid)}; "
                            "see vitc.runtime.taylor_ops.")
    heads = b.attr_int("num_heads")
    scale = b.attr_float("scale")
    qh = split_heads(b, "q", heads, [0, 2, 1, 3])                  # Q  [B, H, N, d]
    kt = split_heads(b, "k", heads, [0, 2, 3, 1])                  # Kᵀ [B, H, d, N] (keys as columns)
    vh = split_heads(b, "v", heads, [0, 2, 1, 3])                  # V  [B, H, N, d]
    w = _key_weights(b) if masked else None                        # [B, h, 1, N]
    if not hybrid:
        b.output(merge_heads(b, _taylor_heads(b, qh, kt, vh, w, scale, variant, centering, simplified)), "y")
        return b.build()
    soft, lin = b.attr_ints("softmax_heads"), b.attr_ints("taylor_heads")
    pick = lambda x, idx: b.op("Gather", x, idx, axis=1)         # noqa: E731 - heads on axis 1
    # the mask is [B, 1, q, N]: the same for every head
    exact = softmax_heads(b, pick(qh, soft), pick(kt, soft), pick(vh, soft), scale, "mask" if masked else None)
    linear = _taylor_heads(b, pick(qh, lin), pick(kt, lin), pick(vh, lin), w, scale, variant, centering, simplified)
    both = b.op("Concat", exact, linear, axis=1)
    b.output(merge_heads(b, b.op("Gather", both, b.attr_ints("head_order"), axis=1)), "y")
    return b.build()


def _taylor_heads(b: FunctionBuilder, qh: str, kt: str, vh: str, w: str | None, scale: str, variant: str,
                  centering: str, simplified: bool) -> str:
    """Taylor attention of Q [B, h, N, d], Kᵀ [B, h, d, N], V [B, h, N, dv] with key weights
    ``w`` [B, 1|h, 1, N] (or None) → Z [B, h, N, dv] (the steps of the module doc)."""
    # --- step 1: centred keys K̂ᵀ (masked keys excluded from the mean and zeroed)
    if centering == "tokens":
        if w is None:
            kbar = b.reduce("ReduceMean", kt, [3])                 # K̄ᵀ [B, H, d, 1]
        else:
            kbar = b.op("Div", b.reduce("ReduceSum", b.op("Mul", kt, w), [3]), b.reduce("ReduceSum", w, [3]))
        kc = b.op("Sub", kt, kbar)
    elif centering == "features":
        kc = b.op("Sub", kt, b.reduce("ReduceMean", kt, [2]))      # each key over its d features
    else:
        kc = kt
    if w is not None:
        kc = b.op("Mul", kc, w)
    # --- step 2: global context G = K̂ᵀV (d×d); the scale is folded into d×d / d-sized tensors only
    g = b.op("MatMul", kc, vh)                                     # [B, H, d, d]
    if variant == "code":
        return b.op("MatMul", qh, b.op("Mul", g, scale))
    # --- step 3: column sums (v_sum; k̂_sum below)
    wv = None if w is None else b.op("Transpose", w, perm=[0, 1, 3, 2])    # [B, h, N, 1]
    if simplified:
        # t_D = n_w exactly (k̂_sum = 0): Z = v_sum/n_w + Q·(s/n_w·G)
        if w is None:
            vmean = b.reduce("ReduceMean", vh, [2])                # v_sum / n  [B, H, 1, d]
            inv_n = b.op("Reciprocal", b.op("Cast", b.op("Gather", b.op("Shape", kt),
                                                         b.const(np.int64(3), "token_axis"), axis=0),
                                            to=TensorProto.FLOAT))
        else:
            inv_n = b.op("Reciprocal", b.reduce("ReduceSum", w, [3]))   # [B, h, 1, 1]
            vmean = b.op("Mul", b.reduce("ReduceSum", b.op("Mul", vh, wv), [2]), inv_n)
        g_s = b.op("Mul", g, b.op("Mul", scale, inv_n))
        return b.op("Add", b.op("MatMul", qh, g_s), vmean)
    vsum = b.reduce("ReduceSum", vh if w is None else b.op("Mul", vh, wv), [2])   # [B, H, 1, d]
    if w is None:
        n = b.op("Cast", b.op("Gather", b.op("Shape", kt), b.const(np.int64(3), "token_axis"), axis=0),
                 to=TensorProto.FLOAT)
    else:
        n = b.reduce("ReduceSum", w, [3])                          # n_w [B, h, 1, 1]
    ksum = b.reduce("ReduceSum", kc, [3])                          # k̂_sumᵀ [B, H, d, 1]
    # --- step 4: t_D = n_w + s·Q·k̂_sumᵀ  [B, H, N, 1]
    t_d = b.op("Add", b.op("MatMul", qh, b.op("Mul", ksum, scale)), n)
    # --- step 5: T_N = v_sum + s·Q·G  [B, H, N, d]
    t_n = b.op("Add", b.op("MatMul", qh, b.op("Mul", g, scale)), vsum)
    if variant == "order2":
        t_d, t_n = _quadratic_terms(b, qh, kc, vh, scale, t_d, t_n)
    # --- step 6: Z = diag(t_D)⁻¹ T_N
    return b.op("Div", t_n, t_d)


def _outer_features(b: FunctionBuilder, x: str) -> str:
    """[B, h, N, d] → x⊗x per token, flattened [B, h, N, d²]."""
    outer = b.op("Mul", b.op("Unsqueeze", x, b.const(np.array([-1], np.int64))),
                 b.op("Unsqueeze", x, b.const(np.array([-2], np.int64))))
    return b.op("Reshape", outer, b.const(np.array([0, 0, 0, -1], np.int64)))


def _quadratic_terms(b: FunctionBuilder, qh: str, kc: str, vh: str, scale: str, t_d: str, t_n: str) -> tuple[str, str]:
    """``order2``: t_D + s²/2·(Q⊗Q)·k̂₂_sumᵀ and T_N + s²/2·(Q⊗Q)·G₂ from centred, masked K̂ᵀ
    [B, h, d, N]; s²/2 is folded into the d²-sized tensors."""
    k2 = _outer_features(b, b.op("Transpose", kc, perm=[0, 1, 3, 2]))      # [B, h, N, d²]
    q2 = _outer_features(b, qh)                                            # [B, h, N, d²]
    half_s2 = b.op("Mul", b.op("Mul", scale, scale), b.const(np.float32(0.5), "half"))
    g2 = b.op("MatMul", b.op("Transpose", k2, perm=[0, 1, 3, 2]), vh)      # G₂ [B, h, d², dv]
    k2sum = b.reduce("ReduceSum", k2, [2])                                 # [B, h, 1, d²]
    t_d = b.op("Add", t_d, b.op("MatMul", q2, b.op("Transpose", b.op("Mul", k2sum, half_s2), perm=[0, 1, 3, 2])))
    t_n = b.op("Add", t_n, b.op("MatMul", q2, b.op("Mul", g2, half_s2)))
    return t_d, t_n


def _register_all() -> None:
    seen = set()
    for variant in VARIANTS:
        for centering in CENTERINGS:
            for simplified in (False, True):
                if simplified and not can_simplify(variant, centering):
                    continue
                for masked in (False, True):
                    for hybrid in (False, True):
                        key = overload_name(variant, centering, simplified, masked, hybrid)
                        if key in seen:
                            continue
                        seen.add(key)
                        custom_op(OP_TYPE, key)(
                            lambda opset, v=variant, c=centering, s=simplified, m=masked, y=hybrid:
                            _taylor_attention(v, c, s, m, opset, y))
    register_node_overload(OP_TYPE, _node_overload)
    register_work(OP_TYPE, taylor_work)


def taylor_work(attrs: dict, in_shapes: list, opset: int = 17) -> list[Step]:
    """The body's arithmetic (:func:`_taylor_attention`), step by step, for one configuration."""
    variant = str(attrs.get("variant", "paper"))
    centering = str(attrs.get("centering", DEFAULT_CENTERING.get(variant, "tokens")))
    simplified = bool(attrs.get("simplified", 0))
    heads = int(attrs["num_heads"])
    w = WorkList(in_shapes, opset)
    qh, kt, vh = head_views(w, heads)
    b, _, n, d = qh.shape
    nk, dv = kt.shape[3], vh.shape[3]
    wk = None
    if len(in_shapes) > 3:                                          # key weights [B, h, 1, N]
        m = w.inputs[3]
        keep = w.op("Greater", m, w.const(), out=m.shape)
        wk = w.reduce("ReduceMin", keep, [2], out=m.shape[:2] + (1,) + m.shape[3:])
    soft = list(attrs.get("softmax_heads") or [])
    if soft:                                   # exact heads: softmax attention on those only
        hs = len(soft)
        softmax_steps(w, w.view(qh, (b, hs, n, d)), w.view(kt, (b, hs, d, nk)), w.view(vh, (b, hs, nk, dv)),
                      w.inputs[3] if len(in_shapes) > 3 else None)
        lin = heads - hs
        qh, kt, vh = w.view(qh, (b, lin, n, d)), w.view(kt, (b, lin, d, nk)), w.view(vh, (b, lin, nk, dv))
    _taylor_steps(w, qh, kt, vh, wk, variant, centering, simplified)
    return w.steps


def _taylor_steps(w: WorkList, qh, kt, vh, wk, variant: str, centering: str, simplified: bool) -> None:
    """Steps of :func:`_taylor_heads` for views Q [B, h, N, d], Kᵀ, V and key weights ``wk``."""
    b, h, n, d = qh.shape
    dv = vh.shape[3]
    scale = w.const()
    # step 1: centred keys
    if centering == "tokens":
        if wk is None:
            kbar = w.reduce("ReduceMean", kt, [3], out=(b, h, d, 1))
        else:
            num = w.reduce("ReduceSum", w.op("Mul", kt, wk, out=kt.shape), [3], out=(b, h, d, 1))
            kbar = w.op("Div", num, w.reduce("ReduceSum", wk, [3], out=wk.shape[:3] + (1,)), out=(b, h, d, 1))
        kc = w.op("Sub", kt, kbar, out=kt.shape)
    elif centering == "features":
        kc = w.op("Sub", kt, w.reduce("ReduceMean", kt, [2], out=(b, h, 1, kt.shape[3])), out=kt.shape)
    else:
        kc = kt
    if wk is not None:
        kc = w.op("Mul", kc, wk, out=kt.shape)
    # step 2: G = K̂ᵀV
    g = w.op("MatMul", kc, vh, out=(b, h, d, dv))
    if variant == "code":
        w.op("MatMul", qh, w.op("Mul", g, scale, out=g.shape), out=(b, h, n, dv))
        return
    wv = None if wk is None else w.view(wk, wk.shape[:2] + (wk.shape[3], 1))
    if simplified:
        if wk is None:
            vmean = w.reduce("ReduceMean", vh, [2], out=(b, h, 1, dv))
            inv_n = w.op("Reciprocal", w.const(), out=())
        else:
            inv_n = w.op("Reciprocal", w.reduce("ReduceSum", wk, [3], out=wk.shape[:3] + (1,)),
                         out=wk.shape[:3] + (1,))
            vmean = w.op("Mul", w.reduce("ReduceSum", w.op("Mul", vh, wv, out=vh.shape), [2], out=(b, h, 1, dv)),
                         inv_n, out=(b, h, 1, dv))
        g_s = w.op("Mul", g, w.op("Mul", scale, inv_n, out=inv_n.shape), out=g.shape)
        w.op("Add", w.op("MatMul", qh, g_s, out=(b, h, n, dv)), vmean, out=(b, h, n, dv))
        return
    vsum = w.reduce("ReduceSum", vh if wv is None else w.op("Mul", vh, wv, out=vh.shape), [2], out=(b, h, 1, dv))
    n_w = w.const() if wk is None else w.reduce("ReduceSum", wk, [3], out=wk.shape[:3] + (1,))
    ksum = w.reduce("ReduceSum", kc, [3], out=(b, h, d, 1))
    t_d = w.op("Add", w.op("MatMul", qh, w.op("Mul", ksum, scale, out=ksum.shape), out=(b, h, n, 1)), n_w,
               out=(b, h, n, 1))
    t_n = w.op("Add", w.op("MatMul", qh, w.op("Mul", g, scale, out=g.shape), out=(b, h, n, dv)), vsum,
               out=(b, h, n, dv))
    if variant == "order2":
        d2, nk = d * d, kt.shape[3]
        k2 = w.op("Mul", w.view(kc, (b, h, nk, d, 1)), w.view(kc, (b, h, nk, 1, d)), out=(b, h, nk, d, d))
        q2 = w.op("Mul", w.view(qh, (b, h, n, d, 1)), w.view(qh, (b, h, n, 1, d)), out=(b, h, n, d, d))
        k2, q2 = w.view(k2, (b, h, nk, d2)), w.view(q2, (b, h, n, d2))
        half_s2 = w.op("Mul", w.op("Mul", scale, scale, out=()), w.const(), out=())
        g2 = w.op("MatMul", w.view(k2, (b, h, d2, nk)), vh, out=(b, h, d2, dv))
        k2sum = w.reduce("ReduceSum", k2, [2], out=(b, h, 1, d2))
        t_d = w.op("Add", t_d, w.op("MatMul", q2, w.view(w.op("Mul", k2sum, half_s2, out=k2sum.shape), (b, h, d2, 1)),
                                    out=(b, h, n, 1)), out=(b, h, n, 1))
        t_n = w.op("Add", t_n, w.op("MatMul", q2, w.op("Mul", g2, half_s2, out=g2.shape), out=(b, h, n, dv)),
                   out=(b, h, n, dv))
    w.op("Div", t_n, t_d, out=(b, h, n, dv))


_register_all()


# ---------------------------------------------------------------------------------------------
# numpy twin (linear form, float64): used for calibration-time fitting, never forms n×n.

def key_weights_np(mask: np.ndarray | None, batch: int, tokens: int) -> np.ndarray:
    """[B, h, N, 1] key weights from an additive mask broadcastable to [B, H, N, N]."""
    if mask is None:
        return np.ones((batch, 1, tokens, 1))
    m = np.asarray(mask)
    while m.ndim < 4:
        m = m[None]
    keep = (m > MASK_THRESHOLD).astype(np.float64).min(axis=2, keepdims=True)
    return np.broadcast_to(np.swapaxes(keep, 2, 3), (max(keep.shape[0], batch),) + np.swapaxes(keep, 2, 3).shape[1:])


def taylor_attention_np(q: np.ndarray, k: np.ndarray, v: np.ndarray, num_heads: int, scale: float,
                        variant: str = "paper", centering: str | None = None, mask: np.ndarray | None = None,
                        simplified: bool = False) -> np.ndarray:
    """Taylor attention on [B, N, C] arrays (heads packed) → [B, N, C], float64, linear in N."""
    centering = centering or DEFAULT_CENTERING[variant]
    bsz, n_tok, c = q.shape
    d = c // num_heads

    def heads(x):
        return np.asarray(x, np.float64).reshape(bsz, n_tok, num_heads, d).transpose(0, 2, 1, 3)

    qh, kh, vh = heads(q), heads(k), heads(v)
    w = key_weights_np(mask, bsz, n_tok)
    nw = w.sum(axis=2, keepdims=True)
    if centering == "tokens":
        kc = kh - (kh * w).sum(axis=2, keepdims=True) / nw
    elif centering == "features":
        kc = kh - kh.mean(axis=3, keepdims=True)
    else:
        kc = kh
    kc = kc * w
    g = np.swapaxes(kc, 2, 3) @ vh
    if variant == "code":
        z = scale * (qh @ g)
    else:
        vsum = (vh * w).sum(axis=2, keepdims=True)
        if simplified:
            t_d = nw
        else:
            t_d = nw + scale * (qh @ np.swapaxes(kc.sum(axis=2, keepdims=True), 2, 3))
        t_n = vsum + scale * (qh @ g)
        if variant == "order2":
            quad_d, quad_n = _quadratic_terms_np(qh, kc, vh, scale)
            t_d, t_n = t_d + quad_d, t_n + quad_n
        z = t_n / t_d
    return z.transpose(0, 2, 1, 3).reshape(bsz, n_tok, c)


def _quadratic_terms_np(qh: np.ndarray, kc: np.ndarray, vh: np.ndarray, scale: float,
                        chunk: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``order2``'s s²/2·(Q⊗Q)·k̂₂_sumᵀ [B, h, N, 1] and s²/2·(Q⊗Q)·G₂ [B, h, N, dv] from
    [B, h, N, d] Q and centred, masked K̂, ``chunk`` samples at a time (the d² features of a
    chunk only)."""
    def outer(x):                                    # [b, h, N, d] → x⊗x [b, h, N, d²]
        return (x[..., :, None] * x[..., None, :]).reshape(x.shape[:3] + (-1,))

    bsz, h, n, _ = qh.shape
    half_s2 = 0.5 * scale * scale
    t_d, t_n = np.empty((bsz, h, n, 1)), np.empty(qh.shape[:3] + (vh.shape[3],))
    for lo in range(0, bsz, chunk):
        sl = slice(lo, lo + chunk)
        k2, q2 = outer(kc[sl]), outer(qh[sl])
        t_d[sl] = half_s2 * (q2 @ np.swapaxes(k2.sum(axis=2, keepdims=True), 2, 3))
        t_n[sl] = half_s2 * (q2 @ (np.swapaxes(k2, 2, 3) @ vh[sl]))
    return t_d, t_n


def softmax_heads_np(q: np.ndarray, k: np.ndarray, v: np.ndarray, num_heads: int, scale: float, heads,
                     mask: np.ndarray | None = None, chunk: int = 32) -> np.ndarray:
    """Exact softmax attention of the heads ``heads`` of [B, N, C] arrays → [B, N, len(heads), d],
    float64, ``chunk`` samples at a time (the n×n scores of a chunk only)."""
    bsz, n_tok, c = q.shape
    d = c // num_heads
    heads = list(heads)
    out = np.empty((bsz, n_tok, len(heads), d))

    def pick(x, lo, hi):
        return np.asarray(x[lo:hi], np.float64).reshape(hi - lo, n_tok, num_heads, d)[:, :, heads].transpose(0, 2, 1, 3)

    m = None if mask is None else np.asarray(mask, np.float64)
    while m is not None and m.ndim < 4:
        m = m[None]
    for lo in range(0, bsz, chunk):
        hi = min(bsz, lo + chunk)
        s = scale * (pick(q, lo, hi) @ np.swapaxes(pick(k, lo, hi), 2, 3))      # [b, h, N, N]
        if m is not None:
            mm = m[lo:hi] if m.shape[0] == bsz else m
            s = s + (mm[:, heads] if mm.shape[1] == num_heads else mm)
        s = np.exp(s - s.max(-1, keepdims=True))
        out[lo:hi] = ((s / s.sum(-1, keepdims=True)) @ pick(v, lo, hi)).transpose(0, 2, 1, 3)
    return out
