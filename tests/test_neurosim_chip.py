"""NeuroSim V1.4's synchronous chip (backends/neurosim_chip.py) against what NeuroSim itself printed
for VGG-8 and DeiT-Tiny's linear layers (benchmarks/neurosim_crosscheck.py runs: RRAM, 22 nm,
8-bit weights on 1-bit cells, 4-bit ADC per 8 columns, 128×128 sub-arrays, pipelined novel
mapping): its clock, and per layer the ADC, accumulation, buffer and interconnect latency and the
buffer and interconnect energy ("layerN's buffer latency is ...")."""
from __future__ import annotations

import pytest

from vitc.backends.adc_circuit import read_path
from vitc.backends.digital import DigitalModel
from vitc.backends.neurosim_chip import LayerOnChip, NeuroSimChip, SubArrayConfig, chip_geometry, grid_lookup
from vitc.backends.neurosim_floorplan import LayerShape, neurosim_floorplan
from vitc.backends.xbar import XbarModel
from vitc.core.errors import VitcInputError
from vitc.core.hardware import load_hw, override

PATCH = LayerShape(224, 224, 3, 16, 16, 192)
BLOCK = [LayerShape(197, 1, 192, 1, 1, 576), LayerShape(197, 1, 192, 1, 1, 192),
         LayerShape(197, 1, 192, 1, 1, 768), LayerShape(197, 1, 768, 1, 1, 192)]
DEIT = [PATCH] + BLOCK * 12 + [LayerShape(1, 1, 192, 1, 1, 1000)]
DEIT_VECTORS = [170] + [197] * 48 + [1]          # NeuroSim's numInVector: (IFM − k + 1)/stride per side
VGG8 = [LayerShape(32, 32, 3, 3, 3, 128), LayerShape(32, 32, 128, 3, 3, 128, True),
        LayerShape(16, 16, 128, 3, 3, 256), LayerShape(16, 16, 256, 3, 3, 256, True),
        LayerShape(8, 8, 256, 3, 3, 512), LayerShape(8, 8, 512, 3, 3, 512, True),
        LayerShape(1, 1, 8192, 1, 1, 1024), LayerShape(1, 1, 1024, 1, 1, 10)]
VGG8_VECTORS = [900, 900, 196, 196, 36, 36, 1, 1]


def _chip(shapes, adc_bits=4, rows=128):
    spec = override(load_hw("neurosim-v14"), {"crossbar.adc_bits": adc_bits, "crossbar.rows": rows,
                                              "crossbar.rows_parallel": rows})
    xm = XbarModel(spec, DigitalModel(spec))
    t = NeuroSimChip.from_spec(spec)
    cfg = xm._sync_config()
    clock = t.clock_ns(read_path(spec).column_time_s() * 1e9, rows, 128, 8, 2 ** adc_bits)
    plan = neurosim_floorplan(shapes, rows, 128, 1, 8, 8)
    return plan, cfg, t, chip_geometry(plan, shapes, cfg, t, clock, xm._site_um2(), xm._bus_geometry())


@pytest.mark.parametrize("adc_bits,rows,printed", [(4, 128, 1.52153), (4, 256, 1.61656), (6, 128, 2.01699),
                                                   (6, 256, 1.83822)])
def test_clock_is_neurosims_sense_cycle(adc_bits, rows, printed):
    """"Chip clock period is: ..." of the four runs (the clock moves with the ADC's levels and the rows)."""
    _, _, _, chip = _chip(VGG8, adc_bits, rows)
    assert chip.clock_ns == pytest.approx(printed, rel=1e-3)


def _ns(net, vectors, index):
    plan, cfg, t, chip = _chip(net)
    layer = LayerOnChip(net[index], plan.layers[index], plan, vectors[index], cfg, t, chip)
    return layer.cycles().ns(chip.clock_ns), layer.energy_pj()


@pytest.mark.parametrize("index,adc,acc,buf,ic", [
    (1, 4795.86, 74.9353, 27721.0, 6793.82),      # qkv: 192 x 576, 4 copies
    (4, 19183.4, 599.482, 51445.9, 17939.8),      # fc2: 768 x 192, one copy, two PE rows
    (0, 4139.0, 582.0, 636.0, 14347.0),           # the patch embedding: a novel tile of 256 PEs
])
def test_deit_layer_latency_is_neurosims(index, adc, acc, buf, ic):
    lat, _ = _ns(DEIT, DEIT_VECTORS, index)
    assert lat["adc"] == pytest.approx(adc, rel=0.01)
    assert lat["buffer"] == pytest.approx(buf, rel=0.01)
    assert lat["interconnect"] == pytest.approx(ic, rel=0.01)
    if index:    # the patch layer's accumulation (its global adder) is not ported
        assert lat["accumulation"] == pytest.approx(acc, rel=0.01)


@pytest.mark.parametrize("index,buf,ic", [(1, 38131.0, 13678.0), (3, 12680.0, 10119.0), (6, 400.0, 158.0)])
def test_vgg8_layer_latency_is_neurosims(index, buf, ic):
    """Novel-mapped convolutions followed by pooling (a quarter of their outputs on the global bus)
    and a conventionally mapped FC layer."""
    lat, _ = _ns(VGG8, VGG8_VECTORS, index)
    assert lat["buffer"] == pytest.approx(buf, rel=0.01)
    assert lat["interconnect"] == pytest.approx(ic, rel=0.01)


@pytest.mark.parametrize("index,buf,ic", [(1, 12478.7, 376575.0), (0, 240800.0, 4569000.0)])
def test_deit_layer_data_energy_is_neurosims(index, buf, ic):
    """Buffer energy within 10 % (tile buffers priced at one register-file core's per-bit energy),
    interconnect within 3 %."""
    _, e = _ns(DEIT, DEIT_VECTORS, index)
    assert e["buffer"] == pytest.approx(buf, rel=0.10)
    assert e["interconnect"] == pytest.approx(ic, rel=0.03)


def test_copies_do_not_move_more_data_but_do_shorten_compute():
    plan, cfg, t, chip = _chip(DEIT)
    qkv = LayerOnChip(DEIT[1], plan.layers[1], plan, 197, cfg, t, chip)
    assert plan.layers[1].speed_up == 4
    single = LayerOnChip(DEIT[1], plan.layers[1].__class__(**{**plan.layers[1].__dict__, "speed_up": 1,
                                                              "speed_up_rows": 1, "speed_up_cols": 1}),
                         plan, 197, cfg, t, chip)
    assert qkv.cycles().core == pytest.approx(single.cycles().core / 4)
    assert qkv.cycles().buffer < single.cycles().buffer


def test_grid_lookup_is_exact_on_the_grid_and_log_linear_between():
    table = [(64, 1.0, 10.0), (128, 2.0, 20.0), (256, 4.0, 40.0)]
    assert list(grid_lookup(table, (128,))) == [2.0, 20.0]
    assert grid_lookup(table, (181.02,))[0] == pytest.approx(3.0, rel=1e-3)     # log2 midpoint
    assert list(grid_lookup(table, (1024,))) == [4.0, 40.0]                      # clamped
    t2 = [(a, b, a * 10 + b) for a in (1, 2) for b in (1, 2)]
    assert grid_lookup(t2, (1.4142136, 1))[0] == pytest.approx(16.0, rel=1e-6)     # 11 and 21 at a = 1, 2


def test_preset_section_is_all_or_nothing():
    with pytest.raises(VitcInputError, match="neurosim_chip"):
        override(load_hw("neurosim-v14"), {"neurosim_chip.beta": None})
    with pytest.raises(VitcInputError, match="rows of 9"):
        override(load_hw("neurosim-v14"), {"neurosim_chip.subarray": [[1, 2, 3]]})
    assert NeuroSimChip.from_spec(override(load_hw("neurosim-v14"), {"neurosim_chip.model": "none"})) is None
    assert NeuroSimChip.from_spec(load_hw("isaac-128")) is None


def test_dense_floorplan_keeps_per_vector_timing_but_neurosim_read_energies():
    """rram-128 (derived from neurosim-v14, crossbars placed densely): NeuroSim's sub-array
    peripheries and shift-adders per read, but no NeuroSim tiles to time or move data between."""
    spec = load_hw("rram-128")
    xm = XbarModel(spec, DigitalModel(spec))
    assert xm.sync is None and xm.read_energy == pytest.approx((1.6974, 0.045022, 1.8636), rel=1e-4)
    assert xm.report_section() is None


def test_vgg8_end_to_end_on_the_synchronous_chip():
    """VGG-8 compiled on neurosim-v14: its convolutions followed by max-pooling are flagged (NeuroSim's
    network file column), every crossbar op is timed in the chip's clock cycles, and the slowest
    layer (conv1, the pipeline interval) takes NeuroSim's 119,023 ns once its latency is scaled from
    vitc's 1024 padded output positions to NeuroSim's 900 unpadded ones."""
    import importlib.util
    from pathlib import Path
    from vitc.backends.api import analyse
    spec = importlib.util.spec_from_file_location("build_vgg8", Path(__file__).parent.parent / "tools" / "build_vgg8.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    an = analyse(mod.build_vgg8(), "xbar", "neurosim-v14", model_name="vgg8")
    xops = [c for c in an.costs if c.unit == "xbar"]
    assert [mm.shape.pool_after for c in xops for mm in c.extra["maps"]] == [False, True, False, True, False, True,
                                                                              False, False]
    assert an.xbar.clock_ns == pytest.approx(1.52153, rel=1e-3)
    for c in xops:
        assert set(c.latency) == {"adc", "accumulation", "buffer", "interconnect"}
        assert c.extra["clock_cycles"].total * an.xbar.clock_ns == pytest.approx(c.latency_ns)
    sec = an.sections["neurosim_chip"]        # the report's section: clock, geometry, cycles per layer
    assert sec["clock_ns"] == an.xbar.clock_ns and [L["op"] for L in sec["layers"]] == [c.name for c in xops]
    assert len(sec["tables"][1]["rows"]) == 8
    slowest = max(xops, key=lambda c: c.latency_ns)
    assert slowest.name == "/conv1/Conv"
    assert slowest.latency_ns * 900 / 1024 == pytest.approx(119023.0, rel=0.01)


def test_tables_must_be_full_grids():
    """A table with a hole or a non-positive coordinate is one clear error, not a lookup failure later."""
    with pytest.raises(VitcInputError, match="not a full grid"):
        override(load_hw("neurosim-v14"), {"neurosim_chip.select_delay_ns": [[128, 128, 8, 0.09], [256, 128, 16, 0.1]]})
    with pytest.raises(VitcInputError, match="positive"):
        override(load_hw("neurosim-v14"), {"neurosim_chip.encoder_delay_ns": [[0, 0.05], [16, 0.1]]})
