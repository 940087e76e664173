"""Output directories: atomic, never interleaved, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from neurorec.core.errors import OutputError
from neurorec.core.outputs import atomic_dir


def test_failed_block_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("boom")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_second_writer_is_refused_while_first_holds_the_lock(tmp_path):
    out = tmp_path / "run"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("first")
        with pytest.raises(OutputError, match=r"another run \(pid \d+\) is writing"), \
                atomic_dir(out, overwrite=True):
            pass
    assert (out / "a.txt").read_text() == "first"
    assert not (tmp_path / ".run.lock").exists()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    (tmp_path / ".run.lock").write_text(str(proc.pid))
    with atomic_dir(tmp_path / "run") as tmp:
        (tmp / "a.txt").write_text("ok")
    assert (tmp_path / "run" / "a.txt").read_text() == "ok"


def test_overwrite_replaces_in_one_rename(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OutputError, match="exists"), atomic_dir(out):
        pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(out)) == ["new.txt"]
