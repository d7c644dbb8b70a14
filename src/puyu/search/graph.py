"""The plan graph: sub-questions with dependencies, and the validation every planner turn passes before
anything runs.

A planner turn is JSON, `{"nodes": [{"id", "question", "depends_on": [ids]}], "respond": bool}`. It is checked
against the graph built so far: ids well-formed and new, dependencies known (resolved case- and
space-insensitively, so a typo in case does not break a run), no cycles, the node budget kept. A question
already asked (same words after normalisation) is not asked again: the new id becomes an alias of the old node.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from puyu.errors import PuyuError

ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-]{1,40}$")
MAX_QUESTION_CHARS = 500
STATES = ("pending", "running", "done", "failed")


class PlanError(PuyuError):
    """A planner turn that cannot run; `problems` lists every reason, one line each (sent back for repair)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Node:
    """One sub-question of the plan and what became of it."""

    id: str
    question: str
    depends_on: list[str] = field(default_factory=list)
    state: str = "pending"
    answer: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "question": self.question, "depends_on": list(self.depends_on), "state": self.state}


@dataclass
class PlanTurn:
    """A validated planner turn: the nodes to add (dependency order) and whether to write the answer next."""

    nodes: list[Node]
    respond: bool
    aliases: dict[str, str] = field(default_factory=dict)  # repeated question's id → the existing node's id


def normalise_question(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def extract_json(text: str) -> Any:
    """The first JSON object in a model's reply (bare, or inside a ``` fence, with prose around it)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    raise PlanError(["the reply holds no JSON object"])


class PlanGraph:
    """The nodes added so far, in the order they were added.

    Args:
        max_nodes: most sub-questions in one search (the budget every turn is checked against).
    """

    def __init__(self, max_nodes: int = 8) -> None:
        self.max_nodes = max_nodes
        self.nodes: dict[str, Node] = {}
        self._by_question: dict[str, str] = {}
        self._by_folded_id: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    def resolve(self, name: str) -> str | None:
        """A known node id for `name`, ignoring case and surrounding spaces."""
        return self._by_folded_id.get(name.strip().lower())

    def add(self, node: Node) -> None:
        self.nodes[node.id] = node
        self._by_folded_id[node.id.lower()] = node.id
        self._by_question[normalise_question(node.question)] = node.id

    def validate(self, raw: Any) -> PlanTurn:
        """Check one planner turn (parsed JSON) against the graph; raise `PlanError` listing every problem.

        Nothing is added: call `add` for each node of the returned turn.
        """
        if not isinstance(raw, dict):
            raise PlanError([f"the plan must be a JSON object, got {type(raw).__name__}"])
        if "nodes" not in raw and "respond" not in raw:
            raise PlanError(["the plan needs 'nodes' (a list) or 'respond' (true)"])
        respond = raw.get("respond", False)
        if not isinstance(respond, bool):
            raise PlanError(["'respond' must be true or false"])
        entries = raw.get("nodes", [])
        if not isinstance(entries, list):
            raise PlanError(["'nodes' must be a list"])
        problems: list[str] = []
        new: dict[str, Node] = {}  # folded id → node
        aliases: dict[str, str] = {}
        for index, entry in enumerate(entries):
            where = f"nodes[{index}]"
            if not isinstance(entry, dict):
                problems.append(f"{where} must be an object with id, question, depends_on")
                continue
            node_id, question, depends = entry.get("id"), entry.get("question"), entry.get("depends_on", [])
            if not isinstance(node_id, str) or not ID_PATTERN.match(node_id.strip()):
                problems.append(f"{where}.id must be 1-40 letters, digits, '_' or '-', got {node_id!r:.60}")
                continue
            node_id = node_id.strip()
            folded = node_id.lower()
            if folded in self._by_folded_id or folded in new or folded in aliases:
                problems.append(f"{where}.id {node_id!r} is already used")
                continue
            if not isinstance(question, str) or not question.strip():
                problems.append(f"{where}.question must be a non-empty string")
                continue
            if len(question) > MAX_QUESTION_CHARS:
                problems.append(f"{where}.question is longer than {MAX_QUESTION_CHARS} characters")
                continue
            if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
                problems.append(f"{where}.depends_on must be a list of node ids")
                continue
            asked = normalise_question(question)
            earlier = self._by_question.get(asked) or next(
                (n.id for n in new.values() if normalise_question(n.question) == asked), None
            )
            if earlier is not None:
                aliases[folded] = earlier
                continue
            new[folded] = Node(id=node_id, question=" ".join(question.split()), depends_on=list(depends))
        # Dependencies: known ids (old or new), aliases followed; checked once every new id is known.
        for node in new.values():
            resolved: list[str] = []
            for name in node.depends_on:
                folded = name.strip().lower()
                target = (
                    aliases.get(folded) or self._by_folded_id.get(folded) or (new[folded].id if folded in new else None)
                )
                if target is None:
                    problems.append(f"node {node.id!r} depends on unknown node {name!r}")
                elif target == node.id:
                    problems.append(f"node {node.id!r} depends on itself")
                elif target not in resolved:
                    resolved.append(target)
            node.depends_on = resolved
        if problems:
            raise PlanError(problems)
        ordered = _topological(list(new.values()))
        if len(self.nodes) + len(ordered) > self.max_nodes:
            raise PlanError(
                [f"the plan has {len(self.nodes) + len(ordered)} nodes in all; the budget is {self.max_nodes}"]
            )
        return PlanTurn(nodes=ordered, respond=respond, aliases=aliases)


def _topological(nodes: list[Node]) -> list[Node]:
    """`nodes` with every node after the new nodes it depends on; `PlanError` naming a cycle if there is one."""
    pending = {node.id: node for node in nodes}
    ordered: list[Node] = []
    placed: set[str] = set()
    while pending:
        ready = [n for n in pending.values() if all(d in placed or d not in pending for d in n.depends_on)]
        if not ready:
            raise PlanError([f"the dependencies form a cycle among {sorted(pending)}"])
        for node in ready:
            ordered.append(node)
            placed.add(node.id)
            del pending[node.id]
    return ordered
