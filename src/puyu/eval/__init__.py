"""Evaluation: benchmark tasks from local files, local and API models, reports, needle-in-a-haystack, judges."""
