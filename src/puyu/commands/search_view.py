"""The terminal view of a search: the plan graph as a tree (state, answer so far), then the cited answer."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from puyu.search.events import Answer, Error, NodeDone, NodeEvent, NodeToken, References, SearchEvent, Token

_STYLE = {"pending": ("·", "dim"), "running": ("…", "yellow"), "done": ("✓", "green"), "failed": ("✗", "red")}


class SearchView:
    """Keeps what the events said so far; rich renders it (a `Live` redraws it as events arrive)."""

    def __init__(self, question: str) -> None:
        self.question = question
        self.nodes: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, str] = {}
        self.final = ""
        self.references: list[dict[str, Any]] = []
        self.stats: dict[str, Any] = {}
        self.error: str | None = None

    def update(self, event: SearchEvent) -> None:
        if isinstance(event, NodeEvent):
            self.nodes[event.node["id"]] = event.node
        elif isinstance(event, NodeToken):
            self.answers[event.id] = self.answers.get(event.id, "") + event.content
        elif isinstance(event, NodeDone):
            self.answers[event.id] = event.answer
        elif isinstance(event, Token):
            self.final += event.content
        elif isinstance(event, References):
            self.references = event.to_dict()["references"]
        elif isinstance(event, Answer):
            self.final = event.content
            self.stats = {"nodes": event.nodes, "pages_read": event.pages_read, "seconds": event.seconds}
        elif isinstance(event, Error):
            self.error = event.message

    def tree(self) -> Tree:
        """Each node under its first parent (the root for none); further parents are named after it."""
        root = Tree(Text(self.question, style="bold"))
        branches: dict[str, Tree] = {}
        for node_id, node in self.nodes.items():
            parents = node["depends_on"]
            mark, style = _STYLE.get(node["state"], ("?", ""))
            label = Text(f"{mark} {node_id}: ", style=style)
            label.append(node["question"], style="bold" if node["state"] == "running" else "")
            if len(parents) > 1:
                label.append(f"  (after {', '.join(parents)})", style="dim")
            answer = " ".join(self.answers.get(node_id, "").split())
            if answer:
                label.append("\n" + (answer if len(answer) <= 160 else answer[:157] + "..."), style="dim")
            branches[node_id] = branches.get(parents[0], root).add(label) if parents else root.add(label)
        return root

    def __rich__(self) -> RenderableType:
        parts: list[RenderableType] = [self.tree()]
        if self.final:
            parts.append(Text("\n" + self.final))
        return Group(*parts)

    def print_final(self, console: Console) -> None:
        """The reference list and the figures, after the live view."""
        if self.error:
            return
        for ref in self.references:
            where = ref["url"] or f"{ref['source']} [{ref['start']}-{ref['end']}]"
            console.print(f"[{ref['n']}] {ref['title']} - {where}", markup=False, highlight=False)
        if self.stats:
            console.print(
                f"{self.stats['nodes']} nodes, {self.stats['pages_read']} pages read, {self.stats['seconds']:.1f} s",
                style="dim",
            )

    def result(self) -> dict[str, Any]:
        nodes = [{**node, "answer": self.answers.get(node_id, "")} for node_id, node in self.nodes.items()]
        return {
            "question": self.question,
            "answer": self.final,
            "references": self.references,
            "nodes": nodes,
            "stats": self.stats,
            "error": self.error,
        }
