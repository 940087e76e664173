"""The argument layer of the ``neurorec`` command: every seed, count, path and ``--out`` is
checked here before any work starts (one line naming the argument, exit code 2, nothing
created).

Output folders: a command never deletes or writes into a folder it did not create. An
existing ``--out`` is refused unless ``--overwrite`` is given *and* the folder holds that
command's own marker (:data:`~neurorec.core.outputs.MARKER_FILE`, written into every output
folder a command makes; folders written before the marker existed are recognised by their
files, :data:`LEGACY_SIGNATURES`).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from neurorec.core.errors import NeurorecError, OutputError
from neurorec.core.outputs import MARKER_FILE, OUTPUT_OWNER, read_marker

SEED_MAX = 2**32 - 1
"""Seeds go to numpy (``RandomState`` takes 0 .. 2**32 - 1) and torch."""

SEED = click.IntRange(0, SEED_MAX)

LEGACY_SIGNATURES: dict[str, tuple[str, ...]] = {
    "fit": ("metrics.json", "predictions.npz", "spec.yaml"),
    "demo": ("report.html", "glm/metrics.json", "rglm/metrics.json"),
    "simulate": ("activity.npz", "summary.json"),
    "train": ("metrics.json", "spec.yaml", "report.html"),
    "probe": ("responses.npz", "tuning.csv"),
    "connectomics": ("predictions.csv",),
}
"""Files that mark an output folder of each command written before :data:`MARKER_FILE`."""

SWEEP_MARKER = "sweep.json"


def seed_option(what: str):
    """``--seed`` with this command's own help text; 0 .. 2**32 - 1."""
    return click.option("--seed", type=SEED, default=0, show_default=True, help=what)


def owns(out: Path, command: str) -> bool:
    """Whether ``out`` is an output folder written by ``neurorec <command>``."""
    marker = read_marker(out)
    if marker is not None:
        return marker == command
    legacy = LEGACY_SIGNATURES.get(command, ())
    return bool(legacy) and all((out / name).is_file() for name in legacy)


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return Path(path.anchor or ".")


def check_parent(out: Path, flag: str = "--out") -> None:
    """``out`` can be created: its nearest existing ancestor is a writable folder."""
    absolute = Path(os.path.abspath(out))
    anc = _nearest_existing(absolute.parent)
    if not anc.is_dir():
        raise OutputError(f"{out}: {flag}: {anc} is a file, not a folder")
    try:  # access() says yes to root on a read-only or virtual file system: try it
        probe = tempfile.mkdtemp(prefix=".neurorec-probe.", dir=anc)
    except OSError as err:
        raise OutputError(f"{out}: {flag}: cannot write in {anc} "
                          f"({err.strerror or type(err).__name__})") from None
    os.rmdir(probe)


def _check_not_cwd(out: Path, flag: str) -> None:
    here = Path.cwd().resolve()
    target = out.resolve()
    if target == here or target in here.parents:
        raise OutputError(f"{out}: {flag}: is the current folder or holds it; choose a new "
                          "folder")


def _existing_out_folder(out: Path, flag: str) -> bool:
    """Checks every output folder gets (a path, not the current folder, a writable parent);
    True when ``out`` exists, and is a folder."""
    if not str(out).strip():
        raise OutputError(f"{flag}: empty path")
    _check_not_cwd(out, flag)
    check_parent(out, flag)
    if not os.path.lexists(out):
        return False
    if not out.is_dir():
        raise OutputError(f"{out}: {flag}: a file is there, not a folder (choose another "
                          f"{flag})")
    return True


def check_out_dir(out: Path, overwrite: bool, command: str, flag: str = "--out") -> None:
    """An output folder ``neurorec <command>`` may write: new, or (``--overwrite``) its own.

    Raises:
        OutputError: one line naming ``out`` and what is wrong; nothing is created.
    """
    if _existing_out_folder(out, flag):
        if not overwrite:
            raise OutputError(f"{out}: output directory exists (pass --overwrite to replace it)")
        if not owns(out, command):
            raise OutputError(f"{out}: not an output folder of `neurorec {command}` (no "
                              f"{MARKER_FILE} of it); --overwrite replaces only such a "
                              f"folder: choose another {flag}")


def check_out_file(out: Path, overwrite: bool, flag: str = "--out",
                   magic: bytes | None = None) -> None:
    """An output file: new, or (``--overwrite``) an existing file that starts with ``magic``
    (an NWB file is HDF5: a file of another kind is never replaced)."""
    if not str(out).strip():
        raise OutputError(f"{flag}: empty path")
    check_parent(out, flag)
    if os.path.lexists(out):
        if out.is_dir():
            raise OutputError(f"{out}: {flag}: a folder is there, not a file (choose another "
                              f"{flag})")
        if not overwrite:
            raise OutputError(f"{out}: file exists (pass --overwrite to replace it)")
        if magic is not None:
            try:
                with open(out, "rb") as f:
                    head = f.read(len(magic))
            except OSError as err:
                raise OutputError(f"{out}: cannot read it ({err.strerror})") from None
            if head != magic:
                raise OutputError(f"{out}: not an NWB (HDF5) file; --overwrite replaces only "
                                  f"such a file: choose another {flag}")


def check_sweep_out(out: Path, flag: str = "--out") -> None:
    """A sweep folder: new, empty, or one holding a sweep (its ``sweep.json``)."""
    if _existing_out_folder(out, flag):
        if any(out.iterdir()) and not (out / SWEEP_MARKER).is_file():
            raise OutputError(f"{out}: not a sweep folder (no {SWEEP_MARKER}); a sweep writes "
                              f"only into a folder it created: choose another {flag}")


def check_file(path: Path, flag: str) -> None:
    """An input file that exists and is a file."""
    if not path.exists():
        raise NeurorecError(f"{path}: {flag}: file not found")
    if path.is_dir():
        raise NeurorecError(f"{path}: {flag}: a folder, not a file")


def check_dir(path: Path, flag: str, needs: tuple[str, ...] = (), what: str = "") -> None:
    """An input folder that exists and holds ``needs``."""
    if not path.exists():
        raise NeurorecError(f"{path}: {flag}: folder not found")
    if not path.is_dir():
        raise NeurorecError(f"{path}: {flag}: a file, not a folder")
    missing = [n for n in needs if not (path / n).is_file()]
    if missing:
        raise NeurorecError(f"{path}: {flag}: {missing[0]} not found"
                            + (f" (not {what})" if what else ""))


DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device(device: str | None) -> None:
    if device is not None and not DEVICE.match(device):
        raise NeurorecError(f"--device {device}: expected cpu, cuda or cuda:N")


def check_local_workers(workers: int | None, scheduler: str | None) -> None:
    """``--workers`` for a LocalCluster (no ``--scheduler``): at most 4 processes per core
    here, so a typo cannot start thousands of processes."""
    limit = 4 * (os.cpu_count() or 1)
    if workers is not None and scheduler is None and workers > limit:
        raise NeurorecError(f"--workers {workers}: a LocalCluster on this machine takes at most "
                            f"{limit} worker processes (4 per core); use --scheduler for more")


SCHEDULER = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}$")


def check_scheduler(address: str, timeout_s: float = 10.0) -> None:
    """A dask scheduler address that parses and accepts a TCP connection within
    ``timeout_s`` (retried: a scheduler may be starting): checked before the sweep writes
    anything."""
    import socket
    import time

    if not SCHEDULER.match(address):
        raise NeurorecError(f"--scheduler {address}: expected tcp://HOST:PORT")
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    host = host.strip("[]")
    if not 0 < int(port) < 65536:
        raise NeurorecError(f"--scheduler {address}: port {port} is out of range")
    if not address.startswith(("tcp://", "tls://")):
        return
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, int(port)),
                                          timeout=max(deadline - time.monotonic(), 0.1)):
                return
        except OSError as err:
            if time.monotonic() + 0.25 >= deadline or isinstance(err, socket.gaierror):
                reason = err.strerror or type(err).__name__
                raise NeurorecError(f"--scheduler {address}: no scheduler answers there "
                                    f"within {timeout_s:g} s ({reason})") from None
            time.sleep(0.25)


@contextmanager
def writing_as(command: str) -> Iterator[None]:
    """Output folders made inside the block carry ``command``'s marker."""
    token = OUTPUT_OWNER.set(command)
    try:
        yield
    finally:
        OUTPUT_OWNER.reset(token)
