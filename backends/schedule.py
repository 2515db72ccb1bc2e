"""List scheduling of costed ops on unit resources, and the layer-pipelined steady state.

Resources: every crossbar op owns its crossbar set (``xbar:<op>``, capacity 1: weights are
stationary, so only that op uses them); digital unit kinds (``mac``, ``sfu``, ``vector``)
have ``count`` identical instances each. Free ops (reshapes, constants) take no time.

List scheduling: ops become ready when all predecessors have finished; among ready ops the
one with the longest remaining path (b-level, in cycles) goes first, on the instance of its
resource that frees earliest, never before its predecessors end. Each instance runs one op
at a time (ops are appended to its timeline). The makespan is the single-image latency.

Pipelined steady state (several images in flight, one stage per resource instance): the
initiation interval is the busiest resource's time per image —
max(crossbar op latency, Σ latency on a digital kind / count) — and throughput = 1/interval.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import networkx as nx

import heapq
from dataclasses import dataclass, field


from vitc.backends.cost import OpCost


@dataclass
class Slot:
    index: int
    name: str
    layer: str
    resource: str | None
    instance: int
    start: int
    end: int


@dataclass
class Schedule:
    slots: list[Slot]
    makespan: int
    interval: int
    bottleneck: str
    resource_busy: dict[str, int]
    critical_path: list[Slot] = field(default_factory=list)


def _instances(resource: str | None, counts: dict[str, int]) -> int:
    if resource is None:
        return 0
    return counts.get(resource, 1)


def list_schedule(dag: nx.DiGraph, costs: dict[int, OpCost], counts: dict[str, int]) -> Schedule:
    """Schedule ``costs`` (by op index) on ``dag``; ``counts``: instances per shared resource."""
    import networkx as nx    # noqa: PLC0415 - 0.2 s to import; front-end-only runs never need it
    order = list(nx.topological_sort(dag))
    dur = {i: (costs[i].cycles if i in costs else 0) for i in order}
    blevel: dict[int, int] = {}
    for i in reversed(order):
        succ = [blevel[s] for s in dag.successors(i)]
        blevel[i] = dur[i] + (max(succ) if succ else 0)
    indeg = {i: dag.in_degree(i) for i in order}
    ready = [(-blevel[i], i) for i in order if indeg[i] == 0]
    heapq.heapify(ready)
    free_at: dict[str, list[int]] = {}
    last_on: dict[tuple[str, int], int] = {}
    end: dict[int, int] = {}
    slots: dict[int, Slot] = {}
    cause: dict[int, int | None] = {}
    while ready:
        _, i = heapq.heappop(ready)
        preds = list(dag.predecessors(i))
        est, why = 0, None
        for p in preds:
            if end[p] > est or (end[p] == est and why is not None and p > why):
                est, why = end[p], p
        c = costs.get(i)
        res = c.resource if c is not None and c.cycles > 0 else None
        inst = 0
        if res is not None:
            n = _instances(res, counts)
            timeline = free_at.setdefault(res, [0] * n)
            inst = min(range(n), key=lambda k: (timeline[k], k))
            if timeline[inst] > est:
                est, why = timeline[inst], last_on.get((res, inst))
            timeline[inst] = est + dur[i]
            last_on[(res, inst)] = i
        end[i] = est + dur[i]
        cause[i] = why
        slots[i] = Slot(i, c.name if c else str(i), c.layer if c else "", res, inst, est, end[i])
        for s in dag.successors(i):
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, (-blevel[s], s))
    makespan = max(end.values(), default=0)
    busy: dict[str, int] = {}
    for i, sl in slots.items():
        if sl.resource is not None:
            busy[sl.resource] = busy.get(sl.resource, 0) + (sl.end - sl.start)
    per_stage = {r: -(-b // max(1, _instances(r, counts))) for r, b in busy.items()}
    bottleneck, interval = max(sorted(per_stage.items()), key=lambda kv: kv[1], default=("", 0))
    # critical path: walk back from the last-finishing op along what delayed each start
    path: list[Slot] = []
    if slots:
        cur = max(sorted(slots), key=lambda i: (end[i], -i))
        seen = set()
        while cur is not None and cur not in seen:
            seen.add(cur)
            if dur[cur] > 0:
                path.append(slots[cur])
            cur = cause.get(cur)
        path.reverse()
    ordered = [slots[i] for i in sorted(slots, key=lambda i: (slots[i].start, i))]
    return Schedule(ordered, makespan, max(1, interval) if slots else 0, bottleneck, busy, path)


__all__ = ["Slot", "Schedule", "list_schedule"]
