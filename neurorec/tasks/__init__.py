"""Cognitive tasks as batched trial generators with loss masks (``stimuli/task_*.yaml``)."""

from neurorec.tasks import library as _library  # noqa: F401  (registers the task kinds)
from neurorec.tasks.base import Task, Trials, make_task

__all__ = ["Task", "Trials", "make_task"]
