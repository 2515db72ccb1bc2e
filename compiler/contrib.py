"""onnxruntime contrib ops (what ``onnxruntime.transformers.optimizer`` emits).

``com.microsoft.Attention`` packs the q/k/v projection, the core and a raw mask into one op.
vitc reports it as not rewritable (with the reason) rather than guessing its many variants;
``SkipLayerNormalization``/``BiasGelu`` are left in place and run by onnxruntime.
"""
from __future__ import annotations

import onnx_graphsurgeon as gs

from vitc.compiler.recognize import NotRecognised


def match_ms_attention(node: gs.Node):
    raise NotRecognised(
        "com.microsoft.Attention (fused by onnxruntime.transformers.optimizer) is not rewritable: "
        "compile the un-optimised export instead")
