"""Plan validation: well-formed graphs pass in dependency order; malformed, cyclic and oversized plans fail with
the reason named; no input whatever makes validation raise anything but `PlanError`."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from puyu.search.graph import Node, PlanError, PlanGraph, extract_json

IDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=8)
FEW = settings(max_examples=60, deadline=None)


@st.composite
def dags(draw: st.DrawFn, max_size: int = 8) -> list[dict]:
    """A random acyclic plan (each node depends on earlier ones only), listed in a random order."""
    ids = draw(st.lists(IDS, min_size=1, max_size=max_size, unique_by=str.lower))
    nodes = []
    for i, node_id in enumerate(ids):
        parents = draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=3)) if i else []
        nodes.append({"id": node_id, "question": f"what is fact {node_id}?", "depends_on": parents})
    return draw(st.permutations(nodes))


@FEW
@given(dags())
def test_acyclic_plans_pass_in_dependency_order(plan: list[dict]) -> None:
    turn = PlanGraph(max_nodes=8).validate({"nodes": plan})
    assert {n.id for n in turn.nodes} == {n["id"] for n in plan}
    seen: set[str] = set()
    for node in turn.nodes:
        assert set(node.depends_on) <= seen
        seen.add(node.id)


@FEW
@given(dags(), st.data())
def test_cycles_are_refused(plan: list[dict], data: st.DataObject) -> None:
    by_id = {n["id"]: n for n in plan}
    # A path child → … → ancestor exists whenever child depends on ancestor; the edge ancestor → child closes it.
    edges = [(n["id"], p) for n in plan for p in n["depends_on"]]
    if edges:
        child, ancestor = data.draw(st.sampled_from(edges))
        by_id[ancestor]["depends_on"] = [*by_id[ancestor]["depends_on"], child]
    else:
        node = data.draw(st.sampled_from(plan))
        node["depends_on"] = [node["id"]]
    with pytest.raises(PlanError, match=r"cycle|itself"):
        PlanGraph(max_nodes=8).validate({"nodes": plan})


@FEW
@given(dags(), st.text(min_size=1, max_size=12))
def test_unknown_dependencies_are_named(plan: list[dict], missing: str) -> None:
    if missing.strip().lower() in {n["id"].lower() for n in plan}:
        return
    plan[0]["depends_on"] = [*plan[0]["depends_on"], missing]
    with pytest.raises(PlanError, match="unknown node"):
        PlanGraph(max_nodes=8).validate({"nodes": plan})


@FEW
@given(dags(max_size=12), st.integers(min_value=0, max_value=11))
def test_the_node_budget_holds_across_turns(plan: list[dict], already: int) -> None:
    graph = PlanGraph(max_nodes=12)
    for i in range(already):
        graph.add(Node(id=f"old{i}", question=f"an earlier question number {i}"))
    if already + len(plan) <= 12:
        assert len(graph.validate({"nodes": plan}).nodes) == len(plan)
    else:
        with pytest.raises(PlanError, match="budget"):
            graph.validate({"nodes": plan})


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
NODEISH = st.fixed_dictionaries(
    {}, optional={"id": JSON | IDS, "question": JSON | st.text(max_size=30), "depends_on": JSON | st.lists(IDS)}
)


@settings(max_examples=150, deadline=None)
@given(JSON | st.fixed_dictionaries({"nodes": st.lists(NODEISH | JSON, max_size=6), "respond": JSON}))
def test_any_json_is_accepted_or_refused_with_reasons(raw: object) -> None:
    graph = PlanGraph(max_nodes=4)
    graph.add(Node(id="root", question="the first question"))
    try:
        turn = graph.validate(raw)
    except PlanError as error:
        assert error.problems and all(isinstance(p, str) and p for p in error.problems)
        return
    assert len(graph) + len(turn.nodes) <= 4
    for node in turn.nodes:
        graph.add(node)  # what passed can be added, and leaves every dependency known
    assert all(d in graph.nodes for n in graph.nodes.values() for d in n.depends_on)


@FEW
@given(st.text(max_size=200))
def test_replies_without_a_plan_are_refused(text: str) -> None:
    try:
        value = extract_json(text)
    except PlanError:
        return
    assert isinstance(value, dict)


def test_json_is_found_in_fences_and_prose() -> None:
    plan = {"nodes": [{"id": "a", "question": "q?", "depends_on": []}], "respond": False}
    assert extract_json(f"Here is the plan:\n```json\n{json.dumps(plan)}\n```\nDone.") == plan
    assert extract_json("{broken {" + json.dumps(plan)) == plan


def test_names_resolve_ignoring_case_and_repeated_questions_are_not_asked_again() -> None:
    graph = PlanGraph()
    graph.add(Node(id="Capital", question="What is the capital of France?"))
    turn = graph.validate(
        {
            "nodes": [
                {"id": "again", "question": "what is the capital of France", "depends_on": []},
                {"id": "size", "question": "How many people live there?", "depends_on": [" capital ", "AGAIN"]},
            ]
        }
    )
    assert [n.id for n in turn.nodes] == ["size"]
    assert turn.nodes[0].depends_on == ["Capital"]
    assert turn.aliases == {"again": "Capital"}


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(PlanError) as caught:
        PlanGraph().validate(
            {"nodes": [{"id": "bad id!", "question": "x"}, {"id": "b", "question": ""}, "not a node"], "respond": True}
        )
    assert len(caught.value.problems) == 3


def test_shuffled_chain_is_ordered() -> None:
    chain = [{"id": f"n{i}", "question": f"step {i}", "depends_on": [f"n{i - 1}"] if i else []} for i in range(6)]
    random.Random(0).shuffle(chain)
    assert [n.id for n in PlanGraph().validate({"nodes": chain}).nodes] == [f"n{i}" for i in range(6)]
