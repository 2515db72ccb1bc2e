"""NeuroSim V1.4's floorplan (backends/neurosim_floorplan.py) against the floorplan NeuroSim itself
printed for VGG-8 (benchmarks/neurosim_crosscheck.py runs: RRAM, 8-bit weights on 1-bit cells,
speedUpDegree 8, pipelined novel mapping; "# of tile used", "Speed-up" and "Utilization" of each
layer, "Desired ... Size"), and its use in the crossbar cost model."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vitc.backends.api import analyse
from vitc.backends.neurosim_floorplan import LayerShape, neurosim_floorplan
from vitc.core.hardware import load_hw, override

ROOT = Path(__file__).resolve().parent.parent
VGG8 = [LayerShape(32, 32, 3, 3, 3, 128), LayerShape(32, 32, 128, 3, 3, 128), LayerShape(16, 16, 128, 3, 3, 256),
        LayerShape(16, 16, 256, 3, 3, 256), LayerShape(8, 8, 256, 3, 3, 512), LayerShape(8, 8, 512, 3, 3, 512),
        LayerShape(1, 1, 8192, 1, 1, 1024), LayerShape(1, 1, 1024, 1, 1, 10)]

# NeuroSim V1.4's own printout (log of main for NetWork.csv of VGG-8)
PRINTED = {
    128: dict(tiles=[2, 8, 4, 8, 8, 8, 64, 1], speed=[16, 16, 4, 4, 2, 1, 1, 8],
              util=[0.210938, 1, 1, 1, 1, 1, 1, 0.625], tile_cm=1024, pe_cm=512, pe_nm=512),
    256: dict(tiles=[1, 4, 2, 2, 4, 4, 16, 1], speed=[16, 16, 4, 4, 4, 2, 1, 32],
              util=[0.105469, 0.5, 0.5, 1, 1, 1, 1, 0.625], tile_cm=2048, pe_cm=1024, pe_nm=1024),
}


@pytest.mark.parametrize("rows", [128, 256])
def test_vgg8_floorplan_is_neurosims(rows):
    fp = neurosim_floorplan(VGG8, rows, 128, 1, 8, 8)
    want = PRINTED[rows]
    assert [L.tiles for L in fp.layers] == want["tiles"]
    assert [L.speed_up for L in fp.layers] == want["speed"]
    assert [L.utilisation for L in fp.layers] == pytest.approx(want["util"], abs=1e-6)
    assert (fp.tile_size_conventional, fp.pe_size_conventional, fp.pe_size_novel) == \
        (want["tile_cm"], want["pe_cm"], want["pe_nm"])
    assert [L.novel for L in fp.layers] == [False] + [True] * 5 + [False, False]


def test_sub_array_sites_give_neurosims_array_area():
    """NeuroSim's "Chip total CIM array" is whole tiles of 48 F² cells: 3.60536 mm² at 128×128,
    5.9196 mm² at 256×128 (PEs of 4×8 sub-arrays laid out on a 6×6 grid)."""
    cell_um2 = 48 * 0.022 ** 2
    for rows, printed_mm2 in ((128, 3.60536), (256, 5.9196)):
        fp = neurosim_floorplan(VGG8, rows, 128, 1, 8, 8)
        sites = sum(fp.subarrays(i) for i in range(len(VGG8)))
        assert sites * rows * 128 * cell_um2 * 1e-6 == pytest.approx(printed_mm2, rel=1e-3)
    assert neurosim_floorplan(VGG8, 256, 128, 1, 8, 8).subarrays_per_novel_tile == 9 * 36


def test_pointwise_network_uses_one_pe_tiles():
    """A transformer's projections (1×1 layers of one token count): NeuroSim's most common kernel is
    1×1, so layers of at least a sub-array of rows take novel-mapped tiles of one PE; no pipeline
    speed-up (every feature map is the same size), copies only where a PE has rows to spare."""
    layers = [LayerShape(197, 1, 192, 1, 1, 576), LayerShape(197, 1, 192, 1, 1, 192),
              LayerShape(197, 1, 192, 1, 1, 768), LayerShape(197, 1, 768, 1, 1, 192)]
    fp = neurosim_floorplan(layers, 128, 128, 1, 8, 8)
    assert fp.pes_per_novel_tile == 1 and fp.pe_size_novel == 512 and all(L.novel for L in fp.layers)
    assert [L.tiles for L in fp.layers] == [9, 3, 12, 6]           # ⌈K/512⌉·⌈8N/512⌉
    assert [L.speed_up for L in fp.layers] == [2, 2, 2, 1]          # 2 sub-array rows of 4 per PE: 2 copies
    assert fp.subarrays_per_novel_tile == 16


def test_cost_model_uses_the_floorplan():
    spec = importlib.util.spec_from_file_location("build_vgg8", ROOT / "tools" / "build_vgg8.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    an = analyse(mod.build_vgg8(), "xbar", "neurosim-v14", model_name="vgg8")
    maps = an.xbar.maps
    assert [mm.tiles for mm in maps] == PRINTED[128]["tiles"]
    assert [mm.replication for mm in maps] == PRINTED[128]["speed"]
    assert an.floorplan["crossbars_built"] == 9472
    assert an.area["array"] == pytest.approx(3.60536, rel=1e-3)
    # the same network with vitc's own placement builds fewer crossbars
    dense = analyse(mod.build_vgg8(), "xbar", override(load_hw("neurosim-v14"), {"mapping.floorplan": "vitc"}),
                    model_name="vgg8")
    assert dense.floorplan["crossbars_built"] < 9472


def test_interconnect_follows_neurosims_buses():
    """Tile H-trees and the global bus with the wire width calibrated on VGG-8 at 128×128
    (12.4172 mm² there) predict NeuroSim's interconnect area elsewhere: VGG-8 at 256×128 (18.78 mm²)
    and DeiT-Tiny at 128×128 (188.4 mm²: the patch embedding's 256-PE tiles set the pitch);
    a per-site constant would give 32 mm² for DeiT-Tiny."""
    from vitc.compiler.zoo import build_vit
    spec = importlib.util.spec_from_file_location("build_vgg8", ROOT / "tools" / "build_vgg8.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    hw = load_hw("neurosim-v14")
    vgg = analyse(mod.build_vgg8(), "xbar", hw, model_name="vgg8").area["interconnect"]
    assert vgg == pytest.approx(12.4172, rel=2e-3)                        # the calibration point
    hw256 = override(hw, {"crossbar.rows": 256, "crossbar.rows_parallel": 256})
    assert analyse(mod.build_vgg8(), "xbar", hw256, model_name="vgg8").area["interconnect"] == \
        pytest.approx(18.7767, rel=0.15)
    deit = analyse(build_vit("deit-tiny"), "xbar", hw, model_name="deit-tiny").area["interconnect"]
    assert deit == pytest.approx(188.41, rel=0.10)
