"""DNN+NeuroSim V1.4's synchronous chip: the clock, each layer's cycles and its data-movement energy.

A synchronous NeuroSim chip (Param.cpp ``synchronous = true``) counts every latency in clock
cycles and multiplies by one chip clock, the slowest sense cycle of its sub-arrays:

    clock = beta · (max(row drive, column mux + decoder) + column sensing + encoder),
    f = min(max_freq, 1 / clock).

Column sensing is vitc's own port (:meth:`~vitc.backends.adc_circuit.ReadPath.column_time_s`); the
gate delays around it are NeuroSim's, tabulated by ``tools/neurosim_tables.py`` (the preset's
``[neurosim_chip]`` tables: multilinear in log2 of the array size and muxing, linear in the levels
for the encoder). The same tool tabulates a sub-array's "other peripheries" (switch matrices, mux
and its decoder) and shift-add energy per read of an input bit, and its height and width.

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

Energy of the same data movement (pJ), over the layer's tiles (weight copies move no more data):

* **buffer** — bits through the PE register files (per bit, NeuroSim's DFF), the tile buffers
  (half read, half written, per-bit energies of a 32×32 register-file core) and the global buffer
  (inputs read, outputs written, a 128×128 core);
* **interconnect** — bits × wire length × energy per bit per mm of the repeated wire × toggle
  rate (inputs ``input_toggle``, outputs ``output_toggle``, NeuroSim's Param.cpp): the PE buses
  across a PE's sub-arrays, the tile H-tree from its root to a PE (half the tree's stages plus
  its main bus), the global X bus (inputs) and Y bus (outputs) to the grid's centre.

Equations follow ``main.cpp`` (clock), ``Chip.cpp`` ChipCalculatePerformance, ``Tile.cpp``
TileCalculatePerformance, ``ProcessingUnit.cpp``, ``Buffer.cpp``, ``HTree.cpp``, ``XYBus.cpp``
and ``AdderTree.cpp`` of github.com/neurosim/NeuroSim, branch 2DInferenceV1.4;
``tests/test_neurosim_chip.py`` checks them layer by layer against NeuroSim's printout and
``benchmarks/neurosim_crosscheck.py`` chip by chip against real NeuroSim runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vitc.backends.neurosim_floorplan import BusGeometry, Floorplan, LayerPlan, LayerShape, pe_sites, tile_tree_um2


def _log2c(x: float) -> int:
    return math.ceil(math.log2(x)) if x > 1 else 0


def grid_lookup(table, point) -> np.ndarray:
    """Values of a table of rows ``(*coordinates, *values)`` on a full grid at ``point``:
    multilinear in log2 of each coordinate, clamped to the grid's range."""
    t = np.asarray(table, np.float64)
    d = len(point)
    axes = [np.unique(t[:, i]) for i in range(d)]
    index = {tuple(r[:d]): r[d:] for r in t}
    bounds = []
    for v, grid in zip(point, axes):
        g = np.log2(grid)
        x = float(np.clip(math.log2(v), g[0], g[-1]))
        i = int(np.clip(np.searchsorted(g, x, side="right") - 1, 0, max(0, len(g) - 2)))
        j = min(i + 1, len(g) - 1)
        w = 0.0 if j == i else (x - g[i]) / (g[j] - g[i])
        bounds.append(((grid[i], 1.0 - w), (grid[j], w)))
    out = np.zeros(t.shape[1] - d)
    for corner in np.ndindex(*(2,) * d):
        coords = tuple(bounds[k][c][0] for k, c in enumerate(corner))
        weight = math.prod(bounds[k][c][1] for k, c in enumerate(corner))
        if weight:
            out += weight * index[coords]
    return out


@dataclass(frozen=True)
class NeuroSimChip:
    """The preset's ``[neurosim_chip]`` section (delays in ns, energies in pJ)."""

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
    bus_pj_per_bit_mm: float
    input_toggle: float
    output_toggle: float
    dff_pj_per_bit: float
    tile_buffer_pj_per_bit: tuple     # (read, write)
    global_buffer_pj_per_bit: tuple   # (read, write)
    subarray: tuple                   # rows of (rows, cols, cols_muxed, levels, other pJ, other pJ per active row,
                                      #          accumulation pJ, height µm, width µm)
    pe_bus_pj_per_bit_mm: float
    full_adder_um2: float
    dff_um2: float

    @classmethod
    def from_spec(cls, spec) -> "NeuroSimChip | None":
        """The preset's NeuroSim chip; None without it or without the sense-amp circuit model
        (``[adc_circuit]``, whose sense cycle is the clock). Its timing and data movement also need
        NeuroSim's floorplan (``[mapping] floorplan = "neurosim"``): :mod:`~vitc.backends.xbar` uses
        them only there, its sub-array read energies everywhere."""
        if spec.get("neurosim_chip.model") != "neurosim-sync" or spec.get("adc_circuit.model") != "neurosim-mlsa":
            return None
        t = spec.section("neurosim_chip")
        return cls(t["beta"], t["max_freq_ghz"], tuple(map(tuple, t["select_delay_ns"])),
                   tuple(map(tuple, t["encoder_delay_ns"])), t["adder_2bit_delay_ns"], t["adder_delay_ns_per_bit"],
                   t["bus_delay_ns_per_mm"], t["tile_buffer_core_bits"], t["tile_buffer_core_cols"],
                   t["global_buffer_core_bits"], t["global_buffer_core_cols"], t["bus_energy_pj_per_bit_mm"],
                   t["input_toggle"], t["output_toggle"], t["dff_energy_pj_per_bit"],
                   (t["tile_buffer_read_pj_per_bit"], t["tile_buffer_write_pj_per_bit"]),
                   (t["global_buffer_read_pj_per_bit"], t["global_buffer_write_pj_per_bit"]),
                   tuple(map(tuple, t["subarray"])), t["pe_bus_energy_pj_per_bit_mm"], t["full_adder_area_um2"],
                   t["dff_area_um2"])

    # ------------------------------------------------------------------ clock
    def select_ns(self, rows: int, cols: int, cols_muxed: int) -> float:
        """max(row drive, column mux + mux decoder) of a rows×cols sub-array (ns)."""
        return float(grid_lookup(self.select_delay, (rows, cols, cols_muxed))[0])

    def read_energy_pj(self, rows: int, cols: int, cols_muxed: int, levels: int) -> tuple[float, float, float]:
        """One sub-array read of an input bit: (other peripheries at no active row, their increase
        per active row, the sub-array's shift-add accumulation), pJ."""
        o, per_row, acc, _, _ = grid_lookup(self.subarray, (rows, cols, cols_muxed, levels))
        return float(o), float(per_row), float(acc)

    def subarray_mm(self, rows: int, cols: int, cols_muxed: int, levels: int) -> tuple[float, float]:
        """(height, width) of a sub-array with its periphery, mm."""
        *_, h, w = grid_lookup(self.subarray, (rows, cols, cols_muxed, levels))
        return float(h) * 1e-3, float(w) * 1e-3

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
    """Chip-wide quantities every layer depends on (lengths in mm)."""

    clock_ns: float
    tile_mm: dict                # novel (True) / conventional (False) → side of its (square) tiles
    pe_mm: dict                  # ... and of their (square) PEs
    site_mm: tuple               # (height, width) of a sub-array with its periphery (NeuroSim's layout)
    grid_rows: int
    grid_cols: int
    global_bus_wires: float
    global_buffer_cores: int


def _tree_adder_bits(inputs: int, bits: int) -> int:
    """Full-adder bits of one adder tree over ``inputs`` operands of ``bits`` bits (AdderTree.cpp)."""
    total, j = 0, inputs
    for _ in range(_log2c(inputs)):
        total += bits * math.ceil(j / 2)
        bits += 1
        j = math.ceil(j / 2)
    return total


def _pe_um2(pe: int, cfg: SubArrayConfig, t: NeuroSimChip) -> float:
    """A PE of ``pe``×``pe`` cells (ProcessingUnitCalculateArea): its sub-arrays on a ⌈√n⌉² grid,
    the adder trees over its sub-array rows (one per ``cols_muxed`` columns) and its input and
    output register files."""
    R, C, mux = cfg.rows, cfg.cols, cfg.cols_muxed
    rows, cols = math.ceil(pe / R), math.ceil(pe / C)
    h, w = t.subarray_mm(R, C, mux, cfg.levels)
    trees = math.ceil(cols * C / mux)
    regs = cfg.input_bits * R + C / mux * (cfg.subarray_out_bits + _log2c(rows))
    return (pe_sites(pe, R, C) * h * w * 1e6 + trees * _tree_adder_bits(rows, cfg.subarray_out_bits) * t.full_adder_um2
            + regs * t.dff_um2)


def _tile_um2(plan: Floorplan, novel: bool, cfg: SubArrayConfig, t: NeuroSimChip, tree_um2: float) -> float:
    """A tile (TileCalculateArea): its PEs, the accumulation over them, its buffers and H-tree."""
    R, C, mux, B = cfg.rows, cfg.cols, cfg.cols_muxed, cfg.input_bits
    if novel:
        pe, n_pe = plan.pe_size_novel, plan.pes_per_novel_tile
        side, trees = n_pe, math.ceil(pe / mux)
    else:
        pe = plan.pe_size_conventional
        side = math.ceil(plan.tile_size_conventional / pe)
        n_pe, trees = side * side, math.ceil(side * pe / mux)
    pe_out = cfg.subarray_out_bits + math.ceil(math.sqrt(math.ceil(pe / R) * math.ceil(pe / C)))
    buffers = max(side * B * R, t.tile_core_bits) + max((pe_out + _log2c(side)) * side * C / mux, t.tile_core_bits)
    return (n_pe * _pe_um2(pe, cfg, t) + trees * _tree_adder_bits(side, pe_out) * t.full_adder_um2
            + buffers * t.dff_um2 + tree_um2)


def chip_geometry(plan: Floorplan, shapes: list[LayerShape], cfg: SubArrayConfig, t: NeuroSimChip, clock_ns: float,
                  site_um2: float, g: BusGeometry) -> ChipGeometry:
    """Tile and PE sides (square, √ of NeuroSim's area sums), tile grid, global bus width and
    global-buffer cores of ``plan`` (Chip.cpp ChipInitialize with ``pipeline``: the bus carries
    every tile's rows plus its ADC outputs, halved down to the widest bus; the buffer holds half of
    every layer's input feature map). ``site_um2`` and ``g`` size the H-trees
    (:func:`~vitc.backends.neurosim_floorplan.tile_tree_um2`)."""
    R, C = cfg.rows, cfg.cols
    tile_mm, pe_mm, rows_per_tile = {}, {}, {}
    for novel in sorted({L.novel for L in plan.layers}):
        if novel:
            pe = plan.pe_size_novel
            rows_per_tile[novel] = pe * math.ceil(math.sqrt(plan.pes_per_novel_tile))
        else:
            pe, rows_per_tile[novel] = plan.pe_size_conventional, plan.tile_size_conventional
        tree = tile_tree_um2(plan, novel, site_um2, R, C, g)
        tile_mm[novel] = math.sqrt(_tile_um2(plan, novel, cfg, t, tree)) * 1e-3
        pe_mm[novel] = math.sqrt(_pe_um2(pe, cfg, t)) * 1e-3
    wires = sum(rows_per_tile[L.novel] * (1 + 1 / cfg.cols_muxed) * L.tiles for L in plan.layers)
    while wires > g.global_bus_max_wires:
        wires /= 2
    rows = math.ceil(math.sqrt(plan.tiles))
    cols = math.ceil(plan.tiles / rows)
    ifm = sum(S.ifm_h * S.ifm_w * S.c_in for S in shapes) / 2
    cores = math.ceil(cfg.input_bits * ifm / t.global_core_bits)
    site = t.subarray_mm(R, C, cfg.cols_muxed, cfg.levels)
    return ChipGeometry(clock_ns, tile_mm, pe_mm, site, rows, cols, wires, max(1, cores))


@dataclass(frozen=True)
class LayerCycles:
    """One layer's latency in clock cycles, by NeuroSim's components."""

    core: float
    accumulation: float
    buffer: float
    interconnect: float

    @property
    def total(self) -> float:
        return self.core + self.accumulation + self.buffer + self.interconnect

    def ns(self, clock_ns: float) -> dict[str, float]:
        return {"adc": self.core * clock_ns, "accumulation": self.accumulation * clock_ns,
                "buffer": self.buffer * clock_ns, "interconnect": self.interconnect * clock_ns}


def _buffer_lines(bits: float, in_cap: float, parallel_width: float, t: NeuroSimChip, bus: float) -> float:
    """Cycles to read and write ``bits`` through a tile buffer sized for ``in_cap`` bits whose
    natural line is ``parallel_width`` bits (Tile.cpp: small buffers are one core of that width,
    large ones cores of ``tile_core_cols``-bit lines), over ``bus``-wide parallel cores."""
    if in_cap < t.tile_core_bits:
        width, cores = parallel_width, 1
    else:
        width, cores = t.tile_core_cols, math.ceil(in_cap / t.tile_core_bits)
    return bits / width / min(cores, math.ceil(bus / width))


def _transfer_cycles(length_mm: float, t: NeuroSimChip, clock_ns: float) -> int:
    """Cycles one transfer over ``length_mm`` of repeated wire takes (0 for no wire)."""
    return math.ceil(length_mm * t.bus_ns_per_mm / clock_ns - 1e-12) if length_mm > 0 else 0


def _spans(total: int, size: int) -> list[int]:
    """Sizes of the consecutive blocks of ``size`` that cover ``total``."""
    return [min(size, total - i) for i in range(0, total, size)]


class LayerOnChip:
    """One layer of ``vectors`` input vectors placed as ``lp`` on ``plan``: its cycles and its
    data-movement energy (see module docstring)."""

    def __init__(self, shape: LayerShape, lp: LayerPlan, plan: Floorplan, vectors: int, cfg: SubArrayConfig,
                 t: NeuroSimChip, chip: ChipGeometry):
        self.shape, self.lp, self.cfg, self.t, self.chip = shape, lp, cfg, t, chip
        self.V, self.VB = vectors, vectors * cfg.input_bits
        self.s = max(1, lp.speed_up)
        self.sbo = cfg.subarray_out_bits
        self.k_rows = shape.rows                       # im2col rows (rows_per_weight = 1)
        self.p_cols = shape.c_out * cfg.cols_per_weight
        if lp.novel:
            self.n_pe, self.p = plan.pes_per_novel_tile, plan.pe_size_novel
            self.tile_rows = [min(self.p * self.n_pe, self.k_rows)] * math.ceil(shape.c_in / self.p)
            self.tile_cols = _spans(self.p_cols, self.p)
            self.pes_side = self.n_pe                  # the tile's PEs on its H-tree and accumulation
            self.in_width = self.n_pe * cfg.rows
        else:
            T = plan.tile_size_conventional
            self.p = plan.pe_size_conventional
            self.pes_side = math.ceil(T / self.p)
            self.n_pe = self.pes_side ** 2
            self.tile_rows, self.tile_cols = _spans(self.k_rows, T), _spans(self.p_cols, T)
            self.in_width = self.pes_side * cfg.rows
        self.sub_rows = math.ceil(self.p / cfg.rows)   # sub-arrays along a PE's rows / columns
        self.sub_cols = math.ceil(self.p / cfg.cols)
        self.pe_stage = _log2c(self.sub_rows)
        self.tile_stage = _log2c(self.pes_side)
        self.pe_out_bits = self.sbo + math.ceil(math.sqrt(self.sub_rows * self.sub_cols))
        self.bus = self.pes_side * self.p              # the tile H-tree's width
        self.global_out = self.k_rows * self.VB / (shape.k_h if lp.novel else 1)
        self.global_in = shape.c_out * self.VB / (4 if shape.pool_after else 1)
        # the tile H-tree from its root to a PE: half of each level's vertical and horizontal wire
        # over a grid×grid PE array, plus its main bus to the middle (HTree.cpp, root-leaf)
        grid = math.ceil(math.sqrt(self.n_pe)) if lp.novel else self.pes_side
        pe_mm = chip.pe_mm[lp.novel]
        m = _log2c(grid)
        self.tree_mm = 2 * pe_mm * (2 ** (m - 1) - 0.5 if m else 0.0) + grid / 2 * pe_mm

    # ------------------------------------------------------------------ per tile
    def _tile_bits(self, rows: int, cols: int) -> tuple[float, float]:
        """(input bits, output bits) a tile of ``rows``×``cols`` cells moves through its buffers."""
        out = rows * self.VB / (math.sqrt(self.n_pe) if self.lp.novel else 1)
        return out, math.ceil(cols / self.cfg.cols_per_weight) * (self.tile_stage + self.pe_out_bits) * self.V

    def _pe_bits(self, rows: int, cols: int) -> tuple[float, float, float]:
        """Over one tile's PE calls: (input bits into the PEs' buffers, output bits out of them,
        output bits on the PEs' output buses, with their adder-tree bits)."""
        cps, V = self.cfg.cols_per_weight, self.V
        if self.lp.novel:
            calls_in, calls_out = 1, self.n_pe         # each PE: its rows slice, every column
        elif self.s > 1 and self.lp.speed_up_rows >= self.pes_side and self.lp.speed_up_cols >= self.pes_side:
            calls_in, calls_out = 1, 1                 # one PE call over the whole tile (Tile.cpp)
        else:
            calls_in, calls_out = math.ceil(cols / self.p), math.ceil(rows / self.p)
        return (rows * self.VB * calls_in, cols / cps * self.sbo * V * calls_out,
                cols / cps * (self.pe_stage + self.sbo) * V * calls_out)

    # ------------------------------------------------------------------ latency
    def cycles(self) -> LayerCycles:
        cfg, t, chip, s = self.cfg, self.t, self.chip, self.s
        R, C, mux, cps, B = cfg.rows, cfg.cols, cfg.cols_muxed, cfg.cols_per_weight, cfg.input_bits
        clk, V, VB = chip.clock_ns, self.V, self.VB
        rows, cols = self.tile_rows[0], self.tile_cols[0]   # the first (largest) tile sets the pace
        pe_rows = rows / self.n_pe if self.lp.novel else min(self.p, rows)
        pe_cols = cols if self.lp.novel else min(self.p, cols)
        row_pes = self.n_pe if self.lp.novel else math.ceil(rows / self.p)
        ops = V * math.ceil(mux / cps)           # adder-tree passes: one per vector and weight column group

        core = VB * mux * cfg.partial_reads / s
        tree_pe = math.ceil(t.adder_tree_ns(self.sbo, _log2c(math.ceil(pe_rows / R))) / clk - 1e-12)
        tree_tile = math.ceil(t.adder_tree_ns(self.pe_out_bits, _log2c(row_pes)) / clk - 1e-12)
        accumulation = ops * tree_pe / s + ops * tree_tile

        pe_in = pe_rows * VB / (B * R)
        pe_out = (pe_cols / cps) * self.sbo * V / ((C / mux) * (self.sbo + self.pe_stage))
        bits_out, bits_in = self._tile_bits(rows, cols)
        lg = self.tile_stage
        out_cap = (self.pe_out_bits + lg) * self.pes_side * C / mux
        tile_buf = (_buffer_lines(bits_out, self.pes_side * B * R, self.in_width, t, self.bus)
                    + _buffer_lines(bits_in, out_cap, (self.pe_out_bits + lg) * self.pes_side, t, self.bus))
        gw = t.global_core_cols
        glob = (self.global_out + self.global_in) / gw / min(chip.global_buffer_cores, math.ceil(chip.global_bus_wires / gw))
        buffer = (pe_in + pe_out) / s + tile_buf + glob

        side = chip.tile_mm[self.lp.novel]
        tree = (bits_out + bits_in) / self.bus * max(1, _transfer_cycles(self.tree_mm, t, clk))
        cx = _transfer_cycles(side * math.ceil(chip.grid_cols / 2), t, clk)
        cy = _transfer_cycles(side * (chip.grid_rows - math.ceil(chip.grid_rows / 2) - 1), t, clk)
        tiles_c = len(self.tile_cols)
        tiles_r = max(1, self.lp.tiles // tiles_c)   # tile rows, weight copies included (Chip.cpp numTileEachLayer)
        reads_in = math.ceil(self.global_out / chip.global_bus_wires * chip.grid_rows / tiles_r)
        reads_out = math.ceil(self.global_in / chip.global_bus_wires * chip.grid_cols / tiles_c)
        return LayerCycles(core, accumulation, buffer, tree + cx * reads_in + cy * reads_out)

    # ------------------------------------------------------------------ energy
    def energy_pj(self) -> dict[str, float]:
        """{"buffer": pJ, "interconnect": pJ} of one pass of the layer's vectors."""
        t, chip = self.t, self.chip
        e_mm, t_in, t_out = t.bus_pj_per_bit_mm, t.input_toggle, t.output_toggle
        (tr_, tw_), (gr_, gw_) = t.tile_buffer_pj_per_bit, t.global_buffer_pj_per_bit
        sa_h, sa_w = chip.site_mm
        side = chip.tile_mm[self.lp.novel]
        buf = ic = 0.0
        for rows in self.tile_rows:
            for cols in self.tile_cols:
                pe_in, pe_out, pe_bus_out = self._pe_bits(rows, cols)
                buf += (pe_in + pe_out) * t.dff_pj_per_bit
                ic += t.pe_bus_pj_per_bit_mm * (t_in * pe_in * (self.sub_cols - 1) * sa_w
                                                + t_out * pe_bus_out * (self.sub_rows - 1) * sa_h)
                bits_out, bits_in = self._tile_bits(rows, cols)
                buf += (bits_out + bits_in) * (tr_ + tw_) / 2
                ic += e_mm * self.tree_mm * (t_in * bits_out + t_out * bits_in)
        buf += self.global_out * gr_ + self.global_in * gw_
        x_mm = side * math.ceil(chip.grid_cols / 2)
        y_mm = side * (chip.grid_rows - math.ceil(chip.grid_rows / 2) - 1)
        ic += e_mm * (x_mm * t_in * self.global_out + y_mm * t_out * self.global_in)
        return {"buffer": buf, "interconnect": ic}


__all__ = ["grid_lookup", "NeuroSimChip", "SubArrayConfig", "ChipGeometry", "LayerCycles", "LayerOnChip", "chip_geometry"]
