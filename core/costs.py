"""What a cost analysis tells a pass: per-op costs and totals, independent of the cost model.

Passes that weigh fidelity against hardware cost (reuse's plan search, bilstm's crossbar
count) receive these records through :class:`vitc.passes.context.PassContext` (``ctx.cost``),
which the driver wires to a backend; passes never import a backend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class OpCostRecord:
    """One costed op, reduced to what accounting needs. Energies in pJ (post-layout factor
    applied), latency in ns; crossbar counts: logical static, with replicas, reprogrammed per
    inference, and physical (what takes area)."""

    name: str
    block: int | None
    role: str | None
    op_type: str
    kind: str
    unit: str | None
    resource: str | None
    energy_pj: float
    energy: dict[str, float]
    cycles: int
    latency_ns: float
    macs: int
    crossbars: int
    crossbars_total: int
    crossbars_dynamic: int
    crossbars_physical: int
    tiles: int
    cells_written: int
    elements: int


@dataclass
class CostBreakdown:
    """A model on one hardware description: the report totals (``report.json`` ``totals``), every
    op, the schedule's critical path in cycles per block, static power, and the description."""

    totals: dict[str, Any]
    ops: list[OpCostRecord]
    critical_cycles_by_block: dict[int, int]
    leakage_uw: float
    batch: int
    hardware: Any                      # vitc.core.hardware.HardwareSpec
    target: str = "xbar"
    notes: list[str] = field(default_factory=list)
    crossbar_area_mm2: float = 0.0     # one built crossbar with its ADCs, periphery and interconnect share (0: none)
    crossbar_leakage_uw: float = 0.0   # its static power (0: none)


__all__ = ["OpCostRecord", "CostBreakdown"]
