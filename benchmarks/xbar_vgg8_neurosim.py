#!/usr/bin/env python3
"""VGG-8 / CIFAR-10 on the ``neurosim-v14`` preset against DNN+NeuroSim V1.4's release test.

Prints (1) vitc's figures next to NeuroSim's published ones (Data/1.4_Release_test.csv,
first row) and (2) the derivation of every calibrated number in neurosim-v14.toml: the
NeuroSim component total divided by vitc's own event count for the same network. Re-run
it after changing the cost model's event counting to re-derive the preset.

    python benchmarks/xbar_vgg8_neurosim.py
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from vitc.backends.api import analyse

ROOT = Path(__file__).resolve().parent.parent

# DNN+NeuroSim V1.4 Data/1.4_Release_test.csv, row 1 (128x128, numRowParallel 128)
NS = {
    "area_mm2": 84.7747, "area_array": 3.60536, "area_ic": 8.29649, "area_adc": 5.06475, "area_accum": 15.0639,
    "area_other": 52.7443, "clk_ns": 2.2312, "interval_us": 194.225, "dyn_uj": 42.0048, "leak_uj": 0.17702,
    "leak_uw": 911.417, "buf_lat_us": 136.858, "buf_uj": 0.203455, "ic_lat_us": 47.8689, "ic_uj": 6.09182,
    "adc_lat_us": 8.03231, "acc_lat_us": 3.32504, "other_lat_us": 184.876, "adc_uj": 21.612, "acc_uj": 3.57428,
    "other_uj": 16.8186, "tops_per_w": 23.9369, "tops": 6.3423, "fps": 5148.66, "tops_per_mm2": 0.0748136,
    "ops": 1.23184e9, "zeta": 1.22,
}


def main() -> None:
    spec = importlib.util.spec_from_file_location("build_vgg8", ROOT / "tools" / "build_vgg8.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    an = analyse(mod.build_vgg8(), "xbar", "neurosim-v14", model_name="vgg8")
    t, z = an.totals, an.totals["post_layout_energy_factor"]
    e = {k: v / z / 1e6 for k, v in t["energy_by_component_pj"].items()}  # µJ before zeta
    other = e["array"] + e["other_periph"] + e["buffer"] + e["interconnect"] + e["digital"]
    rows = [
        ("ops per image", NS["ops"], t["ops"]),
        ("dynamic energy µJ (before zeta)", NS["dyn_uj"], t["dynamic_energy_pj"] / z / 1e6),
        ("  ADC µJ", NS["adc_uj"], e["adc"]),
        ("  accumulation µJ", NS["acc_uj"], e["accumulation"]),
        ("  other µJ (array, periphery, buffer, IC, pool/ReLU)", NS["other_uj"], other),
        ("    buffer µJ", NS["buf_uj"], e["buffer"]),
        ("    interconnect µJ", NS["ic_uj"], e["interconnect"]),
        ("leakage µJ", NS["leak_uj"], e["leakage"]),
        ("energy per image µJ (vitc: x zeta)", NS["dyn_uj"], t["energy_pj"] / 1e6),
        ("TOPS/W (NeuroSim: ops / (dyn+leak) / zeta)", NS["tops_per_w"], t["tops_per_w"]),
        ("ADC share of dynamic energy", NS["adc_uj"] / NS["dyn_uj"], t["energy_by_component_pj"]["adc"] / t["dynamic_energy_pj"]),
        ("pipeline interval µs", NS["interval_us"], t["pipeline_interval_ns"] / 1e3),
        ("TOPS", NS["tops"], t["tops"]),
        ("images/s", NS["fps"], t["throughput_ips"]),
        ("chip area mm²", NS["area_mm2"], t["area_mm2"]),
        ("TOPS/mm²", NS["tops_per_mm2"], t["tops_per_mm2"]),
    ]
    print(f"{'metric':<54} {'NeuroSim':>12} {'vitc':>12} {'ratio':>7}")
    for name, ref, ours in rows:
        print(f"{name:<54} {ref:12.5g} {ours:12.5g} {ours / ref if ref else float('nan'):7.3f}")
    print(f"\nsingle-image latency (not pipelined): {t['latency_ns'] / 1e3:.4g} µs; crossbars {t['crossbars']} "
          f"({t['crossbars_with_replicas']} with replicas), tiles {t['tiles']}")

    # ---- held-out check: release-test row 3 (numRowParallel = 64), same calibration
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        hw = Path(d) / "rp64.toml"
        hw.write_text('[meta]\nbase = "neurosim-v14"\nname = "neurosim-v14-rp64"\nkind = "xbar"\n'
                      'description = "release test, numRowParallel 64"\n'
                      "[crossbar]\nrows_parallel = 64  # release test row 3\n")
        h = analyse(mod.build_vgg8(), "xbar", str(hw), model_name="vgg8").totals
    hz = h["post_layout_energy_factor"]
    print("\nheld out (numRowParallel = 64): NeuroSim 50.148 uJ dynamic, ADC 31.121 uJ, 20.062 TOPS/W, 6.837 TOPS")
    print(f"  vitc: {h['dynamic_energy_pj'] / hz / 1e6:.5g} uJ dynamic, ADC "
          f"{h['energy_by_component_pj']['adc'] / hz / 1e6:.5g} uJ, {h['tops_per_w']:.5g} TOPS/W, {h['tops']:.4g} TOPS")

    # ---- derivation of the calibrated preset numbers
    c: dict[str, float] = {}
    for oc in an.costs:
        for k, v in oc.extra.get("counts", {}).items():
            c[k] = c.get(k, 0) + v
    dig_bits = sum((it.in_elements + it.out_elements) * an.spec["crossbar.input_bits"]
                   for it in an.items if it.kind in ("vector", "sfu"))
    dig_pj = sum(oc.energy.get("digital", 0.0) for oc in an.costs)
    n_x, tiles = t["crossbars_with_replicas"], t["tiles"]
    act = an.spec["crossbar.input_activity"]
    rest = (NS["other_uj"] - NS["buf_uj"] - NS["ic_uj"]) * 1e6 - dig_pj
    conv2 = next(oc for oc in an.costs if oc.name == "/conv2/Conv")
    derived = [
        ("adc.energy_pj", NS["adc_uj"] * 1e6 / c["conversions"]),
        ("accumulation.shift_add_energy_pj",
         (NS["acc_uj"] * 1e6 - c["partial_sum_adds"] * an.spec["accumulation.add_energy_pj"]) / c["conversions"]),
        ("crossbar.read_energy_pj_per_cell", rest / 2 / (c["cell_reads"] * act)),
        ("periphery.dac_energy_pj_per_row", rest / 4 / (c["row_drives"] * act)),
        ("periphery.mux_energy_pj_per_conversion", rest / 4 / c["conversions"]),
        ("buffer.energy_pj_per_bit", NS["buf_uj"] * 1e6 / (c["buffer_bits"] + dig_bits)),
        ("interconnect.energy_pj_per_bit", NS["ic_uj"] * 1e6 / c["interconnect_bits"]),
        ("buffer.bandwidth_bits_per_ns", conv2.extra["counts"]["buffer_bits"] / (NS["buf_lat_us"] * 1e3)),
        ("interconnect.bandwidth_bits_per_ns",
         conv2.extra["counts"]["interconnect_bits_latency"] / (NS["ic_lat_us"] * 1e3)),
        ("crossbar.area_um2", NS["area_array"] * 1e6 / n_x),
        ("adc.area_um2", NS["area_adc"] * 1e6 / (n_x * an.spec["crossbar.cols"] / an.spec["crossbar.cols_per_adc"])),
        ("accumulation.area_um2_per_crossbar", NS["area_accum"] * 1e6 / n_x),
        ("periphery.area_um2_per_crossbar", NS["area_other"] * 1e6 / n_x),
        ("periphery.leakage_uw_per_crossbar", NS["leak_uw"] / n_x),
        ("interconnect.area_mm2_per_tile", NS["area_ic"] / tiles),
    ]
    print("\ncalibrated parameter                      derived from NeuroSim / vitc counts   preset value")
    for key, val in derived:
        print(f"  {key:<42} {val:14.6g} {an.spec[key]:20.6g}")
    print(f"\nevent counts: conversions {c['conversions']:.6g}, cell reads {c['cell_reads']:.6g}, row drives "
          f"{c['row_drives']:.6g}, partial-sum adds {c['partial_sum_adds']:.6g}, buffer bits "
          f"{c['buffer_bits'] + dig_bits:.6g}, interconnect bits {c['interconnect_bits']:.6g}")


if __name__ == "__main__":
    main()
