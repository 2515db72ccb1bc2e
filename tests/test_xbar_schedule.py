"""List schedule: dependencies and unit capacities hold; the critical path is a chain."""
from __future__ import annotations

import json

import pytest

from vitc.backends.api import analyse
from vitc.report import evaluate
from vitc.compiler.zoo import build_vit


@pytest.fixture(scope="module")
def tiny():
    model = build_vit("deit-tiny", img_size=96, depth=2)
    an = analyse(model, "xbar", "rram-128", model_name="t")
    res = evaluate(model, "xbar", "rram-128", model_name="t", options={"plots": False})
    return an, json.loads(res.files["schedule.json"])


def test_dependencies_respected(tiny):
    an, _ = tiny
    slot = {s.index: s for s in an.schedule.slots}
    assert len(slot) == len(an.graph.ops)
    for u, v in an.graph.dag.edges:
        assert slot[v].start >= slot[u].end, (slot[u].name, slot[v].name)


def test_unit_capacities_respected(tiny):
    an, sched = tiny
    counts = {u: int(an.spec[f"units.{u}.count"]) for u in ("mac", "sfu", "vector")}
    by_inst: dict[tuple, list] = {}
    for o in sched["ops"]:
        assert o["instance"] < counts.get(o["resource"], 1)
        by_inst.setdefault((o["resource"], o["instance"]), []).append((o["start"], o["end"]))
    for spans in by_inst.values():
        spans.sort()
        for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
            assert s1 >= e0  # one op at a time per instance
    assert sched["makespan_cycles"] == max(o["end"] for o in sched["ops"])
    busiest = max(r["busy_cycles"] / r["instances"] for r in sched["resources"].values())
    assert sched["interval_cycles"] >= busiest - 1


def test_two_instances_shorten_schedule(tmp_path):
    model = build_vit("deit-tiny", img_size=96, depth=2)
    hw = tmp_path / "two.toml"
    hw.write_text('[meta]\nbase = "rram-128"\nname = "two"\nkind = "xbar"\ndescription = "2 units"\n'
                  "[units.vector]\ncount = 2  # test\n[units.sfu]\ncount = 2  # test\n")
    one = analyse(model, "xbar", "rram-128", model_name="t")
    two = analyse(model, "xbar", str(hw), model_name="t")
    assert two.totals["pipeline_interval_ns"] <= one.totals["pipeline_interval_ns"]
    assert {s.instance for s in two.schedule.slots if s.resource == "sfu"} == {0, 1}
    # the same work, spread over two instances: the steady-state load per SFU instance halves
    per_inst = {}
    for s in two.schedule.slots:
        if s.resource == "sfu":
            per_inst[s.instance] = per_inst.get(s.instance, 0) + s.end - s.start
    assert sum(per_inst.values()) == one.schedule.resource_busy["sfu"]
    assert max(per_inst.values()) < one.schedule.resource_busy["sfu"]


def test_critical_path_is_a_chain_to_the_makespan(tiny):
    an, sched = tiny
    path = sched["critical_path"]
    assert path and path[-1]["end"] == sched["makespan_cycles"]
    for a, b in zip(path, path[1:]):
        assert b["start"] >= a["end"]
    assert path[0]["start"] == 0
