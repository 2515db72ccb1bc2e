#!/usr/bin/env python
"""vitc's crossbar cost model against real DNN+NeuroSim V1.4 on the same traces (project issue 15).

1. Builds NeuroSim from its public source (github neurosim/NeuroSim, branch 2DInferenceV1.4:
   ``--source`` is a checkout, or a bare git directory the branch is archived from) once per ADC
   precision, with ``Param.cpp`` set to the ``neurosim-v14`` preset's claims: RRAM (memcelltype 2),
   22 nm, 1-bit cells, 8 columns per ADC, current-mode multilevel sense amp with 2^bits levels,
   conventional parallel read, pipelined novel mapping (the shipped file is SRAM with a 5-bit ADC).
2. Exports each network with ``vitc export neurosim`` (VGG-8 built by tools/build_vgg8.py;
   DeiT-Tiny from the zoo, its static-weight MVMs) and runs NeuroSim on the traces at each
   subarray size.
3. Compiles the same model with ``--hw neurosim-v14`` (ADC bits and array size overridden to
   match; NeuroSim's command line sets the sub-array rows, its columns stay at Param.cpp's) and
   prints vitc / NeuroSim for chip area, dynamic energy per image, ADC energy and the pipeline
   interval, plus the area and energy components. NeuroSim runs a convolution on its unpadded
   positions ((IFM − k + 1)² vectors, 900 of VGG-8's 1024 in its first layers); vitc on every
   output position. The energy and interval ratios are also printed with vitc's layers scaled to
   NeuroSim's vector count ("on NeuroSim's vectors"): the same work on both sides.

One VGG-8 run takes about 4–5 minutes here; not part of CI. Results go in docs/hardware.md.

    python benchmarks/neurosim_crosscheck.py --source PATH [--nets vgg8,deit-tiny] [--adc 4,6]
        [--rows 128,256] [--work DIR] [--json out.json] [--layers]
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tarfile
import io
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BRANCH = "2DInferenceV1.4"
PARAMS = {   # Param.cpp assignments that make the shipped file the preset's chip
    "memcelltype": "2", "technode": "22", "cellBit": "1", "numColMuxed": "8", "operationmode": "2",
    "pipeline": "true", "novelMapping": "true", "SARADC": "false", "currentMode": "true",
}
FIGURES = {   # NeuroSim summary line → key
    "area_um2": r"ChipArea : ([\d.e+-]+)um\^2",
    "array_area_um2": r"Chip total CIM array : ([\d.e+-]+)um\^2",
    "ic_area_um2": r"Total IC Area on chip \(Global and Tile/PE local\): ([\d.e+-]+)um\^2",
    "adc_area_um2": r"Total ADC \(or S/As and precharger for SRAM\) Area on chip : ([\d.e+-]+)um\^2",
    "accum_area_um2": r"Total Accumulation Circuits .*? on chip : ([\d.e+-]+)um\^2",
    "other_area_um2": r"Other Peripheries \(e.g. decoders, mux, switchmatrix, buffers, pooling and activation units\) : "
                      r"([\d.e+-]+)um\^2",
    "interval_ns": r"Chip pipeline-system-clock-cycle \(per image\) is: ([\d.e+-]+)ns",
    "dynamic_pj": r"Chip pipeline-system readDynamicEnergy \(per image\) is: ([\d.e+-]+)pJ",
    "leakage_pj": r"Chip pipeline-system leakage Energy \(per image\) is: ([\d.e+-]+)pJ",
    "buffer_pj": r"Chip pipeline-system buffer readDynamicEnergy \(per image\) is: ([\d.e+-]+)pJ",
    "ic_pj": r"Chip pipeline-system ic readDynamicEnergy \(per image\) is: ([\d.e+-]+)pJ",
    "tops_per_w": r"Energy Efficiency TOPS/W \(Pipelined Process\): ([\d.e+-]+)",
}
INVALID_PJ = 1e15     # a layer's energy above this (NeuroSim overflows on some layers) is no figure
TAIL = {   # the last breakdown block (the chip's, after the summary)
    "adc_pj": r"ADC \(or S/As and precharger for SRAM\) readDynamicEnergy is : ([\d.e+-]+)pJ",
    "accum_pj": r"Accumulation Circuits .*? readDynamicEnergy is : ([\d.e+-]+)pJ",
    "other_pj": r"Other Peripheries .*? readDynamicEnergy is : ([\d.e+-]+)pJ",
}


def source_tree(source: Path, work: Path) -> Path:
    """NeuroSim's C++ sources (Inference_pytorch/NeuroSIM) from a checkout or a bare git dir."""
    if (source / "Inference_pytorch" / "NeuroSIM" / "main.cpp").is_file():
        return source / "Inference_pytorch" / "NeuroSIM"
    dest = work / "src"
    if not (dest / "Inference_pytorch" / "NeuroSIM" / "main.cpp").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        tar = subprocess.run(["git", f"--git-dir={source}", "archive", f"refs/heads/{BRANCH}",
                              "Inference_pytorch/NeuroSIM"], capture_output=True, check=True).stdout
        tarfile.open(fileobj=io.BytesIO(tar)).extractall(dest)
    return dest / "Inference_pytorch" / "NeuroSIM"


def build(src: Path, work: Path, adc_bits: int) -> Path:
    """A NeuroSim binary with the preset's Param.cpp and a 2^adc_bits-level sense amp."""
    out = work / f"neurosim_adc{adc_bits}"
    binary = out / "main"
    if binary.is_file():
        return binary
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    for f in out.glob("*.o"):
        f.unlink()
    param = (out / "Param.cpp").read_text()
    for key, value in {**PARAMS, "levelOutput": str(2 ** adc_bits)}.items():
        param, n = re.subn(rf"(^\s*{key}\s*=\s*)[^;]+;", rf"\g<1>{value};", param, count=1, flags=re.M)
        if n != 1:
            sys.exit(f"Param.cpp has no assignment of {key}")
    (out / "Param.cpp").write_text(param)
    t0 = time.perf_counter()
    subprocess.run(["make", "-j2"], cwd=out, check=True, capture_output=True)
    print(f"built NeuroSim ({adc_bits}-bit ADC) in {time.perf_counter() - t0:.0f} s")
    return binary


def network(name: str, work: Path) -> Path:
    path = work / f"{name}.onnx"
    if not path.is_file():
        if name == "vgg8":
            subprocess.run([sys.executable, str(ROOT / "tools" / "build_vgg8.py"), "-o", str(path)], check=True)
        else:
            subprocess.run([sys.executable, "-m", "vitc.cli", "zoo", name, "-o", str(path)], check=True,
                           capture_output=True)
    return path


def export(model: Path, work: Path) -> Path:
    out = work / f"traces_{model.stem}"
    if not (out / "NetWork.csv").is_file():
        subprocess.run([sys.executable, "-m", "vitc.cli", "-q", "export", "neurosim", str(model), "-o", str(out)],
                       check=True)
    return out


def run_neurosim(binary: Path, traces: Path, rows: int, log: Path) -> dict:
    if not log.is_file():
        layers = json.loads((traces / "layers.json").read_text())["layers"]
        args = [str(binary), "NetWork.csv", "8", "8", str(rows), str(rows)]
        for L in layers:
            args += [f"weight{L['index']}.csv", f"input{L['index']}.csv"]
        t0 = time.perf_counter()
        p = subprocess.run(args, cwd=traces, capture_output=True, text=True)
        log.write_text(p.stdout + p.stderr)
        print(f"  NeuroSim run: {time.perf_counter() - t0:.0f} s")
    text = log.read_text()
    out = {}
    for key, pat in FIGURES.items():
        m = re.findall(pat, text)
        if m:
            out[key] = float(m[-1])
    summary = text[text.rfind("Summary"):]
    for key, pat in TAIL.items():
        m = re.findall(pat, summary)
        if m:
            out[key] = float(m[-1])
    out["layer_pj"] = [float(x) for x in re.findall(r"layer\d+'s readDynamicEnergy is: ([\d.e+-]+)pJ", text)]
    blocks = text.split("Estimation of Layer")[1:]
    out["layer_adc_pj"] = [float(re.search(r"ADC \(or S/As.*?readDynamicEnergy is : ([\d.e+-]+)pJ", b).group(1))
                           for b in blocks]
    out["layer_ns"] = [float(re.search(r"readLatency is: ([\d.e+-]+)ns", b).group(1)) for b in blocks]
    if "area_um2" not in out:
        sys.exit(f"NeuroSim did not finish ({log}): {text[-500:]}")
    return out


def param_value(binary: Path, key: str) -> int:
    """An integer assignment in the Param.cpp the binary was built from."""
    m = re.search(rf"^\s*{key}\s*=\s*(\d+)\s*;", (binary.parent / "Param.cpp").read_text(), flags=re.M)
    if not m:
        sys.exit(f"Param.cpp has no integer assignment of {key}")
    return int(m.group(1))


def run_vitc(model: Path, adc_bits: int, rows: int, cols: int) -> dict:
    from vitc.backends.api import analyse
    from vitc.backends.cost import DYNAMIC_COMPONENTS, MACRO_COMPONENTS
    from vitc.core.hardware import load_hw, override
    import onnx
    hw = override(load_hw("neurosim-v14"), {"crossbar.adc_bits": adc_bits, "crossbar.rows": rows,
                                           "crossbar.cols": cols, "crossbar.rows_parallel": rows})
    from vitc.backends.api import xbar_traces
    m = onnx.load(str(model))
    an = analyse(m, "xbar", hw, model_name=model.stem, options={"xbar_traces": xbar_traces(m, hw, {})})
    t = an.totals
    z = t["post_layout_energy_factor"]         # NeuroSim reports energies before ζ (ζ only enters its TOPS/W)
    a = t["area_by_component_mm2"]
    # the layers NeuroSim runs: vitc's crossbar ops (a transformer's attention products, softmax and
    # norms run on vitc's digital units and have no NeuroSim counterpart)
    xops = [c for c in an.costs if c.unit == "xbar"]
    e: dict[str, float] = {}
    for c in xops:
        for k, v in c.energy.items():
            e[k] = e.get(k, 0.0) + (v / z if k in MACRO_COMPONENTS else v)
    layers = [{"adc_pj": c.energy.get("adc", 0.0) / z,
               "dynamic_pj": sum(v / z if k in MACRO_COMPONENTS else v for k, v in c.energy.items()
                                 if k in DYNAMIC_COMPONENTS),
               "latency_ns": c.latency_ns} for c in xops]
    interval = max(c.latency_ns for c in xops)     # pipelined layers: the slowest one
    dynamic = sum(e.get(k, 0.0) for k in DYNAMIC_COMPONENTS)
    joules = (dynamic * z + an.leakage_uw * 1e-6 * interval * 1e-9 * 1e12) * 1e-12
    return {"layers": layers, "area_um2": t["area_mm2"] * 1e6, "dynamic_pj": dynamic,
            "adc_pj": e.get("adc", 0.0),
            "interval_ns": interval, "array_area_um2": a.get("array", 0) * 1e6,
            "adc_area_um2": a.get("adc", 0) * 1e6, "accum_area_um2": a.get("accumulation", 0) * 1e6,
            "ic_area_um2": a.get("interconnect", 0) * 1e6, "accum_pj": e.get("accumulation", 0.0),
            "buffer_pj": e.get("buffer", 0.0), "ic_pj": e.get("interconnect", 0.0),
            "tops_per_w": 2 * sum(c.macs for c in xops) / joules / 1e12}


def neurosim_vectors(row: list[int]) -> int:
    """Input vectors NeuroSim runs through a layer: (IFM − k + 1)/stride per side (Chip.cpp
    ``numInVector``: unpadded convolutions), where vitc counts the model's output positions."""
    h, w, _, kh, kw, _, _, s = row
    return int((h - kh + 1) / s * (w - kw + 1) / s)


def print_layers(ns: dict, vc: dict, traces: Path) -> None:
    """Per layer, vitc / NeuroSim on NeuroSim's vector count: dynamic energy, ADC energy, latency."""
    layers = json.loads((traces / "layers.json").read_text())["layers"]
    print(f"  {'layer':40s} {'dynamic':>8s} {'ADC':>6s} {'latency':>8s}   (vitc / NeuroSim, same work)")
    for i, L in enumerate(layers):
        f = neurosim_vectors(L["row"]) / L["vectors"]
        v = vc["layers"][i]
        e = v["dynamic_pj"] * f / ns["layer_pj"][i] if ns["layer_pj"][i] < INVALID_PJ else float("nan")
        a = v["adc_pj"] * f / ns["layer_adc_pj"][i] if ns["layer_adc_pj"][i] < INVALID_PJ else float("nan")
        print(f"  {i + 1:3d} {L['node'][:36]:36s} {e:8.2f} {a:6.2f} {v['latency_ns'] * f / ns['layer_ns'][i]:8.2f}")


def same_work(vc: dict, traces: Path, keep: list[int] | None = None) -> dict:
    """vitc's crossbar layers (``keep``: only these) scaled to NeuroSim's vector count (their
    energies and latencies are linear in the vectors)."""
    layers = json.loads((traces / "layers.json").read_text())["layers"]
    f = [neurosim_vectors(L["row"]) / L["vectors"] for L in layers]
    keep = range(len(f)) if keep is None else keep
    per = vc["layers"]
    return {"adc_pj": sum(per[i]["adc_pj"] * f[i] for i in keep),
            "dynamic_pj": sum(per[i]["dynamic_pj"] * f[i] for i in keep),
            "interval_ns": max(per[i]["latency_ns"] * f[i] for i in keep)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True, help="NeuroSim checkout or bare git dir (branch 2DInferenceV1.4)")
    ap.add_argument("--nets", default="vgg8,deit-tiny")
    ap.add_argument("--adc", default="4,6")
    ap.add_argument("--rows", default="128,256")
    ap.add_argument("--work", default=str(Path.home() / ".cache" / "vitc-neurosim"))
    ap.add_argument("--json")
    ap.add_argument("--layers", action="store_true", help="also print every layer's ratios")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = source_tree(Path(args.source), work)
    results = []
    keys = ["area_um2", "dynamic_pj", "adc_pj", "interval_ns", "tops_per_w", "array_area_um2", "adc_area_um2",
            "accum_area_um2", "ic_area_um2", "accum_pj", "buffer_pj", "ic_pj"]
    for net in args.nets.split(","):
        model = network(net, work)
        traces = export(model, work)
        for bits in (int(b) for b in args.adc.split(",")):
            binary = build(src, work, bits)
            cols = param_value(binary, "numColSubArray")   # NeuroSim's command line sets rows only
            for rows in (int(r) for r in args.rows.split(",")):
                print(f"{net}, {bits}-bit ADC, {rows}x{cols} arrays")
                ns = run_neurosim(binary, traces, rows, work / f"log_{net}_adc{bits}_{rows}.txt")
                vc = run_vitc(model, bits, rows, cols)
                row = {"net": net, "adc_bits": bits, "rows": rows, "cols": cols, "neurosim": ns, "vitc": vc}
                results.append(row)
                row["vitc_same_work"] = sw = same_work(vc, traces)
                bad = [i for i, e in enumerate(ns["layer_pj"]) if not e < INVALID_PJ]
                if bad:     # a NeuroSim figure out of range: compare the other layers on both sides
                    keep = [i for i in range(len(ns["layer_pj"])) if i not in bad]
                    print(f"  NeuroSim's energy of layer(s) {', '.join(str(i + 1) for i in bad)} is out of range "
                          f"({max(ns['layer_pj'][i] for i in bad):.3g} pJ): energies below are over the other layers")
                    ns["dynamic_pj"] = sum(ns["layer_pj"][i] for i in keep)
                    ns["adc_pj"] = sum(ns["layer_adc_pj"][i] for i in keep)
                    vc["dynamic_pj"] = sum(vc["layers"][i]["dynamic_pj"] for i in keep)
                    vc["adc_pj"] = sum(vc["layers"][i]["adc_pj"] for i in keep)
                    for k in ("tops_per_w", "accum_pj", "buffer_pj", "ic_pj"):
                        ns.pop(k, None)
                    sw = row["vitc_same_work"] = same_work(vc, traces, keep)
                if args.layers:
                    print_layers(ns, vc, traces)
                for k in keys:
                    if k in ns and ns[k]:
                        extra = f"   on NeuroSim's vectors {sw[k] / ns[k]:6.2f}" if k in sw else ""
                        print(f"  {k:16s} NeuroSim {ns[k]:12.5g}  vitc {vc.get(k, float('nan')):12.5g}  "
                              f"vitc/NeuroSim {vc.get(k, float('nan')) / ns[k]:6.2f}{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
