"""DNN+NeuroSim V1.4's synchronous chip timing: the clock and each layer's cycles.

A synchronous NeuroSim chip (Param.cpp ``synchronous = true``) counts every latency in clock
cycles and multiplies by one chip clock, the slowest sense cycle of its sub-arrays:

    clock = beta · (max(row drive, column mux + decoder) + column sensing + encoder),
    f = min(max_freq, 1 / clock).

Column sensing is vitc's own port (:meth:`~vitc.backends.adc_circuit.ReadPath.column_time_s`); the
gate delays around it are NeuroSim's, tabulated by ``tools/neurosim_sense_delays.py`` (the
preset's ``[neurosim_chip]`` tables, interpolated in log2 of the array size and in the levels).

A layer's cycles (``sync_data_transfer = 0``, activation on chip, X–Y global bus, register-file
buffers — the V1.4 defaults), with V input vectors of B bits, s the layer's weight copies:

* **core** — each sub-array read converts ``cols_per_adc`` columns per ⌈rows/rows_parallel⌉
  partial read per input bit: V·B·cols_per_adc·⌈R/rows_parallel⌉ / s (SubArray.cpp);
* **accumulation** — one pass of an adder tree per vector where a PE has more than one sub-array
  row (/s) and where a tile has more than one PE row, ⌈tree delay · f⌉ cycles each (ripple adders:
  ProcessingUnit.cpp/Tile.cpp AdderTree);
* **buffer** — per PE, register files of B·R input bits and (C/cols_per_adc)·(partial-sum bits)
  output bits read once per word (/s); per tile, input and output buffers of 32×32-bit cores,
  one line per cycle, read and written, in parallel over min(cores, bus width / line width)
  cores; the global buffer (128-bit lines) over min(cores, global bus width / 128) cores;
* **interconnect** — the tile's H-tree moves its buffers' bits at its bus width, the global X–Y
  bus the layer's inputs and outputs at the global bus width scaled by the layer's share of the
  tile grid, each transfer ⌈wire delay · f⌉ ≥ 1 cycles over the distance it travels.

Equations follow ``main.cpp`` (clock), ``Chip.cpp`` ChipCalculatePerformance, ``Tile.cpp``
TileCalculatePerformance, ``ProcessingUnit.cpp``, ``Buffer.cpp``, ``HTree.cpp``, ``XYBus.cpp``
and ``AdderTree.cpp`` of github.com/neurosim/NeuroSim, branch 2DInferenceV1.4;
``benchmarks/neurosim_crosscheck.py`` compares them layer by layer with real NeuroSim runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vitc.backends.neurosim_floorplan import Floorplan, LayerPlan, LayerShape, pe_sites


def _log2c(x: float) -> int:
    return math.ceil(math.log2(x)) if x > 1 else 0


@dataclass(frozen=True)
class SyncTiming:
    """The preset's ``[neurosim_chip]`` section (delays in ns)."""

    beta: float
    max_freq_ghz: float
    select_delay: tuple          # rows of (rows, cols, cols_muxed, ns)
    encoder_delay: tuple         # rows of (levels, ns)
    adder_2bit_ns: float
    adder_ns_per_bit: float
    bus_ns_per_mm: float
    tile_core_bits: int
    tile_core_cols: int
    global_core_bits: int
    global_core_cols: int

    @classmethod
    def from_spec(cls, spec) -> "SyncTiming | None":
        """The preset's synchronous timing; None without it, or where it cannot apply: its clock is
        the circuit model's sense cycle (``[adc_circuit]``) and its buffers and buses are those of
        NeuroSim's floorplan (``[mapping] floorplan = "neurosim"``) — otherwise the per-vector
        latency model stays."""
        if (spec.get("neurosim_chip.model") != "neurosim-sync" or spec.get("adc_circuit.model") != "neurosim-mlsa"
                or spec["mapping.floorplan"] != "neurosim"):
            return None
        t = spec.section("neurosim_chip")
        return cls(t["beta"], t["max_freq_ghz"], tuple(map(tuple, t["select_delay_ns"])),
                   tuple(map(tuple, t["encoder_delay_ns"])), t["adder_2bit_delay_ns"], t["adder_delay_ns_per_bit"],
                   t["bus_delay_ns_per_mm"], t["tile_buffer_core_bits"], t["tile_buffer_core_cols"],
                   t["global_buffer_core_bits"], t["global_buffer_core_cols"])

    # ------------------------------------------------------------------ clock
    def select_ns(self, rows: int, cols: int, cols_muxed: int) -> float:
        """max(row drive, column mux + mux decoder) of a rows×cols sub-array (ns): the table's
        nearest column muxing, bilinear in log2(rows), log2(cols), clamped to the table."""
        t = np.asarray(self.select_delay, np.float64)
        muxes = np.unique(t[:, 2])
        m = muxes[np.argmin(np.abs(np.log2(muxes) - math.log2(cols_muxed)))]
        t = t[t[:, 2] == m]
        rs, cs = np.unique(t[:, 0]), np.unique(t[:, 1])

        def axis(v, grid):
            x = float(np.clip(math.log2(v), math.log2(grid[0]), math.log2(grid[-1])))
            i = int(np.clip(np.searchsorted(np.log2(grid), x, side="right") - 1, 0, max(0, len(grid) - 2)))
            j = min(i + 1, len(grid) - 1)
            w = 0.0 if j == i else (x - math.log2(grid[i])) / (math.log2(grid[j]) - math.log2(grid[i]))
            return (grid[i], grid[j]), w

        (r0, r1), wr = axis(rows, rs)
        (c0, c1), wc = axis(cols, cs)

        def at(r, c):
            hit = t[(t[:, 0] == r) & (t[:, 1] == c)]
            if len(hit):
                return float(hit[0, 3])
            return float(t[np.argmin(np.abs(np.log2(t[:, 0] / r)) + np.abs(np.log2(t[:, 1] / c))), 3])
        return ((1 - wr) * (1 - wc) * at(r0, c0) + wr * (1 - wc) * at(r1, c0)
                + (1 - wr) * wc * at(r0, c1) + wr * wc * at(r1, c1))

    def encoder_ns(self, levels: int) -> float:
        """The multilevel sense amp's encoder (ns), linear between the table's levels."""
        t = np.asarray(sorted(self.encoder_delay), np.float64)
        return float(np.interp(levels, t[:, 0], t[:, 1]))

    def clock_ns(self, column_time_ns: float, rows: int, cols: int, cols_muxed: int, levels: int) -> float:
        """The chip clock period (ns): the sense cycle, no shorter than 1 / max_freq."""
        cycle = self.beta * (self.select_ns(rows, cols, cols_muxed) + column_time_ns + self.encoder_ns(levels))
        return max(cycle, 1.0 / self.max_freq_ghz)

    def adder_tree_ns(self, bits: int, stages: int) -> float:
        """A ripple-adder tree of ``stages`` stages on ``bits``-bit inputs (NeuroSim sizes its first
        stage at ``bits`` and the others at 2 bits)."""
        if stages <= 0:
            return 0.0
        return self.adder_2bit_ns + self.adder_ns_per_bit * max(0, bits - 2) + (stages - 1) * self.adder_2bit_ns


@dataclass(frozen=True)
class SubArrayConfig:
    """What the cycle counts need of the crossbar: sizes in cells, precisions in bits."""

    rows: int
    cols: int
    cols_muxed: int
    rows_parallel: int
    levels: int
    input_bits: int
    cell_bits: int
    cols_per_weight: int

    @property
    def partial_reads(self) -> int:
        return math.ceil(self.rows / self.rows_parallel)

    @property
    def subarray_out_bits(self) -> int:
        """Bits of a sub-array's shifted-and-added column output (NeuroSim numBitSubarrayOutput)."""
        return (int(math.log2(self.levels)) + _log2c(self.partial_reads) + self.input_bits
                + (self.cols_per_weight - 1) * self.cell_bits + 1)


@dataclass(frozen=True)
class ChipGeometry:
    """Chip-wide quantities every layer's cycles depend on."""

    clock_ns: float
    tile_mm: dict                # novel (True) / conventional (False) → (height, width) of its tiles, mm
    grid_rows: int
    grid_cols: int
    global_bus_wires: float
    global_buffer_cores: int


def chip_geometry(plan: Floorplan, shapes: list[LayerShape], cfg: SubArrayConfig, t: SyncTiming, clock_ns: float,
                  site_um2: float, max_wires: int) -> ChipGeometry:
    """Tile size, tile grid, global bus width and global-buffer cores of ``plan`` (Chip.cpp
    ChipInitialize with ``pipeline``: the bus carries every tile's rows plus its ADC outputs,
    halved down to ``max_wires``; the buffer holds half of every layer's input feature map)."""
    R, C = cfg.rows, cfg.cols
    h = math.sqrt(site_um2 * R / C) * 1e-3            # one sub-array site, mm
    w = math.sqrt(site_um2 * C / R) * 1e-3
    wires, tile_mm = 0.0, {}
    for L in plan.layers:
        if L.novel:
            n = math.ceil(math.sqrt(plan.pes_per_novel_tile))
            per_tile = plan.pe_size_novel * n * (1 + 1 / cfg.cols_muxed)
            k = math.sqrt(pe_sites(plan.pe_size_novel, R, C))
        else:
            n = math.ceil(plan.tile_size_conventional / plan.pe_size_conventional)
            per_tile = plan.tile_size_conventional * (1 + 1 / cfg.cols_muxed)
            k = math.sqrt(pe_sites(plan.pe_size_conventional, R, C))
        wires += per_tile * L.tiles
        tile_mm[L.novel] = (n * k * h, n * k * w)
    while wires > max_wires:
        wires /= 2
    rows = math.ceil(math.sqrt(plan.tiles))
    cols = math.ceil(plan.tiles / rows)
    ifm = sum(S.ifm_h * S.ifm_w * S.c_in for S in shapes) / 2
    cores = math.ceil(cfg.input_bits * ifm / t.global_core_bits)
    return ChipGeometry(clock_ns, tile_mm, rows, cols, wires, max(1, cores))


@dataclass(frozen=True)
class LayerCycles:
    """One layer's latency in clock cycles, by NeuroSim's components."""

    core: float
    accumulation: float
    buffer: float
    interconnect: float

    def ns(self, clock_ns: float) -> dict[str, float]:
        return {"adc": self.core * clock_ns, "accumulation": self.accumulation * clock_ns,
                "buffer": self.buffer * clock_ns, "interconnect": self.interconnect * clock_ns}


def _buffer_lines(bits: float, in_cap: float, parallel_width: float, t: SyncTiming, bus: float) -> float:
    """Cycles to read and write ``bits`` through a tile buffer sized for ``in_cap`` bits whose
    natural line is ``parallel_width`` bits (Tile.cpp: small buffers are one core of that width,
    large ones cores of ``tile_core_cols``-bit lines), over ``bus``-wide parallel cores."""
    if in_cap < t.tile_core_bits:
        width, cores = parallel_width, 1
    else:
        width, cores = t.tile_core_cols, math.ceil(in_cap / t.tile_core_bits)
    return bits / width / min(cores, math.ceil(bus / width))


def _transfer_cycles(length_mm: float, t: SyncTiming, clock_ns: float) -> int:
    """Cycles one transfer over ``length_mm`` of repeated wire takes (0 for no wire)."""
    return math.ceil(length_mm * t.bus_ns_per_mm / clock_ns - 1e-12) if length_mm > 0 else 0


def layer_cycles(shape: LayerShape, lp: LayerPlan, plan: Floorplan, vectors: int, cfg: SubArrayConfig,
                 t: SyncTiming, chip: ChipGeometry) -> LayerCycles:
    """Cycles of one layer of ``vectors`` input vectors placed as ``lp`` (see module docstring)."""
    B, V, R, C, mux, cps = cfg.input_bits, vectors, cfg.rows, cfg.cols, cfg.cols_muxed, cfg.cols_per_weight
    VB, s = V * B, max(1, lp.speed_up)
    sbo = cfg.subarray_out_bits
    k_rows = shape.rows                      # im2col rows (one row per weight: rows_per_weight = 1)
    p_cols = shape.c_out * cps
    clk = chip.clock_ns
    ops = V * math.ceil(mux / cps)           # adder-tree passes: one per vector and weight column group
    if lp.novel:
        n_pe, p = plan.pes_per_novel_tile, plan.pe_size_novel
        tile_rows = min(p * n_pe, k_rows)
        tile_cols = min(p, p_cols)
        pe_rows, pe_cols = tile_rows / n_pe, tile_cols
        row_pes = n_pe
        in_cap, in_width = n_pe * B * R, n_pe * R
        bits_out = tile_rows * VB / math.sqrt(n_pe)
        global_out = k_rows * B * V / shape.k_h
        tiles_c = math.ceil(p_cols / p)
        pes_side = n_pe
    else:
        T, p = plan.tile_size_conventional, plan.pe_size_conventional
        n = math.ceil(T / p)
        tile_rows, tile_cols = min(T, k_rows), min(T, p_cols)
        pe_rows, pe_cols = min(p, tile_rows), min(p, tile_cols)
        row_pes = math.ceil(tile_rows / p)
        in_cap, in_width = n * B * R, n * R
        bits_out = tile_rows * VB
        global_out = k_rows * B * V
        tiles_c = math.ceil(p_cols / T)
        pes_side = n
    sub_rows = math.ceil(p / R)              # sub-array rows of a PE (its adder tree's inputs)
    pe_stage = _log2c(sub_rows)
    tile_stage = _log2c(pes_side)
    pe_out_bits = sbo + math.ceil(math.sqrt(sub_rows * math.ceil(p / C)))
    bus = pes_side * p                       # the tile H-tree's width

    core = VB * mux * cfg.partial_reads / s
    tree_pe = math.ceil(t.adder_tree_ns(sbo, _log2c(math.ceil(pe_rows / R))) / clk - 1e-12)
    tree_tile = math.ceil(t.adder_tree_ns(pe_out_bits, _log2c(row_pes)) / clk - 1e-12)
    accumulation = ops * tree_pe / s + ops * tree_tile

    pe_in = pe_rows * VB / (B * R)
    pe_out = (pe_cols / cps) * sbo * V / ((C / mux) * (sbo + pe_stage))
    out_cap = (pe_out_bits + tile_stage) * pes_side * C / mux
    bits_in = math.ceil(tile_cols / cps) * (tile_stage + pe_out_bits) * V
    tile_buf = (_buffer_lines(bits_out, in_cap, in_width, t, bus)
                + _buffer_lines(bits_in, out_cap, (pe_out_bits + tile_stage) * pes_side, t, bus))
    global_in = shape.c_out * B * V / (4 if shape.pool_after else 1)
    tiles_r = max(1, lp.tiles // tiles_c)    # tile rows, weight copies included (Chip.cpp numTileEachLayer[0])
    gw = t.global_core_cols
    glob = (global_out + global_in) / gw / min(chip.global_buffer_cores, math.ceil(chip.global_bus_wires / gw))
    buffer = (pe_in + pe_out) / s + tile_buf + glob

    tile_h, tile_w = chip.tile_mm[lp.novel]
    tree = (bits_out + bits_in) / bus * max(1, _transfer_cycles((tile_h + tile_w) / 2, t, clk))
    cx = _transfer_cycles(tile_w * math.ceil(chip.grid_cols / 2), t, clk)
    cy = _transfer_cycles(tile_h * (chip.grid_rows - math.ceil(chip.grid_rows / 2) - 1), t, clk)
    reads_in = math.ceil(global_out / chip.global_bus_wires * chip.grid_rows / tiles_r)
    reads_out = math.ceil(global_in / chip.global_bus_wires * chip.grid_cols / tiles_c)
    interconnect = tree + cx * reads_in + cy * reads_out
    return LayerCycles(core, accumulation, buffer, interconnect)


__all__ = ["SyncTiming", "SubArrayConfig", "ChipGeometry", "LayerCycles", "chip_geometry", "layer_cycles"]
