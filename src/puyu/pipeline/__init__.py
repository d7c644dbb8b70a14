"""`puyu quickstart`: the synthetic default world and the whole chain as cached stages."""

# Here rather than in `quickstart.py` so that the CLI can list the stages without importing the pipeline.
STAGE_NAMES = ("world", "data", "tokenizer", "pretrain", "sft", "merge", "quantize", "eval", "report")
