"""Fidelity measures shared by the rewrite passes.

``end_to_end`` runs a candidate model on calibration data and compares its *primary* output
with the original's — the first classifier logits, else the first embedding, else the first
hidden states (:mod:`vitc.runtime.output_kinds`; pass-through integer outputs never count);
``drop_of`` turns that into a percentage-point drop under one metric (accuracy with labels,
else top-1 agreement for classifiers, else output cosine — per sample for embeddings, per real
token for hidden states of a model that takes an attention mask).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vitc.compiler.emit import emit
from vitc.runtime.batching import run_batched
from vitc.runtime.data import Dataset
from vitc.runtime.session import open_session
from vitc.core.ir import CompiledModel
from vitc.runtime.output_kinds import KIND_RANK, embedding_metrics, mask_input, output_kind, token_cosines
from vitc.runtime.validate import sample_cosines


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over samples (axis 0) of the cosine between flattened samples of ``a`` and ``b``."""
    return float(sample_cosines(a, b).mean())


def emit_copy(cm: CompiledModel):
    """The ONNX model of ``cm`` without disturbing its graph (passes keep editing it)."""
    return emit(dataclasses.replace(cm, graph=cm.graph.copy()))


def primary_output(ref_outputs: list[np.ndarray], widths: set[int] | None = None) -> tuple[int, str]:
    """(index, kind) of the output fidelity is measured on (module doc)."""
    if widths is None:
        widths = {int(r.shape[-1]) for r in ref_outputs if r.ndim == 3 and np.issubdtype(r.dtype, np.floating)}
    kinds = [output_kind(r, widths) for r in ref_outputs]
    best = min(range(len(kinds)), key=lambda i: (KIND_RANK[kinds[i]], i))
    return best, kinds[best]


def end_to_end(model, data: Dataset, ref_outputs: list[np.ndarray]) -> dict:
    """Output cosine, top-1 agreement and (with labels) accuracy of ``model`` vs the original, in %,
    on the primary output; embeddings add nearest-neighbour agreement and Spearman."""
    sess = open_session(model)
    names = [o.name for o in sess.get_outputs()]
    feeds = {i.name: data.feeds[i.name] for i in sess.get_inputs()}
    index, kind = primary_output(ref_outputs)
    out = run_batched(sess, feeds, [names[index]])[0]
    ref = ref_outputs[index]
    if kind == "hidden":
        mask = feeds.get(mask_input(feeds) or "")
        res = {"output_cosine": round(float(token_cosines(ref, out, mask).mean()), 6)}
    else:
        res = {"output_cosine": round(mean_cosine(ref, out), 6)}
    if kind != "logits":
        res["output"] = names[index]
    if kind == "embedding":
        res.update({k: round(v, 6) for k, v in embedding_metrics(ref, out).items() if k in ("nn_agreement", "spearman")})
    if kind == "logits":
        res["agreement"] = round(100.0 * float((ref.argmax(1) == out.argmax(1)).mean()), 3)
        if data.labels is not None:
            res["accuracy_original"] = round(100.0 * float((ref.argmax(1) == data.labels).mean()), 3)
            res["accuracy"] = round(100.0 * float((out.argmax(1) == data.labels).mean()), 3)
    return res


def choose_metric(data: Dataset, ref_outputs: list[np.ndarray]) -> str:
    """accuracy (labels given) / agreement (classifier output) / cosine (anything else)."""
    if primary_output(ref_outputs)[1] != "logits":
        return "cosine"
    return "accuracy" if data.labels is not None else "agreement"


def drop_of(result: dict, metric: str) -> float:
    """Percentage-point drop: accuracy, agreement (100 − agreement) or cosine (100·(1 − cos))."""
    if metric == "accuracy":
        return result["accuracy_original"] - result["accuracy"]
    if metric == "agreement":
        return 100.0 - result["agreement"]
    return 100.0 * (1.0 - result["output_cosine"])
