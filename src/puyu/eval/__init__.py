"""Evaluation: benchmark tasks from local files, local and API models, reports, needle-in-a-haystack, judges.

- `tasks`: loaders (MMLU, CMMLU, C-Eval, GSM8K, ARC, HellaSwag) and YAML tasks → `Task` / `Doc`
- `prompts`: few-shot base prompts and chat messages, shortened to fit the model
- `models`: `EvalModel`, the evaluation's view of the one model client (`puyu.client`)
- `evaluators`: one task on one model (log-likelihood, generation, perplexity), cached per sample
- `extract`, `metrics`: answer extraction and scores
- `runner`, `api`: models × tasks into an output folder; `api.run_evaluation` is the entry point
- `report`, `plots`: summary.md/csv/json and the bar chart
"""
