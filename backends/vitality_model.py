"""ViTALiTy accelerator model: Taylor attention (and a softmax baseline) on a systolic array.

What is modelled
----------------
The attention *core* of one layer (no Q/K/V/output projections, no MLP), per head,
for ``n`` tokens and head dimension ``d`` (Algorithm 1 of Dass et al., HPCA'23,
arXiv:2211.05109), on the accelerator of Table III (``core/hw/vitality.toml``):

====  ==========================================  =====================================
step  work (per head)                             unit
====  ==========================================  =====================================
1     K_bar = (1/n) 1^T K        (n*d adds, d div)  accumulator + divider
1     K_hat = K - 1 K_bar        (n*d subs)         adder
2     G = K_hat^T V              (GEMM d x n x d)   SA-General
3     k_hat_sum, v_sum           (2 n*d adds)       accumulator (while SA-General does G)
4     t_D = n sqrt(d) + Q k_sum^T (GEMM n x d x 1, n adds)   SA-Diag + adder
5     T_N = sqrt(d) 1 v_sum + Q G (GEMM n x d x d, n*d adds)  SA-General + adder
6     Z = diag(t_D)^-1 T_N       (n*d divs)         divider
====  ==========================================  =====================================

Steps 4 and 5 run in parallel (Q broadcast to SA-General and SA-Diag) and steps 4-6
are fused on the SA output stream (Sec. IV-C, Fig. 7).  A 64-lane unit does one
64-wide row per cycle, so an ``n x d`` element-wise pass takes ``n * ceil(d/64)``
cycles.

Systolic-array schedules (``schedule=``)
----------------------------------------
GEMM naming follows :mod:`vitc.backends.gemm_cycles` (C[MxN] = A[MxK] B[KxN]; the
paper's "input stationary, down-forward accumulation" of Fig. 8a is SCALE-Sim ``ws``
with the right operand B stationary).

``"pipelined"`` (default; the paper's intra-layer pipeline)
    *down-forward*: every product is ``ws`` (V stationary for G = K_hat^T V, G
    stationary for Q G).  The array keeps one accumulation pattern, so consecutive
    folds - across products and heads - stream back to back (each wavefront follows
    the previous one, no per-fold skew/drain) and stationary tiles are double
    buffered: a fold occupies the array ``max(T, R)`` cycles (``T`` streamed rows, ``R``
    rows to shift the next tile in).  The one true dependency, Q G needing the whole
    G, costs a bubble ``B = (R + C - 2) + R`` (drain the last G fold, load G); it is
    filled with the next head's G folds (heads are independent), so only
    ``max(0, B - G_stream)`` is exposed per head, and the full ``B`` once per layer
    (last head), plus one first load ``R`` and one final drain ``R + C - 2``.

    *G-stationary*: G in ``os`` (outputs stay in the PEs), then Q G in ``ws`` with G
    already resident (no load).  The array changes accumulation pattern twice per
    head (inner-PE -> down-forward -> inner-PE), and each change needs the array
    drained, so each product pays its own fill and drain - exactly SCALE-Sim's
    isolated-fold cost: ``os(G) + ws(QG) - R`` (+1 each for SCALE-Sim's -1).  Heads
    cannot overlap because G occupies the PEs until Q G has finished.

``"scalesim"`` / ``"double-buffered"``
    Every product costed in isolation with :func:`gemm_cycles` in that mode (same
    operand choices).  These do **not** reproduce the paper's ordering: in isolation
    G-stationary needs fewer cycles than down-forward (1 fold of ``os`` vs
    ``ceil(n/R)`` folds of ``ws`` for G).  Kept to show why the pipeline matters.

Energy models (``energy=``)
---------------------------
``"busy"`` (default; reproduces Table V): every unit burns its Table III power for
every cycle it is busy (scheduled), whatever fraction of its PEs/lanes does useful
work: ``E_unit = P_unit * busy_cycles / f``.  Idle units are clock gated.

``"activity"``: energy per operation = Table III power at full utilisation,
``e_MAC = P_SA / (R C f)`` (0.624 pJ for SA-General), ``e_op = P_unit / (64 f)``
for the 64-lane units, times the actual operation counts.  It is dataflow-agnostic
and lands ~24 % below Table V: Table V therefore charges occupancy, not activity.

Data access (both models): on-chip SRAM words x ``e_word``, with
``e_word = P_SRAM / (4 buffers x 64 words x f) = 0.179 pJ`` (each Q/K/V/O buffer
delivers one 64-word line per cycle at its Table III power).  Words counted: each
GEMM's operand reads, output writes and partial-sum read-backs
(:func:`vitc.backends.gemm_cycles.sram_traffic`; a G-stationary G is neither
written nor re-read), plus the pre-processors' streams: K read for K_bar, K read and
K_hat written for K_hat, K_hat and V read for k_hat_sum / v_sum (5 n d words).  The
post-processing (T_N, t_D, Z) is fused on the SA output stream (its writes are the
GEMM output writes).  DRAM (Q, K, V in and Z out once per head, LPDDR4 surrogate)
is reported separately and is not part of Table V's on-chip figures.

Result for DeiT-Base (L=12, h=12, n=197, d=64, batch 1) - see
``benchmarks/vitality_table5.py`` and ``docs/systolic.md`` for the table.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from vitc.backends.gemm_cycles import gemm_cost, sram_traffic
from vitc.core.hardware import HW_DIR, load_hw  # noqa: F401 - HW_DIR re-exported for callers

DATAFLOWS = ("down-forward", "g-stationary")
TAYLOR_VARIANTS = ("paper", "code")
CENTERINGS = ("tokens", "features", "none")
SCHEDULES = ("pipelined", "scalesim", "double-buffered")
ENERGIES = ("busy", "activity")

#: ViTALiTy Table V, energy in uJ: {model: {dataflow: {cell: value}}}
TABLE5_UJ = {
    "deit-base": {
        "g-stationary": {"data_access": 2.92, "other": 3.92, "systolic": 215.0, "overall": 222.0},
        "down-forward": {"data_access": 3.76, "other": 3.92, "systolic": 191.0, "overall": 198.0},
    },
}

# ----------------------------------------------------------------------------- hardware


@dataclass(frozen=True)
class VitalityHW:
    """The numbers of ``vitality.toml`` the model uses (powers in mW, sizes in PEs/lanes)."""

    freq_mhz: float
    bits: int
    rows: int
    cols: int
    diag_rows: int
    diag_cols: int
    power_mw: dict            #: unit name -> power (mW), Table III
    width: dict               #: 64-lane unit name -> lanes
    sram_power_mw: float
    sram_buffers: int
    sram_words_per_access: int
    dram_pj_per_bit: float

    @property
    def cycle_ns(self) -> float:
        """Clock period in ns."""
        return 1e3 / self.freq_mhz

    def unit_pj_per_cycle(self, unit: str) -> float:
        """Energy (pJ) one busy cycle of ``unit`` costs: P[mW] / f[MHz] * 1e3."""
        return self.power_mw[unit] / self.freq_mhz * 1e3

    @property
    def sram_pj_per_word(self) -> float:
        """On-chip SRAM energy per word: P / (buffers x words_per_access x f)."""
        return (self.sram_power_mw / self.freq_mhz * 1e3
                / (self.sram_buffers * self.sram_words_per_access))

    @property
    def dram_pj_per_word(self) -> float:
        """DRAM energy per ``bits``-bit word (surrogate pJ/bit x bits)."""
        return self.dram_pj_per_bit * self.bits


def load_preset(name_or_path: str | Path = "vitality") -> dict:
    """The validated description (dict) of a systolic preset name or TOML file."""
    return load_hw(name_or_path).data


def vitality_hw(name_or_path: str | Path | dict = "vitality") -> VitalityHW:
    """:class:`VitalityHW` from a preset name, TOML path or an already-loaded dict."""
    t = name_or_path if isinstance(name_or_path, dict) else load_preset(name_or_path)
    u = t["units"]
    return VitalityHW(
        freq_mhz=float(t["clock"]["freq_mhz"]), bits=int(t["precision"]["bits"]),
        rows=int(t["systolic"]["rows"]), cols=int(t["systolic"]["cols"]),
        diag_rows=int(t["systolic"]["diag_rows"]), diag_cols=int(t["systolic"]["diag_cols"]),
        power_mw={k: float(v["power_mw"]) for k, v in u.items()},
        width={k: int(v["width"]) for k, v in u.items() if "width" in v},
        sram_power_mw=float(t["sram"]["power_mw"]),
        sram_buffers=len(t["sram"]["buffers"]),
        sram_words_per_access=int(t["sram"]["words_per_access"]),
        dram_pj_per_bit=float(t["dram"]["energy_pj_per_bit"]),
    )


# ----------------------------------------------------------------------------- results


@dataclass
class AttentionCost:
    """Cost of the attention cores of a whole model (all layers, heads, batch).

    ``busy_cycles``: per unit, cycles the unit is busy (clock cycles);
    ``ops``: per unit, useful operations (MACs for the arrays, element ops otherwise);
    ``energy_uj``: per Table V cell (``systolic``, ``other``, ``data_access``) plus
    ``overall`` (their sum) and ``dram`` (separate, not in ``overall``);
    ``unit_energy_uj``: per unit; ``latency_cycles``: end-to-end estimate.
    """

    kind: str
    dataflow: str
    schedule: str
    energy_model: str
    n: int
    d: int
    heads: int
    layers: int
    batch: int
    busy_cycles: dict = field(default_factory=dict)
    ops: dict = field(default_factory=dict)
    sram_words: int = 0
    dram_words: int = 0
    unit_energy_uj: dict = field(default_factory=dict)
    energy_uj: dict = field(default_factory=dict)
    latency_cycles: int = 0
    freq_mhz: float = 500.0
    steps: list = field(default_factory=list)   #: per-head :class:`Step` list (Taylor)

    @property
    def latency_us(self) -> float:
        """End-to-end latency estimate in microseconds."""
        return self.latency_cycles / self.freq_mhz


# ----------------------------------------------------------------------------- SA schedules


def _ws_fold(M: int, N: int, K: int, R: int, C: int):
    """(folds, T) of C[MxN] = A[MxK] B[KxN] in ws (B stationary)."""
    g = gemm_cost(M, N, K, R, C, "ws")
    return g.folds, g.stream_len


def sa_layer_cycles_taylor(n: int, d: int, heads: int, R: int, C: int,
                           dataflow: str, schedule: str = "pipelined") -> int:
    """SA-General cycles for the Taylor products (G and Q G) of ``heads`` heads.

    Shapes per head: G = K_hat^T V is (d x n)(n x d); Q G is (n x d)(d x d).
    ``heads`` is heads x batch of one layer (independent sequences).
    Returns clock cycles of one layer; see the module docstring for the rules.
    """
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be one of {DATAFLOWS}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}")
    if schedule != "pipelined":
        if dataflow == "down-forward":
            per = (gemm_cost(d, d, n, R, C, "ws", schedule).cycles + 1
                   + gemm_cost(n, d, d, R, C, "ws", schedule).cycles + 1)
        else:
            per = (gemm_cost(d, d, n, R, C, "os", schedule).cycles + 1
                   + gemm_cost(n, d, d, R, C, "ws", schedule).cycles + 1 - R)
        return heads * per - 1
    if dataflow == "g-stationary":
        per = (gemm_cost(d, d, n, R, C, "os").cycles + 1
               + gemm_cost(n, d, d, R, C, "ws").cycles + 1 - R)
        return heads * per
    fg, tg = _ws_fold(d, d, n, R, C)          # G: V stationary, K_hat^T rows stream
    fq, tq = _ws_fold(n, d, d, R, C)          # QG: G stationary, Q rows stream
    g_stream = fg * max(tg, R)
    steady = g_stream + fq * max(tq, R)
    bubble = (R + C - 2) + R                  # drain last G fold, load G
    exposed = max(0, bubble - g_stream)       # hidden behind the next head's G
    return R + heads * steady + (heads - 1) * exposed + bubble + (R + C - 2)


def sa_layer_cycles_stream(products: list[tuple[int, int, int]], heads: int, R: int, C: int,
                           schedule: str = "pipelined") -> int:
    """Cycles of independent ws products per head, ``heads`` times, on an R x C array.

    ``products``: list of (M, N, K).  Pipelined: folds stream back to back, each
    ``max(T, R)`` cycles, one first load ``R`` and one final drain ``R + C - 2`` per
    layer.  Other schedules: isolated :func:`gemm_cycles` per product.
    Used for SA-Diag (Q k_sum^T) and for the softmax baseline (whose only
    dependency, S before S V, streams row by row and needs no bubble).
    """
    if schedule != "pipelined":
        per = sum(gemm_cost(M, N, K, R, C, "ws", schedule).cycles + 1 for M, N, K in products)
        return heads * per - 1
    per = 0
    for M, N, K in products:
        f, t = _ws_fold(M, N, K, R, C)
        per += f * max(t, R)
    return R + heads * per + (R + C - 2)


# ----------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Step:
    """One step of Algorithm 1 for ONE head on one unit.

    ``ops``: useful operations (MACs on the arrays, element ops on the 64-lane
    units); ``cycles``: busy cycles of that unit for this head - for the 64-lane
    units ``rows * ceil(width / 64)``, for the arrays the product costed in
    isolation (SCALE-Sim mode, +1), for information: the arrays' busy cycles in
    :class:`AttentionCost` come from the layer schedule instead.
    """

    step: str
    unit: str
    ops: int
    cycles: int
    gemm: object = None       #: :class:`GemmCost` for array steps


def taylor_head_steps(n: int, d: int, hw: VitalityHW,
                      dataflow: str = "down-forward", *, variant: str = "paper",
                      centering: str | None = None, simplified: bool = False,
                      masked: bool = False) -> list[Step]:
    """Algorithm 1 for one head (n tokens, head dim d) as a list of :class:`Step`.

    The default (``variant="paper"``, centring over tokens) is the paper's Algorithm 1.
    The other forms of ``ai.vitc::TaylorAttention`` (``runtime/taylor_ops.py``):

    * ``centering="features"``: K_bar per key (row means): the divider makes ``n``
      means instead of ``d``; ``"none"``: no K_bar / K_hat steps.
    * ``simplified`` (paper/tokens, k_hat_sum = 0): Z = v_sum/n + Q (s/n G): only
      v_sum is accumulated, G is scaled on SA-Diag (d x d), v_sum/n on the divider
      (d), one add per output on the adder; no t_D, no Z division.
    * ``variant="code"``: Z = s Q (K_hat^T V): K_bar/K_hat, G, s G (SA-Diag), Q G.
    * ``masked``: key weights w applied to K_hat rows on SA-Diag (n*d) and n_w
      accumulated (n).
    Element-wise multiplications run on SA-Diag (64 MAC PEs; a diagonal-matrix
    product is what it computes).
    """
    R, C = hw.rows, hw.cols
    w = hw.width
    rows = lambda unit, r, width: _rows64(r, width, w[unit])  # noqa: E731
    diag_lanes = hw.diag_rows * hw.diag_cols
    if variant not in TAYLOR_VARIANTS:
        raise ValueError(f"variant must be one of {TAYLOR_VARIANTS}")
    centering = centering or ("tokens" if variant == "paper" else "features")
    if centering not in CENTERINGS:
        raise ValueError(f"centering must be one of {CENTERINGS}")
    if dataflow == "down-forward":
        g = gemm_cost(d, d, n, R, C, "ws")                    # V stationary
    else:
        g = gemm_cost(d, d, n, R, C, "os")                    # G stays in the PEs
    qg = gemm_cost(n, d, d, R, C, "ws")                       # G stationary
    qk = gemm_cost(n, 1, d, hw.diag_rows, hw.diag_cols, "ws")  # k_hat_sum stationary
    qg_cycles = qg.cycles + 1 - (R if dataflow == "g-stationary" else 0)
    pre = []
    if centering == "tokens":
        pre = [Step("1 K_bar = sum_t K", "accumulator_array", n * d, rows("accumulator_array", n, d)),
               Step("1 K_bar /= n", "divider_array", d, math.ceil(d / w["divider_array"])),
               Step("1 K_hat = K - K_bar", "adder_array", n * d, rows("adder_array", n, d))]
    elif centering == "features":
        pre = [Step("1 K_bar = row sums of K", "accumulator_array", n * d,
                    rows("accumulator_array", n, d)),
               Step("1 K_bar /= d", "divider_array", n, math.ceil(n / w["divider_array"])),
               Step("1 K_hat = K - K_bar", "adder_array", n * d, rows("adder_array", n, d))]
    if masked:
        pre += [Step("1 K_hat *= w", "sa_diag", n * d, _rows64(n, d, diag_lanes)),
                Step("1 n_w = sum w", "accumulator_array", n, math.ceil(n / w["accumulator_array"]))]
    gstep = Step("2 G = K_hat^T V", "sa_general", g.macs, g.cycles + 1, g)
    qgstep = Step("5 Q G", "sa_general", qg.macs, qg_cycles, qg)
    if variant == "code":
        return pre + [gstep, Step("5 G *= s", "sa_diag", d * d, _rows64(d, d, diag_lanes)), qgstep]
    if simplified:
        return pre + [
            gstep,
            Step("3 v_sum", "accumulator_array", n * d, rows("accumulator_array", n, d)),
            Step("5 G *= s/n", "sa_diag", d * d, _rows64(d, d, diag_lanes)),
            Step("5 v_sum /= n", "divider_array", d, math.ceil(d / w["divider_array"])),
            qgstep,
            Step("6 Z = v_sum/n + QG", "adder_array", n * d, rows("adder_array", n, d)),
        ]
    return pre + [
        gstep,
        Step("3 k_hat_sum, v_sum", "accumulator_array", 2 * n * d,
             2 * rows("accumulator_array", n, d)),
        Step("4 Q k_hat_sum^T", "sa_diag", qk.macs, qk.cycles + 1, qk),
        Step("4 t_D = n sqrt(d) + Qk", "adder_array", n, math.ceil(n / w["adder_array"])),
        qgstep,
        Step("5 T_N = sqrt(d) v_sum + QG", "adder_array", n * d, rows("adder_array", n, d)),
        Step("6 Z = T_N / t_D", "divider_array", n * d, rows("divider_array", n, d)),
    ]


def softmax_head_steps(n: int, d: int, hw: VitalityHW, masked: bool = False) -> list[Step]:
    """Softmax attention for one head on the same array (Table II "BASELINE" steps).

    S = Q K^T (K^T stationary), softmax on the 64-lane units (row max-subtract on the
    adder, exp on the exp array, row sums on the accumulator, division on the divider;
    a mask is one more add per score), Z = P V (V stationary).
    """
    R, C = hw.rows, hw.cols
    w = hw.width
    s = gemm_cost(n, n, d, R, C, "ws")
    z = gemm_cost(n, d, n, R, C, "ws")
    add = (2 if masked else 1) * n * n
    return [
        Step("1 S = Q K^T", "sa_general", s.macs, s.cycles + 1, s),
        Step("2 S - rowmax" + (" + mask" if masked else ""), "adder_array", add,
             (2 if masked else 1) * _rows64(n, n, w["adder_array"])),
        Step("2 exp", "exp_array", n * n, _rows64(n, n, w["exp_array"])),
        Step("2 row sums", "accumulator_array", n * n, _rows64(n, n, w["accumulator_array"])),
        Step("2 P = exp / sum", "divider_array", n * n, _rows64(n, n, w["divider_array"])),
        Step("3 Z = P V", "sa_general", z.macs, z.cycles + 1, z),
    ]


def _rows64(n_rows: int, width_elems: int, lanes: int) -> int:
    """Cycles for a ``lanes``-wide unit to process ``n_rows`` rows of ``width_elems``."""
    return n_rows * math.ceil(width_elems / lanes)


def _gemm_words(M: int, N: int, K: int, R: int, C: int, df: str, *, skip_c_write=False,
                skip_b_read=False) -> int:
    """SRAM words of one GEMM (operand reads + output writes + psum read-backs)."""
    reads, writes = sram_traffic(M, N, K, R, C, df)
    w = reads["A"] + reads["C"] + (0 if skip_b_read else reads["B"])
    return w + (0 if skip_c_write else writes["C"])


def _finish(cost: AttentionCost, hw: VitalityHW, energy: str, mac_units: tuple) -> AttentionCost:
    """Fill unit energies, Table V cells and latency from busy cycles / ops."""
    if energy not in ENERGIES:
        raise ValueError(f"energy must be one of {ENERGIES}")
    ue = {}
    for unit, cyc in cost.busy_cycles.items():
        if energy == "busy":
            ue[unit] = cyc * hw.unit_pj_per_cycle(unit) * 1e-6
        else:
            if unit == "sa_general":
                lanes = hw.rows * hw.cols
            elif unit == "sa_diag":
                lanes = hw.diag_rows * hw.diag_cols
            else:
                lanes = hw.width[unit]
            ue[unit] = cost.ops.get(unit, 0) * hw.unit_pj_per_cycle(unit) / lanes * 1e-6
    cost.unit_energy_uj = ue
    sa = sum(v for k, v in ue.items() if k in mac_units)
    other = sum(v for k, v in ue.items() if k not in mac_units)
    data = cost.sram_words * hw.sram_pj_per_word * 1e-6
    cost.energy_uj = {"systolic": sa, "other": other, "data_access": data,
                      "overall": sa + other + data,
                      "dram": cost.dram_words * hw.dram_pj_per_word * 1e-6}
    cost.freq_mhz = hw.freq_mhz
    return cost


def taylor_attention_cost(n: int, d: int, heads: int, layers: int = 1, batch: int = 1, *,
                          dataflow: str = "down-forward", schedule: str = "pipelined",
                          energy: str = "busy", hw: VitalityHW | str | None = None,
                          variant: str = "paper", centering: str | None = None,
                          simplified: bool = False, masked: bool = False) -> AttentionCost:
    """ViTALiTy Taylor attention (Algorithm 1) on the ViTALiTy accelerator.

    Args:
        n: tokens; d: head dimension; heads, layers, batch: counts.
        dataflow: ``"down-forward"`` (paper's proposal, all products ws) or
            ``"g-stationary"`` (G in os, kept in the PEs for Q G).
        schedule: ``"pipelined"`` (intra-layer pipeline, default), ``"scalesim"`` or
            ``"double-buffered"`` (products in isolation).
        energy: ``"busy"`` (power x busy cycles, default) or ``"activity"``.
        hw: :class:`VitalityHW`, a preset name / path, or None for ``vitality``.
        variant, centering, simplified, masked: the ``ai.vitc::TaylorAttention`` form
            (see :func:`taylor_head_steps`); the defaults are the paper's Algorithm 1.
    Returns:
        :class:`AttentionCost` for all ``layers`` x ``heads`` x ``batch`` head instances.
    """
    hw = hw if isinstance(hw, VitalityHW) else vitality_hw(hw or "vitality")
    R, C = hw.rows, hw.cols
    hb = heads * batch                     # independent head instances per layer
    inst = hb * layers
    centering = centering or ("tokens" if variant == "paper" else "features")
    with_td = variant == "paper" and not simplified   # t_D = n + Q k_hat_sum on SA-Diag

    steps = taylor_head_steps(n, d, hw, dataflow, variant=variant, centering=centering,
                              simplified=simplified, masked=masked)
    per_head = {u: 0 for u in ("accumulator_array", "adder_array", "divider_array", "sa_diag")}
    ops = {}
    for st in steps:
        per_head[st.unit] = per_head.get(st.unit, 0) + st.cycles
        ops[st.unit] = ops.get(st.unit, 0) + st.ops * inst
    acc_c, add_c, div_c = (per_head[u] for u in
                           ("accumulator_array", "adder_array", "divider_array"))

    sa = sa_layer_cycles_taylor(n, d, hb, R, C, dataflow, schedule) * layers
    if with_td:
        diag = sa_layer_cycles_stream([(n, 1, d)], hb, hw.diag_rows, hw.diag_cols,
                                      schedule) * layers
        diag += (per_head["sa_diag"] - next(s.cycles for s in steps if s.step.startswith("4 Q"))) * inst
    else:                                  # only element-wise scaling on SA-Diag
        diag = per_head["sa_diag"] * inst
    busy = {"sa_general": sa, "sa_diag": diag, "accumulator_array": acc_c * inst,
            "adder_array": add_c * inst, "divider_array": div_c * inst}

    # on-chip SRAM words per head
    if dataflow == "down-forward":
        gemm_w = _gemm_words(d, d, n, R, C, "ws") + _gemm_words(n, d, d, R, C, "ws")
    else:  # G stays in the PEs: no G write, no G read for QG
        gemm_w = (_gemm_words(d, d, n, R, C, "os", skip_c_write=True)
                  + _gemm_words(n, d, d, R, C, "ws", skip_b_read=True))
    diag_w = (_gemm_words(n, 1, d, hw.diag_rows, hw.diag_cols, "ws") - n * d  # Q is broadcast
              if with_td else 0)
    # K for K_bar; K in + K_hat out; then the sums read K_hat and V (paper), V (simplified)
    centre_w = 3 * n * d if centering != "none" else 0
    sums_w = 0 if variant == "code" else (n * d if simplified else 2 * n * d)
    pre_w = centre_w + sums_w
    cost = AttentionCost(kind="taylor", dataflow=dataflow, schedule=schedule,
                         energy_model=energy, n=n, d=d, heads=heads, layers=layers,
                         batch=batch, busy_cycles=busy, ops=ops, steps=steps,
                         sram_words=(gemm_w + diag_w + pre_w) * inst,
                         dram_words=4 * n * d * inst)
    # latency: the slowest unit sets the layer's throughput (intra-layer pipeline);
    # the first head's K_bar (n rows + 1 divide) and K_hat row fill it, the last
    # rows of Z drain it (adder + divider, 2 cycles).
    per_layer = max(sa // layers, diag // layers, acc_c * hb, add_c * hb, div_c * hb)
    cost.latency_cycles = layers * (per_layer + n + 1 + 1 + 2)
    return _finish(cost, hw, energy, ("sa_general", "sa_diag"))


def softmax_attention_cost(n: int, d: int, heads: int, layers: int = 1, batch: int = 1, *,
                           schedule: str = "pipelined", energy: str = "busy",
                           hw: VitalityHW | str | None = None,
                           masked: bool = False) -> AttentionCost:
    """Baseline softmax attention on the same array (down-forward/ws) with an exp unit.

    Per head: S = Q K^T (n x d)(d x n), K^T stationary; P = softmax(S / sqrt d) on the
    64-lane units (adder: subtract row max, exp array: n^2 exps, accumulator: row
    sums, divider: n^2 divisions); Z = P V (n x n)(n x d), V stationary.  S rows
    stream into P V as they are normalised, so there is no dependency bubble.
    SRAM: both GEMMs' traffic plus S read and P written once by the softmax chain.
    The exp unit is a SURROGATE (see ``vitality.toml``).  ``masked``: one more add
    per score (additive mask) on the adder.
    """
    hw = hw if isinstance(hw, VitalityHW) else vitality_hw(hw or "vitality")
    R, C = hw.rows, hw.cols
    hb = heads * batch
    inst = hb * layers
    lanes = hw.width
    sm = {u: _rows64(n, n, lanes[u]) for u in
          ("adder_array", "exp_array", "accumulator_array", "divider_array")}
    if masked:
        sm["adder_array"] *= 2
    sa = sa_layer_cycles_stream([(n, n, d), (n, d, n)], hb, R, C, schedule) * layers
    busy = {"sa_general": sa, **{u: c * inst for u, c in sm.items()}}
    ops = {"sa_general": 2 * n * n * d * inst, "adder_array": (2 if masked else 1) * n * n * inst,
           "exp_array": n * n * inst, "accumulator_array": n * n * inst,
           "divider_array": n * n * inst}
    words = (_gemm_words(n, n, d, R, C, "ws") + _gemm_words(n, d, n, R, C, "ws")
             + 2 * n * n)
    cost = AttentionCost(kind="softmax", dataflow="down-forward", schedule=schedule,
                         energy_model=energy, n=n, d=d, heads=heads, layers=layers,
                         batch=batch, busy_cycles=busy, ops=ops, sram_words=words * inst,
                         dram_words=4 * n * d * inst,
                         steps=softmax_head_steps(n, d, hw, masked))
    per_layer = max([sa // layers] + [c * hb for c in sm.values()])
    cost.latency_cycles = layers * (per_layer + R + C)
    return _finish(cost, hw, energy, ("sa_general",))


def table5_deit_base(dataflow: str, **kw) -> AttentionCost:
    """Table V workload: DeiT-Base Taylor attention, 12 layers x 12 heads, n=197, d=64, batch 1."""
    return taylor_attention_cost(197, 64, heads=12, layers=12, batch=1, dataflow=dataflow, **kw)
