"""`puyu quickstart`: the whole chain on a synthetic world, as cached stages.

world → data → tokenizer → pretrain → sft → merge → quantize → eval → report. Each stage is a thin
call into the library (`puyu.data.prepare`, `puyu.tokenizer.train`, `puyu.train.loop.pretrain`,
`puyu.finetune.run.finetune`, `puyu.finetune.adapter.merge_adapter`, `puyu.quant.quantize.quantize_folder`,
`puyu.eval.api.run_evaluation`); the sizes of everything come from `puyu/pipeline/configs/{tiny,default}.yaml`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from puyu.configuration import from_dict, load_config, to_dict
from puyu.errors import PuyuError
from puyu.io import atomic_write_text
from puyu.pipeline import STAGE_NAMES
from puyu.pipeline.stages import Pipeline, Stage, StageContext

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SIZES = ("tiny", "default")
MODEL_PRESET = "internlm2-tiny"  # the shape `model` overrides; pretraining starts from its random init
VERSION = "6"


@dataclass
class QuickstartConfig:
    """Sizes and settings of one quickstart run (see puyu/pipeline/configs/default.yaml).

    Args:
        size: world, corpus, SFT and evaluation-set sizes ("tiny" or "default").
        seed: the world's seed (also seeds training).
        vocab_size: BPE vocabulary target, special tokens and bytes included.
        max_digits: longest digit run one token may hold (`train_bpe`'s `max_digits`).
        digit_space: a space before a number joins its first digit (`train_bpe`'s `digit_space`).
        split_capitalized: capitalised words never take the character before them (`train_bpe`'s option).
        blend_number_starts: start each space-digit token's rows between its digit's and the space's
            (`puyu.pipeline.digit_rows`).
        skills_first: corpus files (names under the world's `corpus/`) pretraining reads alone first.
        skills_first_steps: steps on `skills_first` before the whole corpus; `pretrain.max_steps` counts both
            phases (0: one phase on the whole corpus).
        model: `ModelConfig` overrides on the internlm2-tiny preset (vocab_size is set from the tokenizer).
        data: `PrepareConfig` overrides (YAML file of the data stage's settings and dotted overrides).
        pretrain: `TrainConfig` fields (run_dir, model and data.train are set by the stage).
        sft: `FinetuneConfig` fields (run_dir, model and data are set by the stage).
        train_chat_tokens: train the embedding and output rows of the chat tokens beside the LoRA adapters.
        train_digit_rows: train the rows of the digits and the space-digit tokens beside them as well.
        sft_replay: corpus files (names under the world's `corpus/`, e.g. "sum_drills") mixed into the SFT data
            as text (`data.replay`), so SFT keeps what pretraining taught.
        quantize: `quantize_folder` keyword arguments.
        eval_limit: evaluate at most this many examples per task (None: all).
        tool_check_limit: held-out calculator requests to check (None: all).
    """

    size: str = "default"
    seed: int = 0
    vocab_size: int = 3072
    max_digits: int = 1
    digit_space: bool = True
    split_capitalized: bool = False
    blend_number_starts: bool = True
    skills_first: list[str] = field(default_factory=lambda: ["copying", "calculator", "dialogues"])
    skills_first_steps: int = 0
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    pretrain: dict[str, Any] = field(default_factory=dict)
    sft: dict[str, Any] = field(default_factory=dict)
    train_chat_tokens: bool = True
    train_digit_rows: bool = False
    sft_replay: list[str] = field(default_factory=list)
    quantize: dict[str, Any] = field(default_factory=lambda: {"method": "int8"})
    eval_limit: int | None = None
    tool_check_limit: int | None = None

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise PuyuError(f"size {self.size!r}: choose from {', '.join(SIZES)}")
        steps = int(self.pretrain.get("max_steps", 0))
        if self.skills_first_steps and not 0 < self.skills_first_steps < steps:
            raise PuyuError(
                f"skills_first_steps={self.skills_first_steps}: must lie between 0 and pretrain.max_steps ({steps})"
            )


def load_quickstart_config(size: str, seed: int | None = None, overrides: list[str] | None = None) -> QuickstartConfig:
    """The shipped settings for `size`, with `seed` and dotted overrides applied."""
    if size not in SIZES:
        raise PuyuError(f"--size {size!r}: choose from {', '.join(SIZES)}")
    extra = list(overrides or [])
    if seed is not None:
        extra.append(f"seed={seed}")
    return load_config(QuickstartConfig, CONFIG_DIR / f"{size}.yaml", extra)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def _dotted(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted `key=value` overrides, so each changes one setting, not a whole section."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---- stages ------------------------------------------------------------------------------------------


def stage_world(config: QuickstartConfig, ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
    """Generate the world, its corpus, the SFT conversations and the held-out evaluation sets."""
    from puyu.data.conversations import validate_chat_file
    from puyu.pipeline.corpus import write_corpus
    from puyu.pipeline.evalsets import excluded_keys, write_eval_sets
    from puyu.pipeline.sft import build_sft, write_jsonl
    from puyu.pipeline.world import build_world

    world = build_world(config.seed, config.size)
    world.save(ctx.dir / "world.json")
    docs = write_corpus(world, ctx.dir / "corpus", config.size, config.seed)
    sft = build_sft(world, config.size, config.seed, excluded_keys(config.seed, config.size))
    write_jsonl(sft, ctx.dir / "sft.jsonl")
    report = validate_chat_file(ctx.dir / "sft.jsonl")
    if report.errors:
        raise PuyuError(f"generated SFT data is invalid: {report.errors[0]}")
    tasks = write_eval_sets(world, ctx.dir / "eval", config.seed, config.size)
    eval_rows = {
        p.stem: len(p.read_text(encoding="utf-8").splitlines()) for p in sorted((ctx.dir / "eval").glob("*.jsonl"))
    }
    outputs = {
        "world": ctx.dir / "world.json",
        "corpus": ctx.dir / "corpus",
        "sft": ctx.dir / "sft.jsonl",
        "eval": ctx.dir / "eval",
    }
    outputs.update({f"task:{name}": path for name, path in tasks.items()})
    figures = {
        "countries": len(world.countries),
        "cities": len(world.cities),
        "people": len(world.people),
        "held_out_people": len(world.held_out),
        "corpus_documents": docs,
        "sft_conversations": len(sft),
        "eval_rows": eval_rows,
    }
    return outputs, figures


def stage_data(config: QuickstartConfig, ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
    """`puyu data prepare` on the corpus: clean, filter, deduplicate, report."""
    from puyu.data.prepare import PrepareConfig, prepare

    overrides = [f"inputs=[{ctx.input('world', 'corpus')}]", f"output={ctx.dir / 'prepared'}"]
    overrides += [f"{k}={json.dumps(v)}" for k, v in _dotted(config.data).items()]
    prepare_config = load_config(PrepareConfig, CONFIG_DIR / "data.yaml", overrides)
    report = prepare(prepare_config, progress=False)
    out = ctx.dir / "prepared"
    figures = {
        "documents_read": report["read"]["documents"],
        "documents_written": report["written"]["documents"],
        "megabytes_written": round(report["written"]["bytes"] / 1e6, 2),
    }
    return {"documents": out / "documents", "report": out / "report.md"}, figures


def stage_tokenizer(config: QuickstartConfig, ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
    """Train a byte-level BPE (InternLM2 chat tokens) on the prepared corpus, then pack it into token shards."""
    from puyu.data.tokenize import SourceSpec, TokenizeConfig, tokenize_documents
    from puyu.tokenizer.train import train_bpe

    documents = ctx.input("data", "documents")
    text_file = ctx.dir / "corpus.txt"
    with text_file.open("w", encoding="utf-8") as out:  # rewritten whole on a rerun
        for line in _prepared_lines(documents):
            out.write(json.loads(line)["text"] + "\n")
    tokenizer = train_bpe(
        [text_file],
        config.vocab_size,
        ctx.dir / "tokenizer",
        max_digits=config.max_digits,
        digit_space=config.digit_space,
        split_capitalized=config.split_capitalized,
        show_progress=False,
    )
    _fresh(ctx.dir / "tokens")  # shards of an interrupted run may belong to another tokenizer; packing is cheap
    manifest_path = tokenize_documents(
        TokenizeConfig(
            tokenizer=str(ctx.dir / "tokenizer"),
            output=str(ctx.dir / "tokens"),
            validation_fraction=0.02,
            sources=[SourceSpec(name="world", paths=[str(documents)])],
        ),
        progress=False,
    )
    manifest = json.loads(Path(manifest_path).read_text())
    chars = text_file.stat().st_size
    figures = {"vocab_size": tokenizer.vocab_size, "tokens": _token_counts(manifest), "corpus_bytes": chars}
    return {"tokenizer": ctx.dir / "tokenizer", "tokens": ctx.dir / "tokens"}, figures


def _prepared_lines(documents: Path) -> Iterator[str]:
    """The JSONL lines of the data stage's prepared documents, part by part in order."""
    for part in sorted(documents.glob("*.jsonl")):
        yield from part.read_text(encoding="utf-8").splitlines()


def _fresh(folder: Path) -> Path:
    """`folder`, emptied of what an interrupted run left there."""
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def _token_counts(manifest: dict[str, Any]) -> dict[str, int]:
    """Tokens per split of a shard manifest."""
    return {split: sum(s["tokens"] for s in shards) for split, shards in manifest.get("splits", {}).items()}


def _model_vocab(tokenizer_dir: Path) -> int:
    from puyu.tokenizer import Tokenizer

    size = Tokenizer.from_pretrained(tokenizer_dir).vocab_size
    return -(-size // 64) * 64  # round up: matrix shapes that are multiples of 64 run faster


def stage_pretrain(config: QuickstartConfig, ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
    """Pretrain a tiny InternLM2-architecture model from scratch and export it as an HF folder."""
    from puyu.pipeline.new_tokens import mean_init_tokens, token_ids_in, unseen_special_ids
    from puyu.tokenizer import Tokenizer
    from puyu.train.config import TrainConfig
    from puyu.train.export import export_checkpoint
    from puyu.train.loop import pretrain
    from puyu.train.plot import plot_run

    tokenizer = ctx.input("tokenizer", "tokenizer")
    overrides = {**config.model, "vocab_size": _model_vocab(tokenizer)}
    model_section: dict[str, Any] = {"preset": MODEL_PRESET, "overrides": overrides, "tokenizer": str(tokenizer)}
    blended = 0
    if config.blend_number_starts:
        from puyu.model.init import init_model_folder
        from puyu.pipeline.digit_rows import blend_number_starts

        init = init_model_folder(
            MODEL_PRESET, _fresh(ctx.dir / "init"), overrides=overrides, tokenizer_dir=tokenizer, seed=config.seed
        )
        blended = blend_number_starts(init)
        model_section = {"init_from": str(init)}

    def phase(run: str, model: dict[str, Any], max_steps: int, tokens: Path) -> TrainConfig:
        """The pretraining settings with this run folder, starting model, step count and token shards."""
        fixed = {"run_dir": str(ctx.dir / run), "seed": config.seed, "model": model, "max_steps": max_steps}
        return from_dict(
            TrainConfig, _deep_merge(config.pretrain, {**fixed, "data": {"train": [{"path": str(tokens)}]}})
        )

    steps = int(config.pretrain.get("max_steps", 0))
    outputs: dict[str, Path] = {}
    skills_loss: float | None = None
    if config.skills_first_steps:
        # The copying an instruction task rests on forms (or not) early in pretraining; a first phase on the
        # copying documents alone makes it form on worlds where one phase on the mixture left it unformed.
        first = _skills_tokens(config, ctx, tokenizer)
        first_result = pretrain(phase("skills_run", model_section, config.skills_first_steps, first))
        warmed = export_checkpoint(ctx.dir / "skills_run", _fresh(ctx.dir / "skills_model"), tokenizer=tokenizer)
        model_section = {"init_from": str(warmed)}
        steps -= config.skills_first_steps
        outputs["skills_run"] = ctx.dir / "skills_run"
        skills_loss = first_result.train_loss
    tokens = ctx.input("tokenizer", "tokens")
    result = pretrain(phase("run", model_section, steps, tokens))
    plots = plot_run(ctx.dir / "run")
    model = export_checkpoint(ctx.dir / "run", _fresh(ctx.dir / "model"), tokenizer=tokenizer)
    chat_tokens = unseen_special_ids(Tokenizer.from_pretrained(tokenizer), token_ids_in(tokens))
    mean_init_tokens(model, chat_tokens, seed=config.seed)
    figures = {
        "steps": config.skills_first_steps + result.step,
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "tokens_per_sec": result.tokens_per_sec,
        "new_token_ids": chat_tokens,
        "number_starts_blended": blended,
        "skills_first_steps": config.skills_first_steps,
        "skills_first_train_loss": skills_loss,
        "plots": [str(p) for p in plots],
    }
    return {"model": model, "run": ctx.dir / "run", **outputs}, figures


def _skills_tokens(config: QuickstartConfig, ctx: StageContext, tokenizer: Path) -> Path:
    """Token shards of the prepared documents that came from the `skills_first` corpus files."""
    from puyu.data.tokenize import SourceSpec, TokenizeConfig, tokenize_documents

    wanted = tuple(f"{name}-" for name in config.skills_first)
    picked = ctx.dir / "skills.jsonl"
    count = 0
    with picked.open("w", encoding="utf-8") as out:
        for line in _prepared_lines(ctx.input("data", "documents")):
            if json.loads(line)["id"].startswith(wanted):
                out.write(line + "\n")
                count += 1
    if not count:
        raise PuyuError(f"skills_first {config.skills_first}: no prepared document comes from these corpus files")
    manifest = tokenize_documents(
        TokenizeConfig(
            tokenizer=str(tokenizer),
            output=str(_fresh(ctx.dir / "skills_tokens")),
            sources=[SourceSpec(name="skills", paths=[str(picked)])],
        ),
        progress=False,
    )
    return Path(manifest).parent


def stage_sft(config: QuickstartConfig, ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
    """LoRA SFT of the pretrained model on the world's chat data, training the new chat tokens' rows too."""
    from puyu.finetune.config import FinetuneConfig
    from puyu.finetune.run import finetune
    from puyu.train.plot import plot_run

    base = ctx.input("pretrain", "model")
    stage_settings: dict[str, Any] = {
        "run_dir": str(ctx.dir / "run"),
        "method": "lora",
        "model": str(base),
        "seed": config.seed,
        "data": {"path": str(ctx.input("world", "sft")), "kind": "chat"},
    }
    if config.sft_replay:
        corpus = ctx.input("world", "corpus")
        stage_settings["data"]["replay"] = [str(corpus / f"{name}.jsonl") for name in config.sft_replay]
    # Pretraining never showed the new chat tokens (`<|action_start|>`, ...), and LoRA alone cannot change
    # their rows: the model would read and write them through rows it never learned.
    trained_rows = list(ctx.upstream["pretrain"].figures["new_token_ids"]) if config.train_chat_tokens else []
    if config.train_digit_rows:
        from puyu.pipeline.digit_rows import number_start_pairs
        from puyu.tokenizer import Tokenizer

        pairs = number_start_pairs(Tokenizer.from_pretrained(base))
        trained_rows += sorted({token for pair in pairs for token in pair} - set(trained_rows))
    if trained_rows:
        stage_settings["lora"] = {"trainable_token_indices": {"embed_tokens": trained_rows, "lm_head": trained_rows}}
    settings = _deep_merge(config.sft, stage_settings)
    result = finetune(from_dict(FinetuneConfig, settings))
    plots = plot_run(ctx.dir / "run")
    train = result.train
    figures = {
        "steps": train.step,
        "train_loss": train.train_loss,
        "val_loss": train.val_loss,
        "plots": [str(p) for p in plots],
    }
    return {"adapter": Path(result.output), "run": ctx.dir / "run"}, figures


def stage_merge(config: QuickstartConfig, ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
    """Fold the LoRA adapter into the base weights: a plain HF folder."""
    from puyu.finetune.adapter import merge_adapter

    out = merge_adapter(ctx.input("pretrain", "model"), ctx.input("sft", "adapter"), _fresh(ctx.dir / "model"))
    return {"model": Path(out)}, {}


def stage_quantize(config: QuickstartConfig, ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
    """Weight-only quantization of the SFT model (int8 by default), calibrated on corpus text."""
    from puyu.quant.quantize import quantize_folder

    kwargs = dict(config.quantize)
    method = kwargs.pop("method", "int8")
    calib = _calibration_texts(ctx.input("world", "corpus"), 64)
    out = quantize_folder(
        ctx.input("merge", "model"), _fresh(ctx.dir / "model"), method=method, calib_texts=calib, **kwargs
    )
    return {"model": Path(out)}, {"method": method, "bytes": _folder_bytes(Path(out))}


def _calibration_texts(corpus: Path, count: int) -> list[str]:
    texts: list[str] = []
    for name in ("people_en.jsonl", "people_zh.jsonl", "arithmetic.jsonl"):
        with (corpus / name).open(encoding="utf-8") as rows:
            texts += [json.loads(line)["text"] for _, line in zip(range(count // 3 + 1), rows, strict=False)]
    return texts[:count]


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def stage_eval(config: QuickstartConfig, ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
    """Score the base, SFT and int8 models on the held-out tasks, and check the SFT model's calculator calls."""
    from puyu.eval.api import run_evaluation
    from puyu.pipeline.evalsets import TASKS
    from puyu.pipeline.toolcheck import check_tool_calls

    models = {
        "base": ctx.input("pretrain", "model"),
        "sft": ctx.input("merge", "model"),
        "sft-int8": ctx.input("quantize", "model"),
    }
    task_files = [str(ctx.input("world", f"task:{name}")) for name in TASKS]
    report = run_evaluation(
        [{"path": str(path), "name": name} for name, path in models.items()],
        [],
        data_dir=None,
        out_dir=str(ctx.dir / "scores"),
        limit=config.eval_limit,
        task_files=task_files,
        progress=False,
    )
    if report.failures:
        raise PuyuError(f"evaluation failed: {next(iter(report.failures.items()))}")
    scores = {
        name: {task: round(score, 2) for task, score in per_task.items()} for name, per_task in report.scores.items()
    }
    tool = {
        name: check_tool_calls(
            models[name], ctx.input("world", "eval") / "tool_requests.jsonl", config.tool_check_limit
        )
        for name in ("sft", "sft-int8")
    }
    atomic_write_text(ctx.dir / "tool_check.json", json.dumps(tool, indent=2, ensure_ascii=False) + "\n")
    figures = {"scores": scores, "tool_calls": {name: t["summary"] for name, t in tool.items()}}
    return {"scores": ctx.dir / "scores", "tool_check": ctx.dir / "tool_check.json"}, figures


def world_sizes(size: str) -> dict[str, Any]:
    """The generated data's sizes: part of the world stage's key, so changing a preset regenerates it."""
    from dataclasses import asdict

    from puyu.pipeline.corpus import CORPUS_SIZES
    from puyu.pipeline.evalsets import EVAL_SIZES
    from puyu.pipeline.sft import SFT_SIZES
    from puyu.pipeline.world import WORLD_SIZES

    presets = {"world": WORLD_SIZES, "corpus": CORPUS_SIZES, "sft": SFT_SIZES, "eval": EVAL_SIZES}
    return {"size": size, **{name: asdict(table[size]) for name, table in presets.items()}}


def build_pipeline(root: str | Path, config: QuickstartConfig, *, echo: Any = print) -> Pipeline:
    """The quickstart's stages over `root`, with settings from `config`."""
    from puyu.pipeline.report import write_report

    settings = to_dict(config)
    world_config = {"seed": config.seed, **world_sizes(config.size)}

    def bind(fn: Any) -> Any:
        return lambda ctx: fn(config, ctx)

    def report(ctx: StageContext) -> tuple[dict[str, Path], dict[str, Any]]:
        link_models(Path(root), ctx.upstream)
        path = write_report(Path(root), ctx.upstream, ctx.dir, size=config.size)
        return {"report": path}, {}

    stages = [
        Stage("world", bind(stage_world), (), world_config, "generate the world, corpus, SFT data and eval sets"),
        Stage(
            "data",
            bind(stage_data),
            ("world",),
            {"preset": yaml.safe_load((CONFIG_DIR / "data.yaml").read_text()), "data": settings["data"]},
            "clean, filter and deduplicate",
        ),
        Stage(
            "tokenizer",
            bind(stage_tokenizer),
            ("data",),
            {
                "vocab_size": config.vocab_size,
                "max_digits": config.max_digits,
                "digit_space": config.digit_space,
                "split_capitalized": config.split_capitalized,
            },
            "train the BPE tokenizer and pack token shards",
        ),
        Stage(
            "pretrain",
            bind(stage_pretrain),
            ("data", "tokenizer"),
            {
                "model": settings["model"],
                "pretrain": settings["pretrain"],
                "blend_number_starts": config.blend_number_starts,
                "skills_first": config.skills_first,
                "skills_first_steps": config.skills_first_steps,
            },
            "pretrain the tiny InternLM2 model",
        ),
        Stage(
            "sft",
            bind(stage_sft),
            ("world", "pretrain"),
            {
                "sft": settings["sft"],
                "train_chat_tokens": config.train_chat_tokens,
                "train_digit_rows": config.train_digit_rows,
                "sft_replay": config.sft_replay,
            },
            "LoRA SFT on the chat data",
        ),
        Stage("merge", bind(stage_merge), ("pretrain", "sft"), {}, "merge the adapter"),
        Stage(
            "quantize",
            bind(stage_quantize),
            ("world", "merge"),
            {"quantize": settings["quantize"]},
            "quantize the SFT model",
        ),
        Stage(
            "eval",
            bind(stage_eval),
            ("world", "pretrain", "merge", "quantize"),
            {"eval_limit": config.eval_limit, "tool_check_limit": config.tool_check_limit},
            "evaluate base, SFT and quantized models",
        ),
        Stage("report", report, tuple(STAGE_NAMES[:-1]), {}, "write the report"),
    ]
    return Pipeline(root, stages, version=VERSION, echo=echo)


# The run root's names for its model folders: name -> (stage, output).
MODEL_LINKS = {"base-model": ("pretrain", "model"), "model": ("merge", "model"), "int8-model": ("quantize", "model")}


def run_quickstart(
    out: str | Path,
    config: QuickstartConfig,
    *,
    from_stage: str | None = None,
    until: str | None = None,
    echo: Any = print,
) -> dict[str, Any]:
    """Run (or resume) the quickstart in `out`; returns the stage records by name.

    Args:
        out: the run folder; finished stages in it are reused.
        config: sizes and settings.
        from_stage: rerun this stage and everything after it.
        until: stop after this stage.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    pipeline = build_pipeline(out, config, echo=echo)
    records = pipeline.run(from_stage=from_stage, until=until)
    link_models(Path(out), records)
    return records


def link_models(root: Path, records: dict[str, Any]) -> None:
    """Readable names for the model folders in the run's root (see `MODEL_LINKS`)."""
    for name, (stage, output) in MODEL_LINKS.items():
        _link(root, name, records.get(stage), output)


def _link(root: Path, name: str, record: Any, output: str) -> None:
    """`root/name` → a stage output, so the next steps have a stable path."""
    if record is None:
        return
    link = root / name
    tmp = root / f".{name}.link"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(record.output(output), root))
    os.replace(tmp, link)
