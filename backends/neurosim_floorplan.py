"""DNN+NeuroSim V1.4's chip floorplan: tiles, weight duplication and utilisation per layer.

NeuroSim does not place a layer's sub-arrays one by one: it sizes two kinds of tile for the whole
network and gives every layer whole tiles.

* *Novel mapping* (convolutions of the network's most common kernel size, at least one sub-array of
  rows): a tile holds one PE per kernel position; a PE of ``pe_nm``×``pe_nm`` cells holds the
  ``C_in × C_out·cols_per_weight`` slice of that position.
* *Conventional mapping* (everything else): the im2col matrix ``C_in·kH·kW × C_out·cols_per_weight``
  cut into tiles of ``tile_cm``×``tile_cm`` cells, each of ``(tile_cm/pe_cm)²`` PEs.
* Sizes are powers of two chosen to maximise memory utilisation (mapped cells / allocated cells).
* Space left in a PE or tile is filled with copies of the layer's weights (PE and sub-array
  duplication); in a pipelined chip, layers with larger feature maps get more copies (the pipeline
  speed-up ``⌈(IFM / bound)²⌉``, bound = largest IFM / speed-up degree), in whole extra tiles.
* A PE of ``n`` sub-arrays is laid out as ``⌈√n⌉ × ⌈√n⌉`` sub-arrays, so a PE of 4×8 sub-arrays of
  256×128 cells occupies 36 sub-array sites.

The equations follow ``ChipDesignInitialize``, ``ChipFloorPlan``, ``TileDesignCM/NM``, ``PEDesign``,
``SubArrayDup`` and ``OverallEachLayer`` in NeuroSim's ``Chip.cpp`` and the PE layout in
``Tile.cpp`` (github.com/neurosim/NeuroSim, branch 2DInferenceV1.4); tests check the port against
the floorplan NeuroSim prints for VGG-8 at 128×128 and 256×128 sub-arrays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LayerShape:
    """One layer as a row of NeuroSim's network file (feature maps in pixels, channels in weights)."""
    ifm_h: int
    ifm_w: int
    c_in: int
    k_h: int
    k_w: int
    c_out: int
    pool_after: bool = False     # followed by pooling (the network file's "max pool after" column)

    @property
    def kernel(self) -> int:
        return self.k_h * self.k_w

    @property
    def rows(self) -> int:
        """Rows of the im2col weight matrix (weights, before ``rows_per_weight``)."""
        return self.c_in * self.kernel


@dataclass(frozen=True)
class LayerPlan:
    """Where one layer lives: ``tiles`` allocated, ``speed_up`` copies of its weights reading in
    parallel, ``utilisation`` = mapped cells (with copies) / allocated cells."""
    novel: bool
    tiles: int
    speed_up: int
    utilisation: float
    speed_up_rows: int = 1       # the copies along the weight rows (Chip.cpp speedUpEachLayer[0]) ...
    speed_up_cols: int = 1       # ... and along its columns ([1]); speed_up is their product


@dataclass(frozen=True)
class Floorplan:
    """The chip: per-layer plans and the tile geometry (sizes in cells, counts in sub-arrays)."""
    layers: tuple[LayerPlan, ...]
    pes_per_novel_tile: int
    pe_size_novel: int
    tile_size_conventional: int
    pe_size_conventional: int
    subarrays_per_novel_tile: int
    subarrays_per_conventional_tile: int

    def subarrays(self, i: int) -> int:
        """Sub-array sites layer ``i``'s tiles hold (used or empty)."""
        L = self.layers[i]
        return L.tiles * (self.subarrays_per_novel_tile if L.novel else self.subarrays_per_conventional_tile)

    @property
    def tiles(self) -> int:
        return sum(L.tiles for L in self.layers)


def _pow2_ceil(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x)) if x > 0 else 0.0


def pe_sites(pe_size: float, rows: int, cols: int) -> int:
    """Sub-array sites of one PE: its ⌈pe/rows⌉·⌈pe/cols⌉ sub-arrays on a square grid."""
    n = math.ceil(pe_size / rows) * math.ceil(pe_size / cols)
    return math.ceil(math.sqrt(n)) ** 2


def _novel_pes(layers: list[LayerShape]) -> int:
    """PEs of a novel-mapped tile: the most frequent kernel size other than 1×1 (first one on ties;
    1 when every kernel is 1×1)."""
    best, pes = 0, 0
    for L in layers:
        count = 1 + (sum(1 for M in layers if M.kernel == L.kernel) if L.kernel != 1 else 0)
        if count > best:
            best, pes = count, L.kernel
    return pes


def _pipeline_speed_up(layers: list[LayerShape], degree: int) -> list[int]:
    """Copies per layer that keep a pipelined chip free of idle periods, at most ``degree`` for the
    first layer's feature map, more for larger maps."""
    largest = layers[0].ifm_h
    smallest = min([L.ifm_h for L in layers if L.k_h != 1] + [largest])
    degree = min(degree, max(1, largest // max(1, smallest)))
    bound = math.ceil(largest / degree)
    return [math.ceil((L.ifm_h / bound) ** 2) for L in layers]


def _fit(novel: bool, L: LayerShape, rps: int, cps: int, size: float) -> tuple[int, int]:
    """Tiles (conventional: tile size; novel: PE size) one copy of a layer needs, (rows, cols)."""
    rows = L.c_in * rps if novel else L.rows * rps
    return math.ceil(rows / size), math.ceil(L.c_out * cps / size)


def _halvings(start: float, floor: float):
    size = start
    while size > floor:
        yield size
        size /= 2


def _best_size(start: float, floor: float, utilisation) -> tuple[float, float]:
    """NeuroSim's search: halve from ``start`` while above ``floor``; (size, utilisation) of the
    best (``start`` and 0 when no size is above ``floor``)."""
    best, best_u = start, 0.0
    for size in _halvings(start, floor):
        u = utilisation(size)
        if u > best_u:
            best, best_u = size, u
    return best, best_u


def _dup(rows_needed: int, cols_needed: int, slots_r: int, slots_c: int) -> tuple[int, int]:
    return max(1, slots_r // rows_needed), max(1, slots_c // cols_needed)


def neurosim_floorplan(layers: list[LayerShape], sub_rows: int, sub_cols: int, rows_per_weight: int,
                       cols_per_weight: int, speed_up_degree: int, novel_mapping: bool = True,
                       pipeline: bool = True) -> Floorplan:
    """The floorplan NeuroSim V1.4 builds for ``layers`` on ``sub_rows``×``sub_cols`` sub-arrays.

    ``cols_per_weight``: columns one weight takes (weight bits / cell bits); ``speed_up_degree``:
    Param.cpp ``speedUpDegree`` (pipelined chips only).
    """
    if not layers:
        raise ValueError("a floorplan needs at least one layer")
    R, C, rps, cps = sub_rows, sub_cols, rows_per_weight, cols_per_weight
    pes_nm = _novel_pes(layers) if novel_mapping else 0
    novel = [novel_mapping and L.kernel == pes_nm and L.rows * rps >= R for L in layers]
    if novel_mapping and not any(novel):
        novel_mapping = False     # NeuroSim stops on an empty novel-mapped part; map conventionally
    max_pe_nm = max([_pow2_ceil(L.c_out * cps) for L, n in zip(layers, novel) if n] + [0.0])
    max_tile_cm = max([_pow2_ceil(L.c_out * cps) for L, n in zip(layers, novel) if not n] + [0.0])
    speed = _pipeline_speed_up(layers, speed_up_degree) if pipeline else [1] * len(layers)

    def cells(L: LayerShape) -> float:
        return float(L.rows * rps * L.c_out * cps)

    def tiles_for(n: bool, size: float) -> int:
        return sum(math.prod(_fit(n, L, rps, cps, size)) for L, m in zip(layers, novel) if m == n)

    def util_nm(pe: float) -> float:
        t = tiles_for(True, pe)
        return sum(cells(L) for L, m in zip(layers, novel) if m) / (t * pe * pe * pes_nm) if t else 0.0

    def util_cm(tile: float) -> float:
        t = tiles_for(False, tile)
        return sum(cells(L) for L, m in zip(layers, novel) if not m) / (t * tile * tile) if t else 0.0

    pe_nm = 0.0
    if novel_mapping:
        pe_nm, _ = _best_size(max(max_pe_nm, 2 * R), 2 * R, util_nm)
    tile_cm, best_u = _best_size(max(max_tile_cm, 4 * R), 4 * R, util_cm)
    tiles_cm = tiles_for(False, tile_cm)

    def pe_dup(pe: float) -> list[tuple[int, int]]:
        out = []
        for L, n in zip(layers, novel):
            if not n and (L.rows * rps <= tile_cm or L.c_out * cps <= tile_cm):
                slots = math.ceil(tile_cm / pe)
                out.append(_dup(*_fit(False, L, rps, cps, pe), slots, slots))
            else:
                out.append((1, 1))
        return out

    pe_cm = tile_cm / 2
    for pe in _halvings(tile_cm / 2, 2 * R):
        d = pe_dup(pe)
        mapped = sum(r * c * cells(L) for (r, c), L, n in zip(d, layers, novel) if not n)
        u = mapped / (tiles_cm * tile_cm * tile_cm) if tiles_cm else 0.0
        if u > best_u:
            best_u, pe_cm = u, pe
    dup_pe = pe_dup(pe_cm)

    dup_sa = []
    for L, n in zip(layers, novel):
        pe = pe_nm if n else pe_cm
        rows = (L.c_in if n else L.rows) * rps
        if rows <= pe or L.c_out * cps <= pe:
            dup_sa.append(_dup(math.ceil(rows / R), math.ceil(L.c_out * cps / C), math.ceil(pe / R), math.ceil(pe / C)))
        else:
            dup_sa.append((1, 1))

    plans = []
    for L, n, (pr, pc), (sr, sc), s in zip(layers, novel, dup_pe, dup_sa, speed):
        size = pe_nm if n else tile_cm
        tr, tc = _fit(n, L, rps, cps, size)
        dup = pr * pc * sr * sc
        extra = math.ceil(s / dup) if pipeline else 1
        tiles = tr * extra * tc
        copies = max(s, dup) if pipeline else dup
        alloc = tiles * size * size * (pes_nm if n else 1)
        plans.append(LayerPlan(bool(n), int(tiles), int(pr * sr * extra * pc * sc), copies * cells(L) / alloc,
                               int(pr * sr * extra), int(pc * sc)))
    return Floorplan(tuple(plans), int(pes_nm), int(pe_nm), int(tile_cm), int(pe_cm),
                     int(pes_nm * pe_sites(pe_nm, R, C)) if novel_mapping else 0,
                     int(math.ceil(tile_cm / pe_cm) ** 2 * pe_sites(pe_cm, R, C)))


@dataclass(frozen=True)
class BusGeometry:
    """NeuroSim's interconnect wiring: width of one repeated bus wire (µm), the fold ratios of the
    tiles' H-trees and of the global bus, the widest global bus (wires)."""
    wire_um: float
    tile_tree_fold: float
    global_bus_fold: float
    global_bus_max_wires: int


def _h_tree_um2(n: int, wires: float, pe_h: float, pe_w: float, g: BusGeometry) -> float:
    """A tile's H-tree over n×n PEs of pe_h × pe_w µm carrying ``wires`` wires (HTree::CalculateArea:
    per level the wire bundle widens by one bus and the length halves; plus the main bus to the edge)."""
    m = math.ceil(math.log2(n)) if n > 1 else 0
    span = 2 ** m / 2
    levels = sum(i * (pe_h + pe_w) * span / 2 ** (i + 1) for i in range(1, m))
    return wires * g.wire_um / g.tile_tree_fold * (levels + n / 2 * pe_w)


def _site_hw(site_um2: float, sub_rows: int, sub_cols: int) -> tuple[float, float]:
    """(height, width) µm of a sub-array site of ``site_um2`` shaped like its array."""
    return math.sqrt(site_um2 * sub_rows / sub_cols), math.sqrt(site_um2 * sub_cols / sub_rows)


def _tile_parts(plan: Floorplan, novel: bool, sub_rows: int, sub_cols: int) -> tuple[int, int, float, int]:
    """(PEs along a tile side, PE size in cells, sub-array sites along a PE side, H-tree wires) of
    the novel- or conventional-mapped tile."""
    if novel:
        n, pe = math.ceil(math.sqrt(plan.pes_per_novel_tile)), plan.pe_size_novel
        wires = plan.pes_per_novel_tile * pe
    else:
        pe = plan.pe_size_conventional
        n = math.ceil(plan.tile_size_conventional / pe)
        wires = n * pe
    return n, pe, math.sqrt(pe_sites(pe, sub_rows, sub_cols)), wires


def tile_tree_um2(plan: Floorplan, novel: bool, site_um2: float, sub_rows: int, sub_cols: int, g: BusGeometry) -> float:
    """Area of one tile's H-tree (µm²)."""
    n, _, k, wires = _tile_parts(plan, novel, sub_rows, sub_cols)
    h, w = _site_hw(site_um2, sub_rows, sub_cols)
    return _h_tree_um2(n, wires, k * h, k * w, g)


def interconnect_area_um2(plan: Floorplan, site_um2: float, sub_rows: int, sub_cols: int, cols_per_adc: int,
                          g: BusGeometry) -> float:
    """Area of the tiles' H-trees and the global X–Y bus of ``plan`` (µm²), with sub-array sites of
    ``site_um2`` each (array and its periphery) shaped like a ``sub_rows``×``sub_cols`` array.

    Tile.cpp/Chip.cpp: a novel-mapped tile's tree spans ⌈√PEs⌉² PEs with PEs·pe wires, a
    conventional tile's (tile/pe)² PEs with (tile/pe)·pe wires; the global bus carries, per tile,
    its input rows plus its ADC outputs (halved down to the widest bus allowed) across the tile
    grid at the pitch of the largest tile.
    """
    h, w = _site_hw(site_um2, sub_rows, sub_cols)
    area, pitch, wires = 0.0, 0.0, 0.0
    for novel in (True, False):
        tiles = sum(L.tiles for L in plan.layers if L.novel == novel)
        if not tiles:
            continue
        n, pe, k, _ = _tile_parts(plan, novel, sub_rows, sub_cols)
        tile_rows = n * pe if novel else plan.tile_size_conventional
        area += tiles * tile_tree_um2(plan, novel, site_um2, sub_rows, sub_cols, g)
        pitch = max(pitch, n * k)
        wires += tiles * tile_rows * (1 + 1 / cols_per_adc)
    while wires > g.global_bus_max_wires:
        wires /= 2
    rows = math.ceil(math.sqrt(plan.tiles))
    cols = math.ceil(plan.tiles / rows)
    return area + wires * g.wire_um / g.global_bus_fold * pitch * (h * rows + w * cols)


__all__ = ["LayerShape", "LayerPlan", "Floorplan", "BusGeometry", "neurosim_floorplan", "interconnect_area_um2", "pe_sites",
           "tile_tree_um2"]
