"""Output directories that appear whole or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from neurorec.core.errors import OutputError

MARKER_FILE = ".neurorec.json"
"""Written into an output directory made by a ``neurorec`` command: ``{"command": name}``. A
command replaces an existing directory (``--overwrite``) only if it holds its own marker."""

OUTPUT_OWNER: ContextVar[str | None] = ContextVar("neurorec_output_owner", default=None)
"""The command writing outputs now (set by the CLI); None for library use (no marker)."""


def current_umask() -> int:
    """The process umask (read without changing it for long: set and restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_per_umask(path: str | Path) -> None:
    """Give ``path`` the mode an ordinary ``mkdir`` / ``open`` would have under the umask
    (0755 / 0644 under umask 022): ``tempfile`` creates 0700 directories and 0600 files."""
    path = Path(path)
    base = 0o777 if path.is_dir() else 0o666
    os.chmod(path, base & ~current_umask())


def read_marker(out: str | Path) -> str | None:
    """The command named by ``out``'s marker file, or None (no marker, unreadable)."""
    try:
        return str(json.loads((Path(out) / MARKER_FILE).read_text())["command"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def _lock(out: Path) -> Iterator[None]:
    """Refuse a second writer of ``out``; a lock left by a killed process is taken over."""
    lock = out.with_name(f".{out.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _pid_alive(holder):
                raise OutputError(f"{out}: another run (pid {holder}) is writing this output "
                                  f"directory; wait for it or choose another --out") from None
            lock.unlink(missing_ok=True)  # stale: its writer is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    else:
        raise OutputError(f"{out}: cannot take the lock {lock}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


@contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``out`` that becomes ``out`` when the block succeeds.

    On an exception the temporary directory is removed and ``out`` is untouched. An existing
    ``out`` is refused unless ``overwrite``; then it is replaced by one rename. Two runs
    writing the same ``out`` never interleave: the second is refused while the first holds
    the lock ``.<out>.lock``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputError(f"{out}: output directory exists (pass --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        try:
            chmod_per_umask(tmp)  # others can read it as they could any folder made here
            owner = OUTPUT_OWNER.get()
            if owner is not None:
                (tmp / MARKER_FILE).write_text(json.dumps({"command": owner}) + "\n")
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = None
        if out.exists():
            if not overwrite:  # appeared while we ran: keep both, lose nothing
                raise OutputError(f"{out}: appeared while this run was writing; its results "
                                  f"are kept in {tmp}")
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN; null reads as "undefined" (e.g. a unit without spikes)
    return value


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
