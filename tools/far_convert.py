#!/usr/bin/env python
"""Convert a FAR checkpoint (PyTorch state dict of a DeiT whose attentions are FAR
``MultiHeadLstm``/``ParallelLSTM`` modules) into vitc's torch-free ``.npz`` for
``vitc compile --passes bilstm --bilstm-weights FILE.npz``.

    python tools/far_convert.py far_deit_tiny.pth deit_tiny.onnx -o far_deit_tiny.npz

The ONNX model gives the block count and heads per block (the per-head split needs them).
Needs torch to read ``.pth``; an ``.npz`` of the state-dict arrays works without it.
Prints the hidden sizes per block/head/direction and, when the checkpoint carries FAR's
``post_proj``, how far it is from the model's output projection (FAR keeps it frozen, so
this should be ~0).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="FAR state dict (.pth/.pt, or .npz of its arrays)")
    p.add_argument("model", help="the ONNX model the checkpoint belongs to")
    p.add_argument("-o", "--output", required=True, help="output .npz")
    args = p.parse_args(argv)

    from vitc.core.errors import VitcError
    from vitc.compiler.frontend import read_model
    from vitc.passes.bilstm_weights import load_weights, save_npz
    try:
        cm = read_model(args.model)
        blocks, fmt = load_weights(args.checkpoint, cm)
    except VitcError as exc:
        print(f"far_convert: error: {exc}", file=sys.stderr)
        return 2
    for i, b in sorted(blocks.items()):
        line = f"block {i}: hidden [fwd, rev] per head {b.hidden_sizes()}, {b.params} parameters"
        if b.post_proj is not None:
            kept = np.asarray(cm.tensor(cm.blocks[i].out_proj.weight).values, np.float32).T
            if kept.shape == b.post_proj.shape:
                line += f", |post_proj − out_proj| max {np.abs(kept - b.post_proj).max():.2e}"
        print(line)
    save_npz(args.output, blocks, {"source": args.checkpoint, "format": fmt, "model": cm.name})
    print(f"wrote {len(blocks)} blocks to {args.output} (from {fmt})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
