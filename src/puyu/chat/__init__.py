"""Chat templates: render OpenAI-style conversations (with tools) for InternLM2, Llama 3 and Qwen2,
exactly as `transformers` renders them, mark what the model is trained to produce, and read tool
calls back out of generated text.

```python
from puyu.chat import ChatTemplate

template = ChatTemplate.builtin("qwen2")
chat = template.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
content, calls = template.parse_tool_calls(generated_text)
```
"""

from puyu.chat.builtin import BUILTINS, FAMILY_DEFAULTS
from puyu.chat.messages import validate_messages, validate_tools
from puyu.chat.template import ChatTemplate, RenderedChat, assistant_mask

__all__ = [
    "BUILTINS",
    "FAMILY_DEFAULTS",
    "ChatTemplate",
    "RenderedChat",
    "assistant_mask",
    "validate_messages",
    "validate_tools",
]
