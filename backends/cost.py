"""Shared cost vocabulary: components, per-op cost records, and the cost-model protocol.

A backend target is a set of cost models, one per unit kind. The flow is the same for
every target::

    prepare_graph → partition → CostModel.cost(item) per op → schedule → report

``xbar`` costs static-weight products on crossbars (:mod:`vitc.backends.xbar`) and everything
else on digital units (:mod:`vitc.backends.digital`); ``systolic`` and ``hybrid`` provide other
:class:`CostModel` s. Each target is a :class:`Target` registered in
:mod:`vitc.backends.targets`.

Units: energy in pJ, latency in ns, area in mm²; cycles at the preset's clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

from vitc.backends.partition import WorkItem
from vitc.core.errors import VitcInputError

# energy components (report order); "leakage" is static energy, the rest dynamic
COMPONENTS = ("adc", "accumulation", "array", "other_periph", "buffer", "interconnect", "digital", "write", "leakage")
DYNAMIC_COMPONENTS = COMPONENTS[:-1]
# latency components of one op
LATENCY_COMPONENTS = ("adc", "accumulation", "array", "other_periph", "buffer", "interconnect", "digital", "write")
# area components
AREA_COMPONENTS = ("array", "adc", "accumulation", "other_periph", "buffer", "interconnect", "digital")


#: components of the crossbar macro that NeuroSim's post-layout factor ζ covers (its TOPS/W
#: divides the chip's energy by ζ); the digital units' figures are post-layout already
MACRO_COMPONENTS = ("adc", "accumulation", "array", "other_periph", "buffer", "interconnect", "write")


def post_layout(spec, energy: dict[str, float]) -> dict[str, float]:
    """``energy`` with the preset's ``calibration.post_layout_energy_factor`` applied to the
    crossbar-macro components (:data:`MACRO_COMPONENTS`) only."""
    zeta = float(spec.get("calibration.post_layout_energy_factor", 1.0) or 1.0)
    return {k: v * zeta if k in MACRO_COMPONENTS else v for k, v in energy.items()}


@dataclass
class OpCost:
    """Cost of one op for one inference.

    ``unit``: the resource kind it occupies (``"xbar"``, ``"mac"``, ``"sfu"``, ``"vector"``,
    ``"xbar-write"``) or ``None`` (free); ``resource``: the schedulable resource — a dedicated
    crossbar set per weight-bearing op (``"xbar:<op>"``) or a shared digital unit kind;
    ``energy``/``latency``: per component (pJ / ns); ``cycles``: ⌈latency·f⌉.
    """

    index: int
    name: str
    layer: str
    kind: str
    unit: str | None
    resource: str | None
    latency: dict[str, float] = field(default_factory=dict)
    energy: dict[str, float] = field(default_factory=dict)
    cycles: int = 0
    macs: int = 0
    crossbars: int = 0
    crossbars_dynamic: int = 0
    traffic: dict = field(default_factory=dict)     # bits moved: buffer_bits, interconnect_bits, dram_bits
    extra: dict = field(default_factory=dict)

    @property
    def latency_ns(self) -> float:
        return float(sum(self.latency.values()))

    @property
    def energy_pj(self) -> float:
        return float(sum(self.energy.values()))


def to_cycles(latency_ns: float, freq_ghz: float) -> int:
    """⌈latency·f⌉ cycles (0 for zero latency)."""
    if latency_ns <= 0:
        return 0
    return int(math.ceil(latency_ns * freq_ghz - 1e-9))


class CostModel(Protocol):
    """Costs the work items of some kinds on one kind of unit."""

    kinds: tuple[str, ...]

    def cost(self, item: WorkItem) -> OpCost: ...

    def area(self) -> dict[str, float]:
        """Area (mm²) per component of everything this model instantiated."""
        ...

    def leakage_uw(self) -> float:
        """Static power (µW) of everything this model instantiated."""
        ...

    # optional: ``unit_counts() -> {resource: instances}`` and ``unit_lanes() -> {resource: lanes}``
    # for shared resources (anything not listed is a dedicated resource with one instance);
    # a model listing ``attention_core`` in ``kinds`` implements ``whole_core(op) -> str | None``
    # (None: it prices that ai.vitc core as a whole; a reason: the target sees its declared steps)


@dataclass(frozen=True)
class Target:
    """A cost target: the hardware description kinds it accepts, the preset it uses when none
    is given, and ``models(spec, options) -> list[CostModel]`` (first model listing a kind wins).
    Targets live in :mod:`vitc.backends.targets` (one module each plus one line there)."""

    name: str
    hw_kinds: tuple[str, ...]
    default_hw: str
    models: Callable
    description: str = ""

    def check_hw(self, spec) -> None:
        """A one-line error when ``spec`` is not a description this target can cost."""
        if spec.kind not in self.hw_kinds:
            hint = {"hybrid": " (use --target hybrid)", "systolic": " (use --target systolic)",
                    "xbar": " (use --target xbar)"}.get(spec.kind, "")
            raise VitcInputError(f"hardware '{spec.name}' is a {spec.kind} description; target {self.name} needs "
                                 f"{' or '.join(self.hw_kinds)} hardware, e.g. --hw {self.default_hw}{hint}")


__all__ = ["COMPONENTS", "DYNAMIC_COMPONENTS", "LATENCY_COMPONENTS", "AREA_COMPONENTS", "OpCost",
           "CostModel", "Target", "to_cycles"]
