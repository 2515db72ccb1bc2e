#!/usr/bin/env python
"""Tabulate NeuroSim V1.4's sense-cycle gate delays for the ``[neurosim_chip]`` preset section.

A synchronous NeuroSim chip runs at the slowest sense cycle of its sub-arrays:
``beta · (max(row drive, column mux + mux decoder) + column sensing + encoder)``
(SubArray::CalculateLatency with CalculateclkFreq, conventional parallel read). vitc computes the
column sensing itself (:mod:`vitc.backends.adc_circuit`); the gate delays around it are NeuroSim's
horowitz chains of its decoders, switch matrices and encoder, which vitc does not port. This tool
runs ``tools/neurosim_mlsa_probe.cpp`` (linked against a built NeuroSim) over a grid of sub-array
sizes, column muxing and ADC levels and prints the TOML lines the preset holds:

* ``select_delay_ns``: ``[rows, cols, cols_muxed, max(row delay, mux delay)]`` rows;
* ``encoder_delay_ns``: ``[levels, delay]`` rows (the encoder depends on the levels only).

    python tools/neurosim_sense_delays.py --probe PATH/TO/probe > delays.toml
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess

SIZES = (32, 64, 128, 256, 512, 1024)
MUXES = (1, 2, 4, 8, 16, 32)
LEVELS = (4, 8, 16, 32, 64, 128)


def probe(binary: str, rows: int, cols: int, levels: int, mux: int) -> dict:
    env = dict(os.environ, PROBE_COLS=str(cols))
    out = subprocess.run([binary, str(rows), str(levels), str(mux), str(rows), "1e5"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("{"):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", required=True, help="the built tools/neurosim_mlsa_probe.cpp")
    args = ap.parse_args()
    rows = []
    for r in SIZES:
        for c in SIZES:
            for m in (m for m in MUXES if m <= c):
                d = probe(args.probe, r, c, 16, m)
                rows.append(f"[{r}, {c}, {m}, {max(d['row_delay'], d['mux_delay']) * 1e9:.5g}]")
    enc = [f"[{L}, {probe(args.probe, 128, 128, L, 8)['encoder_delay'] * 1e9:.5g}]" for L in LEVELS]
    lines = [", ".join(rows[i:i + 6]) for i in range(0, len(rows), 6)]
    print("select_delay_ns = [\n  " + ",\n  ".join(lines) + ",\n]")
    print("encoder_delay_ns = [" + ", ".join(enc) + "]")


if __name__ == "__main__":
    main()
