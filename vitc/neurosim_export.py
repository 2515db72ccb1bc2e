"""``vitc export neurosim``: a model's static-weight MVMs as DNN+NeuroSim V1.4 input files.

NeuroSim (github neurosim/NeuroSim, branch 2DInferenceV1.4) simulates a network given as a
CSV of layers (``IFM H, IFM W, C_in, k_H, k_W, C_out, max-pool after, stride``) plus, per layer,
a weight file and an input trace file, run as::

    NeuroSIM/main NetWork.csv <weight bits> <input bits> <subarray> <parallel rows> \\
        weight1.csv input1.csv weight2.csv input2.csv ...

This module writes those files from a real ONNX model and real inputs (one onnxruntime run on
the first calibration sample, or a seeded synthetic one):

* every ``Conv`` (dense, not grouped) with constant weights, as NeuroSim's own convolution layer;
* every ``MatMul``/``Gemm`` with a constant weight [K, N] — a transformer's q/k/v, output,
  MLP and head projections — as a 1×1 convolution over its T input vectors (IFM T × 1, C_in = K,
  C_out = N), which is exactly how NeuroSim maps a convolution: one input vector per output
  position. Weight files hold the weights scaled to [−1, 1] and quantised to ``weight_bits``
  (NeuroSim's wrapper quantiser); input files hold the inputs scaled to [−1, 1) by their maximum
  magnitude and written as ``input_bits`` bit planes, sign bit first (the wrapper's ``dec2bin``),
  one column per (vector, bit).

Activation×activation products (attention scores and their product with V) have no fixed
weights and are not NeuroSim layers; ``layers.json`` lists what was exported and what was not.
"""
from __future__ import annotations

import json

import numpy as np

from vitc.runtime.mvm_traces import TraceLayer, find_layers, input_bit_planes, quantise_weights, trace_layers


def _csv_bits(a: np.ndarray) -> bytes:
    """A 0/1 matrix as CSV text, fast (one byte per digit)."""
    rows, cols = a.shape
    buf = np.full((rows, 2 * cols), ord(","), np.uint8)
    buf[:, 0::2] = a + ord("0")
    buf[:, -1] = ord("\n")
    return buf.tobytes()


def export_files(layers: list[TraceLayer], skipped: list[dict], weight_bits: int, input_bits: int,
                 rows: int, model_name: str) -> dict[str, bytes]:
    """NetWork.csv, weight<i>.csv, input<i>.csv, layers.json and run_neurosim.sh."""
    files: dict[str, bytes] = {}
    net = []
    args = []
    for i, L in enumerate(layers, 1):
        net.append(",".join(str(v) for v in L.row))
        wq = quantise_weights(L.weight, weight_bits)
        lines = [",".join(f"{v:10.5f}" for v in r) for r in wq]
        files[f"weight{i}.csv"] = ("\n".join(lines) + "\n").encode()
        files[f"input{i}.csv"] = _csv_bits(input_bit_planes(L.inputs, input_bits))
        args += [f"weight{i}.csv", f"input{i}.csv"]
    files["NetWork.csv"] = ("\n".join(net) + "\n").encode()
    files["layers.json"] = (json.dumps({
        "schema": "vitc.neurosim_export", "schema_version": 1, "model": model_name,
        "weight_bits": weight_bits, "input_bits": input_bits,
        "columns": ["IFM_H", "IFM_W", "C_in", "k_H", "k_W", "C_out", "max_pool_after", "stride"],
        "layers": [{"index": i, "node": L.node, "op": L.op, "row": list(L.row), "vectors": int(L.inputs.shape[0]),
                    "K": int(L.weight.shape[0]), "N": int(L.weight.shape[1])} for i, L in enumerate(layers, 1)],
        "not_exported": skipped,
        "run": "NEUROSIM=path/to/NeuroSIM/main sh run_neurosim.sh",
    }, indent=1, sort_keys=True) + "\n").encode()
    files["run_neurosim.sh"] = (
        "#!/bin/sh\n# DNN+NeuroSim V1.4: <weight bits> <input bits> <subarray rows> <rows read in parallel>\n"
        "cd \"$(dirname \"$0\")\"\n"
        f"\"${{NEUROSIM:-./NeuroSIM/main}}\" NetWork.csv {weight_bits} {input_bits} {rows} {rows} "
        + " ".join(args) + "\n").encode()
    return files


__all__ = ["TraceLayer", "find_layers", "trace_layers", "quantise_weights", "input_bit_planes", "export_files"]
