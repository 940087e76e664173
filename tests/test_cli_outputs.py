"""Output folders and files of the ``neurorec`` command: never deleted or written into unless
the command made them (its marker) and ``--overwrite`` is given; unwritable or odd ``--out``
places refused in one line before any work; modes follow the umask (0755 / 0644 under 022,
as ``mkdir`` and ``open`` give; ``tempfile`` alone would give 0700 / 0600)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from neurorec.cli import main
from neurorec.core.outputs import MARKER_FILE

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "models" / "glm_stimulus_only.yaml"
TINY = ["--set", "fit.max_iter=3", "--set", "stimulus.n_basis=3", "--set",
        "data.conditions=[contrast]", "--quiet"]
DATA = "v1_gratings:23"  # the smallest session


def run(capsys, *argv) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root``, files with their size and mtime: what a refusal must not
    change (a folder's own mtime may move: writability is checked by making and removing a
    probe folder in it)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def unrelated(tmp_path) -> Path:
    """Someone's folder: a file and a subfolder that no neurorec command wrote."""
    d = tmp_path / "mine"
    (d / "sub").mkdir(parents=True)
    (d / "notes.txt").write_text("precious\n")
    (d / "sub" / "data.csv").write_text("1,2\n")
    return d


@pytest.mark.parametrize("extra", [[], ["--overwrite"]])
def test_demo_never_touches_an_unrelated_folder(unrelated, capsys, extra):
    before = snapshot(unrelated.parent)
    code, out, err = run(capsys, "demo", "--out", unrelated, *extra)
    assert (code, out) == (2, "") and len(err) == 1
    assert err[0].startswith(str(unrelated))
    assert snapshot(unrelated.parent) == before


@pytest.mark.parametrize("command", [
    ["fit", SPEC, "--data", DATA],
    ["simulate", REPO / "models" / "ctrnn_flipflop.yaml", "--protocol",
     REPO / "stimuli" / "task_flip_flop.yaml"],
    ["train", REPO / "models" / "ctrnn_flipflop.yaml", "--task",
     REPO / "stimuli" / "task_flip_flop.yaml"],
    ["evaluate", REPO],  # --out is checked before FIT_DIR is read
])
def test_overwrite_needs_the_commands_own_marker(unrelated, capsys, command):
    before = snapshot(unrelated.parent)
    code, _, err = run(capsys, *command, "--out", unrelated, "--overwrite")
    assert code == 2
    assert err == [f"{unrelated}: not an output folder of `neurorec {command[0]}` (no "
                   f"{MARKER_FILE} of it); --overwrite replaces only such a folder: choose "
                   "another --out"]
    assert snapshot(unrelated.parent) == before


def test_fit_overwrites_its_own_output_and_modes_follow_the_umask(tmp_path, capsys, umask022):
    out = tmp_path / "fit"
    assert run(capsys, "fit", SPEC, "--data", DATA, "--out", out, *TINY)[0] == 0
    assert json.loads((out / MARKER_FILE).read_text()) == {"command": "fit"}
    assert mode(out) == 0o755
    files = [p for p in out.iterdir() if p.is_file()]
    assert files and {mode(p) for p in files} == {0o644}
    first = (out / "metrics.json").read_text()
    # another command's folder is not fit's to replace
    (out / MARKER_FILE).write_text(json.dumps({"command": "simulate"}))
    code, _, err = run(capsys, "fit", SPEC, "--data", DATA, "--out", out, "--overwrite", *TINY)
    assert code == 2 and "not an output folder of `neurorec fit`" in err[0]
    (out / MARKER_FILE).write_text(json.dumps({"command": "fit"}))
    code, _, _ = run(capsys, "fit", SPEC, "--data", DATA, "--out", out, "--overwrite",
                     "--seed", "1", *TINY)
    assert code == 0 and (out / "metrics.json").read_text() != first
    # NWB samples of the fit: 0644 too
    nwb = tmp_path / "sim.nwb"
    assert run(capsys, "export-nwb", out, "--out", nwb)[0] == 0
    assert mode(nwb) == 0o644
    # --overwrite replaces an NWB file, never a file of another kind
    other = tmp_path / "notes.nwb"
    other.write_text("not hdf5")
    code, _, err = run(capsys, "export-nwb", out, "--out", other, "--overwrite")
    assert code == 2 and err == [f"{other}: not an NWB (HDF5) file; --overwrite replaces only "
                                 "such a file: choose another --out"]
    assert other.read_text() == "not hdf5"
    assert run(capsys, "export-nwb", out, "--out", nwb, "--overwrite", "--seed", "3")[0] == 0


def test_a_stricter_umask_is_honoured(tmp_path, capsys):
    old = os.umask(0o077)
    try:
        out = tmp_path / "private"
        assert run(capsys, "fit", SPEC, "--data", DATA, "--out", out, *TINY)[0] == 0
        nwb = tmp_path / "p.nwb"
        assert run(capsys, "export-nwb", DATA, "--out", nwb)[0] == 0
    finally:
        os.umask(old)
    assert mode(out) == 0o700 and mode(out / "metrics.json") == 0o600
    assert mode(nwb) == 0o600


@pytest.mark.parametrize("where", ["under_a_file", "proc", "cwd", "parent_of_cwd", "a_file"])
@pytest.mark.parametrize("command", ["fit", "demo", "sweep", "export-nwb"])
def test_out_places_that_cannot_be_used(tmp_path, capsys, monkeypatch, where, command):
    work = tmp_path / "work"
    work.mkdir()
    (work / "f.txt").write_text("x")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"kind": "sweep", "name": "t", "spec": str(SPEC),
                                     "datasets": [DATA], "seeds": [0]}))
    monkeypatch.chdir(work)
    out = {"under_a_file": work / "f.txt" / "out", "proc": Path("/proc/neurorec_out"),
           "cwd": Path("."), "parent_of_cwd": Path(".."), "a_file": work / "f.txt"}[where]
    if command == "export-nwb" and where in ("cwd", "parent_of_cwd"):
        out = work  # a folder where the file should go
    argv = {"fit": ["fit", SPEC, "--data", DATA, "--out", out, "--overwrite"],
            "demo": ["demo", "--out", out, "--overwrite"],
            "sweep": ["sweep", sweep, "--out", out],
            "export-nwb": ["export-nwb", DATA, "--out", out, "--overwrite"]}[command]
    before = snapshot(tmp_path)
    code, stdout, err = run(capsys, *argv)
    assert (code, stdout) == (2, "") and len(err) == 1, err
    assert "Traceback" not in err[0]
    assert snapshot(tmp_path) == before


def test_sweep_refuses_an_unrelated_folder(tmp_path, capsys):
    fit = tmp_path / "fitdir"
    fit.mkdir()
    (fit / "metrics.json").write_text("{}")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"kind": "sweep", "name": "t", "spec": str(SPEC),
                                     "datasets": [DATA], "seeds": [0]}))
    before = snapshot(tmp_path)
    code, _, err = run(capsys, "sweep", sweep, "--out", fit, "--quiet")
    assert code == 2
    assert err == [f"{fit}: not a sweep folder (no sweep.json); a sweep writes only into a "
                   "folder it created: choose another --out"]
    assert snapshot(tmp_path) == before


def test_a_folder_is_owned_by_its_marker_or_its_legacy_files(tmp_path):
    """Folders written before the marker existed are recognised by the files each command
    writes (a demo: report.html and its two fits, named by the specs' `name`); a marker wins."""
    from neurorec.workflows.arguments import owns

    demo = tmp_path / "demo"
    for f in ("report.html", "glm/metrics.json", "rglm/metrics.json"):
        (demo / f).parent.mkdir(parents=True, exist_ok=True)
        (demo / f).write_text("x")
    assert owns(demo, "demo") and not owns(demo, "fit")
    (demo / MARKER_FILE).write_text(json.dumps({"command": "fit"}))
    assert owns(demo, "fit") and not owns(demo, "demo")
    (demo / MARKER_FILE).write_text("not json")
    assert owns(demo, "demo")  # an unreadable marker: the files decide
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not any(owns(empty, c) for c in ("fit", "demo", "simulate", "train", "probe",
                                            "connectomics", "export-nwb", "evaluate"))
