"""Quantization: NF4 for QLoRA, weight-only int8/int4 (AWQ-style) for serving, KV-cache int8."""
