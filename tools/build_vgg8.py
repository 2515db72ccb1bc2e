#!/usr/bin/env python3
"""Build NeuroSim's VGG-8 for CIFAR-10 as ONNX with onnx.helper (no torch).

Network (DNN+NeuroSim ``NetWork_VGG8.csv``): 3×3 convolutions with padding 1 —
128, 128, pool, 256, 256, pool, 512, 512, pool — then FC 8192→1024 and FC 1024→10;
ReLU after every layer but the last; 2×2 max pooling; input [batch, 3, 32, 32].

Weights are 8-bit: int8 initializers (seeded random) behind ``DequantizeLinear`` (per-tensor
scale), so the graph says "8-bit weights" the way a QDQ export does. Costing only needs the
shapes; the file is ~5 MB, so tests build it in memory instead of committing it.

    python tools/build_vgg8.py -o vgg8.onnx
"""
from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# (out channels, pool after) per conv layer — NeuroSim NetWork_VGG8.csv
CONVS = [(128, False), (128, True), (256, False), (256, True), (512, False), (512, True)]
FCS = [1024, 10]
MACS = 615_917_568  # Σ H·W·C_in·9·C_out + FC; NeuroSim's numComputation = 2·MACS = 1.23184e9


def build_vgg8(seed: int = 0, batch: int | str = "batch") -> onnx.ModelProto:
    """VGG-8/CIFAR-10 ONNX model with 8-bit (int8 + DequantizeLinear) weights."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def qweight(name: str, shape: tuple[int, ...]) -> str:
        w = rng.integers(-127, 128, size=shape, dtype=np.int8)
        inits.append(numpy_helper.from_array(w, f"{name}_q"))
        fan_in = int(np.prod(shape[1:]))
        inits.append(numpy_helper.from_array(np.array(1.0 / (127 * fan_in ** 0.5), np.float32), f"{name}_scale"))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale"], [name],
                                      name=f"/{name.split('.')[0]}/DequantizeLinear"))
        return name

    x, cin = "input", 3
    for i, (cout, pool) in enumerate(CONVS, start=1):
        w = qweight(f"conv{i}.weight", (cout, cin, 3, 3))
        b = f"conv{i}.bias"
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), b))
        y = f"/conv{i}/Conv_output_0"
        nodes.append(helper.make_node("Conv", [x, w, b], [y], name=f"/conv{i}/Conv", kernel_shape=[3, 3],
                                      pads=[1, 1, 1, 1], strides=[1, 1]))
        r = f"/conv{i}/Relu_output_0"
        nodes.append(helper.make_node("Relu", [y], [r], name=f"/conv{i}/Relu"))
        x = r
        if pool:
            p = f"/pool{i}/MaxPool_output_0"
            nodes.append(helper.make_node("MaxPool", [x], [p], name=f"/pool{i}/MaxPool", kernel_shape=[2, 2],
                                          strides=[2, 2]))
            x = p
        cin = cout
    flat = "/Flatten_output_0"
    nodes.append(helper.make_node("Flatten", [x], [flat], name="/Flatten", axis=1))
    x, k = flat, cin * 4 * 4
    for j, n in enumerate(FCS, start=1):
        w = qweight(f"fc{j}.weight", (n, k))
        b = f"fc{j}.bias"
        inits.append(numpy_helper.from_array(np.zeros(n, np.float32), b))
        y = f"/fc{j}/Gemm_output_0" if j < len(FCS) else "logits"
        nodes.append(helper.make_node("Gemm", [x, w, b], [y], name=f"/fc{j}/Gemm", transB=1))
        if j < len(FCS):
            r = f"/fc{j}/Relu_output_0"
            nodes.append(helper.make_node("Relu", [y], [r], name=f"/fc{j}/Relu"))
            y = r
        x, k = y, n
    graph = helper.make_graph(
        nodes, "vgg8_cifar10",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vitc.tools.build_vgg8")
    model.ir_version = 8
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="vgg8.onnx")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model = build_vgg8(args.seed)
    onnx.checker.check_model(model)
    onnx.save(model, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
