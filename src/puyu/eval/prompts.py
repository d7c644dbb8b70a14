"""Prompts from a task's documents: base-model text with few-shot examples, or chat messages.

Few-shot examples are dropped from the front when a prompt does not fit the model's context; a prompt that
does not fit even without examples is refused with `PromptTooLong` (the sample gets an error mark).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from puyu.eval.tasks.base import Doc, Task


class PromptTooLong(Exception):
    """The prompt does not fit the model's context even without few-shot examples."""


@dataclass
class Prompt:
    """What the model is asked.

    Args:
        text: the base-model prompt (None for chat prompts).
        messages: the chat conversation, ending with the user's turn (None for base prompts).
        continuations: multiple choice: the option texts scored after the prompt.
        shots: how many few-shot examples it holds.
    """

    text: str | None
    messages: list[dict] | None
    continuations: list[str]
    shots: int

    def key_text(self) -> str:
        """A canonical rendering (cache keys, predictions file)."""
        if self.text is not None:
            return self.text
        return "".join(f"<{m['role']}>{m['content']}" for m in self.messages or [])


def base_prompt(task: Task, doc: Doc, shots: int) -> Prompt:
    """lm-eval's layout: description + (query + delimiter + answer + fewshot delimiter) per shot + query."""
    examples = doc.shots[len(doc.shots) - shots :] if shots else []
    parts = [doc.description]
    for query, answer in examples:
        parts.append(query + task.target_delimiter + answer + task.fewshot_delimiter)
    parts.append(doc.query)
    continuations = [task.target_delimiter + choice for choice in doc.choices]
    return Prompt(text="".join(parts), messages=None, continuations=continuations, shots=len(examples))


def chat_prompt(task: Task, doc: Doc, shots: int) -> Prompt:
    """Few-shot examples as earlier user/assistant turns; the description opens the first user turn."""
    examples = doc.shots[len(doc.shots) - shots :] if shots else []
    messages: list[dict] = []
    for query, answer in examples:
        messages.append({"role": "user", "content": query})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": doc.query})
    messages[0] = {"role": "user", "content": doc.description + messages[0]["content"]}
    return Prompt(text=None, messages=messages, continuations=list(doc.choices), shots=len(examples))


def build_prompt(task: Task, doc: Doc, *, chat: bool, fits: Callable[[Prompt], bool] | None = None) -> Prompt:
    """The prompt with as many of the doc's shots as fit (`fits` None: all of them)."""
    make = chat_prompt if chat else base_prompt
    for shots in range(len(doc.shots), -1, -1):
        prompt = make(task, doc, shots)
        if fits is None or fits(prompt):
            return prompt
    raise PromptTooLong(f"the prompt of {doc.id} does not fit the model's context even without examples")
