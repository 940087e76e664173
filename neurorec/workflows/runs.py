"""Moved to :mod:`neurorec.workflows.study` (the analyses' plumbing); kept importable."""

from neurorec.workflows.study import (  # noqa: F401
    END_LARGE_V1_SESSION,
    FIRST_LARGE_V1_SESSION,
    Job,
    load_clean,
    markdown_table,
    parse_sessions,
    run_cached,
    write_csv,
)
