"""A fuzz test over the whole ``neurorec`` command, generated from each command's click
parameters: every command × every argument × {missing, wrong type, negative, zero, huge, NaN,
a file where a folder is expected, a folder where a file is expected, an existing unrelated
folder} must end in exit 0, or exit 2 with at most 2 lines on stderr, no traceback and
nothing left behind.

Each case runs in-process (``main(argv)``) in a fresh workspace. Real work never starts: the
function each command calls once its arguments are checked (a fit, a simulation, a sweep, ...)
is replaced by one that raises :class:`Reached`, so a case that passes the argument layer is
counted as accepted (what the command would then do is tested in the command's own tests).
Commands whose folder argument needs a trained model (probe, connectomics, evaluate) get a
folder holding only a spec: their other arguments are still checked first or refused in one
line.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections import Counter
from pathlib import Path

import click
import pytest

from neurorec.cli import cli, main

REPO = Path(__file__).resolve().parents[1]
MODELS, STIMULI = REPO / "models", REPO / "stimuli"

#: a well-formed value per (command, parameter); paths relative to the workspace
BASE: dict[str, dict[str, list[str] | str | None]] = {
    "validate": {"paths": [str(MODELS / "glm_v1.yaml")]},
    "fit": {"spec_path": str(MODELS / "glm_stimulus_only.yaml"), "data": "v1_gratings:23",
            "out": "out"},
    "demo": {"session": "23", "out": "out"},
    "export-nwb": {"source": "v1_gratings:23", "out": "x.nwb"},
    "sweep": {"sweep_path": str(REPO / "sweeps" / "glm_v1_sessions.yaml"), "out": "out"},
    "simulate": {"spec_path": str(MODELS / "ctrnn_flipflop.yaml"),
                 "protocol": str(STIMULI / "task_flip_flop.yaml"), "out": "out"},
    "train": {"spec_path": str(MODELS / "ctrnn_flipflop.yaml"),
              "task_path": str(STIMULI / "task_flip_flop.yaml"), "out": "out"},
    "probe": {"fit_dir": "trained", "protocol": str(STIMULI / "ssrnn_direction_probe.yaml"),
              "out": "out"},
    "connectomics": {"fit_dir": "trained", "tuning": "tuning.csv", "out": "out"},
    "evaluate": {"fit_dir": "fitted", "out": "out"},
    "datasets": {},
}

#: where real work would start: (module, attribute) replaced by a function raising Reached
WORK = [("neurorec.workflows.pipeline", "fit_and_evaluate"),
        ("neurorec.cli", "_units_split"),  # fit --workers/--scheduler: opens a dask client
        ("neurorec.families.ctrnn.run", "simulate_to_dir"),
        ("neurorec.families.ctrnn.run", "train_to_dir"),
        ("neurorec.workflows.probe", "train_on_stimulus"),
        ("neurorec.workflows.probe", "probe_target"),
        ("neurorec.workflows.probe", "connectomics_predictions"),
        ("neurorec.workflows.sweep", "run_sweep"),
        ("neurorec.workflows.evaluate", "evaluate_fit_dir"),
        ("neurorec.data.nwb", "write_nwb")]

BAD_VALUES = {"wrong type": "abc", "negative": "-1", "zero": "0",
              "huge": "99999999999999999999", "nan": "nan", "file for folder": "afile.txt",
              "folder for file": "emptydir", "unrelated folder": "unrelated"}


class Reached(Exception):
    """The command got past its argument checks to real work."""


def workspace(root: Path) -> None:
    (root / "afile.txt").write_text("not a folder\n")
    (root / "emptydir").mkdir()
    (root / "unrelated").mkdir()
    (root / "unrelated" / "notes.txt").write_text("someone's\n")
    (root / "trained").mkdir()
    shutil.copy(MODELS / "ssrnn_movies.yaml", root / "trained" / "spec.yaml")
    (root / "fitted").mkdir()
    shutil.copy(MODELS / "glm_stimulus_only.yaml", root / "fitted" / "spec.yaml")
    (root / "tuning.csv").write_text("unit,di\n0,0.5\n")


def snapshot(root: Path) -> dict[str, object]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


def flag_of(param: click.Parameter) -> str | None:
    return max(param.opts, key=len) if isinstance(param, click.Option) else None


def argv_for(command: str, values: dict[str, list[str] | str | None],
             params: list[click.Parameter]) -> list[str]:
    argv = [command]
    for p in params:
        value = values.get(p.name)
        if value is None:
            continue
        if isinstance(p, click.Option):
            if p.is_flag:
                argv.append(flag_of(p))
            else:
                for v in (value if isinstance(value, list) else [value]):
                    argv += [flag_of(p), v]
        else:
            argv += value if isinstance(value, list) else [value]
    return argv


def cases() -> list[tuple[str, str, str, list[str]]]:
    """(command, parameter, mutation, argv) for every command × parameter × mutation."""
    out = []
    for name, command in sorted(cli.commands.items()):
        params = [p for p in command.params if p.name != "help"]
        base = dict(BASE.get(name, {}))
        out.append((name, "-", "well-formed", argv_for(name, base, params)))
        for p in params:
            if isinstance(p, click.Option) and p.is_flag:
                values = dict(base)
                values[p.name] = "" if base.get(p.name) is None else None
                out.append((name, p.name, "flag toggled", argv_for(name, values, params)))
                continue
            if p.name in base:
                values = {k: v for k, v in base.items() if k != p.name}
                out.append((name, p.name, "missing", argv_for(name, values, params)))
            for mutation, bad in BAD_VALUES.items():
                values = dict(base)
                values[p.name] = [bad] if p.nargs == -1 else bad
                out.append((name, p.name, mutation, argv_for(name, values, params)))
    return out


CASES = cases()


@pytest.fixture(scope="module")
def patched():
    """Work entry points raise Reached; the bundled dataset loads once."""
    import importlib

    import neurorec.datasets as datasets

    saved = []
    for module, attr in WORK:
        mod = importlib.import_module(module)
        saved.append((mod, attr, getattr(mod, attr)))

        def reached(*args, _where=f"{module}.{attr}", **kwargs):
            raise Reached(_where)

        setattr(mod, attr, reached)
    saved.append((datasets, "load", datasets.load))
    datasets.load = functools.lru_cache(maxsize=8)(datasets.load)
    yield
    for mod, attr, value in saved:
        setattr(mod, attr, value)


def test_every_command_and_argument_is_covered():
    covered = {(c, p) for c, p, _, _ in CASES}
    for name, command in cli.commands.items():
        for p in command.params:
            assert (name, p.name) in covered, (name, p.name)
    assert set(BASE) >= set(cli.commands), "a new command needs a well-formed BASE entry"


def test_fuzz_the_whole_cli(patched, tmp_path, monkeypatch, capsys):
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    start = time.perf_counter()
    for i, (command, param, mutation, argv) in enumerate(CASES):
        ws = tmp_path / f"case{i}"
        ws.mkdir()
        workspace(ws)
        monkeypatch.chdir(ws)
        before = snapshot(ws)
        capsys.readouterr()
        try:
            code = main(argv)
        except Reached:
            outcomes["accepted (reached work)"] += 1
            continue
        except BaseException as err:  # a traceback: the failure looked for
            problems.append(f"{argv}: {type(err).__name__}: {err}")
            continue
        _, err = capsys.readouterr()
        lines = err.splitlines()
        where = f"{command} {param} {mutation}: {argv}"
        if code == 0:
            outcomes["exit 0"] += 1
        elif code == 2:
            outcomes["exit 2"] += 1
            if not 1 <= len(lines) <= 2:
                problems.append(f"{where}: {len(lines)} stderr lines: {lines[:4]}")
            if snapshot(ws) != before:
                problems.append(f"{where}: left {set(snapshot(ws)) ^ set(before)}")
        else:
            problems.append(f"{where}: exit {code}: {lines[:3]}")
        if "Traceback" in err:
            problems.append(f"{where}: traceback")
    elapsed = time.perf_counter() - start
    print(f"{len(CASES)} cases in {elapsed:.1f} s: {dict(outcomes)}")
    assert not problems, "\n".join(problems[:30])
    assert sum(outcomes.values()) == len(CASES)
    assert outcomes["exit 2"] > len(CASES) / 2
