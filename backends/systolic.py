"""``--target systolic``: the whole compiled graph on a ViTALiTy-style systolic accelerator.

The hardware is a systolic preset (``kind = "systolic"``, e.g. ``core/hw/vitality.toml``,
the accelerator of ViTALiTy Table III): a 64×64 SA-General array, a 64×1 SA-Diag column,
64-lane accumulator / adder / divider arrays (plus the exp array surrogate), Q/K/V/O SRAM
buffers and DRAM. Two schedulable resources: ``sa`` (SA-General + SA-Diag) and ``pp``
(the pre/post-processor arrays).

What goes where
---------------
``ai.vitc::TaylorAttention`` / ``ai.vitc::Attention`` cores
    costed **as a unit** with :mod:`vitc.backends.vitality_model` (Algorithm 1 steps on
    SA-General / SA-Diag / accumulator / adder / divider with the intra-layer pipeline,
    Fig. 6–7; softmax on the same array with the exp unit). The node's attributes
    (``num_heads``, ``variant``, ``centering``, ``simplified``; a 4th input = mask) and
    its q/k shapes give n, d, heads and batch. The body the partitioner inlined is
    marked free except the op producing the core's output, which carries the core's
    cost (kind ``attention_core``), so the schedule sees one op that starts when q, k,
    v are ready. ``taylor_attention_cost(n, d, heads, layers=1, batch)`` per node:
    summed over a model's layers this equals ``vitality_model`` for the whole model.
every other MatMul / Gemm / Conv (projections, MLP, patch embedding, head, products
    outside recognised cores)
    GEMMs ``C[M×N] = A[M×K]·B[K×N]`` on SA-General with
    :func:`vitc.backends.gemm_cycles.gemm_cost`: B is the weight (or the right operand),
    M the vectors (tokens × batch; output pixels for a Conv via im2col); dataflow
    ``ws`` (the paper's input-stationary / down-forward accumulation, weights in the
    PEs), ``is``, ``os`` or ``auto`` (fewest cycles per GEMM); cycle mode
    ``double-buffered`` (default: folds stream back to back, as in the core's pipeline)
    or ``scalesim`` (SCALE-Sim's isolated folds). Independent copies (heads of a
    batched MatMul, conv groups) stream one after another like further folds. A bias
    add is fused on the output stream (adder array, no extra time).
element-wise / reduction / special functions (LayerNorm, GELU, Softmax outside cores,
    residual adds ...)
    the 64-lane pre/post-processors: add/sub/cmp → adder array, reductions (and the
    mean/variance sums of LayerNorm, the row sums of Softmax) → accumulator array,
    div/sqrt → divider array, exp/erf/tanh/sigmoid → exp array (SURROGATE unit; a GELU,
    fused by the partitioner or a ``Gelu`` op, is one pass of it, scaling included),
    element-wise mul → SA-Diag (64 MAC PEs computing a diagonal-matrix product). An
    op takes ``max(max_u busy_u, passes·⌈elements/64⌉)`` cycles on ``pp``.
LSTM/GRU/RNN
    W·x as one GEMM over all steps; the recurrence as ``steps`` serial GEMMs of
    ``batch`` rows plus the gates on the pre/post-processors per step.

Energy (the ``busy`` model that reproduces Table V)
---------------------------------------------------
Each unit: Table III power × busy cycles / f (idle units clock-gated, so no leakage).
On-chip SRAM: words × ``P_SRAM / (buffers × words_per_access × f)`` (0.179 pJ): GEMM
operand reads, output writes and partial-sum read-backs
(:func:`~vitc.backends.gemm_cycles.sram_traffic`), element-wise inputs and outputs.
DRAM (SURROGATE 1.2 pJ/bit): compulsory traffic — every op reads its operands (weights
included) and writes its result once; the attention core's Q, K, V in and Z out per head
(as ``vitality_model``). With ``stalls`` on, a GEMM stalls by the roofline bound of
:mod:`~vitc.backends.gemm_cycles` at the preset's DRAM bandwidth (off by default:
SCALE-Sim's zero-stall semantics, as the Table V reproduction).

Report components (systolic target): ``array`` = SA-General + SA-Diag, ``digital`` =
pre/post-processors, ``buffer`` = on-chip SRAM, ``interconnect`` = DRAM (off-chip link).
In the hybrid target the systolic unit is the digital part: SA and processors go to
``digital``.

Options (``evaluate(..., options={...})``, else the preset's ``[systolic]`` keys, else the
default): ``dataflow`` (ws|is|os|auto, preset ``systolic.dataflow``), ``gemm_mode``
(double-buffered|scalesim), ``attention_dataflow`` (down-forward|g-stationary),
``attention_schedule`` (pipelined|scalesim|double-buffered), ``stalls`` (bool),
``energy_model`` (busy|activity, attention cores only). A user TOML with ``[meta] base =
"vitality"`` and e.g. ``[systolic] attention_dataflow = "g-stationary"`` sets them from
the command line.
"""
from __future__ import annotations

import dataclasses
import math

from vitc.backends.cost import OpCost, Target, to_cycles
from vitc.backends.gemm_cycles import DATAFLOWS as GEMM_DATAFLOWS
from vitc.backends.gemm_cycles import MODES as GEMM_MODES
from vitc.backends.gemm_cycles import gemm_cost
from vitc.core.hardware import HardwareSpec
from vitc.backends.partition import ACT, CORE, LSTM, MVM, SFU, VEC, WorkItem
from vitc.backends.vitality_model import (
    CENTERINGS, DATAFLOWS as ATT_DATAFLOWS, ENERGIES, SCHEDULES, TAYLOR_VARIANTS, VitalityHW,
    softmax_attention_cost, taylor_attention_cost, vitality_hw,
)
from vitc.core.errors import VitcInputError
from vitc.runtime.taylor_ops import DEFAULT_CENTERING

#: ai.vitc ops costed as one attention core → kind of core
CORE_OPS = {"ai.vitc::TaylorAttention": "taylor", "ai.vitc::Attention": "softmax"}
SA_UNITS = ("sa_general", "sa_diag")
PP_UNITS = ("accumulator_array", "adder_array", "divider_array", "exp_array")
UNITS = SA_UNITS + PP_UNITS
#: elementary op (partition vocabulary) → pre/post-processor unit
ELEM_UNIT = {"add": "adder_array", "cmp": "adder_array", "mul": "sa_diag", "div": "divider_array",
             "sqrt": "divider_array", "exp": "exp_array", "erf": "exp_array", "tanh": "exp_array",
             "sigmoid": "exp_array"}
REDUCE_OPS = {"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "GlobalAveragePool", "CumSum"}
SYSTOLIC_COMPONENTS = {"sa": "array", "pp": "digital", "sram": "buffer", "dram": "interconnect"}
HYBRID_COMPONENTS = {"sa": "digital", "pp": "digital", "sram": "buffer", "dram": "interconnect"}
DEFAULTS = {"dataflow": "ws", "gemm_mode": "double-buffered", "attention_dataflow": "down-forward",
            "attention_schedule": "pipelined", "stalls": False, "energy_model": "busy"}
_CHOICES = {"dataflow": GEMM_DATAFLOWS + ("auto",), "gemm_mode": GEMM_MODES, "attention_dataflow": ATT_DATAFLOWS,
            "attention_schedule": SCHEDULES, "energy_model": ENERGIES}


# --------------------------------------------------------------------------- hardware
@dataclasses.dataclass(frozen=True)
class SystolicHW:
    """A systolic preset's numbers: :class:`VitalityHW` plus areas, buffer and DRAM sizes."""

    name: str
    hw: VitalityHW
    area_mm2: dict
    sram_area_mm2: float
    sram_words_per_buffer: int
    dram_words_per_cycle: float
    surrogates: tuple
    settings: dict

    @property
    def f_ghz(self) -> float:
        return self.hw.freq_mhz / 1000.0

    def pj_per_cycle(self, unit: str) -> float:
        return self.hw.unit_pj_per_cycle(unit)

    def lanes(self, unit: str) -> int:
        if unit == "sa_general":
            return self.hw.rows * self.hw.cols
        if unit == "sa_diag":
            return self.hw.diag_rows * self.hw.diag_cols
        return self.hw.width[unit]


def systolic_hw(spec: HardwareSpec) -> SystolicHW:
    """The numbers of a validated systolic description (:mod:`vitc.core.hardware` checked them)."""
    data = spec.data
    hw = vitality_hw(data)
    sysd = data["systolic"]
    settings = {k: sysd[k] for k in DEFAULTS if sysd.get(k) is not None}
    bits = int(data["precision"]["bits"])
    return SystolicHW(
        name=spec.name, hw=hw,
        area_mm2={u: float(data["units"][u]["area_mm2"]) for u in UNITS},
        sram_area_mm2=float(data["sram"]["area_mm2"]),
        sram_words_per_buffer=int(data["sram"]["kb_per_buffer"] * 1024 * 8 // bits),
        dram_words_per_cycle=float(data["dram"]["bandwidth_words_per_cycle"]),
        surrogates=tuple(data.get("meta", {}).get("surrogates", [])), settings=settings)


def resolve_options(shw: SystolicHW, options: dict) -> dict:
    """Backend options: ``options`` > preset ``[systolic]`` keys > :data:`DEFAULTS` (validated)."""
    out = {}
    for k, default in DEFAULTS.items():
        v = options.get(k)
        if v is None:
            v = shw.settings.get(k, default)
        if k == "stalls":
            if not isinstance(v, bool):
                raise VitcInputError(f"systolic option stalls must be true or false (got {v!r})")
        elif v not in _CHOICES[k]:
            raise VitcInputError(f"systolic option {k} must be one of {', '.join(_CHOICES[k])} (got {v!r})")
        out[k] = v
    return out


# --------------------------------------------------------------------------- records
@dataclasses.dataclass
class CoreInfo:
    """One attention core node of the compiled graph."""

    origin: str
    op_type: str
    kind: str                 #: "taylor" | "softmax"
    n: int
    d: int
    heads: int
    batch: int
    variant: str = "paper"
    centering: str = "tokens"
    simplified: bool = False
    masked: bool = False
    layer: str = ""

    def config(self) -> dict:
        c = {"kind": self.kind, "n": self.n, "d": self.d, "masked": self.masked}
        if self.kind == "taylor":
            c.update(variant=self.variant, centering=self.centering, simplified=self.simplified)
        return c


def _prod(xs) -> int:
    return int(math.prod(int(x) for x in xs)) if xs else 1


def core_info(op) -> CoreInfo | str:
    """What an ``ai.vitc`` core node computes, from its attributes and input shapes — or why the
    attention model cannot cost it as a whole (then the node is costed step by step)."""
    kind = CORE_OPS.get(op.origin_type)
    if kind is None:
        return f"{op.origin_type} has no attention-core model"
    q = op.in_shapes[0] if op.in_shapes else None
    k = op.in_shapes[1] if len(op.in_shapes) > 1 else None
    heads = int(op.attrs.get("num_heads", 0) or 0)
    if q is None or k is None or None in q or None in k or len(q) < 2 or heads <= 0:
        return "unknown q/k shape or num_heads"
    if q[-1] % heads:
        return f"hidden size {q[-1]} not divisible by {heads} heads"
    if q[-2] != k[-2]:
        return f"{q[-2]} queries but {k[-2]} keys"
    info = CoreInfo(op.origin, op.op_type, kind, int(q[-2]), int(q[-1]) // heads, heads, _prod(q[:-2]),
                    masked=len(op.inputs) > 3 and bool(op.inputs[3]))
    if kind == "taylor":
        info.variant = str(op.attrs.get("variant", "paper"))
        info.centering = str(op.attrs.get("centering", DEFAULT_CENTERING.get(info.variant, "tokens")))
        if info.variant not in TAYLOR_VARIANTS or info.centering not in CENTERINGS:
            return f"no ViTALiTy cycle model for the TaylorAttention form {info.variant}/{info.centering}"
        info.simplified = bool(op.attrs.get("simplified", 0))
    return info


# --------------------------------------------------------------------------- GEMM shapes
def gemm_shapes(item: WorkItem) -> list[tuple[int, int, int, int]]:
    """``(M, N, K, count)`` GEMMs of a product item (B = weight / right operand)."""
    if item.kind in (MVM, LSTM):
        return [(int(m.vectors), int(m.N), int(m.K), int(m.count)) for m in item.matrices]
    op = item.op
    t = op.op_type
    a, b, out = op.in_shapes[0], op.in_shapes[1], op.out_shapes[0]
    if t in ("MatMul", "MatMulInteger"):
        a = [1] + list(a) if len(a) == 1 else list(a)
        b = list(b) + [1] if len(b) == 1 else list(b)
        return [(int(a[-2]), int(b[-1]), int(a[-1]), _prod(out[:-2]) if len(out) > 2 else 1)]
    if t == "Gemm":
        ta, tb = int(op.attrs.get("transA", 0)), int(op.attrs.get("transB", 0))
        M, K = (a[1], a[0]) if ta else (a[0], a[1])
        N = b[0] if tb else b[1]
        return [(int(M), int(N), int(K), 1)]
    if t in ("Conv", "ConvInteger"):
        g = int(op.attrs.get("group", 1))
        K = int(b[1]) * _prod(b[2:])
        return [(int(out[0]) * _prod(out[2:]), int(b[0]) // g, K, g)]
    return [(max(1, int(item.macs)), 1, 1, 1)]  # pragma: no cover - partition only emits the above


# --------------------------------------------------------------------------- the model
class SystolicModel:
    """Cost model for a systolic accelerator: products, attention cores, vector ops.

    ``components`` maps ``sa``/``pp``/``sram``/``dram`` to report components;
    ``sched_freq_ghz`` is the clock of the schedule (the preset's own in the systolic
    target, the crossbar preset's in the hybrid); ``link_pj_per_word``: when
    set (hybrid), activations come from and go to the crossbar chip's on-chip
    interconnect at this energy per word instead of DRAM (weights still come from DRAM).
    """

    def __init__(self, shw: SystolicHW, options: dict | None = None, *, sched_freq_ghz: float | None = None,
                 kinds=(MVM, LSTM, ACT, SFU, VEC), components: dict | None = None,
                 link_pj_per_word: float | None = None):
        self.shw = shw
        self.hw = shw.hw
        self.opts = resolve_options(shw, dict(options or {}))
        self.kinds = tuple(kinds) + (CORE,)
        self.components = dict(components or SYSTOLIC_COMPONENTS)
        self.f_sched = sched_freq_ghz or shw.f_ghz
        self.e_sram = self.hw.sram_pj_per_word
        self.e_dram = self.hw.dram_pj_per_word
        self.e_link = link_pj_per_word          # None: activations go through DRAM
        self.link_words = 0
        self.busy = {u: 0 for u in UNITS}
        self.unit_pj = {u: 0.0 for u in UNITS}
        self.sram_words = 0
        self.dram_words = 0
        self.stall_cycles = 0
        self.cores: list[dict] = []
        self.gemms: list[tuple] = []         # (M, N, K, count, dataflow) for the dataflow comparison
        self.by_kind: dict[str, dict] = {}
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ flow hooks
    def whole_core(self, op) -> str | None:
        """None when this model prices the core ``op`` as a whole, else why not (then the target
        sees the core's declared steps)."""
        info = core_info(op)
        return info if isinstance(info, str) else None

    def unit_counts(self) -> dict[str, int]:
        return {"sa": 1, "pp": 1}

    def unit_lanes(self) -> dict[str, int]:
        return {"sa": self.hw.rows * self.hw.cols, "pp": self.hw.width.get("adder_array", 64)}

    def area(self) -> dict[str, float]:
        c = self.components
        out: dict[str, float] = {}
        for u in UNITS:
            if u == "exp_array" and self.busy["exp_array"] == 0:
                continue  # not part of ViTALiTy; only instantiated when the graph needs exp/erf/tanh
            key = c["sa"] if u in SA_UNITS else c["pp"]
            out[key] = out.get(key, 0.0) + self.shw.area_mm2[u]
        out[c["sram"]] = out.get(c["sram"], 0.0) + self.shw.sram_area_mm2
        return out

    def leakage_uw(self) -> float:
        return 0.0  # Table III powers are active powers; idle units are clock gated (busy model)

    # ------------------------------------------------------------------ helpers
    def _sched_cycles(self, cycles: float) -> int:
        """Own-clock cycles → schedule-clock cycles."""
        return to_cycles(cycles / self.shw.f_ghz, self.f_sched)

    def _offchip(self, weight_words: int, act_words: int) -> float:
        """Energy (pJ) of moving weights (DRAM) and activations (DRAM, or the hybrid's link)."""
        if self.e_link is None:
            self.dram_words += weight_words + act_words
            return (weight_words + act_words) * self.e_dram
        self.dram_words += weight_words
        self.link_words += act_words
        return weight_words * self.e_dram + act_words * self.e_link

    def _charge(self, unit: str, cycles: int) -> float:
        self.busy[unit] += cycles
        e = cycles * self.shw.pj_per_cycle(unit)
        self.unit_pj[unit] += e
        return e

    def _opcost(self, item: WorkItem, unit: str, cycles: int, e: dict, macs: int, stall: int = 0,
                extra: dict | None = None) -> OpCost:
        c = self.components
        lat_key = c["sa"] if unit == "sa" else c["pp"]
        latency = {lat_key: cycles / self.shw.f_ghz}
        if stall:
            latency[c["dram"]] = stall / self.shw.f_ghz
        energy: dict[str, float] = {}
        for k, v in e.items():
            if v:
                energy[c[k]] = energy.get(c[k], 0.0) + v
        rec = self.by_kind.setdefault(item.kind, {"ops": 0, "cycles": 0, "energy_pj": 0.0, "macs": 0})
        rec["ops"] += 1
        rec["cycles"] += cycles + stall
        rec["energy_pj"] += sum(e.values())
        rec["macs"] += macs
        op = item.op
        return OpCost(op.index, op.name, item.layer, item.kind, unit, unit, latency=latency, energy=energy,
                      cycles=self._sched_cycles(cycles + stall), macs=macs, extra=extra or {})

    def _gemm(self, M: int, N: int, K: int, count: int, dataflow: str | None = None):
        """(busy cycles, stall cycles, sram words, dram words, GemmCost, dataflow) of ``count`` GEMMs."""
        R, C = self.hw.rows, self.hw.cols
        df = dataflow or self.opts["dataflow"]
        mode = self.opts["gemm_mode"]
        bw = self.shw.dram_words_per_cycle
        if df == "auto":
            cands = [(self._gemm(M, N, K, count, d)[0], i, d) for i, d in enumerate(GEMM_DATAFLOWS)]
            df = min(cands)[2]
        g = gemm_cost(M, N, K, R, C, df, mode, dram_bw=bw)
        if mode == "scalesim":
            busy = count * (g.compute_cycles + 1)
        else:  # copies stream like further folds
            busy = g.fold_cycles + (count * g.folds - 1) * max(g.stream_len, R)
        sram = count * (sum(g.sram_reads.values()) + sum(g.sram_writes.values()))
        dram = count * (sum(g.dram_reads.values()) + sum(g.dram_writes.values()))
        stall = count * g.stall_cycles
        return busy, stall, sram, dram, g, df

    def _elem_units(self, item: WorkItem) -> dict[str, int]:
        """Elementary operations per pre/post-processor unit for an element-wise item."""
        t = item.op.op_type
        if t in ("Gelu", "FastGelu") or (t == "Erf" and item.note.startswith("Erf-GELU")):
            # a GELU is one pass of the special-function (exp) array, its scaling included
            return {"exp_array": int(item.elements)}
        ops: dict[str, float] = {}
        for k, n in item.elem_ops.items():
            u = ELEM_UNIT[k]
            if k == "add" and t in REDUCE_OPS:
                u = "accumulator_array"
            ops[u] = ops.get(u, 0.0) + n * item.elements
        if t == "LayerNormalization" and ops.get("adder_array"):
            # of the 4 adds per element, the mean and variance sums are accumulations
            moved = ops["adder_array"] / 2
            ops["adder_array"] -= moved
            ops["accumulator_array"] = ops.get("accumulator_array", 0.0) + moved
        if t in ("Softmax", "LogSoftmax") and ops.get("adder_array"):
            # row max (cmp) and subtraction on the adder, row sums on the accumulator
            moved = item.elements * item.elem_ops.get("add", 0) / 2
            ops["adder_array"] -= moved
            ops["accumulator_array"] = ops.get("accumulator_array", 0.0) + moved
        return {u: int(math.ceil(v - 1e-9)) for u, v in ops.items() if v > 0}

    def _pp(self, unit_ops: dict[str, int], passes: int, elements: int):
        """(cycles, {"sa": pJ, "pp": pJ}) of element-wise work on the pre/post-processors
        (multiplications on SA-Diag, streamed alongside)."""
        e = {"sa": 0.0, "pp": 0.0}
        longest = 0
        for u, n in sorted(unit_ops.items()):
            cyc = -(-n // self.shw.lanes(u))
            e["sa" if u in SA_UNITS else "pp"] += self._charge(u, cyc)
            longest = max(longest, cyc)
        stream = passes * -(-elements // self.hw.width.get("adder_array", 64))
        return max(longest, stream), e

    # ------------------------------------------------------------------ cost
    def cost(self, item: WorkItem) -> OpCost:
        if item.kind == CORE:
            return self._core(item)
        if item.kind in (MVM, ACT):
            return self._product(item)
        if item.kind == LSTM:
            return self._rnn(item)
        if item.kind in (SFU, VEC):
            return self._vector(item)
        raise ValueError(item.kind)  # pragma: no cover

    def _product(self, item: WorkItem) -> OpCost:
        busy = stall = sram = dram = weights = 0
        dfs = []
        for M, N, K, count in gemm_shapes(item):
            b, s, sw, dw, _, df = self._gemm(M, N, K, count)
            busy, stall, sram, dram = busy + b, stall + s, sram + sw, dram + dw
            weights += K * N * count if item.kind == MVM else 0
            dfs.append(df)
            self.gemms.append((M, N, K, count, item.kind))
        e_sa = self._charge("sa_general", busy)
        e_pp = 0.0
        if item.elem_ops.get("add"):  # bias fused on the output stream
            out = sum(M * N * count for M, N, _, count in gemm_shapes(item))
            e_pp = self._charge("adder_array", -(-out // self.shw.lanes("adder_array")))
        self.sram_words += sram
        e_off = self._offchip(weights, dram - weights)
        stall = stall if self.opts["stalls"] else 0
        self.stall_cycles += stall
        return self._opcost(item, "sa", busy, {"sa": e_sa, "pp": e_pp, "sram": sram * self.e_sram,
                                               "dram": e_off}, item.macs, stall,
                            {"dataflow": ",".join(sorted(set(dfs)))})

    def _rnn(self, item: WorkItem) -> OpCost:
        (Mw, Nw, Kw, cw), (Mr, Nr, Kr, cr) = gemm_shapes(item)
        steps = max(1, item.matrices[1].serial_steps)
        per_step = max(1, Mr // steps)
        bw_, sw_, ssw, dsw, _, _ = self._gemm(Mw, Nw, Kw, cw)
        br, sr, ssr, dsr, _, _ = self._gemm(per_step, Nr, Kr, cr)
        self.gemms += [(Mw, Nw, Kw, cw, item.kind)] + [(per_step, Nr, Kr, cr, item.kind)] * steps
        e_sa = self._charge("sa_general", bw_ + steps * br)
        gate_cycles, e_gate = self._pp(self._elem_units(item), 1, item.elements)
        gate_step = -(-gate_cycles // steps)
        cycles = bw_ + steps * (br + gate_step)
        sram = ssw + steps * ssr + 2 * item.elements
        # weights once, inputs once, every step's hidden state in/out stays on chip
        weights = Kw * Nw * cw + Kr * Nr * cr
        self.sram_words += sram
        e_off = self._offchip(weights, dsw - Kw * Nw * cw + item.out_elements)
        stall = (sw_ + steps * sr) if self.opts["stalls"] else 0
        self.stall_cycles += stall
        return self._opcost(item, "sa", cycles, {"sa": e_sa + e_gate["sa"], "pp": e_gate["pp"],
                                                 "sram": sram * self.e_sram, "dram": e_off},
                            item.macs, stall)

    def _vector(self, item: WorkItem) -> OpCost:
        cycles, e = self._pp(self._elem_units(item), item.passes, item.elements)
        words = item.in_elements + item.out_elements
        self.sram_words += words
        return self._opcost(item, "pp", cycles, {**e, "sram": words * self.e_sram, "dram": self._offchip(0, words)}, 0)

    def core_cost(self, info: CoreInfo, dataflow: str | None = None):
        """:class:`~vitc.backends.vitality_model.AttentionCost` of one core node (one layer)."""
        kw = dict(schedule=self.opts["attention_schedule"], energy=self.opts["energy_model"], hw=self.hw)
        if info.kind == "softmax":
            return softmax_attention_cost(info.n, info.d, info.heads, 1, info.batch, masked=info.masked, **kw)
        return taylor_attention_cost(info.n, info.d, info.heads, 1, info.batch,
                                     dataflow=dataflow or self.opts["attention_dataflow"], variant=info.variant,
                                     centering=info.centering, simplified=info.simplified, masked=info.masked, **kw)

    def _core(self, item: WorkItem) -> OpCost:
        info = core_info(item.op)
        info.layer = item.layer
        ac = self.core_cost(info)
        for u, cyc in ac.busy_cycles.items():
            self.busy[u] += cyc
            self.unit_pj[u] += ac.unit_energy_uj.get(u, 0.0) * 1e6
        self.sram_words += ac.sram_words
        e_off = self._offchip(0, ac.dram_words)
        e_sa = sum(ac.unit_energy_uj.get(u, 0.0) for u in SA_UNITS) * 1e6
        e_pp = sum(ac.unit_energy_uj.get(u, 0.0) for u in PP_UNITS) * 1e6
        macs = sum(s.ops for s in ac.steps if s.gemm is not None) * info.heads * info.batch
        alt = {}
        if info.kind == "taylor":
            for df in ATT_DATAFLOWS:
                a = ac if df == self.opts["attention_dataflow"] else self.core_cost(info, df)
                alt[df] = {**a.energy_uj, "latency_cycles": a.latency_cycles,
                           "sa_general_busy_cycles": a.busy_cycles["sa_general"]}
        self.cores.append({
            "op": info.origin, "layer": info.layer, **info.config(), "heads": info.heads, "batch": info.batch,
            "dataflow": ac.dataflow if info.kind == "taylor" else "down-forward",
            "schedule": ac.schedule, "latency_cycles": ac.latency_cycles, "latency_ns": ac.latency_cycles / self.shw.f_ghz,
            "busy_cycles": dict(ac.busy_cycles), "energy_uj": dict(ac.energy_uj), "macs": macs,
            "sram_words": ac.sram_words, "dram_words": ac.dram_words,
            "steps": [{"step": s.step, "unit": s.unit, "ops": s.ops, "cycles": s.cycles} for s in ac.steps],
            "dataflows": alt})
        return self._opcost(item, "sa", ac.latency_cycles,
                            {"sa": e_sa, "pp": e_pp, "sram": ac.energy_uj["data_access"] * 1e6,
                             "dram": e_off}, macs,
                            extra={"attention": info.kind})

    # ------------------------------------------------------------------ report
    def report_section(self) -> dict:
        """The ``systolic`` section of report.json (see docs/report-schema.md), with its tables."""
        sec = self._section_data()
        a = sec["array"]
        att = ", ".join(f"{v['cores']} {k}" for k, v in sorted(sec["attention_totals"].items())) or "none"
        sec.update(key="systolic", title="Systolic unit", tables=_tables(sec),
                   summary=f"systolic      {sec['preset']}: {a['rows']}x{a['cols']} SA-General + {a['diag_rows']}x"
                           f"{a['diag_cols']} SA-Diag, GEMMs {sec['options']['dataflow']}, attention cores: {att}"
                           f" ({sec['options']['attention_dataflow']})")
        return sec

    def _section_data(self) -> dict:
        hw, shw = self.hw, self.shw
        units = {}
        for u in UNITS:
            units[u] = {"busy_cycles": self.busy[u], "energy_pj": self.unit_pj[u], "power_mw": hw.power_mw[u],
                        "lanes": shw.lanes(u), "area_mm2": shw.area_mm2[u],
                        "instantiated": u != "exp_array" or self.busy[u] > 0}
        sram_pj = self.sram_words * self.e_sram
        dram_pj = self.dram_words * self.e_dram
        link_pj = self.link_words * self.e_link if self.e_link is not None else 0.0
        return {
            "preset": shw.name,
            "clock_mhz": hw.freq_mhz,
            "precision_bits": hw.bits,
            "array": {"rows": hw.rows, "cols": hw.cols, "diag_rows": hw.diag_rows, "diag_cols": hw.diag_cols},
            "options": dict(self.opts),
            "component_map": dict(self.components),
            "units": units,
            "sram": {"words": self.sram_words, "energy_pj": sram_pj, "pj_per_word": self.e_sram,
                     "words_per_buffer": shw.sram_words_per_buffer},
            "dram": {"words": self.dram_words, "energy_pj": dram_pj, "pj_per_word": self.e_dram,
                     "bandwidth_words_per_cycle": shw.dram_words_per_cycle, "stall_cycles": self.stall_cycles},
            "link": ({"words": self.link_words, "energy_pj": link_pj, "pj_per_word": self.e_link}
                     if self.e_link is not None else None),
            "energy_pj": sum(self.unit_pj.values()) + sram_pj + dram_pj + link_pj,
            "by_kind": {k: dict(v) for k, v in sorted(self.by_kind.items())},
            "attention_cores": list(self.cores),
            "attention_totals": _core_totals(self.cores),
            "steps": _step_tables(self.cores, shw.f_ghz),
            "dataflow_comparison": {"attention": _attention_dataflows(self.cores),
                                    "gemm": self._gemm_dataflows()},
            "surrogates": sorted(shw.surrogates),
        }

    def _gemm_dataflows(self) -> dict:
        """Every GEMM outside the cores under ws / is / os / auto (SA-General busy, SRAM, energy)."""
        out = {}
        for df in GEMM_DATAFLOWS + ("auto",):
            cyc = sram = 0
            for M, N, K, count, _ in self.gemms:
                b, _, s, _, _, _ = self._gemm(M, N, K, count, df)
                cyc, sram = cyc + b, sram + s
            e = cyc * self.shw.pj_per_cycle("sa_general") + sram * self.e_sram
            out[df] = {"sa_busy_cycles": cyc, "sram_words": sram, "energy_pj": e,
                       "latency_ns": cyc / self.shw.f_ghz}
        out["selected"] = self.opts["dataflow"]
        out["gemms"] = len(self.gemms)
        return out


def _core_totals(cores: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for c in cores:
        t = out.setdefault(c["kind"], {"cores": 0, "latency_cycles": 0, "latency_ns": 0.0, "macs": 0,
                                        "energy_uj": {}, "busy_cycles": {}})
        t["cores"] += 1
        t["latency_cycles"] += c["latency_cycles"]
        t["latency_ns"] += c["latency_ns"]
        t["macs"] += c["macs"]
        for k, v in c["energy_uj"].items():
            t["energy_uj"][k] = t["energy_uj"].get(k, 0.0) + v
        for k, v in c["busy_cycles"].items():
            t["busy_cycles"][k] = t["busy_cycles"].get(k, 0) + v
    return out


def _step_tables(cores: list[dict], f_ghz: float) -> list[dict]:
    """Per-step busy time (ViTALiTy Table II analogue), one table per core configuration.

    Steps listed with their busy cycles per head and over all head instances; ``share``
    is of the sum of step times (sequential execution, as on the paper's edge GPU); the
    intra-layer pipeline overlaps them, so the cores' real latency (``pipelined_ns``)
    is shorter.
    """
    groups: dict[tuple, dict] = {}
    for c in cores:
        cfg = {k: c[k] for k in ("kind", "n", "d", "masked", "variant", "centering", "simplified", "dataflow")
               if k in c}
        key = tuple(sorted(cfg.items()))
        g = groups.setdefault(key, {**cfg, "instances": 0, "pipelined_cycles": 0, "steps": c["steps"]})
        g["instances"] += c["heads"] * c["batch"]
        g["pipelined_cycles"] += c["latency_cycles"]
    out = []
    for key in sorted(groups, key=lambda k: str(k)):
        g = groups[key]
        tot = sum(s["cycles"] for s in g["steps"]) or 1
        steps = [{"step": s["step"], "unit": s["unit"], "ops_per_head": s["ops"], "cycles_per_head": s["cycles"],
                  "cycles": s["cycles"] * g["instances"], "latency_ns": s["cycles"] * g["instances"] / f_ghz,
                  "share": s["cycles"] / tot} for s in g["steps"]]
        out.append({**{k: v for k, v in g.items() if k != "steps"}, "steps": steps,
                    "sequential_cycles": tot * g["instances"], "sequential_ns": tot * g["instances"] / f_ghz,
                    "pipelined_ns": g["pipelined_cycles"] / f_ghz})
    return out


def _table(title: str, header: list[str], rows: list[list], note: str = "") -> dict:
    return {"title": title, "header": header, "rows": rows, "note": note}


def _tables(sy: dict) -> list[dict]:
    """The section's tables (title, header, rows of numbers and text, note), rendered by the driver."""
    f_mhz = sy["clock_mhz"]
    out = []
    o = sy["options"]
    out.append(_table("Systolic unit: settings", ["setting", "value"],
                [["preset", sy["preset"]],
                 ["array", f"{sy['array']['rows']}x{sy['array']['cols']} SA-General + "
                           f"{sy['array']['diag_rows']}x{sy['array']['diag_cols']} SA-Diag"],
                 ["clock (MHz)", f_mhz]] + [[k, str(v)] for k, v in sorted(o.items())]
                + [["report components", ", ".join(f"{k} → {v}" for k, v in sorted(sy["component_map"].items()))]],
                "Energy model: each unit's power × its busy cycles (idle units clock gated) + SRAM and DRAM "
                "words × energy per word."))
    rows = []
    for u, v in sy["units"].items():
        if not v["instantiated"]:
            continue
        rows.append([u, v["lanes"], v["power_mw"], v["busy_cycles"], v["busy_cycles"] / f_mhz,
                     v["energy_pj"] / 1e6, v["area_mm2"]])
    rows.append(["SRAM", None, None, f"{sy['sram']['words']:,} words", None, sy["sram"]["energy_pj"] / 1e6, None])
    rows.append(["DRAM", None, None, f"{sy['dram']['words']:,} words",
                 f"{sy['dram']['stall_cycles'] / f_mhz:.4g} stall", sy["dram"]["energy_pj"] / 1e6, None])
    if sy.get("link"):
        rows.append(["on-chip link (activations)", None, None, f"{sy['link']['words']:,} words", None,
                     sy["link"]["energy_pj"] / 1e6, None])
    out.append(_table("Systolic unit: busy time and energy per unit",
                ["unit", "lanes", "power mW", "busy cycles", "busy µs", "energy µJ", "area mm²"], rows, ""))
    out.append(_table("Systolic unit: work by kind", ["kind", "ops", "cycles", "µs", "energy µJ", "MACs"],
                [[k, v["ops"], v["cycles"], v["cycles"] / f_mhz, v["energy_pj"] / 1e6,
                  v["macs"]] for k, v in sy["by_kind"].items()],
                "Energies here exclude the crossbar post-layout factor; in the hybrid target, crossbar ops "
                "are not listed."))
    if sy["attention_totals"]:
        rows = []
        for k, v in sorted(sy["attention_totals"].items()):
            e = v["energy_uj"]
            rows.append([k, v["cores"], v["latency_ns"] / 1e3, e.get("systolic"), e.get("other"),
                         e.get("data_access"), e.get("overall"), e.get("dram"), v["macs"]])
        out.append(_table("Attention cores (ViTALiTy Table V cells)",
                    ["kind", "cores", "latency µs", "systolic µJ", "other µJ", "data access µJ", "overall µJ",
                     "DRAM µJ", "MACs"], rows,
                    "Each ai.vitc attention core is costed as a unit (backends/vitality_model.py); 'overall' is "
                    "on-chip energy as in Table V, DRAM is reported beside it."))
    for tab in sy["steps"]:
        desc = ", ".join(f"{k}={tab[k]}" for k in ("kind", "variant", "centering", "simplified", "masked",
                                                     "dataflow", "n", "d") if k in tab)
        rows = [[s["step"], s["unit"], s["ops_per_head"], s["cycles_per_head"], s["latency_ns"] / 1e3,
                 f"{100 * s['share']:.1f}%"] for s in tab["steps"]]
        rows.append(["overall, steps in sequence", "", "", sum(s["cycles_per_head"] for s in tab["steps"]),
                     tab["sequential_ns"] / 1e3, "100%"])
        rows.append(["overall, intra-layer pipeline", "", "", "", tab["pipelined_ns"] / 1e3, ""])
        out.append(_table(f"Per-step latency (Table II analogue): {desc}",
                    ["step", "unit", "ops / head", "cycles / head", f"µs ({tab['instances']} heads)", "share"],
                    rows, "Busy time of each step; the accelerator overlaps the steps (Fig. 7), so the pipelined "
                          "total is below the sequential sum."))
    dfc = sy["dataflow_comparison"]
    if dfc["attention"]:
        rows = []
        for df, e in sorted(dfc["attention"].items()):
            rows.append([df, e.get("systolic"), e.get("other"), e.get("data_access"),
                         e.get("overall"), e.get("latency_cycles", 0) / f_mhz])
        out.append(_table("Dataflow comparison: Taylor attention cores",
                    ["dataflow", "systolic µJ", "other µJ", "data access µJ", "overall µJ", "latency µs"], rows,
                    f"Selected: {o['attention_dataflow']}."))
    g = dfc["gemm"]
    if g["gemms"]:
        rows = [[df, g[df]["sa_busy_cycles"], g[df]["latency_ns"] / 1e3, f"{g[df]['sram_words']:,}",
                 g[df]["energy_pj"] / 1e6] for df in ("ws", "is", "os", "auto")]
        out.append(_table("Dataflow comparison: GEMMs outside the attention cores",
                    ["dataflow", "SA busy cycles", "µs", "SRAM words", "SA + SRAM µJ"], rows,
                    f"{g['gemms']} GEMMs; selected: {g['selected']}; cycle mode {o['gemm_mode']}."))
    return out


def _attention_dataflows(cores: list[dict]) -> dict:
    out: dict[str, dict] = {}
    for c in cores:
        for df, v in c.get("dataflows", {}).items():
            t = out.setdefault(df, {})
            for k, x in v.items():
                t[k] = t.get(k, 0) + x
    return out


# --------------------------------------------------------------------------- target
def _systolic_models(spec: HardwareSpec, options: dict):
    return [SystolicModel(systolic_hw(spec), options)]


TARGET = Target("systolic", ("systolic",), "vitality", _systolic_models,
                "the ViTALiTy accelerator: every product on the systolic array, attention cores as units")

__all__ = ["TARGET", "SystolicModel", "SystolicHW", "systolic_hw", "resolve_options", "CoreInfo", "core_info",
           "gemm_shapes", "CORE_OPS", "UNITS", "ELEM_UNIT"]
