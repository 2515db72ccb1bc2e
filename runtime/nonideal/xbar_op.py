"""``ai.vitc::XbarMatMul``: a crossbar-mapped MVM as the chip computes it, in standard ONNX ops.

    y = XbarMatMul(x, cells, adc_inv, step, w_scale, corr, rows[, x_scale])

``x`` float [..., K]; the other inputs are initializers written by
:mod:`vitc.runtime.nonideal.simulate` from :func:`vitc.runtime.nonideal.arith.program_matrix`:

=========  ===========================  ===================================================
cells      int8 [G, Rp, P·S·N']         conductance codes per row group, column (p·S+s)·N'+n
                                        (codes up to 255 stored minus 128: overload _z128)
adc_inv    float32 []                   1/(u·Δ): conductance codes → ADC steps
step       float64 []                   Δ (level units per ADC code), 1/u for an ideal ADC
w_scale    float64 [N]                  weight dequantisation scales s_w
corr       float64 [N]                  input-offset correction 2^(a-1)·Σ_k q[k, n]
rows       int64 [G, Rp]                source row of every padded row (pads point at row 0;
                                        their cells are 0)
x_scale    float32 []                   calibrated input scale (``static`` overload only)
=========  ===========================  ===================================================

The body (one function per simulation config, the config baked in as constants):

1. ``Flatten`` x to [M, K]; input scale per row (``ReduceMax(|x|)/(2^(a-1)-1)``) or the
   static one; ``QuantizeLinear`` to the offset-binary code u (uint8; a float path for a > 8).
2. Row groups: ``Pad`` + ``Reshape`` (Rp divides the tile height) or ``Gather`` by ``rows``,
   then ``Transpose`` to [G, M, Rp] (uint8, cheap).
3. Bit-planes as a batched axis: two ``BitShift``s against [J, 1] shift vectors give the
   digits D [G, M, J, Rp] → [G, M·J, Rp].
4. One batched ``QLinearMatMul`` D·cells per row group: int32 column currents, requantised
   by MLAS's fused epilogue ``sat(rint(P·adc_inv) + zp)`` — that *is* the ADC: rounding to
   nearest-even and clipping to [0, 2^b - 1] through the uint8 saturation with the zero
   point ``zp = 256 - 2^b``. (ADCs wider than 8 bits, or ideal ones, take a
   ``MatMulInteger`` + Round/Clip path instead.)
5. Shift-add as a 1×1 ``ConvInteger`` over the (digit, polarity, slice) channels with
   power-of-two uint8 weights (channels whose exponents do not fit 8 bits go to further
   output channels), then a float64 weighted ``ReduceSum`` over row groups and those
   channels — exact integer arithmetic throughout. (Tile mode, one channel per polarity:
   ``DequantizeLinear`` and a float32 sum of small integers, also exact.)
6. Reference column / offset corrections, dequantisation, reshape back to [..., N].
"""
from __future__ import annotations

import hashlib
import json

import numpy as np
from onnx import FunctionProto, TensorProto, helper, numpy_helper

from vitc.runtime.function_builder import FunctionBuilder
from vitc.runtime.nonideal.arith import TINY_SCALE, SimConfig

OP_TYPE = "XbarMatMul"
INPUTS = ["x", "cells", "adc_inv", "step", "w_scale", "corr", "rows"]


def config_key(cfg: SimConfig) -> str:
    """A short stable tag of the arithmetic-relevant config (the function overload name)."""
    keys = ("rows_parallel", "cell_bits", "weight_bits", "input_bits", "dac_bits", "adc_bits", "signed",
            "offset_correction", "input_scaling", "mode")
    blob = json.dumps({k: getattr(cfg, k) for k in keys}, sort_keys=True)
    return "c" + hashlib.sha256(blob.encode()).hexdigest()[:10]


def overload_name(cfg: SimConfig, static: bool = False, cell_zero_point: int = 0) -> str:
    return f"{config_key(cfg)}{'_static' if static else ''}{'_z128' if cell_zero_point else ''}"


def shift_vectors(cfg: SimConfig, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) shift amounts per digit j so that ``((u << L_j) mod 2^width) >> R_j`` = digit j."""
    d, J = cfg.eff_dac_bits, cfg.digits
    left = np.array([max(width - d * (j + 1), 0) for j in range(J)], np.int64)
    right = left + np.array([d * j for j in range(J)], np.int64)
    return left, right


def shift_add_weights(cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 uint8 weights [O, J·P·S, 1, 1] and stage-2 float64 weights [O].

    Channel (j, p, s) carries 2^(d·j + c·s); exponent e goes to output channel
    (p, e // 8) with weight 2^(e mod 8); that channel's sum is later scaled by ±2^(8·band).
    """
    d, c, J, P, S = cfg.eff_dac_bits, cfg.eff_cell_bits, cfg.digits, cfg.polarities, cfg.slices
    emax = d * (J - 1) + c * (S - 1)
    bands = emax // 8 + 1
    O = P * bands
    w1 = np.zeros((O, J * P * S, 1, 1), np.uint8)
    for j in range(J):
        for p in range(P):
            for s in range(S):
                e = d * j + c * s
                w1[p * bands + e // 8, (j * P + p) * S + s, 0, 0] = 1 << (e % 8)
    w2 = np.array([(-1.0 if p == 1 else 1.0) * float(2 ** (8 * b)) for p in range(P) for b in range(bands)], np.float64)
    return w1, w2


def channel_weights(cfg: SimConfig) -> np.ndarray:
    """float64 [J·P·S, 1]: ±2^(d·j + c·s) per channel (the integer path's shift-add)."""
    d, c, J, P, S = cfg.eff_dac_bits, cfg.eff_cell_bits, cfg.digits, cfg.polarities, cfg.slices
    w = [(-1.0 if p == 1 else 1.0) * float(2 ** (d * j + c * s)) for j in range(J) for p in range(P) for s in range(S)]
    return np.array(w, np.float64).reshape(-1, 1)


def _const64(b: FunctionBuilder, value, hint: str) -> str:
    """A float64 Constant (FunctionBuilder.const stores float64 as float32)."""
    y = b._fresh(hint)
    tensor = numpy_helper.from_array(np.asarray(value, np.float64), y)
    b.nodes.append(helper.make_node("Constant", [], [y], value=tensor))
    return y


def _weighted_sum(b: FunctionBuilder, t: str, w: np.ndarray, O: int, const) -> str:
    """Σ_g Σ_o w[o]·t[g, :, o, :] for t [G, M, O, N'] → [M, N'].

    Two single-axis ReduceSums (onnxruntime's ReduceSum over the non-adjacent axes (0, 2) at
    once is an order of magnitude slower).
    """
    if O == 1:
        t = b.op("Squeeze", b.op("Mul", t, const(w.reshape(1, 1), "w2")) if w[0] != 1 else t,
                 b.const(np.array([2], np.int64), "ax"))
    else:
        t = b.reduce("ReduceSum", b.op("Mul", t, const(w.reshape(O, 1), "w2")), [2], keepdims=0)
    return b.reduce("ReduceSum", t, [0], keepdims=0)


def uses_qlinear(cfg: SimConfig) -> bool:
    """The fused QLinearMatMul ADC path (1..8-bit ADCs); otherwise MatMulInteger + Round/Clip."""
    return 1 <= cfg.adc_bits <= 8


def build_xbar_function(cfg: SimConfig, opset: int, static: bool = False, cell_zero_point: int = 0) -> FunctionProto:
    """The ``XbarMatMul`` FunctionProto for ``cfg`` (overload ``<config key>[_static][_z128]``).

    ``cell_zero_point``: 0, or -128 when ``cells`` holds codes up to 255 stored minus 128.
    """
    a, J = cfg.input_bits, cfg.digits
    P, S, Rp = cfg.polarities, cfg.slices, cfg.rows_parallel
    PS = P * S
    half = 1 << (a - 1)
    overload = overload_name(cfg, static, cell_zero_point)
    inputs = INPUTS + (["x_scale"] if static else [])
    b = FunctionBuilder(OP_TYPE, inputs, [], opset, overload=overload,
                        doc=f"Crossbar MVM as the chip computes it ({cfg.describe()}); see vitc/runtime/xbar_ops.py")
    i64 = lambda v: b.const(np.asarray(v, np.int64), "i")  # noqa: E731
    x2 = b.op("Flatten", "x", axis=-1)                                          # [M, K]
    # 1. input scale and offset-binary codes
    if static:
        s_x = "x_scale"
        s_vec = b.op("Expand", s_x, b.op("Slice", b.op("Shape", x2), i64([0]), i64([1])))
    else:
        amax = b.reduce("ReduceMax", b.op("Abs", x2), [1], keepdims=0)
        s_vec = b.op("Max", b.op("Div", amax, b.const(np.float32((1 << (a - 1)) - 1), "qx")),
                     b.const(np.float32(TINY_SCALE), "tiny"))                 # [M]
    if a <= 8:
        # onnxruntime wants a per-axis zero point of shape [M]
        zp = b.op("Expand", b.const(np.array([half], np.uint8), "xzp"), b.op("Shape", s_vec))
        u = b.op("QuantizeLinear", x2, s_vec, zp, axis=0)
        if a < 8:
            u = b.op("Clip", u, b.const(np.uint8(0), "lo"), b.const(np.uint8((1 << a) - 1), "hi"))
        width = 8
    else:
        t = b.op("Round", b.op("Div", x2, b.op("Unsqueeze", s_vec, i64([1]))))
        t = b.op("Clip", t, b.const(np.float32(-half), "lo"), b.const(np.float32(half - 1), "hi"))
        t = b.op("Add", t, b.const(np.float32(half), "off"))
        width = 32                                              # onnxruntime's BitShift has no uint16 kernel
        u = b.op("Cast", t, to=TensorProto.UINT32)
    # 2. row groups: contiguous chunks of Rp rows (Pad + Reshape) or, when Rp does not divide
    #    the tile height, the explicit row map (Gather)
    if cfg.rows % Rp == 0:
        extra = b.op("Sub", b.op("Size", "rows"), b.op("Slice", b.op("Shape", x2), i64([1]), i64([2])))
        pads = b.op("Concat", i64([0, 0, 0]), extra, axis=0)
        grouped = b.op("Reshape", b.op("Pad", u, pads), i64([0, -1, Rp]))
    else:
        grouped = b.op("Gather", u, "rows", axis=1)
    ug = b.op("Transpose", grouped, perm=[1, 0, 2])                              # [G, M, Rp]
    # 3. digits (bit-planes) as a batched axis
    if J == 1 and width == 8:
        D = ug
    else:
        np_t = np.uint8 if width == 8 else np.uint32
        left, right = shift_vectors(cfg, width)
        ue = b.op("Unsqueeze", ug, i64([2]))                                    # [G, M, 1, Rp]
        if J == 1:
            D = ue
        else:
            D = b.op("BitShift", ue, b.const(left.astype(np_t).reshape(J, 1), "shl"), direction="LEFT")
            D = b.op("BitShift", D, b.const(right.astype(np_t).reshape(J, 1), "shr"), direction="RIGHT")
        if width != 8:
            D = b.op("Cast", D, to=TensorProto.UINT8)
        D = b.op("Reshape", D, i64([0, -1, Rp]))                               # [G, M·J, Rp]
    sh_u = b.op("Shape", ug)
    n_cols = b.op("Div", b.op("Slice", b.op("Shape", "cells"), i64([2]), i64([3])), i64([PS]))   # [N']
    cell_zp = b.const(np.int8(cell_zero_point), "gzp")
    # 4./5. conversions and shift-add
    if uses_qlinear(cfg):
        one = b.const(np.float32(1.0), "one")
        yzp = b.const(np.uint8(256 - (1 << cfg.adc_bits)), "adczp")
        codes = b.op("QLinearMatMul", D, one, b.const(np.uint8(0), "dzp"), "cells", "adc_inv", cell_zp, one, yzp)
        w1, w2 = shift_add_weights(cfg)
        O = w1.shape[0]
        shape_g = b.op("Concat", b.op("Slice", sh_u, i64([0]), i64([2])), i64([O]), n_cols, axis=0)
        if O == J * PS and np.array_equal(w1[:, :, 0, 0], np.eye(O, dtype=np.uint8)):
            # one channel per output channel, weights ±1 (tile mode): no shift-add; the sums are
            # small integers (|Y| <= G·P·255), exact in float32
            s1 = b.op("Reshape", b.op("DequantizeLinear", codes, one, yzp), shape_g)          # [G, M, O, N']
            Y = _weighted_sum(b, s1, w2.astype(np.float32), O, b.const)
            Y = b.op("Cast", Y, to=TensorProto.DOUBLE)
        else:
            shape4 = b.op("Concat", i64([-1, J * PS]), n_cols, i64([1]), axis=0)
            s1 = b.op("ConvInteger", b.op("Reshape", codes, shape4), b.const(w1, "w1"), yzp)   # [G·M, O, N', 1]
            s1 = b.op("Reshape", b.op("Cast", s1, to=TensorProto.DOUBLE), shape_g)          # [G, M, O, N']
            Y = _weighted_sum(b, s1, w2, O, lambda v, h: _const64(b, v, h))
    else:
        P_int = b.op("MatMulInteger", D, "cells", b.const(np.uint8(0), "dzp"), cell_zp)    # [G, M·J, C] int32
        if cfg.adc_bits:
            t = b.op("Mul", b.op("Cast", P_int, to=TensorProto.FLOAT), "adc_inv")
            t = b.op("Clip", b.op("Round", t), b.const(np.float32(0), "lo"), b.const(np.float32(cfg.adc_levels), "hi"))
            vals = b.op("Cast", t, to=TensorProto.DOUBLE)
        else:
            vals = b.op("Cast", P_int, to=TensorProto.DOUBLE)
        shape_g = b.op("Concat", b.op("Slice", sh_u, i64([0]), i64([2])), i64([J * PS]), n_cols, axis=0)
        vals = b.op("Reshape", vals, shape_g)                                    # [G, M, J·P·S, N']
        Y = _weighted_sum(b, vals, channel_weights(cfg).ravel(), J * PS, lambda v, h: _const64(b, v, h))
    # 6. corrections, dequantisation
    if cfg.signed == "offset" and cfg.has_ref_column:
        n_out = b.op("Sub", n_cols, i64([1]))
        main = b.op("Slice", Y, i64([0]), n_out, i64([1]))
        ref = b.op("Slice", Y, n_out, b.op("Add", n_out, i64([1])), i64([1]))
        Z = b.op("Sub", b.op("Mul", b.op("Sub", main, ref), "step"), "corr")
    elif cfg.signed == "offset":
        usum = b.reduce("ReduceSum", b.op("Cast", u, to=TensorProto.DOUBLE), [1], keepdims=1)   # [M, 1]
        offs = b.op("Add", b.op("Mul", usum, _const64(b, 1 << (cfg.weight_bits - 1), "woff")), "corr")
        Z = b.op("Sub", b.op("Mul", Y, "step"), offs)
    else:
        Z = b.op("Sub", b.op("Mul", Y, "step"), "corr")
    sx = b.op("Unsqueeze", b.op("Cast", s_vec, to=TensorProto.DOUBLE), i64([1]))
    y = b.op("Cast", b.op("Mul", b.op("Mul", Z, "w_scale"), sx), to=TensorProto.FLOAT)     # [M, N]
    lead = b.op("Slice", b.op("Shape", "x"), i64([0]), i64([-1]))
    n_out_t = b.op("Slice", b.op("Shape", "w_scale"), i64([0]), i64([1]))
    b.output(b.op("Reshape", y, b.op("Concat", lead, n_out_t, axis=0)), "y")
    return b.build()


__all__ = ["OP_TYPE", "INPUTS", "build_xbar_function", "config_key", "overload_name", "shift_add_weights",
           "channel_weights",
           "shift_vectors", "uses_qlinear"]
