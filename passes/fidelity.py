"""Fidelity measures shared by the rewrite passes.

``end_to_end`` runs a candidate model on calibration data and compares it with the original
model's outputs; ``drop_of`` turns that into a percentage-point drop under one metric
(accuracy with labels, else top-1 agreement for classifiers, else output cosine).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from vitc.compiler.emit import emit
from vitc.runtime.batching import run_batched
from vitc.runtime.data import Dataset
from vitc.runtime.session import open_session
from vitc.core.ir import CompiledModel
from vitc.runtime.validate import sample_cosines


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over samples (axis 0) of the cosine between flattened samples of ``a`` and ``b``."""
    return float(sample_cosines(a, b).mean())


def emit_copy(cm: CompiledModel):
    """The ONNX model of ``cm`` without disturbing its graph (passes keep editing it)."""
    return emit(dataclasses.replace(cm, graph=cm.graph.copy()))


def end_to_end(model, data: Dataset, ref_outputs: list[np.ndarray]) -> dict:
    """Output cosine, top-1 agreement and (with labels) accuracy of ``model`` vs the original, in %."""
    sess = open_session(model)
    names = [o.name for o in sess.get_outputs()]
    out = run_batched(sess, {i.name: data.feeds[i.name] for i in sess.get_inputs()}, names)[0]
    ref = ref_outputs[0]
    res = {"output_cosine": round(mean_cosine(ref, out), 6)}
    if ref.ndim == 2 and ref.shape[1] > 1:
        res["agreement"] = round(100.0 * float((ref.argmax(1) == out.argmax(1)).mean()), 3)
        if data.labels is not None:
            res["accuracy_original"] = round(100.0 * float((ref.argmax(1) == data.labels).mean()), 3)
            res["accuracy"] = round(100.0 * float((out.argmax(1) == data.labels).mean()), 3)
    return res


def choose_metric(data: Dataset, ref_outputs: list[np.ndarray]) -> str:
    """accuracy (labels given) / agreement (classifier output) / cosine (anything else)."""
    ref = ref_outputs[0]
    if not (ref.ndim == 2 and ref.shape[1] > 1):
        return "cosine"
    return "accuracy" if data.labels is not None else "agreement"


def drop_of(result: dict, metric: str) -> float:
    """Percentage-point drop: accuracy, agreement (100 − agreement) or cosine (100·(1 − cos))."""
    if metric == "accuracy":
        return result["accuracy_original"] - result["accuracy"]
    if metric == "agreement":
        return 100.0 - result["agreement"]
    return 100.0 * (1.0 - result["output_cosine"])
