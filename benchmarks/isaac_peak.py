#!/usr/bin/env python
"""isaac-128 at full utilisation against ISAAC's published chip figures (project issue 15).

One dense MatMul (K = N = 2048, 256 input vectors: every crossbar busy, no digital work) is
costed on ``isaac-128``; its TOPS/W and TOPS/mm² are compared with ISAAC's peak (Shafiee et al.,
ISCA 2016: 65.8 W and 85.4 mm² for the chip, 479 GOPS/mm² → 40.9 TOPS → 0.622 TOPS/W; of the
power, 55.4 W in the 168 tiles and 10.4 W in HyperTransport links, charged per tile in the
preset). TOPS/mm² is over the crossbar tiles: the preset's digital units for attention
(ViTALiTy's MAC array) are not part of ISAAC.

    python benchmarks/isaac_peak.py [--k 2048] [--tokens 256]
"""
from __future__ import annotations

import argparse

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from vitc.backends.api import analyse

ISAAC_TOPS_PER_MM2 = 0.479
ISAAC_TOPS = ISAAC_TOPS_PER_MM2 * 85.4
ISAAC_TOPS_PER_W = ISAAC_TOPS / 65.8
ISAAC_TILE_TOPS_PER_W = ISAAC_TOPS / 55.4      # without HyperTransport


def gemm(k: int, tokens: int):
    w = numpy_helper.from_array(np.random.RandomState(0).randn(k, k).astype(np.float32) * 0.02, "W")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "gemm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, k])], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=2048)
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args()
    t = analyse(gemm(args.k, args.tokens), "xbar", "isaac-128").totals
    digital = t["area_by_component_mm2"].get("digital", 0.0)
    tiles_area = t["area_mm2"] - digital        # ISAAC has no digital MAC array; vitc's preset adds ViTALiTy's
    print(f"isaac-128, MatMul {args.tokens}x{args.k}x{args.k}: {t['crossbars']} crossbars, "
          f"{t['tops']:.3f} TOPS; area {t['area_mm2']:.2f} mm² of which {digital:.2f} mm² digital units "
          "(ViTALiTy's, for attention; not on ISAAC)")
    print(f"  TOPS/mm²  vitc {t['tops'] / tiles_area:.4f} (crossbar tiles)  ISAAC {ISAAC_TOPS_PER_MM2:.4f}  "
          f"ratio {t['tops'] / tiles_area / ISAAC_TOPS_PER_MM2:.3f}")
    print(f"  TOPS/W    vitc {t['tops_per_w']:.4f}  ISAAC {ISAAC_TOPS_PER_W:.4f} (chip), {ISAAC_TILE_TOPS_PER_W:.4f} "
          f"(tiles only)  ratio {t['tops_per_w'] / ISAAC_TOPS_PER_W:.3f} / {t['tops_per_w'] / ISAAC_TILE_TOPS_PER_W:.3f}")
    e = t["energy_by_component_pj"]
    total = sum(e.values())
    print("  energy shares: " + ", ".join(f"{k} {100 * v / total:.1f} %" for k, v in e.items() if v))


if __name__ == "__main__":
    main()
