"""What a model's outputs are, and the metrics that make sense for each.

A float output is one of:

* ``logits`` — [N, K], K > 1, K not the model's hidden width (a classifier head): top-1
  agreement and accuracy;
* ``embedding`` — [N, D] with D the hidden width (a pooled sentence or image embedding):
  cosine per sample (mean and min), nearest-neighbour agreement and the Spearman correlation of
  all pairwise similarities — an argmax over embedding dimensions means nothing;
* ``hidden`` — [N, S, D] (hidden states): cosine per token, over the real tokens only when the
  model takes an attention mask (padding is what pooling ignores);
* ``other`` — integer outputs (pass-through ids/masks) and anything else.

The hidden width is read from the graph (LayerNormalization scales, 3-D outputs), not guessed
from names: exports name a pooled embedding "461" as often as "sentence_embedding".
"""
from __future__ import annotations

import numpy as np
import onnx


#: which output fidelity is measured on, best first (the primary output)
KIND_RANK = {"logits": 0, "embedding": 1, "hidden": 2, "other": 3}


def hidden_widths(model: onnx.ModelProto) -> set[int]:
    """Widths of the model's hidden vectors: LayerNormalization scale lengths and the last dim of
    static 3-D float outputs."""
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    widths = set()
    for n in model.graph.node:
        if n.op_type == "LayerNormalization" and len(n.input) > 1 and len(dims.get(n.input[1], [])) == 1:
            widths.add(int(dims[n.input[1]][0]))
    for o in model.graph.output:
        shape = o.type.tensor_type.shape.dim
        if len(shape) == 3 and shape[2].HasField("dim_value"):
            widths.add(int(shape[2].dim_value))
    return widths


def output_kind(value: np.ndarray, widths: set[int]) -> str:
    """``logits`` / ``embedding`` / ``hidden`` / ``other`` for one output's values (module doc)."""
    if not np.issubdtype(value.dtype, np.floating):
        return "other"
    if value.ndim >= 3:
        return "hidden"
    if value.ndim == 2 and value.shape[1] > 1:
        return "embedding" if value.shape[1] in widths else "logits"
    return "other"


def mask_input(feeds: dict[str, np.ndarray]) -> str | None:
    """The attention-mask input among ``feeds`` (2-D integer or bool, named ``*mask*``), if any."""
    for name, value in feeds.items():
        if "mask" in name.lower() and value.ndim == 2 and value.dtype.kind in "iub":
            return name
    return None


def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x), np.float64)
    r[order] = np.arange(len(x))
    return r


def embedding_metrics(ref: np.ndarray, cand: np.ndarray) -> dict:
    """Cosine per sample (mean, min), nearest-neighbour agreement (share of samples whose most
    similar other sample is the same in both) and the Spearman correlation of all pairwise cosine
    similarities, for [N, D] embeddings (N ≥ 3 for the last two)."""
    a, b = _unit_rows(ref), _unit_rows(cand)
    cos = (a * b).sum(1)
    out = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    if len(a) >= 3:
        sa, sb = a @ a.T, b @ b.T
        np.fill_diagonal(sa, -np.inf)
        np.fill_diagonal(sb, -np.inf)
        out["nn_agreement"] = float((sa.argmax(1) == sb.argmax(1)).mean())
        iu = np.triu_indices(len(a), 1)
        ra, rb = _ranks(sa[iu]), _ranks(sb[iu])
        out["spearman"] = float(np.corrcoef(ra, rb)[0, 1])
    return out


def token_cosines(ref: np.ndarray, cand: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Cosine per token of [N, S, D] hidden states, only where ``mask`` [N, S] is set."""
    a = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    b = cand.reshape(-1, cand.shape[-1]).astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(den > 0, (a * b).sum(1) / np.maximum(den, 1e-300), 1.0)
    if mask is not None and mask.shape == ref.shape[:2]:
        cos = cos[mask.reshape(-1).astype(bool)]
    return cos
