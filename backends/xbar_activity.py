"""Data-dependent read activity of the crossbars: what real inputs and weights do to the word lines
and the sense amps (used where a preset has ``[adc_circuit]``).

From one onnxruntime run (the first calibration sample, or a seeded synthetic one) every
static-weight MVM gets its input vectors and weights (:mod:`vitc.runtime.mvm_traces`), quantised as
DNN+NeuroSim's wrapper does: weights to ``weight_bits`` codes split over ``cell_bits`` cells (most
significant first), inputs to ``input_bits`` two's-complement bit-planes applied one per read.
For each row tile the column resistances of those reads follow from the cells' states
(:meth:`ReadPath.column_resistance`), and their conversion energies from the sense-amp equations.

:class:`ReadStats` per weight tensor: the fraction of input bits that are 1 (active word lines) and
the mean energy of one column conversion (pJ). At most ``max_vectors`` input vectors per layer are
used (evenly spaced, deterministic).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from vitc.backends.adc_circuit import ReadPath
from vitc.runtime.mvm_traces import input_bit_planes, quantise_weights, trace_layers


@dataclass(frozen=True, eq=False)       # identity: the read-statistics memo is keyed on the object
class LayerTrace:
    """Quantised operands of one MVM: ``codes`` [K, N] unsigned weight codes (0..2^bits−1) and
    ``planes`` [reads, K] 0/1 input bit-planes (sampled vectors × input bits)."""

    codes: np.ndarray
    planes: np.ndarray


@dataclass(frozen=True)
class ReadStats:
    row_activity: float          # fraction of input bits that are 1 (word lines driven per read)
    conversion_pj: float         # mean energy of one column conversion
    source: str                  # "trace" (real operands) or "assumed"


def layer_traces(model, data=None, seed: int = 0, input_shapes: dict | None = None, *, weight_bits: int,
                 input_bits: int, max_vectors: int = 32, held: dict | None = None) -> dict[str, LayerTrace]:
    """Quantised operands of every static-weight MVM, keyed by weight tensor name."""
    layers, _ = trace_layers(model, data, seed, input_shapes, held)
    out = {}
    for L in layers:
        x = L.inputs
        if x.shape[0] > max_vectors:
            x = x[np.linspace(0, x.shape[0] - 1, max_vectors).round().astype(np.int64)]
        planes = input_bit_planes(x, input_bits)                # [K, vectors·bits]
        wq = quantise_weights(L.weight, weight_bits)
        codes = np.floor(2 ** (weight_bits - 1) * (wq + 1) + 0.5).astype(np.int64)   # NeuroSim's LoadInWeightData
        out[L.weight_name] = LayerTrace(np.clip(codes, 0, 2 ** weight_bits - 1).astype(np.uint16),
                                        np.ascontiguousarray(planes.T))
    return out


def cell_states(codes: np.ndarray, weight_bits: int, cell_bits: int) -> np.ndarray:
    """[K, N] codes → [K, N·slices] cell levels in [0, 1] (most significant slice first)."""
    slices = -(-weight_bits // cell_bits)
    top = 2 ** cell_bits - 1
    parts = [((codes.astype(np.int64) >> (cell_bits * (slices - 1 - s))) & top) / top for s in range(slices)]
    return np.stack(parts, axis=-1).reshape(codes.shape[0], -1)


_STATS: "weakref.WeakKeyDictionary[LayerTrace, dict[tuple, ReadStats]]" = weakref.WeakKeyDictionary()


def read_stats(trace: LayerTrace, path: ReadPath, weight_bits: int, cell_bits: int,
               row_tiles: list[np.ndarray] | None = None) -> ReadStats:
    """Word-line activity and mean conversion energy of ``trace`` on ``path``'s crossbars;
    ``row_tiles``: the weight rows each row tile holds (default: consecutive blocks of ``path.rows``).

    Memoised on the operands, the read path's circuit and the tiling: re-costing a model under other
    figures of the same circuit (the sensitivity table's ±50 % points, sweeps of buffer or
    interconnect constants) reuses them — they were 85 % of a MiniLM compile."""
    key = (_path_key(path), weight_bits, cell_bits,
           None if row_tiles is None else tuple(np.concatenate(row_tiles).tolist() + [len(r) for r in row_tiles]))
    memo = _STATS.setdefault(trace, {})          # forgotten with the trace: no memory kept across models
    if key not in memo:
        memo[key] = _read_stats(trace, path, weight_bits, cell_bits, row_tiles)
    return memo[key]


def _path_key(path: ReadPath) -> tuple:
    return (path.levels, path.rows, path.cols, path.cols_per_adc, path.rows_parallel, _frozen(path.c))


def _frozen(v):
    """A hashable copy of nested dicts and lists."""
    if isinstance(v, dict):
        return tuple(sorted((k, _frozen(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    return v


def _read_stats(trace: LayerTrace, path: ReadPath, weight_bits: int, cell_bits: int,
                row_tiles: list[np.ndarray] | None) -> ReadStats:
    cells = cell_states(trace.codes, weight_bits, cell_bits)
    if row_tiles is None:
        row_tiles = [np.arange(r0, min(r0 + path.rows, cells.shape[0])) for r0 in range(0, cells.shape[0], path.rows)]
    energies = [float(path.conversion_energy_pj(path.column_resistance(trace.planes[:, rows], cells[rows])).mean())
                for rows in row_tiles]   # every row tile converts reads × columns
    return ReadStats(float(trace.planes.mean()), float(np.mean(energies)), "trace")


def assumed_stats(path: ReadPath, rows_used: int, activity: float) -> ReadStats:
    """Without operands: ``activity``·rows_used word lines on, half the cells on."""
    c = path.c
    n = max(activity * rows_used, 0.0)
    g = n * 0.5 * (1.0 / (c["ron_ohm"] + c["access_ohm"]) + 1.0 / (c["roff_ohm"] + c["access_ohm"]))
    r = np.array([1.0 / g if g > 0 else 1e10])
    return ReadStats(activity, float(path.conversion_energy_pj(r)[0]), "assumed")


__all__ = ["LayerTrace", "ReadStats", "layer_traces", "cell_states", "read_stats", "assumed_stats"]
