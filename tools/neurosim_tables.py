#!/usr/bin/env python
"""Tabulate NeuroSim V1.4's sub-array circuit figures for the ``[neurosim_chip]`` preset section.

vitc ports NeuroSim's chip structure (floorplan, buffers, buses, cycle counts) and its sense-amp
ADC as equations; the gate-level circuits around a sub-array (row switch matrices, column mux and
its decoder, encoder, shift-adders) are NeuroSim's horowitz chains and capacitance sums, which vitc
does not port but reads from NeuroSim itself: this tool runs ``tools/neurosim_mlsa_probe.cpp``
(linked against a built NeuroSim) over a grid of sub-array sizes, column muxing and ADC levels and
prints the TOML tables the preset holds:

* ``select_delay_ns``: ``[rows, cols, cols_muxed, max(row delay, mux delay)]`` — the part of the
  sense cycle (SubArray::CalculateLatency with CalculateclkFreq) before the column sensing;
* ``encoder_delay_ns``: ``[levels, delay]`` — the sense amp's encoder (levels only);
* ``subarray``: ``[rows, cols, cols_muxed, levels, other, other per active row, accumulation,
  height, width]`` — one sub-array read of an input bit (every column converted,
  SubArray::CalculatePower), pJ: "other peripheries" (switch matrices, mux, mux decoder) at no
  active row, their increase per active row, and the sub-array's shift-add accumulation; and the
  sub-array's height and width with its periphery (SubArray::CalculateArea), µm.

Every probe runs with rows_parallel = rows (conventional parallel read).

    python tools/neurosim_tables.py --probe PATH/TO/probe > tables.toml
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

SIZES = (32, 64, 128, 256, 512, 1024)
MUXES = (1, 2, 4, 8, 16, 32)
LEVELS = (4, 8, 16, 32, 64, 128)
E_ROWS = (64, 128, 256, 512)
E_COLS = (64, 128, 256)
E_MUXES = (4, 8, 16)
E_LEVELS = (8, 16, 32, 64)


def probe(binary: str, rows: int, cols: int, levels: int, mux: int) -> dict:
    env = dict(os.environ, PROBE_COLS=str(cols))
    out = subprocess.run([binary, str(rows), str(levels), str(mux), str(rows), "1e5"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out[out.index("{"):])


def _table(name: str, rows: list[str], per_line: int) -> str:
    lines = [", ".join(rows[i:i + per_line]) for i in range(0, len(rows), per_line)]
    return f"{name} = [\n  " + ",\n  ".join(lines) + ",\n]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--probe", required=True, help="the built tools/neurosim_mlsa_probe.cpp")
    args = ap.parse_args()
    if not os.access(args.probe, os.X_OK):
        print(f"neurosim_tables: {args.probe} is not an executable probe (build it: tools/README.md)", file=sys.stderr)
        sys.exit(2)
    sel = []
    for r in SIZES:
        for c in SIZES:
            for m in MUXES:
                d = probe(args.probe, r, c, 16, m)
                sel.append(f"[{r}, {c}, {m}, {max(d['row_delay'], d['mux_delay']) * 1e9:.5g}]")
    enc = [f"[{L}, {probe(args.probe, 128, 128, L, 8)['encoder_delay'] * 1e9:.5g}]" for L in LEVELS]
    energy = []
    for r in E_ROWS:
        for c in E_COLS:
            for m in E_MUXES:
                for L in E_LEVELS:
                    d = probe(args.probe, r, c, L, m)
                    (_, o0, acc), (_, o1, _) = d["read_other_accum"]
                    h, w = d["subarray_hw"]
                    energy.append(f"[{r}, {c}, {m}, {L}, {o0 * 1e12:.5g}, {(o1 - o0) / r * 1e12:.5g}, {acc * 1e12:.5g}, "
                                  f"{h * 1e6:.5g}, {w * 1e6:.5g}]")
    print(_table("select_delay_ns", sel, 6))
    print("encoder_delay_ns = [" + ", ".join(enc) + "]")
    print(_table("subarray", energy, 2))


if __name__ == "__main__":
    main()
