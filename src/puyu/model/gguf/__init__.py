"""GGUF in and out: import llama.cpp files (llama, qwen2, internlm2) as HF model folders, export model folders.

Reading and writing go through the `gguf` package (llama.cpp's own Python code): its reader, writer,
quantizers and dequantizers. Import with `puyu convert FILE.gguf --out DIR` (or `load_model("x.gguf")`),
export with `puyu export MODEL_DIR --format gguf --type f32|f16|bf16|q8_0|q4_0`.
"""

from puyu.model.gguf.exporter import EXPORT_TYPES, ExportResult, export_gguf
from puyu.model.gguf.importer import import_gguf, load_gguf_model
from puyu.model.gguf.reader import IMPORT_TYPES, GGUFFile, is_gguf_file

__all__ = [
    "EXPORT_TYPES",
    "IMPORT_TYPES",
    "ExportResult",
    "GGUFFile",
    "export_gguf",
    "import_gguf",
    "is_gguf_file",
    "load_gguf_model",
]
