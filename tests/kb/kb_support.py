"""Small corpora and a tiny random sentence-transformers BERT folder for the knowledge-base tests."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = {
    "guide.md": (
        "# Install\n\nRun `pip install puyu` to install the toolkit.\n\n"
        "## GPU\n\nCUDA builds need a matching driver.\n\n"
        "# Serving\n\nThe server listens on port 8000 and speaks the OpenAI API.\n\n"
        "```bash\npuyu serve MODEL\n\npuyu serve MODEL --port 9000\n```\n\nStreaming uses server-sent events.\n"
    ),
    "notes.txt": "Tokenizers split text into pieces.\n\nBM25 ranks documents by term frequency and rarity.\n",
    "zh.txt": "知识库助手只回答与文档相关的问题。它拒绝闲聊！检索使用 BM25 和向量。\n\n分块保留章节标题。",
    "code.py": (
        "import os\n\n\ndef load(path):\n    return open(path).read()\n\n\n"
        "@cache\ndef parse(text):\n    return text.split()\n\n\nclass Reader:\n    pass\n"
    ),
    "rows.jsonl": (
        '{"text": "Paged attention stores the KV cache in blocks."}\n{"text": "Prefix caching reuses blocks."}\n'
    ),
}

# Questions the corpus answers, and questions it should refuse.
ON_TOPIC = [
    "what port does the server listen on",
    "how does BM25 rank documents",
    "知识库助手回答什么问题",
    "what does paged attention store",
    "how do I install the toolkit",
    "what do tokenizers do",
]
OFF_TOPIC = [
    "what is the weather in Paris",
    "who won the football match",
    "recommend a pasta recipe",
    "今天天气怎么样",
    "tell me a joke about cats",
    "how tall is mount everest",
]


def write_corpus(folder: Path, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (files or CORPUS).items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def make_encoder_folder(folder: Path, pooling: str = "mean", normalize: bool = True) -> Path:
    """A tiny random BERT written by transformers, with sentence-transformers' modules and pooling config."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(set(" ".join(CORPUS.values()).lower().replace("\n", " ").split()))
    chars = sorted({c for text in CORPUS.values() for c in text.lower() if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(chars + words)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )  # fmt: skip
    BertModel(config).save_pretrained(str(folder))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    flags = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}
    pooling_config = {"word_embedding_dimension": 32, **{flag: key == pooling for key, flag in flags.items()}}
    pooling_config["pooling_mode_lasttoken"] = pooling == "lasttoken"
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    return folder


class ScriptedClient:
    """A model client that answers from a script: the chat reply, and the reply to each check prompt."""

    def __init__(self, reply: str, checks: dict[str, str] | None = None) -> None:
        from puyu.client import ChatResult

        self.reply = reply
        self.checks = checks or {}
        self.calls: list[list[dict]] = []
        self._result = ChatResult

    def _check_reply(self, messages: list[dict]) -> str:
        text = messages[-1]["content"]
        for key, reply in self.checks.items():
            if key in text:
                return reply
        return "0"

    async def acomplete_chat(self, messages: list[dict], params, tools=None):
        self.calls.append(messages)
        return self._result(content=self._check_reply(messages))

    async def astream_chat(self, messages: list[dict], params, tools=None):
        from puyu.client import ChatDelta

        self.calls.append(messages)
        words = self.reply.split(" ")
        for i, word in enumerate(words):
            yield ChatDelta(content=word + (" " if i < len(words) - 1 else ""))
        yield ChatDelta(finish_reason="stop")
