"""Chat and preference data formats: the public entry point (the code lives in `puyu.data.conversations`).

```python
from puyu.data.chat_formats import convert_chat_file

report = convert_chat_file(["alpaca.json"], "sft.jsonl")  # or kind="preference"
print(report.summary())
```
"""

from puyu.data.conversations import (
    CHAT_FORMATS,
    PREFERENCE_FORMATS,
    ConversionReport,
    convert_chat_file,
    detect_chat_format,
    detect_preference_format,
    normalize_chat_record,
    normalize_preference_record,
    validate_chat_file,
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
