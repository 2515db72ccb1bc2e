"""Compare a candidate model with its reference in onnxruntime.

Per output: max abs error, max relative error (max |ref − cand| / max |ref|), mean abs
error, cosine similarity per sample (mean and min), and by what the output is
(:mod:`vitc.runtime.output_kinds`): for classifier logits top-1 agreement and, with labels, the
top-1 accuracy of both models; for embeddings ([N, D], D the hidden width) nearest-neighbour
agreement and the Spearman correlation of pairwise similarities; for hidden states the cosine
per token over the real tokens when the model takes an attention mask. ``passed`` uses numpy's
allclose rule |ref − cand| ≤ atol + rtol·|ref| element-wise.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx

from vitc.runtime.data import Dataset, load_dataset
from vitc.core.errors import VitcInputError
from vitc.core.io import load_model
from vitc.runtime.batching import run_batched
from vitc.runtime.inputs import synthetic_inputs
from vitc.runtime.output_kinds import embedding_metrics, hidden_widths, mask_input, output_kind, token_cosines
from vitc.runtime.session import open_session


@dataclass
class OutputMetrics:
    name: str
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine_mean: float
    cosine_min: float
    allclose: bool
    kind: str = "other"
    top1_agreement: float | None = None
    ref_accuracy: float | None = None
    cand_accuracy: float | None = None
    nn_agreement: float | None = None
    spearman: float | None = None
    token_cosine_mean: float | None = None
    token_cosine_min: float | None = None


@dataclass
class ValidationResult:
    samples: int
    inputs: str
    rtol: float
    atol: float
    outputs: list[OutputMetrics] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.allclose for o in self.outputs)

    def to_dict(self) -> dict:
        return {"samples": self.samples, "inputs": self.inputs, "rtol": self.rtol, "atol": self.atol,
                "passed": self.passed, "outputs": [asdict(o) for o in self.outputs]}

    def format(self) -> str:
        lines = [f"validated on {self.samples} samples ({self.inputs}); tolerance rtol={self.rtol:g} atol={self.atol:g}"]
        for o in self.outputs:
            lines.append(f"  {o.name}: max_abs={o.max_abs:.3e} max_rel={o.max_rel:.3e} mean_abs={o.mean_abs:.3e} "
                         f"cosine mean={o.cosine_mean:.6f} min={o.cosine_min:.6f}  {'ok' if o.allclose else 'FAIL'}")
            if o.max_abs != o.max_abs:
                lines.append("    non-finite values (NaN/Inf) in the outputs")
            if o.nn_agreement is not None:
                lines.append(f"    embedding: nearest-neighbour agreement {100 * o.nn_agreement:.2f} %, "
                             f"Spearman of pairwise similarities {o.spearman:.4f}")
            if o.token_cosine_mean is not None:
                lines.append(f"    hidden states: cosine per real token mean={o.token_cosine_mean:.6f} "
                             f"min={o.token_cosine_min:.6f}")
            if o.top1_agreement is not None:
                lines.append(f"    top-1 agreement {100 * o.top1_agreement:.2f} %")
            if o.ref_accuracy is not None:
                lines.append(f"    top-1 accuracy: reference {100 * o.ref_accuracy:.2f} %, "
                             f"candidate {100 * o.cand_accuracy:.2f} %")
        lines.append("PASSED" if self.passed else "FAILED: outputs differ beyond tolerance")
        return "\n".join(lines)


def _row_dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Σ_j x_ij·y_ij per row, summed in float64 without float64 copies of the operands."""
    return np.einsum("ij,ij->i", x, y, dtype=np.float64)


def sample_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between flattened samples (axis 0) of ``a`` and ``b``; 1 where both are zero; NaN
    where either sample holds a NaN or an infinity (a metric never reports non-finite data as fine)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    finite = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    if not finite.all():
        a, b = np.where(np.isfinite(a), a, 0.0), np.where(np.isfinite(b), b, 0.0)
    num = _row_dot(a, b)
    den = np.sqrt(_row_dot(a, a) * _row_dot(b, b))
    cos = np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)
    return np.where(finite, cos, np.nan)


def compare_outputs(name: str, ref: np.ndarray, cand: np.ndarray, rtol: float, atol: float,
                    labels: np.ndarray | None = None, kind: str | None = None,
                    mask: np.ndarray | None = None) -> OutputMetrics:
    if ref.shape != cand.shape:
        raise VitcInputError(f"output '{name}' shapes differ: reference {ref.shape}, candidate {cand.shape}")
    diff = np.abs(ref.astype(np.float64) - cand.astype(np.float64))
    finite = bool(np.isfinite(ref).all() and np.isfinite(cand).all())
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    cos = sample_cosines(ref, cand)
    m = OutputMetrics(name, float(diff.max()) if diff.size else 0.0,
                      float(diff.max() / scale) if scale > 0 else 0.0, float(diff.mean()) if diff.size else 0.0,
                      float(cos.mean()), float(cos.min()),
                      finite and bool(np.allclose(cand, ref, rtol=rtol, atol=atol)))
    if not finite:
        m.max_abs = m.max_rel = m.mean_abs = float("nan")
    m.kind = kind or output_kind(ref, set())
    if m.kind == "embedding" and finite:
        e = embedding_metrics(ref, cand)
        m.nn_agreement, m.spearman = e.get("nn_agreement"), e.get("spearman")
    elif m.kind == "hidden" and finite:
        tok = token_cosines(ref, cand, mask)
        m.token_cosine_mean, m.token_cosine_min = float(tok.mean()), float(tok.min())
    elif m.kind == "logits":
        r, c = ref.argmax(1), cand.argmax(1)
        m.top1_agreement = float((r == c).mean())
        if labels is not None:
            m.ref_accuracy, m.cand_accuracy = float((r == labels).mean()), float((c == labels).mean())
    return m


def _session(model: onnx.ModelProto, which: str):
    try:
        return open_session(model)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise VitcInputError(f"the {which} model does not load in onnxruntime: {first}") from None


def _run(sess, feeds, names, batch_size: int, which: str):
    try:
        return run_batched(sess, feeds, names, batch_size)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise VitcInputError(f"the {which} model does not run in onnxruntime on these inputs: {first}") from None


def _as_model(m) -> onnx.ModelProto:
    return m if isinstance(m, onnx.ModelProto) else load_model(m).model


def validate_models(reference: str | os.PathLike | onnx.ModelProto, candidate: str | os.PathLike | onnx.ModelProto,
                    inputs: str | os.PathLike | Dataset | None = None, samples: int | None = None,
                    labels: bool | str | os.PathLike = False, rtol: float = 1e-3, atol: float = 1e-4,
                    seed: int = 0, input_shapes: dict | None = None, batch_size: int = 32,
                    tokenizer: str | os.PathLike | None = None) -> ValidationResult:
    """Run both models on the same inputs and compare every output (see module doc)."""
    ref_model, cand_model = _as_model(reference), _as_model(candidate)
    if isinstance(inputs, Dataset):
        data = inputs
    elif inputs is not None:
        data = load_dataset(inputs, ref_model, tokenizer=tokenizer)
    else:
        feeds = synthetic_inputs(ref_model, batch=samples or 8, seed=seed, shapes=input_shapes)
        data = Dataset(feeds, None, "synthetic")
    data = data.take(samples)
    label_arr = None
    if labels:
        if isinstance(labels, (str, os.PathLike)) and not isinstance(labels, bool):
            p = Path(labels)
            if not p.is_file():
                raise VitcInputError(f"labels file not found: {p}")
            label_arr = np.load(p).reshape(-1)[: data.size].astype(np.int64)
        elif data.labels is None:
            raise VitcInputError("--labels given but the input data has no 'labels' array")
        else:
            label_arr = data.labels
    ref_sess, cand_sess = _session(ref_model, "reference"), _session(cand_model, "candidate")
    ref_names = [o.name for o in ref_sess.get_outputs()]
    cand_names = [o.name for o in cand_sess.get_outputs()]
    if len(ref_names) != len(cand_names):
        raise VitcInputError(f"models have different output counts ({len(ref_names)} vs {len(cand_names)})")
    cand_feeds = {i.name: data.feeds[i.name] for i in cand_sess.get_inputs() if i.name in data.feeds}
    if len(cand_feeds) != len(cand_sess.get_inputs()):
        raise VitcInputError("candidate model inputs differ from the reference model's")
    ref_feeds = {i.name: data.feeds[i.name] for i in ref_sess.get_inputs() if i.name in data.feeds}
    if len(ref_feeds) != len(ref_sess.get_inputs()):
        raise VitcInputError("the inputs lack arrays for some reference model inputs")
    ref_out = _run(ref_sess, ref_feeds, ref_names, batch_size, "reference")
    cand_out = _run(cand_sess, cand_feeds, cand_names, batch_size, "candidate")
    result = ValidationResult(data.size, data.source, rtol, atol)
    widths = hidden_widths(ref_model)
    mask = ref_feeds.get(mask_input(ref_feeds) or "")
    for name, r, c in zip(ref_names, ref_out, cand_out):
        result.outputs.append(compare_outputs(name, r, c, rtol, atol, label_arr, output_kind(r, widths), mask))
    return result
