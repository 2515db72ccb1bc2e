"""Operation counts: multiplications, additions, divisions, exponentials.

Two accountings, both reported by the passes that rewrite attention:

* **paper** — the attention core (everything between the q/k/v projections and the output
  projection), per head, step by step, as ViTALiTy counts it (ViTALiTy, HPCA 2023, Eq. (1)–(3), Table I):
  a length-K dot product is K multiplications and K additions (accumulation into zero); the
  softmax scale is folded into q (not counted); softmax is n² exponentials, n² additions (row
  sums) and n² divisions. With these rules the softmax baseline is exactly the paper's
  2n²d mul / 2n²d + n² add / n² exp / n² div per head, and Taylor attention is 2nd² + nd mul
  and nd + d div per head (paper: the same), additions 2nd² + 6nd + n (paper states 2nd² + 7nd).
  The ``order2`` form (no paper) adds its quadratic term counted by the same rules:
  2nd³ + 3nd² mul, 2nd³ + 2nd² + nd + n add per head.
* **graph** — counted node by node from the function body that the compiled model actually
  runs, as its op declares it (:func:`vitc.runtime.ops.work`): MatMul [M,K]·[K,N] is M·N·K mul and M·N·(K−1) add;
  elementwise Add/Sub/Mul/Div count one op per output element (scalar scale multiplies
  included); ReduceSum/ReduceMean count in−out additions (+ one division per output for the
  mean); Softmax counts N exp, N − rows add, N div (max subtraction not counted).

Layout ops (Reshape, Transpose, Shape, Gather, Concat, Cast, Constant, comparisons) count zero.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from vitc.runtime.ops import work

KINDS = ("mul", "add", "div", "exp")


@dataclass
class OpCounts:
    mul: int = 0
    add: int = 0
    div: int = 0
    exp: int = 0

    def __add__(self, other: "OpCounts") -> "OpCounts":
        return OpCounts(*(getattr(self, k) + getattr(other, k) for k in KINDS))

    def scaled(self, factor: int) -> "OpCounts":
        return OpCounts(*(getattr(self, k) * factor for k in KINDS))

    def to_dict(self) -> dict:
        return asdict(self)

    def millions(self) -> dict:
        return {k: round(getattr(self, k) / 1e6, 3) for k in KINDS}


def ratio(base: OpCounts, new: OpCounts) -> dict:
    """base / new per kind (None where new is 0)."""
    return {k: (round(getattr(base, k) / getattr(new, k), 3) if getattr(new, k) else None) for k in KINDS}


# ---------------------------------------------------------------------------------------------
# paper accounting (analytical, per head)

def softmax_attention_counts(n: int, d: int, heads: int = 1, masked: bool = False) -> OpCounts:
    """softmax(QKᵀ·s)V per the paper's accounting: QKᵀ, softmax, S·V (scale folded into q)."""
    per_head = OpCounts(mul=2 * n * n * d, add=2 * n * n * d + n * n, div=n * n, exp=n * n)
    if masked:
        per_head.add += n * n        # additive mask on the scores
    return per_head.scaled(heads)


def taylor_attention_counts(n: int, d: int, heads: int = 1, variant: str = "paper", centering: str = "tokens",
                            simplified: bool = False, masked: bool = False) -> OpCounts:
    """Taylor attention (Algorithm 1) per step, per the paper's accounting (see module doc)."""
    c = OpCounts()
    # step 1: centred keys
    if centering == "tokens":
        c.add += n * d + n * d            # column sums, subtraction
        c.div += d                        # K̄ = sum / n (one divisor)
    elif centering == "features":
        c.add += n * d + n * d            # row sums, subtraction
        c.div += n                        # one mean per key
    if masked:
        c.mul += n * d                    # zero masked keys (K̂·w)
        if centering == "tokens":
            c.mul += n * d                # masked column sums (K·w)
            c.add += n
    # step 2: G = K̂ᵀV
    c.mul += n * d * d
    c.add += n * d * d
    if variant == "code":                 # Z = s·Q·G
        c.mul += n * d * d
        c.add += n * d * d
        return c.scaled(heads)
    # step 3: k̂_sum, v_sum
    c.add += n * d                        # v_sum
    if masked:
        c.mul += n * d                    # V·w
    if simplified:
        # t_D = n: Z = v_sum/n + Q·(s/n·G) — 1/n folded into the d×d G (scale folded, not counted)
        c.mul += n * d * d + d * d + d    # QG, G/n, v_sum/n
        c.add += n * d * d + n * d        # QG accumulation, + v_sum
        c.div += 1
        return c.scaled(heads)
    c.add += n * d                        # k̂_sum
    # step 4: t_D = n + s·Q·k̂_sumᵀ
    c.mul += n * d
    c.add += n * d + n
    # step 5: T_N = v_sum + s·Q·G
    c.mul += n * d * d
    c.add += n * d * d + n * d
    if variant == "order2":
        # Q⊗Q, K̂⊗K̂ (d² features per token); G₂ = (K̂⊗K̂)ᵀV, k̂₂_sum; (Q⊗Q)·k̂₂_sumᵀ, (Q⊗Q)·G₂ — s²/2 folded
        c.mul += 2 * n * d ** 3 + 3 * n * d * d
        c.add += 2 * n * d ** 3 + 2 * n * d * d + n * d + n
    # step 6: Z = diag(t_D)⁻¹ T_N
    c.div += n * d
    return c.scaled(heads)


# ---------------------------------------------------------------------------------------------
# graph accounting (counted from ONNX nodes with concrete shapes)

_ZERO_COST = {"Reshape", "Transpose", "Shape", "Gather", "Concat", "Cast", "Constant", "Identity", "Unsqueeze",
              "Squeeze", "Slice", "Split", "Greater", "Less", "Equal", "Where", "ReduceMin", "ReduceMax",
              "Expand", "Flatten", "ConstantOfShape", "Range", "Not", "And", "Or"}


def node_counts(op: str, in_shapes: list[tuple[int, ...]], out_shapes: list[tuple[int, ...]]) -> OpCounts:
    """Counts for one node given its concrete input/output shapes."""
    size = int(np.prod(out_shapes[0], dtype=np.int64)) if out_shapes and out_shapes[0] is not None else 0
    if op in ("MatMul", "Gemm"):
        k = in_shapes[0][-1] if op == "MatMul" else in_shapes[0][-1]
        extra = size if op == "Gemm" and len(in_shapes) > 2 else 0
        return OpCounts(mul=size * k, add=size * (k - 1) + extra)
    if op in ("Add", "Sub"):
        return OpCounts(add=size)
    if op == "Mul":
        return OpCounts(mul=size)
    if op in ("Div", "Reciprocal"):
        return OpCounts(div=size)
    if op == "Exp":
        return OpCounts(exp=size)
    if op == "Softmax":
        rows = size // max(out_shapes[0][-1], 1) if out_shapes[0] else 0
        return OpCounts(exp=size, add=size - rows, div=size)
    if op in ("ReduceSum", "ReduceMean"):
        n_in = int(np.prod(in_shapes[0], dtype=np.int64))
        return OpCounts(add=n_in - size, div=size if op == "ReduceMean" else 0)
    return OpCounts()


@functools.lru_cache(maxsize=64)
def _core_graph_counts(op_type: str, attr_items: tuple, n_inputs: int, n: int, c: int, opset: int) -> OpCounts:
    shapes = [(1, n, c)] * 3 + ([(1, 1, 1, n)] if n_inputs == 4 else [])
    total = OpCounts()
    for st in work(op_type, dict(attr_items), shapes, opset):
        total = total + node_counts(st.op_type, list(st.in_shapes), [st.out_shape])
    return total


def core_graph_counts(op_type: str, attrs: dict, n_inputs: int, n: int, c: int, opset: int) -> OpCounts:
    """Counts of one ``ai.vitc`` core node at batch 1, ``n`` tokens, width ``c``, from the op's
    declared work — the arithmetic of its function body (``tests/test_op_work.py`` checks they agree)."""
    items = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in attrs.items()))   # hashable
    return _core_graph_counts(op_type, items, n_inputs, n, c, opset)
