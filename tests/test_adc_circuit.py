"""NeuroSim's sense-amp ADC as equations (backends/adc_circuit.py) and data-dependent read activity."""
import numpy as np
import pytest

from vitc.backends.adc_circuit import read_path
from vitc.backends.xbar_activity import LayerTrace, assumed_stats, cell_states, read_stats
from vitc.core.errors import VitcInputError
from vitc.core.hardware import load_hw, override


def path(bits=4, rows=128):
    return read_path(override(load_hw("neurosim-v14"), {"crossbar.adc_bits": bits, "crossbar.rows": rows,
                                                         "crossbar.cols": rows, "crossbar.rows_parallel": rows}))


def test_figures_of_neurosim_own_functions():
    # NeuroSim V1.4 evaluated by tools/neurosim_mlsa_probe.cpp at 22 nm (4-bit ADC, 128x128, 8 columns per ADC)
    p = path()
    assert p.n_sa * p.adc_area_um2() == pytest.approx(534.96576, rel=1e-4)       # SubArray areaADC
    assert p.column_time_s() == pytest.approx(9.01960313e-10, rel=1e-4)           # MLSA readLatency
    e = p.conversion_energy_pj(np.array([1e4, 2e5, 1e10]))
    assert e == pytest.approx([0.0329336639, 0.026321806, 0.0237101576], rel=1e-4)
    assert p.wordline_energy_pj_per_row() * 64 == pytest.approx(5.91023041, rel=1e-4)
    # 6-bit ADC on 256x256 arrays
    q = path(6, 256)
    assert q.n_sa * q.adc_area_um2() == pytest.approx(3612.1172, rel=1e-3)
    assert q.conversion_energy_pj(np.array([2e5]))[0] == pytest.approx(0.118468036, rel=1e-3)


def test_adc_bits_and_array_size_move_the_figures():
    e = {b: path(b).conversion_energy_pj(np.array([2e5]))[0] for b in (3, 4, 5, 6)}
    assert e[3] < e[4] < e[5] < e[6] and e[6] / e[4] > 3          # ~ (L-1) comparators
    assert path(6).adc_area_um2() > 2.5 * path(4).adc_area_um2()
    assert path(4, 256).wordline_energy_pj_per_row() == pytest.approx(2 * path(4, 128).wordline_energy_pj_per_row())


def test_column_resistance_and_energy_follow_the_data():
    p = path()
    w = np.zeros((128, 4), bool)
    w[:, 0] = True                                          # column 0 all on, others all off
    x = np.zeros((2, 128), np.uint8)
    x[1, :32] = 1                                           # read 0: nothing active; read 1: 32 rows
    r = p.column_resistance(x, w)
    assert r[0].tolist() == [1e10] * 4
    assert r[1, 0] == pytest.approx((1e5 + 25e3) / 32)
    assert r[1, 1] == pytest.approx((1.7e6 + 25e3) / 32)
    e = p.conversion_energy_pj(r)
    assert e[1, 0] > e[1, 1] > e[0, 0]                      # more current, more energy


def test_read_stats_from_operands():
    p = path()
    codes = np.full((256, 8), 255, np.uint16)               # all cells on
    planes = np.zeros((16, 256), np.uint8)
    planes[:, ::2] = 1                                      # half the word lines
    st = read_stats(LayerTrace(codes, planes), p, 8, 1)
    assert st.row_activity == pytest.approx(0.5) and st.source == "trace"
    r = (1e5 + 25e3) / 64
    assert st.conversion_pj == pytest.approx(p.conversion_energy_pj(np.array([r]))[0])
    assert assumed_stats(p, 128, 0.0).conversion_pj < st.conversion_pj
    assert cell_states(np.array([[0b10000001]]), 8, 1).tolist() == [[1, 0, 0, 0, 0, 0, 0, 1]]
    assert cell_states(np.array([[0b11100100]]), 8, 2).tolist() == [[1, 2 / 3, 1 / 3, 0]]


def test_presets_and_opt_out():
    assert read_path(load_hw("rram-128")) is not None        # inherits neurosim-v14's read path
    assert read_path(load_hw("rram-64")) is None             # SpikeSim figures: opts out
    assert read_path(load_hw("isaac-128")) is None


def test_incomplete_circuit_section_refused(tmp_path):
    f = tmp_path / "chip.toml"
    f.write_text('base = "isaac-128"\n[meta]\nname = "x"\nkind = "xbar"\ndescription = "x"\n'
                 '[adc_circuit]\nmodel = "neurosim-mlsa"\nvdd = 0.9\n')
    with pytest.raises(VitcInputError, match=r"\[adc_circuit\].*missing"):
        load_hw(str(f))


def test_read_stats_are_memoised_on_operands_circuit_and_tiling():
    rng = np.random.default_rng(0)
    trace = LayerTrace(rng.integers(0, 256, (200, 6)).astype(np.uint16), (rng.random((8, 200)) < 0.4).astype(np.uint8))
    p = path()
    first = read_stats(trace, p, 8, 1)
    assert read_stats(trace, p, 8, 1) is first                              # same operands, circuit, tiling
    assert read_stats(trace, path(), 8, 1) is first                         # an equal circuit
    other = read_stats(trace, path(6), 8, 1)                                # another ADC: recomputed
    assert other is not first and other.conversion_pj > first.conversion_pj
    tiles = [np.arange(0, 100), np.arange(100, 200)]
    split = read_stats(trace, p, 8, 1, tiles)
    assert split is not first and split.conversion_pj != first.conversion_pj
    copy = LayerTrace(trace.codes.copy(), trace.planes.copy())              # other operands object: recomputed, equal
    again = read_stats(copy, p, 8, 1)
    assert again is not first and again == first
