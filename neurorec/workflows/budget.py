"""Moved to :mod:`neurorec.workflows.study` (the analyses' plumbing); kept importable."""

from neurorec.workflows.study import (  # noqa: F401
    THREAD_VARS,
    Budget,
    JobOutcome,
    OutOfTime,
    current_budget,
    limit_threads,
    require,
    run_jobs,
    summary,
)
