"""Transformation blocks (TB) for attention reuse: numpy forward, closed-form fitting, ONNX emission.

A TB maps the source layer's pre-residual attention output ``A_i`` [.., N, C] to a stand-in
for the reusing layer's own attention output ``A_j``:

=================  ==========================================  ============================
kind               function                                    parameters
=================  ==========================================  ============================
identity           TB(a) = a                                   none
linear             TB(a) = a·W + b                             W [C, C] (or W1 [C, r]·W2 [r, C]), b [C]
ln-linear          TB(a) = LN(a)·W + b                         same; LN without affine (W, b absorb it)
ln-linear-gelu     TB(a) = GELU(LN(a)·W + b)  (default)        same
=================  ==========================================  ============================

Fitting (all closed form / numpy, float64 normal equations):

* linear part — ridge least squares ``argmin ‖XW + b − Y‖² + λ‖W‖²`` with centred X, Y and
  λ = ``ridge``·trace(XcᵀXc)/C. With a rank ``r`` the solution is reduced-rank regression:
  W is projected onto the top-r principal directions of its fitted values (eigenvectors of
  WᵀXcᵀXcW), giving W1 = W·V_r [C, r], W2 = V_rᵀ [r, C] — the best rank-r map in the
  least-squares sense.
* GELU — GELU cannot be inverted below its minimum (≈ −0.17), so Y is not directly a linear
  target. We (1) fit the linear part to *pre-activation* targets Z* = GELU⁻¹(max(Y, g_min+δ))
  on the increasing branch, then (2) run a few preconditioned Gauss–Newton steps: with
  D = GELU′(Z) and the per-column Hessian XᵀD_c²X approximated by XᵀX·mean(D_c²), the step
  is the ridge refit of W to the re-targeted Z + D⊙(Y − GELU(Z))/mean(D²) (the same shared
  factorisation), taken with backtracking (step 1, ½, ¼) so that the true loss
  ‖GELU(XW + b) − Y‖² never increases. No gradients framework, no torch; the final loss and
  cosine are reported.

The same ridge solve is shared by all targets of one source (one factorisation of XᵀX per
source layer), which keeps the all-pairs fits of the ``auto`` search cheap.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import numpy as np

import onnx_graphsurgeon as gs

from vitc.core.errors import VitcInputError

TB_KINDS = ("identity", "linear", "ln-linear", "ln-linear-gelu")
DEFAULT_KIND = "ln-linear-gelu"
DEFAULT_RIDGE = 1e-3
LN_EPS = 1e-5
GN_STEPS = 8
_SQRT2 = math.sqrt(2.0)
_GELU_ZMIN = -0.7517915778980255    # argmin of GELU
_GELU_MIN = -0.16997120747990037    # GELU(_GELU_ZMIN)


# ----------------------------------------------------------------------------- numerics
def blas_threads(n: int = 1):
    """Limit BLAS threads while fitting (a no-op without threadpoolctl).

    The fits multiply tall-skinny matrices (tokens × C, C ≤ ~1k): one thread is fast enough,
    and multi-threaded OpenBLAS on XᵀY products stalls badly on a busy machine (measured
    10–200× slower on 2 shared cores).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(n)


def erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz & Stegun 7.1.26 refined: |error| < 1.2e-7), vectorised numpy."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    # Numerical Recipes erfc (Chebyshev fit), fractional error < 1.2e-7 everywhere
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    r = 1.0 - t * np.exp(poly)
    return np.where(x >= 0, r, -r)


def gelu(z: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, as emitted: 0.5·z·(1 + erf(z/√2))."""
    return 0.5 * z * (1.0 + erf(z / _SQRT2))


def gelu_grad(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + erf(z / _SQRT2)) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def gelu_inverse(y: np.ndarray, margin: float = 1e-2) -> np.ndarray:
    """z ≥ argmin GELU with GELU(z) = y (y clipped to GELU's range + ``margin``); Newton + bisection guard."""
    y = np.maximum(np.asarray(y, np.float32), np.float32(_GELU_MIN + margin))
    z = np.where(y > 0, y + 0.2, 0.5 * (y - _GELU_MIN) / -_GELU_MIN * -_GELU_ZMIN + _GELU_ZMIN)
    z = z.astype(np.float32)
    for _ in range(25):
        g = gelu(z) - y
        d = np.maximum(gelu_grad(z), 1e-3)
        z_new = np.maximum(z - g / d, np.float32(_GELU_ZMIN))
        if np.max(np.abs(z_new - z)) < 1e-5:
            z = z_new
            break
        z = z_new
    return z


def layer_norm(a: np.ndarray, eps: float = LN_EPS) -> np.ndarray:
    """LayerNorm over the last axis, no affine."""
    a = np.asarray(a)
    mu = a.mean(-1, keepdims=True)
    d = a - mu
    var = (d * d).mean(-1, keepdims=True)
    return d / np.sqrt(var + eps)


# ----------------------------------------------------------------------------- parameters
@dataclass
class TB:
    """One transformation block's parameters (float32 when emitted)."""

    kind: str
    w1: np.ndarray | None = None      # [C, C] or [C, r]
    w2: np.ndarray | None = None      # [r, C] when low rank
    b: np.ndarray | None = None       # [C]
    stats: dict = field(default_factory=dict)

    @property
    def has_ln(self) -> bool:
        return self.kind in ("ln-linear", "ln-linear-gelu")

    @property
    def has_gelu(self) -> bool:
        return self.kind == "ln-linear-gelu"

    @property
    def rank(self) -> int | None:
        return None if self.w2 is None else int(self.w2.shape[0])

    def pre_activation(self, a: np.ndarray) -> np.ndarray:
        """LN(a)·W1[·W2] + b in float32 (the precision of the emitted graph)."""
        x = layer_norm(a) if self.has_ln else a
        z = x @ np.asarray(self.w1, np.float32)
        if self.w2 is not None:
            z = z @ np.asarray(self.w2, np.float32)
        return z + np.asarray(self.b, np.float32)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        """numpy forward: ``a`` [.., C] → [.., C] (float32, like the emitted graph)."""
        if self.kind == "identity":
            return np.asarray(a)
        a = np.asarray(a, np.float32)
        z = self.pre_activation(a)
        return (gelu(z) if self.has_gelu else z).astype(np.float32)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out = {f"{prefix}.kind": np.array(self.kind)}
        for k in ("w1", "w2", "b"):
            v = getattr(self, k)
            if v is not None:
                out[f"{prefix}.{k}"] = np.asarray(v, np.float32)
        return out


def identity_tb() -> TB:
    return TB("identity", stats={"weights": "identity"})


# ----------------------------------------------------------------------------- fitting
class SourceSolver:
    """Ridge solver for one source activation: factorise XcᵀXc + λI once, solve many targets.

    ``a`` [M, C] (rows = tokens over calibration samples); ``ln``: apply LayerNorm first.
    """

    def __init__(self, a: np.ndarray, ln: bool, ridge: float = DEFAULT_RIDGE):
        x = layer_norm(np.asarray(a, np.float32)) if ln else np.asarray(a, np.float32)
        self.x = x
        self.mean = x.mean(0, dtype=np.float64)
        self.xc = (x - self.mean).astype(np.float32)
        gram = (self.xc.T @ self.xc).astype(np.float64)
        reg = ridge * max(float(np.trace(gram)) / len(gram), 1e-12)
        self.gram = gram
        chol = np.linalg.cholesky(gram + reg * np.eye(len(gram)))
        inv_chol = np.linalg.inv(chol)
        self.inverse = inv_chol.T @ inv_chol        # (XcᵀXc + λI)⁻¹, C×C

    def solve(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W, b) minimising ‖XW + b − Y‖² + λ‖W‖² for targets ``y`` [M, K]."""
        y = np.asarray(y, np.float32)
        ym = y.mean(0, dtype=np.float64)
        rhs = (self.xc.T @ y).astype(np.float64)   # xcᵀ(y − ȳ) = xcᵀy since xc is centred
        w = self.inverse @ rhs
        return w, ym - self.mean @ w

    def low_rank(self, w: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """Reduced-rank regression: (W1 [C, r], W2 [r, C]) with W1·W2 the best rank-r restriction of W."""
        fitted = w.T @ self.gram @ w                 # (XcW)ᵀ(XcW)
        vals, vecs = np.linalg.eigh((fitted + fitted.T) / 2)
        v = vecs[:, np.argsort(vals)[::-1][:rank]]
        return w @ v, v.T


def _linear_fit(solver: SourceSolver, y: np.ndarray, rank: int | None) -> tuple:
    w, b = solver.solve(y)
    if rank:
        w1, w2 = solver.low_rank(w, rank)
        b = y.mean(0) - solver.mean @ w1 @ w2
        return w1, w2, b
    return w, None, b


def _predict(solver: SourceSolver, w1, w2, b) -> np.ndarray:
    z = solver.x @ w1.astype(np.float32)
    if w2 is not None:
        z = z @ w2.astype(np.float32)
    return z + b.astype(np.float32)


def fit_tb(kind: str, solver: SourceSolver | None, a_src: np.ndarray, a_dst: np.ndarray,
           rank: int | None = None, gn_steps: int = GN_STEPS, z_init: np.ndarray | None = None) -> TB:
    """Fit a TB of ``kind`` mapping ``a_src`` → ``a_dst`` (both [M, C]) on calibration rows.

    ``solver`` (from :class:`SourceSolver` on ``a_src`` with the kind's LN flag) may be shared
    between targets of one source; ``None`` builds one. ``z_init``: precomputed
    ``gelu_inverse(a_dst)`` (shared when one target is fitted from many sources). ``stats`` records the fit's cosine,
    the identity TB's cosine and the relative squared error, all on the fitting rows.
    """
    if kind not in TB_KINDS:
        raise ValueError(f"unknown TB kind {kind!r}")
    y = np.asarray(a_dst, np.float32).reshape(-1, a_dst.shape[-1])
    a = np.asarray(a_src, np.float32).reshape(-1, a_src.shape[-1])
    ynorm = float((y * y).sum(dtype=np.float64)) or 1.0
    stats = {"cos_identity": _row_cos(a, y)}
    if kind == "identity":
        stats.update(cos=stats["cos_identity"], rel_err=float(((a - y) ** 2).sum(dtype=np.float64)) / ynorm, weights="identity")
        return TB("identity", stats=stats)
    if solver is None:
        solver = SourceSolver(a, ln=kind in ("ln-linear", "ln-linear-gelu"))
    if kind != "ln-linear-gelu":
        w1, w2, b = _linear_fit(solver, y, rank)
        pred = _predict(solver, w1, w2, b)
        stats.update(cos=_row_cos(pred, y), rel_err=float(((pred - y) ** 2).sum(dtype=np.float64)) / ynorm)
        return TB(kind, w1, w2, b, stats)
    # GELU: fit on inverse-GELU targets, then re-targeted least-squares steps with backtracking
    w1, w2, b = _linear_fit(solver, gelu_inverse(y) if z_init is None else z_init, rank)
    z = _predict(solver, w1, w2, b)
    loss = float(((gelu(z) - y) ** 2).sum(dtype=np.float64))
    steps = 0
    for _ in range(gn_steps):
        d = gelu_grad(z)
        # preconditioned Gauss–Newton direction: per output column c the Hessian XᵀD_c²X is
        # approximated by XᵀX·mean(d_c²), so one shared factorisation serves every column
        target = z + d * (y - gelu(z)) / np.maximum((d * d).mean(0), 1e-3)
        n1, n2, nb = _linear_fit(solver, target, rank)
        zn = _predict(solver, n1, n2, nb)
        accepted = False
        for alpha in (1.0, 0.5, 0.25):
            zc = z + alpha * (zn - z)
            lc = float(((gelu(zc) - y) ** 2).sum(dtype=np.float64))
            if lc < loss * (1 - 1e-6):
                accepted = True
                break
        if not accepted:
            break
        if rank:   # a step between two rank-r maps is not rank r: take the refit itself
            if alpha != 1.0:
                zc, lc = zn, float(((gelu(zn) - y) ** 2).sum(dtype=np.float64))
                if lc >= loss:
                    break
            w1, w2, b = n1, n2, nb
        else:
            w1, b = w1 + alpha * (n1 - w1), b + alpha * (nb - b)
        improvement = (loss - lc) / max(loss, 1e-300)
        z, loss, steps = zc, lc, steps + 1
        if improvement < 1e-4:
            break
    pred = gelu(z)
    stats.update(cos=_row_cos(pred, y), rel_err=loss / ynorm, gn_steps=steps)
    return TB(kind, w1, w2, b, stats)


def _row_cos(a: np.ndarray, b: np.ndarray) -> float:
    """Mean token-wise cosine of [M, C] rows (zero rows count as 1)."""
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.where(den > 0, num / np.maximum(den, 1e-300), 1.0).mean())


# ----------------------------------------------------------------------------- files
def save_tbs(path, tbs: dict[int, TB], plan: dict[int, int]) -> None:
    """Write TB weights as npz: ``tb<j>.kind``, ``tb<j>.w1`` [, ``tb<j>.w2``], ``tb<j>.b``, ``tb<j>.source``."""
    arrays = {}
    for j, tb in sorted(tbs.items()):
        arrays.update(tb.arrays(f"tb{j}"))
        arrays[f"tb{j}.source"] = np.array(plan[j], np.int64)
    np.savez(path, **arrays)


def tbs_to_bytes(tbs: dict[int, TB], plan: dict[int, int]) -> bytes:
    import io
    buf = io.BytesIO()
    save_tbs(buf, tbs, plan)
    return buf.getvalue()


def load_tbs(path, plan: dict[int, int], embed_dim: dict[int, int], kind: str | None = None) -> dict[int, TB]:
    """Read TBs for every reusing block of ``plan`` from ``path`` (see :func:`save_tbs`).

    Raises :class:`VitcInputError` (one line) for a missing file, block, or a wrong shape.
    """
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise VitcInputError(f"--tb-weights: file not found: {path}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise VitcInputError(f"--tb-weights: cannot read {path} as .npz ({type(exc).__name__})") from None
    out = {}
    for j in sorted(plan):
        p = f"tb{j}"
        if f"{p}.kind" not in arrays:
            have = sorted({k.split(".")[0] for k in arrays})
            raise VitcInputError(f"--tb-weights: {path} has no TB for block {j} (has: {', '.join(have) or 'none'})")
        k = str(arrays[f"{p}.kind"])
        if k not in TB_KINDS:
            raise VitcInputError(f"--tb-weights: {p}.kind is {k!r}; expected one of {', '.join(TB_KINDS)}")
        if kind is not None and kind != k:
            raise VitcInputError(f"--tb-weights: block {j} holds a {k} TB but --tb {kind} was asked")
        c = embed_dim[j]
        if k == "identity":
            out[j] = TB("identity", stats={"weights": "identity"})
            continue
        w1, w2, b = arrays.get(f"{p}.w1"), arrays.get(f"{p}.w2"), arrays.get(f"{p}.b")
        if w1 is None or b is None:
            raise VitcInputError(f"--tb-weights: {p} lacks w1 or b")
        r = w1.shape[1] if w1.ndim == 2 else -1
        ok = w1.ndim == 2 and w1.shape[0] == c and b.shape == (c,) and (
            (w2 is None and r == c) or (w2 is not None and w2.shape == (r, c)))
        if not ok:
            raise VitcInputError(f"--tb-weights: {p} shapes w1 {w1.shape}, w2 {None if w2 is None else w2.shape}, "
                                 f"b {b.shape} do not fit embed dim {c}")
        out[j] = TB(k, w1.astype(np.float64), None if w2 is None else w2.astype(np.float64), b.astype(np.float64),
                    {"weights": "loaded"})
    return out


# ----------------------------------------------------------------------------- ONNX emission
def emit_tb(graph: gs.Graph, tb: TB, src: gs.Tensor, prefix: str, opset: int, tag) -> gs.Tensor:
    """Append ``tb`` applied to ``src`` to ``graph`` with standard ops; returns the output tensor.

    LayerNormalization (opset ≥ 17) or its ReduceMean/Sub/Mul/Sqrt/Div decomposition; MatMul
    (+ MatMul for a low rank) + Add; GELU as x·½·(1 + erf(x/√2)). ``tag(node_name)`` is called
    for every new node (block/role metadata).
    """
    if tb.kind == "identity":
        return src
    dtype = src.dtype if src.dtype is not None else np.float32
    shape = src.shape
    counter = iter(range(1000))

    def var(name: str) -> gs.Variable:
        return gs.Variable(f"{prefix}/{name}_output_{next(counter)}", dtype=dtype, shape=shape)

    def node(op: str, name: str, inputs: list, attrs: dict | None = None, out_shape=None) -> gs.Tensor:
        out = var(name)
        if out_shape is not None:
            out.shape = out_shape
        n = gs.Node(op, f"{prefix}/{name}", attrs or {}, inputs, [out])
        graph.nodes.append(n)
        tag(n.name)
        return out

    def const(name: str, value) -> gs.Constant:
        return gs.Constant(f"{prefix}/{name}", np.ascontiguousarray(np.asarray(value, dtype=np.float32)))

    c = tb.w1.shape[0]
    x = src
    if tb.has_ln:
        if opset >= 17:
            x = node("LayerNormalization", "LayerNormalization",
                     [x, const("ln.scale", np.ones(c)), const("ln.bias", np.zeros(c))],
                     {"axis": -1, "epsilon": LN_EPS})
        else:
            red = {"axes": [-1], "keepdims": 1}
            mu = node("ReduceMean", "ln/ReduceMean", [x], red, out_shape=None)
            d = node("Sub", "ln/Sub", [x, mu])
            var2 = node("ReduceMean", "ln/ReduceMean_1", [node("Mul", "ln/Mul", [d, d])], red, out_shape=None)
            std = node("Sqrt", "ln/Sqrt", [node("Add", "ln/Add", [var2, const("ln.eps", LN_EPS)], out_shape=None)],
                       out_shape=None)
            x = node("Div", "ln/Div", [d, std])
    r_shape = None if shape is None else list(shape[:-1]) + [tb.w1.shape[1]]
    z = node("MatMul", "MatMul", [x, const("w1", tb.w1)], out_shape=r_shape)
    if tb.w2 is not None:
        z = node("MatMul", "MatMul_1", [z, const("w2", tb.w2)])
    z = node("Add", "Add", [z, const("b", tb.b)])
    if tb.has_gelu:
        e = node("Erf", "gelu/Erf", [node("Div", "gelu/Div", [z, const("gelu.sqrt2", _SQRT2)])])
        m = node("Mul", "gelu/Mul", [z, node("Add", "gelu/Add", [e, const("gelu.one", 1.0)])])
        z = node("Mul", "gelu/Mul_1", [m, const("gelu.half", 0.5)])
    return z
