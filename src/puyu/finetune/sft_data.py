"""Training samples for fine-tuning: chat conversations (SFT) and raw text (continued pretraining).

A `Sample` is what one sequence of the causal-LM objective reads: `input_ids` (the tokens the model sees)
and `labels` (the next token at each position, `IGNORE_INDEX` where nothing is trained). For a chat, only
the tokens of the assistant turns are labelled (their content, tool-call text and end-of-turn token, as the
chat template marks them); an assistant turn with `"loss": false` stays as context without loss. Samples
are then packed several to a row (positions restart per sample, so `document_causal_mask` keeps them apart)
or padded one to a row, by `puyu.finetune.batches`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import torch.distributed
from tqdm import tqdm

from puyu.chat import FAMILY_DEFAULTS, ChatTemplate, assistant_mask
from puyu.data.conversations import ConversionReport, normalize_chat_record
from puyu.data.conversations.files import Unreadable, read_records  # the chat files' JSONL/JSON-list reader
from puyu.data.document import Tally
from puyu.data.readers import read_documents
from puyu.data.tokenize import document_ids
from puyu.errors import PuyuError
from puyu.tokenizer import Tokenizer
from puyu.train.distributed import DistInfo
from puyu.train.objectives import IGNORE_INDEX, Batch

Truncation = Literal["right", "drop"]
PathLike = str | os.PathLike[str]
T = TypeVar("T")

# Chat markers such as <|im_start|> or <|eot_id|>: each must be one token for the template to fit a tokenizer.
_MARKER = re.compile(r"<\|[^|<>\s]{1,40}\|>")
_PROBE = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]


@dataclass
class Sample:
    """One training sequence: the tokens read and the next-token labels (same length)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_targets(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


@dataclass
class DataReport(ConversionReport):
    """What reading a fine-tuning data file found: per-line errors (`errors`, "<file>:<line>: <reason>"), and
    how many samples were kept, truncated to `seq_len` or dropped (too long, or nothing left to train on)."""

    samples: int = 0
    truncated: int = 0
    dropped: int = 0
    tokens: int = 0
    targets: int = 0
    files: list[str] = field(default_factory=list)
    replay: DataReport | None = None  # the text documents mixed in (FinetuneData.replay)

    def summary(self) -> str:
        line = (
            f"{self.kind}: {self.samples} samples ({self.tokens} tokens, {self.targets} trained), "
            f"{self.invalid} invalid, {self.truncated} truncated, {self.dropped} dropped"
        )
        if self.warnings:
            line += "; warnings: " + ", ".join(f"{reason} {count}" for reason, count in sorted(self.warnings.items()))
        if self.replay is not None:
            line += f"; replay {self.replay.summary()}"
        return line

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "files": self.files,
            "samples": self.samples,
            "truncated": self.truncated,
            "dropped": self.dropped,
            "tokens": self.tokens,
            "targets": self.targets,
            **({"replay": self.replay.to_json()} if self.replay is not None else {}),
        }


# ---- templates ---------------------------------------------------------------------------------------------


def chat_templates(
    tokenizer: Tokenizer, family: str, name: str | None = None, *, owner: str = "the model"
) -> tuple[ChatTemplate, ChatTemplate]:
    """The model's chat template and the one used for conversations with tools (as `Generator` picks them).

    A folder template that ignores `tools` (InternLM2's shipped one) would drop them silently, so tool
    conversations use the family's built-in template then. Both are checked against the tokenizer.

    Args:
        tokenizer: the model's tokenizer.
        family: the model family.
        name: a built-in template to use instead of the folder's own.
        owner: what the tokenizer belongs to, for error messages (e.g. the model folder).
    """
    template = ChatTemplate.for_model(tokenizer, family, name)
    tool_template = template
    if not template.renders_tools:
        tool_template = ChatTemplate.for_model(tokenizer, family, FAMILY_DEFAULTS[family])
    for checked in {id(template): template, id(tool_template): tool_template}.values():
        check_template(checked, tokenizer, owner=owner)
    return template, tool_template


def check_template(template: ChatTemplate, tokenizer: Tokenizer, *, owner: str = "the model") -> None:
    """Refuse a template whose markers the tokenizer would split into pieces (a template of another model).

    Raises:
        PuyuError: naming the template and the tokenizer, and the markers that are not single tokens.
    """
    text = template.render(_PROBE).text
    markers = set(_MARKER.findall(text))
    markers |= {token for token in template.special_tokens.values() if token and token in text}
    missing = sorted(marker for marker in markers if tokenizer.token_to_id(marker) is None)
    if missing:
        known = ", ".join(sorted(tokenizer.added_tokens)[:8]) or "none"
        raise PuyuError(
            f"chat template {template.name!r} does not match the tokenizer of {owner}: "
            f"{', '.join(missing)} are not single tokens in it (its added tokens: {known}); "
            "use the model's own template (data.template: null) or one built for its family"
        )


def turn_spans(
    template: ChatTemplate,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[str, dict[int, tuple[int, int]]]:
    """The rendered text and, per assistant message index, the character span the model is trained to produce.

    The template's assistant spans come one per assistant turn (turns are always apart: a header lies between
    them), so they pair with the assistant messages in order.

    Raises:
        PuyuError: the template marks a different number of spans than there are assistant turns.
    """
    rendered = template.render(messages, tools=tools)
    turns = [index for index, message in enumerate(messages) if message["role"] == "assistant"]
    spans = rendered.assistant_spans
    if len(spans) != len(turns):
        raise PuyuError(
            f"template {template.name!r} marks {len(spans)} assistant spans for {len(turns)} assistant turns; "
            "per-turn labels need one span per turn"
        )
    return rendered.text, dict(zip(turns, spans, strict=True))


def encode_chat(
    tokenizer: Tokenizer,
    template: ChatTemplate,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    first_trained: int = 0,
) -> tuple[list[int], list[bool]]:
    """Token ids of a conversation and, per token, whether it is trained on.

    Trained: the tokens of assistant turns from message `first_trained` on (a preference pair's response
    starts after its prompt), except turns with `"loss": false`.
    """
    text, spans = turn_spans(template, messages, tools)
    trained = [
        span
        for index, span in spans.items()
        if index >= first_trained and messages[index].get("loss", True) is not False
    ]
    ids, offsets = tokenizer.encode_with_offsets(text, add_special_tokens=False)
    return list(ids), assistant_mask(offsets, trained)


def to_sample(ids: Sequence[int], mask: Sequence[bool]) -> Sample:
    """Shift a token sequence into a sample: position t reads ids[t] and is trained to predict ids[t + 1]."""
    labels = [token if trained else IGNORE_INDEX for token, trained in zip(ids[1:], mask[1:], strict=True)]
    return Sample(list(ids[:-1]), labels)


def fit_length(sample: Sample, seq_len: int, truncation: Truncation) -> Sample | None:
    """`sample` cut to `seq_len` (truncation "right"), or None when it is too long under "drop"."""
    if len(sample) <= seq_len:
        return sample
    if truncation == "drop":
        return None
    return Sample(sample.input_ids[:seq_len], sample.labels[:seq_len])


# ---- files -------------------------------------------------------------------------------------------------


def input_files(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    """The data files named (one path or several); a missing one is a `PuyuError`."""
    files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(path) for path in paths]
    if not files:
        raise PuyuError("data: name at least one file")
    for file in files:
        if not file.is_file():
            raise PuyuError(f"{file}: no such data file")
    return files


def load_chat_samples(
    paths: PathLike | Sequence[PathLike],
    tokenizer: Tokenizer,
    template: ChatTemplate,
    tool_template: ChatTemplate | None = None,
    *,
    seq_len: int,
    truncation: Truncation = "right",
    format: str | None = None,
    progress: bool = False,
) -> tuple[list[Sample], DataReport]:
    """Read chat JSONL (any format `normalize_chat_record` accepts) into samples.

    A bad record (not JSON, unknown format, no assistant turn, a turn the template cannot render, ...) is
    skipped and listed in the report as "<file>:<line>: <reason>"; a sample longer than `seq_len` is cut
    on the right or dropped (`truncation`), and one left without a trained token is dropped.

    Args:
        paths: JSONL or JSON-list files.
        tokenizer: the model's tokenizer.
        template: the chat template; `tool_template` renders records with tools (default `template`).
        seq_len: most tokens per sample.
        truncation: "right" (cut, keep the start) or "drop".
        format: force one input format instead of detecting it per record.
        progress: show a progress bar.

    Raises:
        PuyuError: a missing file, or no usable record at all (the first errors are named).
    """
    files = input_files(paths)
    report = DataReport(kind="chat", files=[str(f) for f in files])

    def encode(record: Any) -> Sample:
        chat = normalize_chat_record(record, format=format)
        uses_tools = bool(chat.get("tools")) or any(m.get("tool_calls") for m in chat["messages"])
        ids, mask = encode_chat(
            tokenizer, tool_template or template if uses_tools else template, chat["messages"], chat.get("tools")
        )
        return to_sample(ids, mask)

    samples: list[Sample] = []
    for sample in convert_records(files, report, encode, desc="chat data", progress=progress):
        _keep(report, samples, sample, seq_len, truncation)
    require_samples(report, len(samples))
    return samples, report


def convert_records(
    files: Sequence[Path], report: DataReport, convert: Callable[[Any], T], *, desc: str, progress: bool
) -> Iterator[T]:
    """Each record of `files` (JSONL or JSON list) passed through `convert`, in order.

    A record that is not readable JSON, or that `convert` refuses with a `PuyuError`, is skipped and listed in
    `report` as "<file>:<line>: <reason>".
    """
    with tqdm(desc=desc, unit="rec", disable=not progress) as bar:
        for file in files:
            for line, record in read_records(file):
                bar.update()
                try:
                    if isinstance(record, Unreadable):
                        raise PuyuError(record.message)
                    converted = convert(record)
                except PuyuError as exc:
                    report.fail(str(file), line, str(exc))
                    continue
                yield converted


def _keep(report: DataReport, samples: list[Sample], sample: Sample, seq_len: int, truncation: Truncation) -> None:
    fitted = fit_length(sample, seq_len, truncation)
    if fitted is None or fitted.num_targets == 0:
        report.dropped += 1
        return
    count_kept(report, [fitted], truncated=fitted is not sample)
    samples.append(fitted)


def count_kept(report: DataReport, parts: Sequence[Sample], *, truncated: bool) -> None:
    """Count one kept record, made of `parts` (one sample, or a preference pair's two sides), in `report`."""
    report.truncated += truncated
    report.converted += 1
    report.samples += 1
    report.tokens += sum(len(part) for part in parts)
    report.targets += sum(part.num_targets for part in parts)


def require_samples(report: DataReport, count: int) -> None:
    if count:
        return
    first = "; ".join(report.errors[:3])
    detail = f": {first}" if first else f" ({report.dropped} dropped as too long or untrained)"
    raise PuyuError(f"{', '.join(report.files)}: no usable {report.kind} records{detail}")


def load_text_samples(
    paths: PathLike | Sequence[PathLike],
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    text_field: str = "text",
    progress: bool = False,
) -> tuple[list[Sample], DataReport]:
    """Raw text (.txt, .md, .jsonl, ... as `puyu.data.readers` reads them) as causal-LM samples.

    Each document is tokenized as the pretraining shards hold it (BOS as the tokenizer adds it, one EOS at
    the end) and cut into pieces of at most `seq_len` inputs; every token after the first is a target.
    """
    files = input_files(paths)
    report = DataReport(kind="text", files=[str(f) for f in files])
    if tokenizer.eos_id is None:
        raise PuyuError("the tokenizer has no EOS token to end documents with")
    samples: list[Sample] = []
    tally = Tally()
    for file in files:
        for doc in tqdm(read_documents(file, tally, text_field=text_field), desc="text data", disable=not progress):
            ids = document_ids(tokenizer, doc.text)
            pieces = range(0, max(len(ids) - 1, 1), seq_len)
            report.truncated += len(pieces) - 1  # a document longer than seq_len continues in the next piece
            for start in pieces:
                piece = ids[start : start + seq_len + 1]
                _keep(report, samples, Sample(piece[:-1], piece[1:]), seq_len, "right")
    for problem in tally.problems:
        report.fail(problem.source, problem.line, problem.message)
    require_samples(report, len(samples))
    return samples, report


# ---- batches -----------------------------------------------------------------------------------------------


class EpochOrder:
    """A resumable walk over `count` items: a fresh seeded shuffle each epoch, this process's share of it.

    Its state is (epoch, cursor), so a resumed run continues with the very items it would have read.
    """

    def __init__(self, count: int, *, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if count < world_size:
            raise PuyuError(f"{count} samples cannot be shared among {world_size} processes")
        self.count, self.seed, self.shuffle = count, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.cursor = 0
        self._order = self._epoch_order()

    def _epoch_order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.count, generator=generator).tolist()
        else:
            order = list(range(self.count))
        return order[self.rank :: self.world_size]

    def peek(self) -> int:
        """The next item (starting the next epoch when this one is done)."""
        if self.cursor >= len(self._order):
            self.epoch += 1
            self.cursor = 0
            self._order = self._epoch_order()
        return self._order[self.cursor]

    def advance(self) -> None:
        self.cursor += 1

    def take(self) -> int:
        item = self.peek()
        self.advance()
        return item

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._epoch_order()


def gather_states(mine: dict[str, Any], info: DistInfo) -> dict[str, Any]:
    """Every rank's data position (each reads its own share), gathered so rank 0 saves them all."""
    if not info.is_distributed:
        return {"ranks": [mine]}
    gathered: list[Any] = [None] * info.world_size
    torch.distributed.all_gather_object(gathered, mine)
    return {"ranks": gathered}


def rank_state(state: Mapping[str, Any], info: DistInfo) -> Any:
    """This rank's entry of a `gather_states` result; the same number of processes is required."""
    ranks = state["ranks"]
    if len(ranks) != info.world_size:
        raise PuyuError(
            f"the checkpoint was written by {len(ranks)} processes; resume with the same number, not {info.world_size}"
        )
    return ranks[info.rank]


def pad_rows(rows: Sequence[Sample], pad_id: int, length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] input ids and labels of samples padded on the right (pad labels are ignored)."""
    width = length or max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row.input_ids, dtype=torch.long)
        labels[i, : len(row)] = torch.tensor(row.labels, dtype=torch.long)
    return ids, labels


def pack_rows(samples: Sequence[Sample], seq_len: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One packed row: the samples end to end, padded to `seq_len`; positions restart at 0 per sample (the
    padding is a document of its own), so `document_causal_mask` keeps every sample to itself."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for sample in samples:
        ids += sample.input_ids
        labels += sample.labels
        positions += range(len(sample))
    pad = seq_len - len(ids)
    if pad < 0:
        raise ValueError(f"packed samples hold {len(ids)} tokens, more than seq_len {seq_len}")
    ids += [pad_id] * pad
    labels += [IGNORE_INDEX] * pad
    positions += range(pad)
    return (
        torch.tensor([ids], dtype=torch.long),
        torch.tensor([labels], dtype=torch.long),
        torch.tensor([positions], dtype=torch.long),
    )


class SampleBatches:
    """The loop's batch source for causal-LM samples: micro-batches of packed or padded rows, resumable.

    Packed: each row takes samples in (shuffled) order while they fit in `seq_len`, so rows are full-length
    and hold several conversations. Padded: one sample per row, rows padded to the longest in the micro-batch.

    Args:
        samples: the training samples (each at most `seq_len` long).
        seq_len: tokens per packed row.
        micro_batch_size, grad_accum: rows per forward pass, forward passes per optimizer step.
        pad_id: token id written into padding (never trained on, never attended to by real tokens).
        packing: pack (True) or pad (False).
        seed: shuffling seed; rank, world_size: this process's share.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        seq_len: int,
        micro_batch_size: int,
        grad_accum: int,
        pad_id: int,
        packing: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.samples = samples
        self.seq_len = seq_len
        self.micro_batch_size = micro_batch_size
        self.grad_accum = grad_accum
        self.pad_id = pad_id
        self.packing = packing
        self.order = EpochOrder(len(samples), seed=seed, rank=rank, world_size=world_size)

    def next_batch(self) -> Batch:
        if not self.packing:
            rows = [self.samples[self.order.take()] for _ in range(self.micro_batch_size)]
            ids, labels = pad_rows(rows, self.pad_id)
            return Batch(ids, labels)
        packed = []
        for _ in range(self.micro_batch_size):
            row: list[Sample] = []
            used = 0
            while not row or used + len(self.samples[self.order.peek()]) <= self.seq_len:
                sample = self.samples[self.order.take()]
                row.append(sample)
                used += len(sample)
            packed.append(pack_rows(row, self.seq_len, self.pad_id))
        ids, labels, positions = (torch.cat(parts) for parts in zip(*packed, strict=True))
        return Batch(ids, labels, positions)

    def next_step(self, device: torch.device) -> list[Batch]:
        return [self.next_batch().to(device) for _ in range(self.grad_accum)]

    def state_dict(self, info: DistInfo) -> dict[str, Any]:
        return gather_states(self.order.state_dict(), info)

    def load_state_dict(self, state: Mapping[str, Any] | None, info: DistInfo) -> None:
        if state:
            self.order.load_state_dict(rank_state(state, info))
