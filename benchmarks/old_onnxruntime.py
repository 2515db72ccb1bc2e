#!/usr/bin/env python3
"""Do compiled models load and run in the oldest onnxruntime vitc supports (1.18, pyproject.toml)?

Compiles every exporter fixture and the reference ViT (``--passes none`` and ``taylor``) with the
installed vitc, then, in a separate virtual environment with ``onnxruntime==1.18.0``, loads each
output and runs it on the same inputs as the installed onnxruntime, printing the IR version,
the opsets and the largest difference.

    python benchmarks/old_onnxruntime.py                 # creates /tmp/vitc-ort118 once (pip)
    python benchmarks/old_onnxruntime.py --venv DIR --version 1.18.0
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

RUNNER = r"""
import json, sys
import numpy as np, onnxruntime as ort
out = {}
for path, feeds in json.load(open(sys.argv[1])).items():
    arrays = dict(np.load(feeds))
    try:
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        res = sess.run(None, arrays)
        out[path] = {"ok": True, "outputs": [r.tolist() for r in res[:1]]}
    except Exception as e:  # noqa: BLE001
        out[path] = {"ok": False, "error": str(e).splitlines()[0][:200]}
json.dump({"version": ort.__version__, "results": out}, open(sys.argv[2], "w"))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default="/tmp/vitc-ort118")
    ap.add_argument("--version", default="1.18.0")
    args = ap.parse_args()
    env = Path(args.venv)
    py = env / "bin" / "python"
    if not py.exists():
        venv.create(env, with_pip=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"onnxruntime=={args.version}", "numpy<2"], check=True)

    import onnx

    import vitc
    from vitc.runtime.inputs import synthetic_inputs
    from vitc.runtime.session import open_session
    models = sorted((ROOT / "tests" / "fixtures" / "exporters").glob("*.onnx"))
    models.append(ROOT / "models" / "reference" / "vit_digits_p4.onnx")
    jobs, expected = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            for passes in ("none", "taylor"):
                out = Path(tmp) / f"{m.stem}-{passes}"
                opts = {"taylor_measure": False} if passes == "taylor" else None
                try:
                    res = vitc.compile(str(m), out=out, passes=passes, target="none", options=opts)
                except vitc.core.errors.VitcError as e:  # noqa: F821 - vitc.core is loaded by vitc.compile
                    print(f"{m.stem:<40} {passes:<7} compile failed: {e}")
                    continue
                path = next(out.glob("*.vitc.onnx"))
                feeds = synthetic_inputs(res.model, batch=1, seed=0)
                np.savez(out / "feeds.npz", **feeds)
                jobs[str(path)] = str(out / "feeds.npz")
                expected[str(path)] = (open_session(res.model).run(None, feeds)[0], onnx.load(str(path),
                                                                                            load_external_data=False))
        (Path(tmp) / "runner.py").write_text(RUNNER)
        (Path(tmp) / "jobs.json").write_text(json.dumps(jobs))
        subprocess.run([str(py), str(Path(tmp) / "runner.py"), str(Path(tmp) / "jobs.json"),
                        str(Path(tmp) / "res.json")], check=True)
        res = json.loads((Path(tmp) / "res.json").read_text())
    print(f"onnxruntime {res['version']} (old) vs {__import__('onnxruntime').__version__} (installed)")
    print(f"{'model':<50} {'IR':>3} {'opset':>5} {'loads':>6} {'max |diff|':>11}")
    bad = 0
    for path, r in res["results"].items():
        ref, proto = expected[path]
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        name = Path(path).parent.name
        if not r["ok"]:
            bad += 1
            print(f"{name:<50} {proto.ir_version:>3} {opset:>5} {'NO':>6}  {r['error']}")
            continue
        diff = float(np.abs(np.asarray(r["outputs"][0], np.float64) - ref).max())
        print(f"{name:<50} {proto.ir_version:>3} {opset:>5} {'yes':>6} {diff:11.3g}")
    print(f"{len(res['results']) - bad}/{len(res['results'])} load and run in onnxruntime {res['version']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
