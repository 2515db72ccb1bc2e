"""IMC crossbar non-idealities: configuration, weight programming, and a numpy reference.

This module says *what* a crossbar-mapped matrix-vector product computes on the chip;
:mod:`vitc.runtime.nonideal.xbar_op` says *how* onnxruntime computes the same numbers fast (the
``ai.vitc::XbarMatMul`` function body), and :mod:`vitc.runtime.nonideal.simulate` swaps the
crossbar-mapped MVMs of a graph for that op. ``docs/nonideal.md`` is the user-facing
description; the arithmetic, for ``y = x·W`` with ``x`` [M, K] and ``W`` [K, N]:

1. **Weights** (compile time). Per output column ``n`` (or per tensor):
   ``s_w = max|W[:, n]| / Qw`` with ``Qw = 2^(w-1) - 1``; ``q = clip(rint(W / s_w), -Qw, Qw)``.
   ``differential``: ``q⁺ = max(q, 0)`` and ``q⁻ = max(-q, 0)`` (``m = w - 1`` magnitude bits)
   in two arrays; ``offset``: one array holding ``q + 2^(w-1)`` (``m = w`` bits), plus a
   reference column holding ``2^(w-1)`` in every row (or a digital correction). Each stored
   integer is cut into ``S = ⌈m / c⌉`` slices of ``c`` bits (LSB slice first); slice ``s`` of
   weight row ``k`` is the level ``ℓ ∈ [0, 2^c - 1]`` of one cell.
2. **Conductances** (compile time, seeded). In units of one level step:
   ``g = ℓ + g_off`` with ``g_off = L / (r - 1)`` for an on/off ratio ``r`` (``L = 2^c - 1``;
   ``r = 0`` means ideal, ``g_off = 0``); times ``exp(σ·ε)`` (log-normal) or ``(1 + σ·ε)``
   clipped at 0 (Gaussian), ε ~ N(0, 1) per cell. Unused (padding) rows have ``g = 0``.
   The graph stores ``g`` as integer codes ``rint(g·u)`` (int8/uint8); ``u = 1`` when every
   ``g`` is an integer (exact), else ``u = 127 / max g`` codes per level (documented
   approximation: conductances resolved to 1/127 of the largest one).
3. **Inputs** (run time). ``s_x = max|x[m, :]| / (2^(a-1) - 1)`` per input vector (``dynamic``)
   or a calibrated per-layer constant (``static``); ``x_int = clip(rint(x / s_x), -2^(a-1),
   2^(a-1) - 1)``, applied as the offset-binary code ``u = x_int + 2^(a-1)`` ∈ [0, 2^a - 1]
   (so every DAC level is non-negative), cut into ``J = ⌈a / d⌉`` digits of ``d`` DAC bits
   (``d = 1``: bit-serial), LSB digit first.
4. **Crossbar reads and ADC** (run time). Rows are grouped as the chip reads them: tile
   ``t`` holds rows ``[t·R, (t+1)·R)`` and each read activates ``Rp`` (``rows_parallel``) of
   them at once; one *conversion* digitises the current of one column for one (row group,
   input digit, polarity, slice): ``P = Σ_k D_j[k]·g[k]`` (level units). The ADC (``b``
   bits) returns ``code = clip(rint(P / Δ), 0, 2^b - 1)`` and the value ``code·Δ``, with the
   conventional LSB ``Δ = FS / 2^b`` (the top code stands for FS - Δ). Full scale FS is
   ``adc_fullscale`` × the worst-case current ``Rp·(2^d - 1)·(L + g_off)`` (``adc_range =
   fixed``; 1.0: only the all-on corner and variation-boosted currents clip), or from data
   (``calibrated``: a percentile of the calibration currents, rounded up to a power of two).
   Rounding is to nearest, ties to even, computed as ``rint(float32(P·u) · float32(1/(u·Δ)))``.
   ``adc_bits = 0`` means an ideal (lossless) converter.
5. **Digital back end** (run time, exact). Shift-add
   ``Y = Σ_groups Σ_j 2^(d·j) Σ_pol ± Σ_s 2^(c·s) · code·Δ``; offset mapping subtracts the
   reference column's ``Y`` (or ``2^(w-1)·Σ_k u_k`` digitally); then the input offset
   ``2^(a-1)·Σ_k q[k, n]`` (nominal weights), and dequantises ``y = (Y·s_w[n])·s_x[m]``.

:func:`reference_mvm` is a plain loop over groups, digits, polarities and slices that
computes exactly this (float64 where the graph uses float64), and must agree bit for bit
with the ONNX graph.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from vitc.core.errors import VitcInputError
from vitc.core.hardware import load_hw

SIGNED = ("differential", "offset")
VARIATION = ("lognormal", "gaussian")
INPUT_SCALING = ("dynamic", "static")
WEIGHT_SCALING = ("column", "tensor")
OFFSET_CORRECTION = ("column", "digital")
ADC_RANGE = ("fixed", "calibrated")
MODES = ("bitserial", "tile")


@dataclass(frozen=True)
class SimConfig:
    """Everything that decides the simulated arithmetic (see the module docstring).

    Build it from a hardware preset with :meth:`from_hw`; every field can be overridden.
    ``mode``: ``bitserial`` simulates the preset as is (one conversion per DAC digit and
    weight slice); ``tile`` is the fast approximation: one DAC digit of all input bits and
    one multi-level cell per weight (``dac_bits = input_bits``, ``cell_bits = m``) — one
    conversion per row group and column on the full product, like IBM aihwkit's tile model.
    """

    rows: int = 128                 # crossbar rows R (tile height)
    cols: int = 128                 # crossbar columns (only sets the crossbar count)
    rows_parallel: int = 128        # rows read at once = rows per ADC conversion (Rp)
    cell_bits: int = 1
    weight_bits: int = 8
    input_bits: int = 8
    dac_bits: int = 1
    adc_bits: int = 4               # 0 = ideal (lossless) ADC
    signed: str = "offset"
    adc_range: str = "fixed"        # fixed: FS = adc_fullscale × worst case; calibrated: from data
    adc_fullscale: float = 1.0      # fixed: fraction of the worst-case current; calibrated: margin factor
    adc_percentile: float = 100.0   # calibrated: percentile of calibration currents taken as full scale
    input_percentile: float = 99.99 # static input scaling: percentile of calibration |x| taken as max
    offset_correction: str = "column"
    input_scaling: str = "dynamic"
    weight_scaling: str = "column"
    variation: float = 0.0          # σ of the conductance variation
    variation_model: str = "lognormal"
    on_off_ratio: float = 0.0       # 0 = infinite (off cells conduct nothing)
    seed: int = 0
    mode: str = "bitserial"
    source: str = ""                # preset name or file the defaults came from

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_hw(cls, spec: Any = "rram-128", **overrides) -> "SimConfig":
        """Defaults from a hardware preset (name, path or :class:`HardwareSpec`), then overrides."""
        spec = load_hw(spec) if not hasattr(spec, "section") else spec
        xb = spec.section("crossbar")
        base = dict(rows=xb["rows"], cols=xb["cols"], rows_parallel=xb.get("rows_parallel") or xb["rows"],
                    cell_bits=xb["cell_bits"], weight_bits=xb["weight_bits"], input_bits=xb["input_bits"],
                    dac_bits=xb["dac_bits"], adc_bits=xb["adc_bits"], signed=xb["signed"],
                    source=getattr(spec, "name", ""))
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base).checked()

    def checked(self) -> "SimConfig":
        """Validate; returns self. Raises :class:`VitcInputError` naming the bad field."""
        def bad(msg):
            raise VitcInputError(f"invalid simulation setting: {msg}")
        for name in ("rows", "cols", "rows_parallel", "cell_bits", "weight_bits", "input_bits", "dac_bits"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                bad(f"{name} must be a positive integer (got {v!r})")
        if self.rows_parallel > self.rows:
            bad(f"rows_parallel ({self.rows_parallel}) must be <= rows ({self.rows})")
        if not 0 <= self.adc_bits <= 24:
            bad(f"adc_bits must be 0 (ideal) .. 24 (got {self.adc_bits})")
        if self.weight_bits < 2 or self.weight_bits > 24:
            bad(f"weight_bits must be 2..24 (got {self.weight_bits})")
        if self.input_bits < 2 or self.input_bits > 24:
            bad(f"input_bits must be 2..24 (got {self.input_bits})")
        if self.dac_bits > 8 or self.dac_bits > self.input_bits:
            bad(f"dac_bits must be <= 8 and <= input_bits (got {self.dac_bits})")
        if self.cell_bits > 8:
            bad(f"cell_bits must be <= 8 (got {self.cell_bits})")
        for name, allowed in (("signed", SIGNED), ("variation_model", VARIATION), ("input_scaling", INPUT_SCALING),
                              ("weight_scaling", WEIGHT_SCALING), ("offset_correction", OFFSET_CORRECTION),
                              ("mode", MODES), ("adc_range", ADC_RANGE)):
            if getattr(self, name) not in allowed:
                bad(f"{name} must be one of {', '.join(allowed)} (got {getattr(self, name)!r})")
        if not self.adc_fullscale > 0:
            bad(f"adc_fullscale must be > 0 (got {self.adc_fullscale})")
        for name in ("adc_percentile", "input_percentile"):
            if not 0 < getattr(self, name) <= 100:
                bad(f"{name} must be in (0, 100] (got {getattr(self, name)})")
        if self.variation < 0:
            bad(f"variation must be >= 0 (got {self.variation})")
        if self.on_off_ratio != 0 and self.on_off_ratio <= 1:
            bad(f"on_off_ratio must be 0 (ideal) or > 1 (got {self.on_off_ratio})")
        if self.mode == "tile" and self.magnitude_bits > 8:
            bad(f"tile mode stores a whole weight in one cell: needs <= 8 magnitude bits (got {self.magnitude_bits})")
        return self

    def with_(self, **kw) -> "SimConfig":
        return replace(self, **kw).checked()

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(effective_dac_bits=self.eff_dac_bits, effective_cell_bits=self.eff_cell_bits,
                 digits=self.digits, slices=self.slices, polarities=self.polarities)
        return d

    # ------------------------------------------------------------------ derived
    @property
    def magnitude_bits(self) -> int:
        """Bits stored per array: w-1 (differential magnitude) or w (offset code)."""
        return self.weight_bits - 1 if self.signed == "differential" else self.weight_bits

    @property
    def eff_dac_bits(self) -> int:
        return self.input_bits if self.mode == "tile" else self.dac_bits

    @property
    def eff_cell_bits(self) -> int:
        return self.magnitude_bits if self.mode == "tile" else min(self.cell_bits, self.magnitude_bits)

    @property
    def digits(self) -> int:
        """J: input digits (bit-planes) per input, ⌈a/d⌉."""
        return -(-self.input_bits // self.eff_dac_bits)

    @property
    def slices(self) -> int:
        """S: cells per stored weight, ⌈m/c⌉."""
        return -(-self.magnitude_bits // self.eff_cell_bits)

    @property
    def polarities(self) -> int:
        return 2 if self.signed == "differential" else 1

    @property
    def level_max(self) -> int:
        """L: the highest level of one cell."""
        return (1 << self.eff_cell_bits) - 1

    @property
    def g_off(self) -> float:
        """Off-state conductance in level units (0 for an ideal on/off ratio)."""
        return 0.0 if self.on_off_ratio == 0 else self.level_max / (self.on_off_ratio - 1.0)

    @property
    def adc_levels(self) -> int:
        """The highest ADC code, 2^b - 1 (0 for an ideal ADC)."""
        return (1 << self.adc_bits) - 1 if self.adc_bits else 0

    @property
    def worst_case_current(self) -> float:
        """The largest nominal column current of one conversion, level units: Rp·(2^d - 1)·(L + g_off)."""
        return self.rows_parallel * ((1 << self.eff_dac_bits) - 1) * (self.level_max + self.g_off)

    @property
    def fixed_fullscale(self) -> float:
        """FS for ``adc_range = fixed``: adc_fullscale × the worst-case current."""
        return self.adc_fullscale * self.worst_case_current

    @property
    def has_ref_column(self) -> bool:
        return self.signed == "offset" and self.offset_correction == "column"

    @property
    def conversions_per_output(self) -> int:
        """ADC conversions per output value per row group (J·polarities·S, + reference)."""
        return self.digits * self.polarities * self.slices

    def describe(self) -> str:
        rng = (f"full scale {self.adc_fullscale:g}× worst case" if self.adc_range == "fixed"
               else f"full scale 2^⌈log2({self.adc_fullscale:g}× p{self.adc_percentile:g} of calibration currents)⌉")
        adc = f"{self.adc_bits}-bit ADC, {rng}" if self.adc_bits else "ideal ADC"
        var = f", {self.variation_model} variation σ={self.variation:g} (seed {self.seed})" if self.variation else ""
        onoff = f", on/off {self.on_off_ratio:g}" if self.on_off_ratio else ""
        return (f"{self.mode}: {self.input_bits}-bit inputs as {self.digits} digit(s) of {self.eff_dac_bits} bit(s), "
                f"{self.weight_bits}-bit weights ({self.signed}) as {self.polarities}×{self.slices} cell(s) of "
                f"{self.eff_cell_bits} bit(s), {self.rows}-row crossbars read {self.rows_parallel} rows at a time, "
                f"{adc}{var}{onoff}")


# --------------------------------------------------------------------------- weights
@dataclass
class ProgrammedMatrix:
    """One weight matrix as programmed into crossbars (everything the run time needs).

    ``g_codes`` [P, S, G·Rp, N'] integer conductance codes (reference layout; N' = N + 1
    with a reference column); ``cells`` [G, Rp, P·S·N'] the same codes in the graph's GEMM
    layout (column index ``(p·S + s)·N' + n``); ``row_index`` [G·Rp] source row of each
    padded row (-1 = unused); ``unit`` codes per level ``u``; ``q`` the signed integer
    weights; ``w_scale`` [N] dequantisation scales; ``colsum_q`` [N] Σ_k q[k, n].
    """

    K: int
    N: int
    groups: int
    q: np.ndarray
    w_scale: np.ndarray
    colsum_q: np.ndarray
    g_codes: np.ndarray
    cells: np.ndarray
    row_index: np.ndarray
    unit: float
    fullscale: float = 0.0
    name: str = ""
    x_scale: float | None = None
    stats: dict = field(default_factory=dict)

    @property
    def cell_zero_point(self) -> int:
        return int(self.stats.get("cell_zero_point", 0))

    def adc_step(self, cfg: SimConfig) -> float:
        """Δ = FS / 2^b in level units (the conventional ADC LSB; 0 for an ideal ADC)."""
        return self.fullscale / float(1 << cfg.adc_bits) if cfg.adc_bits else 0.0

    @property
    def n_cols(self) -> int:
        """N': logical columns per array (N, + 1 reference column)."""
        return self.g_codes.shape[-1]


def _row_index(K: int, rows: int, rows_parallel: int) -> np.ndarray:
    """Padded row layout: groups of ``rows_parallel`` rows inside tiles of ``rows`` rows."""
    if rows % rows_parallel == 0:
        G = -(-K // rows_parallel)
        idx = np.full(G * rows_parallel, -1, np.int64)
        idx[:K] = np.arange(K)
        return idx
    out = []
    for t0 in range(0, K, rows):
        t1 = min(t0 + rows, K)
        for p0 in range(t0, t1, rows_parallel):
            p1 = min(p0 + rows_parallel, t1)
            grp = np.full(rows_parallel, -1, np.int64)
            grp[: p1 - p0] = np.arange(p0, p1)
            out.append(grp)
    return np.concatenate(out)


def matrix_seed(seed: int, name: str) -> int:
    """Per-matrix RNG seed: stable across runs and independent of the order matrices are programmed."""
    h = hashlib.sha256(f"{seed}|{name}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def quantize_weights(W: np.ndarray, cfg: SimConfig) -> tuple[np.ndarray, np.ndarray]:
    """(q int64 [K, N], s_w float32 [N]): symmetric w-bit quantisation per column or tensor."""
    Qw = (1 << (cfg.weight_bits - 1)) - 1
    W = np.asarray(W, np.float32)
    amax = np.abs(W).max(axis=0) if cfg.weight_scaling == "column" else np.full(W.shape[1], np.abs(W).max(), np.float32)
    s = (amax / np.float32(Qw)).astype(np.float32)
    s = np.where(s > 0, s, np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(W / s), -Qw, Qw).astype(np.int64)
    return q, s


def program_matrix(W: np.ndarray, cfg: SimConfig, name: str = "") -> ProgrammedMatrix:
    """Quantise, slice, and program ``W`` [K, N] into conductance codes (module docstring, steps 1–2)."""
    W = np.asarray(W, np.float32)
    if W.ndim != 2:
        raise ValueError(f"program_matrix expects a 2-D weight, got shape {W.shape}")
    K, N = W.shape
    q, s_w = quantize_weights(W, cfg)
    c, S, P = cfg.eff_cell_bits, cfg.slices, cfg.polarities
    L = cfg.level_max
    if cfg.signed == "differential":
        stored = np.stack([np.maximum(q, 0), np.maximum(-q, 0)])            # [2, K, N]
    else:
        stored = (q + (1 << (cfg.weight_bits - 1)))[None]                     # [1, K, N]
        if cfg.has_ref_column:
            ref = np.full((1, K, 1), 1 << (cfg.weight_bits - 1), np.int64)
            stored = np.concatenate([stored, ref], axis=2)
    Np = stored.shape[2]
    levels = np.stack([(stored >> (c * s)) & L for s in range(S)], axis=1)   # [P, S, K, N']
    g = levels.astype(np.float64)
    if cfg.g_off:
        g = g + cfg.g_off
    if cfg.variation:
        rng = np.random.default_rng(matrix_seed(cfg.seed, name))
        eps = rng.standard_normal(g.shape)
        if cfg.variation_model == "lognormal":
            g = g * np.exp(cfg.variation * eps)
        else:
            g = np.maximum(g * (1.0 + cfg.variation * eps), 0.0)
    integral = not cfg.variation and float(cfg.g_off).is_integer()
    gmax = float(g.max()) if g.size else 0.0
    if integral and gmax <= 255:
        unit = 1.0
    else:
        unit = 127.0 / max(gmax, 1e-12)
    codes = np.rint(g * unit).astype(np.int64)
    row_index = _row_index(K, cfg.rows, cfg.rows_parallel)
    G = len(row_index) // cfg.rows_parallel
    g_codes = np.zeros((P, S, len(row_index), Np), np.int64)
    used = row_index >= 0
    g_codes[:, :, used, :] = codes[:, :, row_index[used], :]
    # int8 keeps onnxruntime on its fast u8·s8 kernels; codes up to 255 are stored minus 128
    # and the graph passes 128 as their zero point (exact)
    cell_zp = 0 if codes.max(initial=0) <= 127 else -128
    cells = (g_codes.reshape(P * S, G, cfg.rows_parallel, Np).transpose(1, 2, 0, 3)
             .reshape(G, cfg.rows_parallel, P * S * Np) + cell_zp).astype(np.int8)
    row_tiles = -(-K // cfg.rows)
    stats = {"codes_per_level": unit, "g_max_levels": gmax, "cell_zero_point": cell_zp,
             "crossbars": row_tiles * -(-(Np * S * P) // cfg.cols),
             "crossbars_weights": row_tiles * -(-(N * S * P) // cfg.cols)}      # as the cost model maps W
    return ProgrammedMatrix(K, N, G, q, s_w, q.sum(axis=0), g_codes, np.ascontiguousarray(cells), row_index,
                            unit, cfg.fixed_fullscale, name, None, stats)


# --------------------------------------------------------------------------- inputs
def input_scale(x: np.ndarray, cfg: SimConfig, static_scale: float | None = None) -> np.ndarray:
    """s_x float32 [M]: per-vector absmax / (2^(a-1) - 1) (dynamic) or the calibrated constant."""
    M = x.shape[0]
    if cfg.input_scaling == "static":
        if static_scale is None:
            raise ValueError("static input scaling needs a calibrated scale")
        return np.full(M, np.float32(static_scale), np.float32)
    qx = np.float32((1 << (cfg.input_bits - 1)) - 1)
    s = (np.abs(x).max(axis=1) / qx).astype(np.float32)
    return np.maximum(s, np.float32(TINY_SCALE)).astype(np.float32)


TINY_SCALE = 1e-30


def input_codes(x: np.ndarray, s_x: np.ndarray, cfg: SimConfig) -> np.ndarray:
    """u int64 [M, K]: offset-binary input codes ``clip(rint(x/s_x), -2^(a-1), 2^(a-1)-1) + 2^(a-1)``."""
    half = 1 << (cfg.input_bits - 1)
    xi = np.rint(x.astype(np.float32) / s_x[:, None].astype(np.float32))
    return (np.clip(xi, -half, half - 1) + half).astype(np.int64)


# --------------------------------------------------------------------------- reference
def adc_inverse(pm: ProgrammedMatrix, cfg: SimConfig) -> np.float32:
    """float32 ``1/(u·Δ)``: converts a column current in conductance codes to ADC steps."""
    return np.float32(1.0 / (pm.unit * pm.adc_step(cfg))) if cfg.adc_bits else np.float32(1.0)


def adc_convert(P_codes: np.ndarray, pm: ProgrammedMatrix, cfg: SimConfig) -> np.ndarray:
    """ADC codes for column currents ``P_codes`` (integers, in conductance codes)."""
    if not cfg.adc_bits:
        return P_codes.astype(np.float64)
    t = np.float32(P_codes.astype(np.float32)) * adc_inverse(pm, cfg)
    return np.clip(np.rint(t), 0, cfg.adc_levels).astype(np.float64)


def output_step(pm: ProgrammedMatrix, cfg: SimConfig) -> float:
    """Level units per ADC code (Δ), or per conductance code (1/u) for an ideal ADC."""
    return pm.adc_step(cfg) if cfg.adc_bits else 1.0 / pm.unit


def reference_mvm(x: np.ndarray, pm: ProgrammedMatrix, cfg: SimConfig, return_parts: bool = False):
    """What the chip computes for ``x`` [..., K] · W: float32 [..., N] (module docstring).

    A straightforward loop over row groups, input digits, polarities and slices; integer
    sums are exact (int64) and the digital back end runs in float64 in the same order as
    the graph, so the ONNX function body must agree bit for bit.
    """
    x = np.asarray(x, np.float32)
    lead = x.shape[:-1]
    x2 = x.reshape(-1, pm.K)
    s_x = input_scale(x2, cfg, pm.x_scale)
    u = input_codes(x2, s_x, cfg)
    Rp, d, c = cfg.rows_parallel, cfg.eff_dac_bits, cfg.eff_cell_bits
    u_pad = np.where(pm.row_index >= 0, u[:, np.maximum(pm.row_index, 0)], 0)   # [M, G·Rp]
    Y = np.zeros((x2.shape[0], pm.n_cols), np.float64)
    for g in range(pm.groups):
        rows = slice(g * Rp, (g + 1) * Rp)
        for j in range(cfg.digits):
            D = (u_pad[:, rows] >> (d * j)) & ((1 << d) - 1)
            for p in range(cfg.polarities):
                sign = -1.0 if p == 1 else 1.0
                for s in range(cfg.slices):
                    P = D @ pm.g_codes[p, s, rows, :]                 # exact column currents (codes)
                    Y += sign * float(2 ** (d * j + c * s)) * adc_convert(P, pm, cfg)
    step = output_step(pm, cfg)
    corr = float(1 << (cfg.input_bits - 1)) * pm.colsum_q.astype(np.float64)
    if cfg.signed == "offset" and cfg.has_ref_column:
        Z = (Y[:, : pm.N] - Y[:, pm.N: pm.N + 1]) * step - corr
    elif cfg.signed == "offset":
        usum = u.sum(axis=1, keepdims=True).astype(np.float64)
        Z = Y * step - (usum * float(1 << (cfg.weight_bits - 1)) + corr)
    else:
        Z = Y * step - corr
    y = ((Z * pm.w_scale.astype(np.float64)) * s_x.astype(np.float64)[:, None]).astype(np.float32)
    y = y.reshape(*lead, pm.N)
    if return_parts:
        return y, {"s_x": s_x, "u": u, "Y": Y}
    return y


def ideal_quantized_mvm(x: np.ndarray, pm: ProgrammedMatrix, cfg: SimConfig):
    """``x_int · q`` dequantised: the product with quantised inputs and weights and nothing else."""
    x = np.asarray(x, np.float32)
    x2 = x.reshape(-1, pm.K)
    s_x = input_scale(x2, cfg, pm.x_scale)
    xi = input_codes(x2, s_x, cfg) - (1 << (cfg.input_bits - 1))
    y = (xi @ pm.q).astype(np.float64) * pm.w_scale.astype(np.float64) * s_x.astype(np.float64)[:, None]
    return y.astype(np.float32).reshape(*x.shape[:-1], pm.N)


# --------------------------------------------------------------------------- calibration
def _sample_rows(x: np.ndarray, K: int, max_vectors: int, seed: int) -> np.ndarray:
    x2 = np.asarray(x, np.float32).reshape(-1, K)
    if len(x2) > max_vectors:
        idx = np.random.default_rng(seed).choice(len(x2), max_vectors, replace=False)
        x2 = x2[np.sort(idx)]
    return x2


def calibrate_input_scale(pm: ProgrammedMatrix, cfg: SimConfig, x: np.ndarray) -> float:
    """Set ``pm.x_scale`` = percentile(|x|) / (2^(a-1) - 1) from calibration inputs ``x`` [..., K]."""
    amax = float(np.percentile(np.abs(np.asarray(x, np.float32)), cfg.input_percentile))
    pm.x_scale = float(np.float32(max(amax, TINY_SCALE) / ((1 << (cfg.input_bits - 1)) - 1)))
    return pm.x_scale


def conversion_currents(x: np.ndarray, pm: ProgrammedMatrix, cfg: SimConfig, max_vectors: int = 256) -> np.ndarray:
    """Every column current (level units) the ADCs would see for (a sample of) the inputs ``x``.

    Shape [G, M·J, P·S·N'] for M ≤ ``max_vectors`` sampled input vectors.
    """
    x2 = _sample_rows(x, pm.K, max_vectors, cfg.seed)
    s_x = input_scale(x2, cfg, pm.x_scale)
    u = input_codes(x2, s_x, cfg)
    u_pad = np.where(pm.row_index >= 0, u[:, np.maximum(pm.row_index, 0)], 0).reshape(len(x2), pm.groups, -1)
    d = cfg.eff_dac_bits
    D = np.stack([(u_pad >> (d * j)) & ((1 << d) - 1) for j in range(cfg.digits)], axis=2)   # [M, G, J, Rp]
    D = D.transpose(1, 0, 2, 3).reshape(pm.groups, -1, cfg.rows_parallel).astype(np.float32)
    cells = pm.cells.astype(np.float32) - np.float32(pm.cell_zero_point)
    return np.matmul(D, cells) / np.float32(pm.unit)


def calibrate_adc(pm: ProgrammedMatrix, cfg: SimConfig, x: np.ndarray, max_vectors: int = 256) -> float:
    """Set ``pm.fullscale`` (``adc_range = calibrated``): adc_fullscale × the ``adc_percentile``
    of the calibration currents, rounded up to a power of two (level units, at least 1), so the
    LSB Δ = FS/2^b stays a power-of-two multiple of the unit cell current."""
    P = conversion_currents(x, pm, cfg, max_vectors)
    fs = float(np.percentile(P, cfg.adc_percentile)) * cfg.adc_fullscale if P.size else 0.0
    pm.fullscale = float(2.0 ** math.ceil(math.log2(max(fs, 1.0))))
    pm.stats["adc_clip_fraction"] = float((P > pm.fullscale).mean()) if P.size else 0.0
    return pm.fullscale


__all__ = ["SimConfig", "ProgrammedMatrix", "program_matrix", "quantize_weights", "reference_mvm",
           "ideal_quantized_mvm", "input_scale", "input_codes", "adc_convert", "adc_inverse", "output_step",
           "matrix_seed", "MODES", "calibrate_input_scale", "calibrate_adc", "conversion_currents"]
