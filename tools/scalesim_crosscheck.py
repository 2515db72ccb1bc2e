#!/usr/bin/env python3
"""Cross-check :func:`vitc.backends.gemm_cycles.gemm_cycles` against the real SCALE-Sim v3.

SCALE-Sim is NOT a dependency of vitc.  It crashes on numpy >= 2.4, so install it in
its own virtual environment outside the repository::

    python -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install scalesim==3.0.0 "numpy<2.3"

then run (from the repository root)::

    python tools/scalesim_crosscheck.py --scalesim-python /tmp/scalesim-venv/bin/python

For every (GEMM shape, array size, dataflow) the script writes a one-layer GEMM
topology, a config with very large SRAMs (so that no stall can occur) and a dummy
layout file, runs the SCALE-Sim 3.0.0 command line::

    python -m scalesim.scale -c CFG -t TOPO.csv -l LAYOUT.csv -i gemm -p OUTDIR

parses ``COMPUTE_REPORT.csv`` (columns "Total Cycles" and "Stall Cycles") and
``DETAILED_ACCESS_REPORT.csv`` (SRAM reads/writes), and records everything to
``tests/fixtures/scalesim/recorded_cycles.json``.  ``tests/test_gemm_cycles.py``
replays that JSON, so the tests never need SCALE-Sim.

Naming.  Our convention is C[M x N] = A[M x K] . B[K x N].  SCALE-Sim's GEMM
topology row is ``name, M, N, K,`` and ``topology_utils.load_arrays_gemm`` turns it
into a convolution with ifmap M x K (1 channel), N filters of window K; i.e. the
ifmap operand is our A (M x K), the filter operand is our B (K x N) and the ofmap is
our C (M x N).  So the three letters mean the same thing in both tools and the row
is written as ``name, M, N, K,`` with *our* M, N, K.  (The docstring of
``get_transformed_mnk`` in SCALE-Sim speaks of "MxN times NxK"; that is its
internal conv-to-GEMM naming, not the topology column order.)
``ArrayHeight`` = rows R, ``ArrayWidth`` = cols C.

"Total Cycles" is SCALE-Sim's compute-cycle count including stalls (the column
"Total Cycles (incl. prefetch)" additionally counts the initial DRAM->SRAM prefetch,
which we do not model; with huge SRAM it is meaningless).  We assert stalls == 0.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "tests" / "fixtures" / "scalesim" / "recorded_cycles.json"

# SRAM sizes in kB; big enough that nothing is ever evicted for the shapes below
# (the largest operand is 197*768 words = 151 kB at SCALE-Sim's 1-byte word).
SRAM_KB = 65536

CFG_TEMPLATE = """[general]
run_name = xcheck

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:   {sram}
FilterSramSzkB:  {sram}
OfmapSramSzkB:   {sram}
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 10
Dataflow : {df}
MemoryBanks:   1
ReadRequestBuffer: 512
WriteRequestBuffer: 512

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

# The layout file is parsed but unused when IfmapCustomLayout/FilterCustomLayout are
# False; it only has to be well formed (21 integer columns).
LAYOUT_CSV = (
    "Layer,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,\n"
    "l0,1,1,1,1,1,1,0,1,2,0,1,2,0,1,2,3,0,1,2,3,\n"
)

# (tag, M, N, K) in our convention C[MxN] = A[MxK] B[KxN]
SHAPES: list[tuple[str, int, int, int]] = [
    ("tiny_1x1x1", 1, 1, 1),
    ("tiny_2x3x4", 2, 3, 4),
    ("tiny_3x5x7", 3, 5, 7),
    ("exact_8", 8, 8, 8),
    ("exact_16x32x16", 16, 32, 16),
    ("exact_32", 32, 32, 32),
    ("odd_20x12x30", 20, 12, 30),
    ("odd_33x17x9", 33, 17, 9),
    ("odd_65x31x40", 65, 31, 40),
    ("odd_100x100x100", 100, 100, 100),
    ("tall_1000x4x3", 1000, 4, 3),
    ("tall_512x1x64", 512, 1, 64),
    ("wide_4x600x5", 4, 600, 5),
    ("deep_5x6x700", 5, 6, 700),
    ("vector_1x64x64", 1, 64, 64),
    ("vector_64x1x197", 64, 1, 197),
    # DeiT-Tiny / DeiT-Base attention, per head (n=197, d=64)
    ("deit_qkT_197x197x64", 197, 197, 64),
    ("deit_sv_197x64x197", 197, 64, 197),
    ("taylor_G_64x64x197", 64, 64, 197),      # G = K_hat^T V
    ("taylor_QG_197x64x64", 197, 64, 64),     # Q G
    ("taylor_Qk_197x1x64", 197, 1, 64),       # Q k_sum^T
    ("deit_tiny_proj_197x192x192", 197, 192, 192),
    ("deit_tiny_qkv_197x576x192", 197, 576, 192),
    ("deit_tiny_fc1_197x768x192", 197, 768, 192),
    ("deit_tiny_fc2_197x192x768", 197, 192, 768),
    ("mobilevit_49x96x144", 49, 96, 144),
    ("levit_16x128x256", 16, 128, 256),
]

ARRAYS: list[tuple[int, int]] = [(8, 8), (32, 32), (16, 8), (8, 16)]
# the ViTALiTy arrays (SA-General 64x64, SA-Diag 64x1) on the attention shapes only
EXTRA_ARRAYS: list[tuple[int, int]] = [(64, 64), (64, 1)]
EXTRA_TAGS = {"deit_qkT_197x197x64", "deit_sv_197x64x197", "taylor_G_64x64x197",
              "taylor_QG_197x64x64", "taylor_Qk_197x1x64", "odd_20x12x30",
              "tiny_3x5x7", "vector_64x1x197"}
DATAFLOWS = ("ws", "is", "os")


def _read_report(path: Path) -> dict[str, str]:
    with open(path, newline="") as fh:
        rows = [[c.strip() for c in r] for r in csv.reader(fh)]
    header, values = rows[0], rows[1]
    return {h: v for h, v in zip(header, values) if h}


def run_one(py: str, tag: str, M: int, N: int, K: int, rows: int, cols: int, df: str,
            keep: bool = False) -> dict:
    """Run SCALE-Sim once; return the record for the JSON fixture."""
    work = Path(tempfile.mkdtemp(prefix=f"ss_{tag}_{rows}x{cols}_{df}_"))
    try:
        (work / "cfg.cfg").write_text(CFG_TEMPLATE.format(rows=rows, cols=cols, df=df,
                                                          sram=SRAM_KB))
        (work / "topo.csv").write_text(f"Layer, M, N, K,\n{tag}, {M}, {N}, {K},\n")
        (work / "layout.csv").write_text(LAYOUT_CSV)
        cmd = [py, "-m", "scalesim.scale", "-c", "cfg.cfg", "-t", "topo.csv",
               "-l", "layout.csv", "-i", "gemm", "-p", "out"]
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"scalesim failed for {tag} {rows}x{cols} {df}:\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        comp = _read_report(work / "out" / "xcheck" / "COMPUTE_REPORT.csv")
        det = _read_report(work / "out" / "xcheck" / "DETAILED_ACCESS_REPORT.csv")
        rec = {
            "name": tag, "M": M, "N": N, "K": K, "rows": rows, "cols": cols,
            "dataflow": df,
            "total_cycles": int(float(comp["Total Cycles"])),
            "stall_cycles": int(float(comp["Stall Cycles"])),
            "overall_util_pct": float(comp["Overall Util %"]),
            "mapping_eff_pct": float(comp["Mapping Efficiency %"]),
            "compute_util_pct": float(comp["Compute Util %"]),
            "sram_ifmap_reads": int(float(det["SRAM IFMAP Reads"])),
            "sram_filter_reads": int(float(det["SRAM Filter Reads"])),
            "sram_ofmap_writes": int(float(det["SRAM OFMAP Writes"])),
        }
        return rec
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def dump_json(doc: dict) -> str:
    """JSON text with one record per line (readable diffs, small file)."""
    head = {k: v for k, v in doc.items() if k != "records"}
    text = json.dumps(head, indent=1)[:-2] + ',\n "records": [\n'
    text += ",\n".join("  " + json.dumps(r) for r in doc["records"])
    return text + "\n ]\n}\n"


def scalesim_version(py: str) -> tuple[str, str]:
    out = subprocess.run([py, "-c", "import importlib.metadata as m;"
                          "print(m.version('scalesim'), m.version('numpy'))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], out[1]


def jobs() -> list[tuple]:
    out = []
    for tag, M, N, K in SHAPES:
        arrays = list(ARRAYS) + (EXTRA_ARRAYS if tag in EXTRA_TAGS else [])
        for rows, cols in arrays:
            for df in DATAFLOWS:
                out.append((tag, M, N, K, rows, cols, df))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scalesim-python", default="/tmp/scalesim-venv/bin/python",
                    help="python of the venv that has scalesim==3.0.0 installed")
    ap.add_argument("-o", "--out", default=str(DEFAULT_OUT))
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--compare", action="store_true",
                    help="also compare against vitc's gemm_cycles and report mismatches")
    ap.add_argument("--no-run", action="store_true",
                    help="do not run SCALE-Sim; only --compare the existing JSON at --out")
    args = ap.parse_args(argv)
    if args.no_run:
        return compare(json.loads(Path(args.out).read_text())["records"])

    py = args.scalesim_python
    ss_ver, np_ver = scalesim_version(py)
    todo = jobs()
    print(f"scalesim {ss_ver} (numpy {np_ver}): {len(todo)} runs, {args.jobs} workers",
          file=sys.stderr)
    records: list[dict] = []
    with cf.ThreadPoolExecutor(max_workers=args.jobs) as ex:
        futs = [ex.submit(run_one, py, *j) for j in todo]
        for i, f in enumerate(cf.as_completed(futs), 1):
            records.append(f.result())
            if i % 25 == 0:
                print(f"  {i}/{len(todo)}", file=sys.stderr)
    key = {j: i for i, j in enumerate(todo)}
    records.sort(key=lambda r: key[(r["name"], r["M"], r["N"], r["K"], r["rows"],
                                    r["cols"], r["dataflow"])])
    doc = {
        "tool": "SCALE-Sim",
        "scalesim_version": ss_ver,
        "numpy_version": np_ver,
        "command": "python -m scalesim.scale -c CFG -t TOPO.csv -l LAYOUT.csv -i gemm -p OUT",
        "topology_row": "name, M, N, K,  (C[MxN] = A[MxK] . B[KxN]; ifmap=A, filter=B, ofmap=C)",
        "config": {
            "ArrayHeight": "rows", "ArrayWidth": "cols",
            "IfmapSramSzkB": SRAM_KB, "FilterSramSzkB": SRAM_KB, "OfmapSramSzkB": SRAM_KB,
            "InterfaceBandwidth": "CALC", "ReadRequestBuffer": 512,
            "WriteRequestBuffer": 512, "SparsitySupport": False,
            "IfmapCustomLayout": False, "FilterCustomLayout": False,
        },
        "columns": {
            "total_cycles": "COMPUTE_REPORT.csv 'Total Cycles'",
            "stall_cycles": "COMPUTE_REPORT.csv 'Stall Cycles'",
            "sram_*": "DETAILED_ACCESS_REPORT.csv 'SRAM IFMAP Reads' etc. (words)",
        },
        "records": records,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(dump_json(doc))
    stalls = [r for r in records if r["stall_cycles"]]
    print(f"wrote {len(records)} records to {out}; {len(stalls)} with stalls",
          file=sys.stderr)

    return compare(records) if args.compare else 0


def compare(records: list[dict]) -> int:
    """Compare recorded SCALE-Sim cycles and SRAM counts with vitc's gemm_cost."""
    sys.path.insert(0, str(REPO))
    from vitc.backends.gemm_cycles import gemm_cost  # noqa: E402
    bad = 0
    for r in records:
        c = gemm_cost(r["M"], r["N"], r["K"], r["rows"], r["cols"], r["dataflow"],
                      mode="scalesim")
        s = c.scalesim_sram_counts()
        got = (c.cycles, s["ifmap_reads"], s["filter_reads"], s["ofmap_writes"])
        want = (r["total_cycles"], r["sram_ifmap_reads"], r["sram_filter_reads"],
                r["sram_ofmap_writes"])
        if got != want:
            bad += 1
            print(f"MISMATCH {r['name']} {r['rows']}x{r['cols']} {r['dataflow']}: "
                  f"scalesim {want} ours {got}", file=sys.stderr)
    print(f"{len(records) - bad}/{len(records)} match (cycles and SRAM counts)",
          file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
