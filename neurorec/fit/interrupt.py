"""SIGTERM as a request to stop at the next checkpoint, not a kill mid-write.

A long loop (L-BFGS fit, Adam training) marks the stretch where it can stop cleanly with
:func:`deferring`; a SIGTERM received inside it is remembered and the loop calls
:func:`raise_if_requested` right after saving a checkpoint. Outside such a stretch the signal
stops the run at once (nothing to save yet). Either way the run ends with
:class:`Interrupted`: one line on stderr and exit code ``128 + signal``, like a shell.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from neurorec.core.errors import NeurorecError

_pending: list[int] = []
_defer_depth = [0]


class Interrupted(NeurorecError):
    """The run was stopped by a signal; ``exit_code`` is ``128 + signum``."""

    def __init__(self, lines, signum: int = signal.SIGTERM):
        super().__init__(lines)
        self.exit_code = 128 + int(signum)


def _name(signum: int) -> str:
    return signal.Signals(signum).name


def _handler(signum: int, frame) -> None:  # frame: the signal handler signature
    if _defer_depth[0] > 0:
        _pending.append(signum)
        return
    raise Interrupted(f"stopped by {_name(signum)} outside a checkpointed loop; run the same "
                      "command again with --resume (work checkpointed so far is reused)", signum)


@contextmanager
def handle_signals(signals: tuple[int, ...] = (signal.SIGTERM,)) -> Iterator[None]:
    """Install the handler for ``signals`` for the duration of a command (main thread only)."""
    old = {s: signal.signal(s, _handler) for s in signals}
    _pending.clear()
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _pending.clear()


@contextmanager
def deferring() -> Iterator[None]:
    """A stretch where a signal only sets a flag, checked by :func:`raise_if_requested`."""
    _defer_depth[0] += 1
    try:
        yield
    finally:
        _defer_depth[0] -= 1


def requested() -> int | None:
    """The signal received inside :func:`deferring`, or None."""
    return _pending[0] if _pending else None


def raise_if_requested(message: str) -> None:
    """Raise :class:`Interrupted` with ``"stopped by SIGTERM " + message`` if one arrived."""
    signum = requested()
    if signum is not None:
        _pending.clear()
        raise Interrupted(f"stopped by {_name(signum)} {message}", signum)
