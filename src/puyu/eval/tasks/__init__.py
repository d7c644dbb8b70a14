"""Benchmark loaders (local files only) and YAML-described tasks."""

from puyu.eval.tasks.base import DIMENSIONS, Doc, Task, TaskFormatError
from puyu.eval.tasks.registry import load_task, task_names

__all__ = ["DIMENSIONS", "Doc", "Task", "TaskFormatError", "load_task", "task_names"]
