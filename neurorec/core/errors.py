"""One error hierarchy for everything a user can get wrong.

The CLI (and :func:`run_script`, for the analysis scripts) turns any :class:`NeurorecError` into
one line per problem on stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

EXIT_USER_ERROR = 2


class NeurorecError(Exception):
    """A user-facing problem: bad spec, bad data, bad request.

    ``lines`` holds one ``WHERE: WHAT`` message per problem.
    """

    def __init__(self, lines: str | Sequence[str]):
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


class SpecError(NeurorecError):
    """A YAML spec (model or stimulus protocol) or an override is invalid."""


class DataError(NeurorecError):
    """Recorded data is missing, malformed or inconsistent."""


class NotFittedError(NeurorecError):
    """A model method that needs fitted parameters was called before ``fit``."""


class DivergenceError(NeurorecError):
    """An optimisation produced NaN or Inf."""


class OutputError(NeurorecError):
    """An output directory cannot be written as asked."""


def run_script(main: Callable[[], object]) -> None:
    """Run an analysis script's ``main`` as the CLI runs a command: a :class:`NeurorecError`
    (bad spec, missing data, ...) prints its lines on stderr and exits with code 2 (an
    ``exit_code`` attribute, e.g. 128 + signal for an interruption, wins); any other exception
    is a bug and keeps its traceback.
    """
    try:
        main()
    except NeurorecError as err:
        for line in err.lines:
            print(line, file=sys.stderr)
        sys.exit(getattr(err, "exit_code", EXIT_USER_ERROR))
