"""Crossbar mapping and cost model.

Mapping (per weight matrix, K rows × N logical columns, on R×C crossbars):

* weights of ``w`` bits on ``c``-bit cells take s = ⌈w/c⌉ slices (adjacent columns);
  signed weights take 2 columns per slice (``differential``) or 1 with a digital offset
  correction (``offset``); physical columns P = N·s·(2 if differential else 1);
* the matrix takes ⌈K/R⌉ · ⌈P/C⌉ crossbars (row tiles × column tiles), times ``count``
  for identical independent matrices (conv groups, LSTM directions);
* crossbars are grouped ``crossbars_per_pe`` to a PE and ``pes_per_tile`` to a tile; every
  layer starts on a fresh tile (as NeuroSim does);
* optional replication of slow layers (``[mapping] replicate``) to balance a layer pipeline;
* or, with ``[mapping] floorplan = "neurosim"``, NeuroSim V1.4's floorplan
  (:mod:`~vitc.backends.neurosim_floorplan`): whole tiles per layer (their empty sites are built
  too), its weight copies, and novel-mapped convolutions tiled per kernel position.

Cost (per inference) for V input vectors of ``input_bits`` applied ``dac_bits`` at a time
(``planes`` = ⌈input_bits/dac_bits⌉ bit-planes), with ``phases`` = ⌈min(K,R)/rows_parallel⌉
partial reads per plane:

==============  =====================================================================
array           V·planes · K·P cells read · E_cell · input_activity
adc             V·planes·phases · (row tiles · P) conversions · E_adc
other_periph    DAC/WL drivers: V·planes·K·(col tiles)·E_dac·activity; column mux per
                conversion; decoder per crossbar read
accumulation    shift-add per conversion; partial-sum adds N·(row tiles·columns per
                weight − 1) per vector; offset correction (1 add per output) if ``offset``;
                bias add per output
buffer          V·(K·input_bits + N·output_bits) bits · E_buffer
interconnect    V·(K·input_bits·(col tiles) + N·output_bits) bits · E_ic (inputs are
                delivered to every column tile; for latency they are one broadcast)
==============  =====================================================================

Latency of a vector: planes·phases·(t_read + cols_per_adc·t_adc) (or the max of the two
when read and conversion are pipelined) + (planes·phases shift-adds + ⌈log2(row tiles ·
columns per weight)⌉ adder stages)·t_add; a layer takes ⌈V/replication⌉ vectors in sequence, plus buffer and interconnect
transfer time (bits / bandwidth), overlapped with compute or not (preset option).

With ``[neurosim_chip]`` (:mod:`~vitc.backends.neurosim_chip`): "other peripheries" and the
sub-array shift-add energy are NeuroSim's per read of an input bit; and on NeuroSim's floorplan
the crossbar ops are re-timed as a synchronous, pipelined NeuroSim chip (one clock; each layer's
cycles of sub-array reads, adder trees, buffers and buses) with buffer and interconnect energy of
that data movement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vitc.backends.adc_circuit import read_path
from vitc.backends.neurosim_floorplan import BusGeometry, LayerShape, interconnect_area_um2, neurosim_floorplan
from vitc.backends.neurosim_chip import LayerOnChip, NeuroSimChip, SubArrayConfig, chip_geometry
from vitc.backends.cost import OpCost, Target, post_layout, to_cycles
from vitc.backends.digital import DigitalModel, elem_energy_pj
from vitc.core.hardware import HardwareSpec
from vitc.backends.partition import ACT, LSTM, MVM, Matrix, WorkItem
from vitc.backends.xbar_activity import ReadStats, assumed_stats, read_stats


@dataclass
class MatrixMap:
    """Where one weight matrix lives on the crossbars."""

    op: str
    layer: str
    label: str
    tensor: str
    K: int
    N: int
    count: int
    row_tiles: int
    col_tiles: int
    phys_cols: int
    crossbars: int
    replication: int = 1
    dynamic: bool = False
    first_crossbar: int = 0
    first_tile: int = 0
    tiles: int = 0
    sites: int = 0          # sub-array sites its tiles hold, used or not (NeuroSim floorplan); 0: crossbars_total
    shape: LayerShape | None = None     # the layer as NeuroSim's network file describes it
    positions: int = 1      # novel mapping: rows split by kernel position (a PE per position), else 1
    rows_used: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cols_used: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def crossbars_total(self) -> int:
        """Crossbars including replicas."""
        return self.crossbars * self.replication

    @property
    def crossbars_built(self) -> int:
        """Crossbars on the chip for this matrix: replicas, plus the empty sites of whole tiles."""
        return self.sites or self.crossbars_total

    def row_tiles_index(self, rows: int) -> list[np.ndarray]:
        """Weight rows (im2col order, channel-major) each row tile holds: consecutive blocks of
        ``rows``, or with ``positions`` > 1 the channels of one kernel position in blocks of ``rows``."""
        order = np.arange(self.K).reshape(-1, self.positions).T.ravel()   # position-major
        group = self.K // self.positions
        return [order[g * group + r0: g * group + min(group, r0 + rows)]
                for g in range(self.positions) for r0 in range(0, group, rows)]

    def utilisation(self, rows: int, cols: int) -> np.ndarray:
        """Per-crossbar utilisation (used cells / R·C), row-major over (group, row tile, col tile)."""
        u = np.outer(self.rows_used, self.cols_used).astype(np.float64) / float(rows * cols)
        return np.tile(u.ravel(), self.count)


def map_matrix(spec: HardwareSpec, m: Matrix, op: str, layer: str, dynamic: bool = False,
               positions: int = 1) -> MatrixMap:
    """Row/column tiling of ``m`` on the preset's crossbars (see module docstring); ``positions``
    > 1: NeuroSim's novel mapping, each kernel position's K/positions rows tiled on their own."""
    R, C = spec["crossbar.rows"], spec["crossbar.cols"]
    P = m.N * spec.columns_per_weight
    group = m.K // positions
    per = -(-group // R)
    rt, ct = positions * per, -(-P // C)
    rows_used = np.tile(np.minimum(R, group - R * np.arange(per)), positions).astype(np.int64)
    cols_used = np.full(ct, C, np.int64)
    cols_used[-1] = P - C * (ct - 1)
    return MatrixMap(op, layer, m.label, m.tensor, m.K, m.N, m.count, rt, ct, P, m.count * rt * ct,
                     dynamic=dynamic, rows_used=rows_used, cols_used=cols_used, positions=positions)


class XbarModel:
    """Cost model for ``mvm`` and ``lstm`` items (and ``act_product`` in ``xbar-write`` mode)."""

    def __init__(self, spec: HardwareSpec, digital: DigitalModel, traces: dict | None = None):
        """``traces``: quantised operands per weight tensor (:func:`~vitc.backends.xbar_activity.layer_traces`),
        used where the preset has ``[adc_circuit]`` for data-dependent word-line and ADC energy."""
        self.spec, self.digital = spec, digital
        self.path = read_path(spec)
        self.traces = traces or {}
        self.write_mode = spec["attention_products.mode"] == "xbar-write"
        self.kinds = (MVM, LSTM) + ((ACT,) if self.write_mode else ())
        self.f = spec.freq_ghz
        xb = spec.section("crossbar")
        self.R, self.C = xb["rows"], xb["cols"]
        self.planes = -(-xb["input_bits"] // xb["dac_bits"])
        self.maps: list[MatrixMap] = []
        self.cpw = spec.columns_per_weight
        self.plan = None          # NeuroSim's floorplan, when the preset asks for it
        chip = NeuroSimChip.from_spec(spec)       # NeuroSim's synchronous chip, when the preset has it:
        self.read_energy = chip.read_energy_pj(self.R, self.C, xb["cols_per_adc"], 2 ** xb["adc_bits"]) if chip else None
        self.sync = chip if chip and spec["mapping.floorplan"] == "neurosim" else None   # its timing and data movement
        self.clock_ns = None      # its chip clock (set with the floorplan)
        self.chip, self.chip_layers = None, []    # its geometry and the ops it timed
        self.bus_um2 = 0.0        # its tile H-trees and global bus (set by floorplan())

    @property
    def adc_area_um2(self) -> float:
        """One ADC: the circuit equations' where the preset has them, else its [adc] area."""
        return self.path.adc_area_um2() if self.path else self.spec["adc.area_um2"]

    def _read_stats(self, mm: MatrixMap) -> ReadStats:
        xb = self.spec.section("crossbar")
        t = self.traces.get(mm.tensor)
        if t is not None and t.codes.shape == (mm.K, mm.N):
            return read_stats(t, self.path, xb["weight_bits"], xb["cell_bits"], mm.row_tiles_index(self.R))
        return assumed_stats(self.path, int(mm.rows_used.max()), xb["input_activity"])

    # ------------------------------------------------------------------ one matrix
    def _matrix_cost(self, mm: MatrixMap, vectors: int, bias: bool) -> tuple[dict, dict, float, dict]:
        """(energy pJ per component, latency ns per component for one vector, data bits, counts)."""
        s = self.spec
        xb, adc, per, acc = s.section("crossbar"), s.section("adc"), s.section("periphery"), s.section("accumulation")
        V = vectors * mm.count
        K, N, P, rt, ct = mm.K, mm.N, mm.phys_cols, mm.row_tiles, mm.col_tiles
        stats = self._read_stats(mm) if self.path else None
        act = stats.row_activity if stats else xb["input_activity"]
        phases = -(-int(mm.rows_used.max()) // xb["rows_parallel"])
        planes = self.planes
        conv = V * planes * phases * rt * P
        xbar_reads = V * planes * phases * rt * ct
        adds = V * N * (rt * self.cpw - 1 + (1 if xb["signed"] == "offset" else 0) + (1 if bias else 0))
        in_bits, out_bits = xb["input_bits"], xb["output_bits"]
        buf_bits = V * (K * in_bits + N * out_bits)
        ic_bits = V * (K * in_bits * ct + N * out_bits)  # energy: inputs delivered to every column tile
        ic_bits_time = V * (K * in_bits + N * out_bits)  # latency: one broadcast per input vector
        if stats:   # NeuroSim's read path; like NeuroSim, the word lines of every column tile count in the ADC figure
            e_array = 0.0
            e_adc = conv * stats.conversion_pj + V * planes * K * act * ct * self.path.wordline_energy_pj_per_row()
        else:
            e_array = V * planes * K * P * xb["read_energy_pj_per_cell"] * act
            e_adc = conv * adc["energy_pj"]
        if self.read_energy:   # NeuroSim's own sub-array peripheries and shift-adders, per read of an input bit
            other, per_row, shift_add = self.read_energy
            reads = V * planes * rt * ct
            e_other = reads * other + V * planes * K * ct * act * per_row
            e_shift = reads * shift_add
        else:
            e_other = (V * planes * K * ct * per["dac_energy_pj_per_row"] * act
                       + conv * per["mux_energy_pj_per_conversion"] + xbar_reads * per["decoder_energy_pj_per_read"])
            e_shift = conv * acc["shift_add_energy_pj"]
        e = {
            "array": e_array,
            "adc": e_adc,
            "other_periph": e_other,
            "accumulation": e_shift + adds * acc["add_energy_pj"],
            "buffer": buf_bits * s["buffer.energy_pj_per_bit"],
            "interconnect": ic_bits * s["interconnect.energy_pj_per_bit"],
        }
        t_read = planes * phases * xb["read_latency_ns"]
        t_adc = planes * phases * (self.path.adc_latency_ns() if self.path else xb["cols_per_adc"] * adc["latency_ns"])
        if xb["pipelined_read_convert"]:
            t_read, t_adc = (t_read, 0.0) if t_read >= t_adc else (0.0, t_adc)
        stages = math.ceil(math.log2(rt * self.cpw)) if rt * self.cpw > 1 else 0
        t_vec = {"array": t_read, "adc": t_adc, "accumulation": (planes * phases + stages) * acc["add_latency_ns"]}
        counts = {"conversions": conv, "cell_reads": V * planes * K * P, "crossbar_reads": xbar_reads,
                  "row_drives": V * planes * K * ct, "partial_sum_adds": adds,
                  "buffer_bits": buf_bits, "interconnect_bits": ic_bits, "interconnect_bits_latency": ic_bits_time}
        return e, t_vec, float(buf_bits + ic_bits), counts

    def _data_latency(self, mm_list_bits: tuple[float, float], replication: int) -> dict:
        buf_bits, ic_bits = mm_list_bits
        return {"buffer": buf_bits / self.spec["buffer.bandwidth_bits_per_ns"] / replication,
                "interconnect": ic_bits / self.spec["interconnect.bandwidth_bits_per_ns"] / replication}

    def _combine(self, compute: dict, data: dict) -> dict:
        lat = dict(compute)
        if self.spec["interconnect.overlap_with_compute"]:
            tc = sum(compute.values())
            td = sum(data.values())
            if td > tc and td > 0:
                # data movement is the bottleneck: charge only its excess
                scale = (td - tc) / td
                lat.update({k: v * scale for k, v in data.items()})
        else:
            lat.update(data)
        return lat

    # ------------------------------------------------------------------ ops
    def cost(self, item: WorkItem) -> OpCost:
        op = item.op
        if item.kind == ACT:
            return self._write_cost(item)
        maps = [map_matrix(self.spec, m, op.name, item.layer) for m in item.matrices]
        for m, mm in zip(item.matrices, maps):
            mm.shape = _layer_shape(item, m)
        self.maps.extend(maps)
        return self._priced(item, maps)

    def _priced(self, item: WorkItem, maps: list[MatrixMap]) -> OpCost:
        """Energy and latency of an ``mvm``/``lstm`` item whose matrices sit on ``maps``."""
        op = item.op
        energy: dict[str, float] = {}
        counts_total: dict[str, float] = {}
        bias = bool(item.elem_ops.get("add"))
        lat_parts = []
        data_bits = [0.0, 0.0]
        for m, mm in zip(item.matrices, maps):
            e, t_vec, _, counts = self._matrix_cost(mm, m.vectors, bias and mm.label == "W")
            for k, v in e.items():
                energy[k] = energy.get(k, 0.0) + v
            for k, v in counts.items():
                counts_total[k] = counts_total.get(k, 0) + v
            data_bits[0] += counts["buffer_bits"]
            data_bits[1] += counts["interconnect_bits_latency"]
            lat_parts.append((m, mm, t_vec))
        if item.kind == MVM:
            m, mm, t_vec = lat_parts[0]
            compute = {k: v * m.vectors for k, v in t_vec.items()}
            lat = self._combine(compute, self._data_latency(tuple(data_bits), 1))
            gate_lat = 0.0
        else:  # LSTM: W·x of step t+1 overlaps the serial R·h + gates of step t
            (mw, _, tw), (mr, _, tr) = lat_parts
            gate_lat, gate_e = self.digital.gate_cost(item)
            energy["digital"] = energy.get("digital", 0.0) + gate_e
            steps = max(1, mr.serial_steps)
            per_step = max(1, mr.vectors // steps)
            if per_step * sum(tw.values()) > per_step * sum(tr.values()) + gate_lat:
                step = {k: v * per_step for k, v in tw.items()}
            else:
                step = {k: v * per_step for k, v in tr.items()}
                step["digital"] = gate_lat
            compute = {k: v * steps + per_step * tw.get(k, 0.0) for k, v in step.items()}
            lat = self._combine(compute, self._data_latency(tuple(data_bits), 1))
        lat_ns = sum(lat.values())
        xbars = sum(mm.crossbars for mm in maps)
        oc = OpCost(op.index, op.name, item.layer, item.kind, "xbar", f"xbar:{op.name}", latency=lat,
                    energy=post_layout(self.spec, energy),
                    cycles=to_cycles(lat_ns, self.f), macs=item.macs, crossbars=xbars,
                    traffic={"buffer_bits": counts_total.get("buffer_bits", 0),
                             "interconnect_bits": counts_total.get("interconnect_bits", 0)},
                    extra={"counts": counts_total, "maps": maps, "items": item.matrices, "work_item": item})
        return oc

    def _write_cost(self, item: WorkItem) -> OpCost:
        """An activation×activation product on crossbars reprogrammed per inference.

        The right operand B [.., K, N] is written (every cell once per inference), then the
        rows of A are applied as input vectors.
        """
        op = item.op
        b_s, out = op.in_shapes[1], op.out_shapes[0]
        K, N = (int(b_s[-2]), int(b_s[-1])) if len(b_s) > 1 else (int(b_s[-1]), 1)
        count = int(np.prod(out[:-2])) if len(out) > 2 else 1
        M = int(out[-2]) if len(out) > 1 else 1
        m = Matrix("B", op.inputs[1], K, N, count, M)
        mm = map_matrix(self.spec, m, op.name, item.layer, dynamic=True)
        self.maps.append(mm)
        e, t_vec, _, counts = self._matrix_cost(mm, M, False)
        ap = self.spec.section("attention_products")
        cells = count * K * N * self.cpw
        e["write"] = cells * ap["write_energy_pj_per_cell"]
        compute = {k: v * M for k, v in t_vec.items()}
        compute["write"] = min(K, self.R) * ap["write_latency_ns_per_row"]
        lat = self._combine(compute, self._data_latency((counts["buffer_bits"], counts["interconnect_bits_latency"]), 1))
        # one extra buffer pass to write B
        e["buffer"] = e.get("buffer", 0.0) + cells / self.cpw * self.spec["crossbar.input_bits"] * \
            self.spec["buffer.energy_pj_per_bit"]
        return OpCost(op.index, op.name, item.layer, item.kind, "xbar-write", f"xbar-write:{op.name}", latency=lat,
                      energy=post_layout(self.spec, e), cycles=to_cycles(sum(lat.values()), self.f), macs=item.macs,
                      crossbars_dynamic=mm.crossbars,
                      traffic={"buffer_bits": counts["buffer_bits"] + cells / self.cpw * self.spec["crossbar.input_bits"],
                               "interconnect_bits": counts["interconnect_bits"]},
                      extra={"counts": counts, "maps": [mm], "cells_written": cells})

    # ------------------------------------------------------------------ replication
    def replicate(self, costs: list[OpCost]) -> None:
        """Replicate slow crossbar layers (preset ``[mapping] replicate``) to balance a pipeline.

        Every crossbar op gets r = min(max_replication, ⌈t / t_target⌉, vectors) copies, with
        t the op's compute latency (without buffer/interconnect transfers, which replicas do not
        shorten) and t_target = (slowest op) / max_replication; its latency divides by r, its crossbars
        multiply by r; energy is unchanged (same work). Under ``max_crossbars`` > 0 the
        factors are reduced, slowest op last, until the budget holds.
        """
        mp = self.spec.section("mapping")
        if mp["floorplan"] == "neurosim":
            self._neurosim_plan(costs)
            return
        if not mp["replicate"] or mp["max_replication"] <= 1:
            return
        xops = [c for c in costs if c.unit == "xbar" and c.kind == MVM]
        if not xops:
            return
        def compute(c):  # replicas split the input vectors, not the data transfers
            return sum(v for k, v in c.latency.items() if k not in ("buffer", "interconnect"))
        t_max = max(compute(c) for c in xops)
        target = t_max / mp["max_replication"]
        for c in xops:
            vectors = max(m.vectors for m in c.extra["items"]) if c.extra.get("items") else 1
            r = min(mp["max_replication"], max(1, math.ceil(compute(c) / target - 1e-9)), vectors)
            c.extra["replication"] = r
        budget = mp["max_crossbars"]
        if budget:
            def total():
                return sum(c.crossbars * c.extra["replication"] for c in xops)
            for c in sorted(xops, key=lambda c: (compute(c) / c.extra["replication"], c.index)):
                while total() > budget and c.extra["replication"] > 1:
                    c.extra["replication"] -= 1
        for c in xops:
            r = c.extra.get("replication", 1)
            self._speed_up(c, r)
            if r > 1:
                for mm in c.extra["maps"]:
                    mm.replication = r

    def _speed_up(self, c: OpCost, r: int) -> None:
        """Copies of an op's weights split its vectors; buffer/interconnect transfers do not shrink."""
        if r > 1:
            c.latency = {k: (v if k in ("buffer", "interconnect") else v / r) for k, v in c.latency.items()}
            c.cycles = to_cycles(c.latency_ns, self.f)

    def _neurosim_plan(self, costs: list[OpCost]) -> None:
        """NeuroSim's floorplan (:mod:`~vitc.backends.neurosim_floorplan`): whole tiles per layer,
        weight copies from the pipeline speed-up and the space left in PEs and tiles; novel-mapped
        layers re-tiled and re-priced with a PE per kernel position. A matrix of ``count``
        independent parts takes ``count`` layers' tiles."""
        mp = self.spec.section("mapping")
        where = [k for k, c in enumerate(costs) if c.unit == "xbar" and c.kind in (MVM, LSTM)]
        if not where:
            return
        maps = [mm for k in where for mm in costs[k].extra["maps"]]
        shapes = [mm.shape for mm in maps for _ in range(mm.count)]
        plan = self.plan = neurosim_floorplan(shapes, self.R, self.C, 1, self.cpw, mp["max_replication"],
                                              pipeline=mp["replicate"])
        slot = {id(mm): j for j, mm in enumerate(self.maps)}
        layer = 0
        for k in where:
            c = costs[k]
            firsts = []
            for mm in c.extra["maps"]:
                firsts.append(layer)
                layer += mm.count
            kernels = [mm.shape.kernel if plan.layers[f].novel else 1 for mm, f in zip(c.extra["maps"], firsts)]
            if any(n > 1 for n in kernels):
                item = c.extra["work_item"]
                new = [map_matrix(self.spec, m, mm.op, mm.layer, positions=n)
                       for m, mm, n in zip(item.matrices, c.extra["maps"], kernels)]
                for mm, nm in zip(c.extra["maps"], new):
                    nm.shape = mm.shape
                    self.maps[slot[id(mm)]] = nm
                costs[k] = c = self._priced(item, new)
            for mm, f in zip(c.extra["maps"], firsts):
                mine = range(f, f + mm.count)
                mm.sites = sum(plan.subarrays(j) for j in mine)
                mm.tiles = sum(plan.layers[j].tiles for j in mine)
                mm.replication = plan.layers[f].speed_up
            if c.kind == MVM:
                vectors = max(m.vectors for m in c.extra["items"])
                self._speed_up(c, min(c.extra["maps"][0].replication, vectors))
        if self.sync is not None:
            self._sync_timing([costs[k] for k in where], shapes)

    def _sync_config(self) -> SubArrayConfig:
        xb = self.spec.section("crossbar")
        return SubArrayConfig(self.R, self.C, xb["cols_per_adc"], xb["rows_parallel"], 2 ** xb["adc_bits"],
                              xb["input_bits"], xb["cell_bits"], self.cpw)

    def _sync_timing(self, xcosts: list[OpCost], shapes: list[LayerShape]) -> None:
        """Re-time the crossbar layers as a synchronous NeuroSim chip, and price their buffers and
        interconnect as its data movement (:mod:`~vitc.backends.neurosim_chip`): one clock, the
        slowest sense cycle; each layer's cycles of sub-array reads, accumulation, buffers and
        buses on the floorplan. An op of several parts (``count`` > 1) takes its slowest part's
        time and all parts' energy; LSTMs keep the per-vector model (NeuroSim has no recurrent layer)."""
        cfg = self._sync_config()
        self.clock_ns = self.sync.clock_ns(self.path.column_time_s() * 1e9, self.R, self.C, cfg.cols_muxed, cfg.levels)
        chip = chip_geometry(self.plan, shapes, cfg, self.sync, self.clock_ns, self._site_um2(), self._bus_geometry())
        layer = 0
        for c in xcosts:
            parts = []
            for m, mm in zip(c.extra["items"], c.extra["maps"]):
                for _ in range(mm.count):
                    parts.append(LayerOnChip(mm.shape, self.plan.layers[layer], self.plan, m.vectors, cfg, self.sync, chip))
                    layer += 1
            if c.kind != MVM:
                continue
            slowest = max((p.cycles() for p in parts), key=lambda cyc: cyc.total)
            c.latency = slowest.ns(self.clock_ns)
            c.cycles = to_cycles(c.latency_ns, self.f)
            c.extra["clock_cycles"] = slowest
            moved = [p.energy_pj() for p in parts]
            c.energy.update(post_layout(self.spec, {k: sum(e[k] for e in moved) for k in ("buffer", "interconnect")}))
        self.chip = chip
        self.chip_layers = [c for c in xcosts if c.kind == MVM]

    # ------------------------------------------------------------------ report
    def report_section(self) -> dict | None:
        """The ``neurosim_chip`` section of report.json (NeuroSim's synchronous chip: its clock,
        geometry and every crossbar layer's cycles), or None when the chip model did not run."""
        if self.clock_ns is None:
            return None
        ch, clk = self.chip, self.clock_ns
        layers = [{"op": c.name, "layer": c.layer, **{k: round(float(v), 3) for k, v in vars(c.extra["clock_cycles"]).items()},
                   "latency_ns": c.latency_ns, "buffer_pj": c.energy.get("buffer", 0.0),
                   "interconnect_pj": c.energy.get("interconnect", 0.0)} for c in self.chip_layers]
        settings = [["clock period (ns)", round(clk, 5)], ["tiles", self.plan.tiles],
                    ["tile grid", f"{ch.grid_rows} x {ch.grid_cols}"],
                    ["tile side, conventional / novel (mm)",
                     " / ".join(f"{ch.tile_mm[k]:.4g}" if k in ch.tile_mm else "-" for k in (False, True))],
                    ["global bus (wires)", round(ch.global_bus_wires, 1)], ["global buffer cores", ch.global_buffer_cores]]
        rows = [[L["op"], L["core"], L["accumulation"], L["buffer"], L["interconnect"], L["latency_ns"] / 1e3,
                 L["buffer_pj"] / 1e6, L["interconnect_pj"] / 1e6] for L in layers]
        tables = [
            {"title": "NeuroSim chip: clock and geometry", "header": ["setting", "value"], "rows": settings,
             "note": "Synchronous NeuroSim V1.4 chip (backends/neurosim_chip.py): one clock, beta x the slowest "
                     "sense cycle; tiles, buffers and buses of its floorplan."},
            {"title": "NeuroSim chip: cycles per crossbar layer", "rows": rows,
             "header": ["op", "sub-array reads", "accumulation", "buffer", "interconnect", "latency (µs)",
                        "buffer (µJ)", "interconnect (µJ)"],
             "note": "Cycles of one image's vectors (weight copies divide the reads and PE buffers); energies "
                     "include the post-layout factor."}]
        return {"key": "neurosim_chip", "title": "NeuroSim chip", "clock_ns": clk, "tiles": self.plan.tiles,
                "grid": [ch.grid_rows, ch.grid_cols], "global_bus_wires": ch.global_bus_wires, "layers": layers,
                "tables": tables,
                "summary": f"neurosim chip clock {clk:.4g} ns, {self.plan.tiles} tiles on a {ch.grid_rows}x"
                           f"{ch.grid_cols} grid, global bus {ch.global_bus_wires:.0f} wires"}

    # ------------------------------------------------------------------ floorplan
    def floorplan(self) -> dict:
        """Assign crossbar ids, PEs and tiles (every layer starts a fresh tile)."""
        mp = self.spec.section("mapping")
        per_tile = mp["crossbars_per_pe"] * mp["pes_per_tile"]
        xb_id, tile = 0, 0
        for mm in self.maps:
            mm.first_crossbar, mm.first_tile = xb_id, tile
            if not mm.sites:      # NeuroSim's floorplan has placed it already
                mm.tiles = -(-mm.crossbars_total // per_tile)
            xb_id += mm.crossbars_built
            tile += mm.tiles
        self.bus_um2 = self._bus_um2()
        static = [mm for mm in self.maps if not mm.dynamic]
        dyn = [mm for mm in self.maps if mm.dynamic]
        return {
            "crossbars": int(sum(mm.crossbars for mm in static)),
            "crossbars_with_replicas": int(sum(mm.crossbars_total for mm in static)),
            "crossbars_dynamic": int(sum(mm.crossbars_total for mm in dyn)),
            "crossbars_built": int(sum(mm.crossbars_built for mm in self.maps)),
            "tiles": int(tile),
            "crossbars_per_tile": int(per_tile),
        }

    def _site_um2(self) -> float:
        """One crossbar with its ADCs, accumulation and periphery (µm², interconnect apart)."""
        s = self.spec
        return (s["crossbar.area_um2"] + self.C / s["crossbar.cols_per_adc"] * self.adc_area_um2
                + s["accumulation.area_um2_per_crossbar"] + s["periphery.area_um2_per_crossbar"])

    def _bus_geometry(self) -> BusGeometry:
        ic = self.spec.section("interconnect")
        return BusGeometry(ic["bus_wire_um"], ic["tile_tree_fold"], ic["global_bus_fold"], ic["global_bus_max_wires"])

    def _bus_um2(self) -> float:
        """NeuroSim's tile H-trees and global bus over its floorplan (0 without both)."""
        if self.plan is None or not self.spec["interconnect.bus_wire_um"]:
            return 0.0
        return interconnect_area_um2(self.plan, self._site_um2(), self.R, self.C, self.spec["crossbar.cols_per_adc"],
                                     self._bus_geometry())

    def crossbar_area_mm2(self) -> float:
        """One built crossbar with its ADCs, accumulation, periphery and share of the interconnect."""
        return (self._site_um2() + self.spec["interconnect.area_um2_per_crossbar"]
                + self.bus_um2 / max(1, self.physical_crossbars())) * 1e-6

    def op_area_mm2(self, cost: OpCost) -> float:
        """Area dedicated to one op: its crossbars (with replicas) with their ADCs, accumulation and
        periphery, and its tiles' buffers and interconnect (every layer starts a fresh tile; NeuroSim's
        buses shared out by crossbars built)."""
        s = self.spec
        maps = cost.extra.get("maps", []) if isinstance(cost.extra, dict) else []
        n = sum(mm.crossbars_built for mm in maps)
        tiles = sum(mm.tiles for mm in maps)
        return (n * self.crossbar_area_mm2()
                + tiles * (s["buffer.area_mm2_per_tile"] + s["interconnect.area_mm2_per_tile"]))

    def physical_crossbars(self) -> int:
        """Crossbars built on the chip (replicas and the empty sites of whole tiles included)."""
        return int(sum(mm.crossbars_built for mm in self.maps))

    def area(self) -> dict[str, float]:
        s = self.spec
        n = self.physical_crossbars()
        adcs = self.C / s["crossbar.cols_per_adc"]
        tiles = sum(mm.tiles for mm in self.maps)
        um2 = 1e-6
        return {
            "array": n * s["crossbar.area_um2"] * um2,
            "adc": n * adcs * self.adc_area_um2 * um2,
            "accumulation": n * s["accumulation.area_um2_per_crossbar"] * um2,
            "other_periph": n * s["periphery.area_um2_per_crossbar"] * um2,
            "buffer": tiles * s["buffer.area_mm2_per_tile"],
            "interconnect": (tiles * s["interconnect.area_mm2_per_tile"]
                             + (n * s["interconnect.area_um2_per_crossbar"] + self.bus_um2) * um2),
        }

    def crossbar_leakage_uw(self) -> float:
        """Static power of one built crossbar with its ADCs, periphery and accumulation (µW)."""
        s = self.spec
        return (s["crossbar.leakage_uw"] + self.C / s["crossbar.cols_per_adc"] * s["adc.leakage_uw"]
                + s["periphery.leakage_uw_per_crossbar"] + s["accumulation.leakage_uw_per_crossbar"])

    def leakage_uw(self) -> float:
        s = self.spec
        tiles = sum(mm.tiles for mm in self.maps)
        return (self.physical_crossbars() * self.crossbar_leakage_uw()
                + tiles * (s["buffer.leakage_uw_per_tile"] + s["interconnect.static_uw_per_tile"]))




def _layer_shape(item: WorkItem, m: Matrix) -> LayerShape:
    """``m`` as a row of NeuroSim's network file: a dense convolution with its feature map and
    kernel, anything else as V vectors through a 1×1 layer."""
    op = item.op
    x, w = (op.in_shapes + [None, None])[:2]
    if op.op_type == "Conv" and m.count == 1 and x and w and len(x) == 4 and len(w) == 4 and None not in x + w:
        return LayerShape(int(x[2]), int(x[3]), int(w[1]), int(w[2]), int(w[3]), int(w[0]), item.pooled_after)
    return LayerShape(m.vectors, 1, m.K, 1, 1, m.N, item.pooled_after)


def _xbar_models(spec: HardwareSpec, options: dict):
    digital = DigitalModel(spec, act_products=spec["attention_products.mode"] == "digital")
    return [XbarModel(spec, digital, options.get("xbar_traces")), digital]


TARGET = Target("xbar", ("xbar",), "rram-128", _xbar_models,
                "weight-stationary crossbars for static MVMs; digital units (or crossbars written per inference) "
                "for the rest")


__all__ = ["TARGET", "MatrixMap", "XbarModel", "map_matrix", "elem_energy_pj"]
