"""Instruction and preference data in one format each, with per-line validation.

Chat (SFT) records become `{"messages": [...], "tools"?: [...], "id"?: str, "source"?: str}`:
OpenAI-style messages (role system / user / assistant / tool, `content` a string, assistant
`tool_calls` as `{"type": "function", "function": {"name", "arguments": {...}}}`) where an
assistant turn may carry `"loss": false` to be kept as context but not trained on. Preference
records become `{"prompt": [...], "chosen": [...], "rejected": [...], ...}`.

```python
from puyu.data.conversations import convert_chat_file

report = convert_chat_file(["alpaca.json", "sharegpt.jsonl"], "sft.jsonl")
print(report.summary())
for error in report.errors:  # "sharegpt.jsonl:17: no assistant turn"
    print(error)
```
"""

from puyu.data.conversations.chat import CHAT_FORMATS, detect_chat_format, normalize_chat_record
from puyu.data.conversations.files import ConversionReport, convert_chat_file, validate_chat_file
from puyu.data.conversations.preference import (
    PREFERENCE_FORMATS,
    detect_preference_format,
    normalize_preference_record,
)

__all__ = [
    "CHAT_FORMATS",
    "PREFERENCE_FORMATS",
    "ConversionReport",
    "convert_chat_file",
    "detect_chat_format",
    "detect_preference_format",
    "normalize_chat_record",
    "normalize_preference_record",
    "validate_chat_file",
]
