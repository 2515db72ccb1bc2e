"""Digital units: the MAC array for activation×activation products, the special-function
unit (Softmax, LayerNorm, GELU/Erf, LSTM gates, Exp, Div, Sqrt) and the vector unit
(element-wise arithmetic, reductions, pooling, residual adds).

Each unit kind has ``count`` instances of ``lanes`` operations per cycle. An op occupies
one instance for ⌈work / lanes⌉ cycles; its energy is the elementary-op energies from the
preset plus buffer traffic (operands read, result written, at ``input_bits`` per element).
"""
from __future__ import annotations

import math

from vitc.backends.cost import OpCost, post_layout, to_cycles
from vitc.core.hardware import HardwareSpec
from vitc.backends.partition import ACT, LSTM, SFU, VEC, WorkItem

_SFU_KEYS = {"exp": "exp_energy_pj", "div": "div_energy_pj", "sqrt": "sqrt_energy_pj", "erf": "erf_energy_pj",
             "sigmoid": "sigmoid_energy_pj", "tanh": "tanh_energy_pj"}
_VEC_KEYS = {"add": "add_energy_pj", "mul": "mul_energy_pj", "cmp": "cmp_energy_pj"}


def elem_energy_pj(spec: HardwareSpec, ops: dict[str, float]) -> float:
    """Energy (pJ) of one element through the elementary ops ``ops`` ({op: count})."""
    sfu, vec = spec.section("units.sfu"), spec.section("units.vector")
    e = 0.0
    for k, n in ops.items():
        if k in _SFU_KEYS:
            e += n * sfu[_SFU_KEYS[k]]
        elif k in _VEC_KEYS:
            e += n * vec[_VEC_KEYS[k]]
        else:  # pragma: no cover - partition only emits the keys above
            raise KeyError(k)
    return e


class DigitalModel:
    """Cost model for the ``act_product`` (digital mode), ``sfu`` and ``vector`` kinds."""

    def __init__(self, spec: HardwareSpec, act_products: bool = True):
        self.spec = spec
        self.kinds = (SFU, VEC) + ((ACT,) if act_products else ())
        self.f = spec.freq_ghz
        self.act_bits = spec["crossbar.input_bits"]
        self.e_buf = spec["buffer.energy_pj_per_bit"]
        self.used: set[str] = set()

    def unit_count(self, unit: str) -> int:
        return int(self.spec[f"units.{unit}.count"])

    def _buffer_pj(self, item: WorkItem) -> float:
        return (item.in_elements + item.out_elements) * self.act_bits * self.e_buf

    def cost(self, item: WorkItem) -> OpCost:
        op = item.op
        if item.kind == ACT:
            u = self.spec.section("units.mac")
            cycles = math.ceil(item.macs / u["lanes"])
            e_dig = item.macs * u["mac_energy_pj"] + item.elements * elem_energy_pj(self.spec, item.elem_ops)
            unit = "mac"
        elif item.kind == SFU:
            u = self.spec.section("units.sfu")
            cycles = math.ceil(item.elements * item.passes / u["lanes"])
            e_dig = item.elements * elem_energy_pj(self.spec, item.elem_ops)
            unit = "sfu"
        elif item.kind == VEC:
            u = self.spec.section("units.vector")
            cycles = math.ceil(item.elements / u["lanes"])
            e_dig = item.elements * elem_energy_pj(self.spec, item.elem_ops)
            unit = "vector"
        else:  # pragma: no cover
            raise ValueError(item.kind)
        self.used.add(unit)
        lat = cycles / self.f
        return OpCost(op.index, op.name, item.layer, item.kind, unit, unit,
                      latency={"digital": lat},
                      energy=post_layout(self.spec, {"digital": e_dig, "buffer": self._buffer_pj(item)}),
                      cycles=to_cycles(lat, self.f), macs=item.macs if item.kind == ACT else 0,
                      traffic={"buffer_bits": (item.in_elements + item.out_elements) * self.act_bits})

    def gate_cost(self, item: WorkItem) -> tuple[float, float]:
        """(latency ns per recurrence step, energy pJ per inference) of RNN gates on the SFU."""
        assert item.kind == LSTM
        u = self.spec.section("units.sfu")
        steps = max(1, item.matrices[1].serial_steps)
        per_step = item.elements / steps
        lat = math.ceil(per_step / u["lanes"]) / self.f
        return lat, item.elements * elem_energy_pj(self.spec, item.elem_ops)

    def unit_counts(self) -> dict[str, int]:
        """Instances per shared unit kind (schedulable resources)."""
        return {u: int(self.spec[f"units.{u}.count"]) for u in ("mac", "sfu", "vector")}

    def unit_lanes(self) -> dict[str, int]:
        return {u: int(self.spec[f"units.{u}.lanes"]) for u in ("mac", "sfu", "vector")}

    def area(self) -> dict[str, float]:
        a = 0.0
        for unit in ("mac", "sfu", "vector"):
            s = self.spec.section(f"units.{unit}")
            a += s["count"] * s["area_mm2"]
        return {"digital": a}

    def leakage_uw(self) -> float:
        return sum(self.spec[f"units.{u}.count"] * self.spec[f"units.{u}.leakage_uw"] for u in ("mac", "sfu", "vector"))


__all__ = ["DigitalModel", "elem_energy_pj"]
