"""Agent step overhead with the model's time taken out: puyu's Agent against smolagents' ToolCallingAgent, both
driven by a scripted model that answers instantly (N tool-call steps, then a final answer), in one run.

    .venv/bin/python benchmarks/agent_step.py --steps 20 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from puyu.agent.loop import Agent
from puyu.agent.scripted import ScriptedModel
from puyu.agent.tools import tool
from puyu.client import ChatResult, ToolCall


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first.
        b: the second.
    """
    return a + b


def puyu_run(steps: int, workspace: str) -> float:
    replies = [ChatResult("", [ToolCall("add", {"a": i, "b": 1}, id=f"c{i}")]) for i in range(steps)]
    model = ScriptedModel([*replies, ChatResult("done")])
    agent = Agent(model, [add], protocol="openai", max_turns=steps + 1, workspace=workspace)
    started = time.perf_counter()
    answer = agent.ask("count")
    elapsed = time.perf_counter() - started
    assert answer == "done"
    return elapsed


def smolagents_run(steps: int) -> float:
    import smolagents
    from smolagents.models import ChatMessage, ChatMessageToolCall, ChatMessageToolCallFunction, Model

    @smolagents.tool
    def add_numbers(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: the first.
            b: the second.
        """
        return a + b

    class Scripted(Model):
        def __init__(self) -> None:
            super().__init__(model_id="scripted")
            self.turn = 0

        def generate(self, messages, stop_sequences=None, response_format=None, tools_to_call_from=None, **kwargs):
            self.turn += 1
            if self.turn <= steps:
                name, arguments = "add_numbers", {"a": self.turn, "b": 1}
            else:
                name, arguments = "final_answer", {"answer": "done"}
            call = ChatMessageToolCall(
                id=f"c{self.turn}",
                type="function",
                function=ChatMessageToolCallFunction(name=name, arguments=arguments),
            )
            return ChatMessage(role="assistant", content="", tool_calls=[call])

    agent = smolagents.ToolCallingAgent(tools=[add_numbers], model=Scripted(), max_steps=steps + 2, verbosity_level=-1)
    started = time.perf_counter()
    answer = agent.run("count")
    elapsed = time.perf_counter() - started
    assert str(answer) == "done", answer
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="tool-call steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="runs per contender (alternating)")
    args = parser.parse_args()
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as workspace:
        puyu_run(2, workspace)
        smolagents_run(2)
        for _ in range(args.repeats):
            ours.append(puyu_run(args.steps, workspace) / (args.steps + 1))
            theirs.append(smolagents_run(args.steps) / (args.steps + 1))
    ours_ms, theirs_ms = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    print("| agent | ms per step (model time excluded) |\n|---|---|")
    print(f"| puyu Agent (openai protocol) | {ours_ms:.3f} |\n| smolagents ToolCallingAgent | {theirs_ms:.3f} |")
    print(f"| **puyu / smolagents** | **{ours_ms / theirs_ms:.2f}x** |")


if __name__ == "__main__":
    main()
