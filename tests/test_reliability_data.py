"""Bad data: randomly corrupted NWB files (written with pynwb directly, as a foreign tool would)
and corrupted bundled recordings are answered by ``neurorec fit`` with exit code 2 and one
line per problem ``SOURCE: field: message``, never a traceback and never an output directory;
a valid spec that would need more memory than the machine has is refused up front with the
estimate.

Classes: unsorted, negative, NaN and out-of-range spike times, empty units, missing trials
table, missing units table, trials with stop <= start, mismatched shapes (unit ids vs spike
trains), not an NWB file. Counts per class are printed at the end of the module.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurorec.cli import main
from neurorec.core.errors import DataError, NeurorecError
from neurorec.data import validate_recording
from neurorec.datasets import load
from neurorec.spec import load_model_spec
from neurorec.workflows.resources import (
    available_memory_bytes,
    check_fit_memory,
    estimate_fit_memory,
)

REPO = Path(__file__).resolve().parents[1]
GLM_V1 = REPO / "models" / "glm_v1.yaml"
SETTINGS = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
COUNTS: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    lines = ["", "bad data files tried (class: answer = count):"]
    lines += [f"  {cls:<28} {answer:<28} {n}" for (cls, answer), n in sorted(COUNTS.items())]
    print("\n".join(lines), file=sys.__stderr__)


@pytest.fixture(scope="module")
def base():
    """A small real recording: V1 session 0, 3 units, the first 24 trials."""
    rec = load("v1_gratings:0")
    trials = rec.trials.iloc[:24].reset_index(drop=True)
    end = float(trials["stop_time"].max())
    keep = [0, 3, 21]
    return dataclasses.replace(rec, trials=trials, unit_ids=rec.unit_ids[keep],
                               spike_times=[rec.spike_times[i][rec.spike_times[i] <= end]
                                            for i in keep])


def write_raw_nwb(path: Path, spikes, trials, with_trials=True, with_units=True) -> Path:
    """An NWB file as another tool writes it: no neurorec validation on the way."""
    from pynwb import NWBHDF5IO, NWBFile

    nwb = NWBFile("corrupted", "id", datetime(2020, 1, 1, tzinfo=UTC))
    if with_trials:
        nwb.add_trial_column("direction", "deg")
        for row in trials.itertuples():
            nwb.add_trial(start_time=float(row.start_time), stop_time=float(row.stop_time),
                          direction=float(row.direction))
    if with_units:
        for t in spikes:
            nwb.add_unit(spike_times=np.asarray(t, dtype=float))
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def fit_lines(capsys, data: str, tmp: Path) -> list[str]:
    """stderr lines of a fit on ``data``, asserting exit 2, nothing written, no traceback."""
    capsys.readouterr()
    out = tmp / "out"
    code = main(["fit", str(GLM_V1), "--data", data, "--out", str(out), "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 2, err
    assert stdout == "" and not out.exists() and not (tmp / "out.partial").exists()
    lines = err.splitlines()
    assert lines and all("Traceback" not in line for line in lines)
    for line in lines:
        assert line.startswith(f"{data}: "), line
        assert re.fullmatch(re.escape(data) + r": [\w .()'\[\]]+: \S.*", line), line
    return lines


# (class, corruption of one unit's spike times, expected message for unit index u)
SPIKE_CORRUPTIONS = {
    "unsorted spike times": (lambda t, i: np.concatenate([t[:i], t[i:][::-1]]),
                             r"unit {u}: spike times not sorted \(spike \d+ at"),
    "negative spike times": (lambda t, i: np.concatenate([[-0.5 - i], t]),
                             r"unit {u}: 1 negative spike times \(first -\d"),
    "NaN spike times": (lambda t, i: np.insert(t, i, np.nan),
                        r"unit {u}: 1 spike times are NaN or infinite"),
    "out-of-range spike times": (lambda t, i: np.append(t, t.max() + 1000.0 + i),
                                 r"unit {u}: 1 spikes after the last trial's stop_time "),
    "empty unit": (lambda t, i: t[:0], r"unit {u}: no spikes \(empty unit\)"),
}


@SETTINGS
@given(st.sampled_from(sorted(SPIKE_CORRUPTIONS)), st.integers(0, 2), st.integers(1, 40))
def test_corrupted_spike_times_in_nwb(capsys, base, cls, unit, where):
    corrupt, pattern = SPIKE_CORRUPTIONS[cls]
    spikes = [t.copy() for t in base.spike_times]
    spikes[unit] = corrupt(spikes[unit], where)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_raw_nwb(Path(tmp) / "bad.nwb", spikes, base.trials)
        lines = fit_lines(capsys, str(path), Path(tmp))
    assert len(lines) == 1, lines
    assert re.search(pattern.format(u=unit), lines[0]), lines
    COUNTS[cls, "exit 2, one line"] += 1


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    ("missing trials table", {"with_trials": False}, "trials: the file has no trials table"),
    ("missing units table", {"with_units": False}, "units: the file has no units table"),
])
def test_missing_tables(capsys, base, tmp_path, cls, kwargs, message):
    path = write_raw_nwb(tmp_path / "bad.nwb", base.spike_times, base.trials, **kwargs)
    assert fit_lines(capsys, str(path), tmp_path) == [f"{path}: {message}"]
    COUNTS[cls, "exit 2, one line"] += 1


def test_trials_ending_before_they_start(capsys, base, tmp_path):
    trials = base.trials.copy()
    trials.loc[5, "stop_time"] = trials.loc[5, "start_time"] - 0.1
    path = write_raw_nwb(tmp_path / "bad.nwb", base.spike_times, trials)
    lines = fit_lines(capsys, str(path), tmp_path)
    assert lines == [f"{path}: trials: 1 trials with stop_time <= start_time (first at row 5: "
                     f"{trials.loc[5, 'start_time']:.6g} s to {trials.loc[5, 'stop_time']:.6g} s)"]
    COUNTS["trial stop <= start", "exit 2, one line"] += 1


def test_several_problems_one_line_each(capsys, base, tmp_path):
    spikes = [t.copy() for t in base.spike_times]
    spikes[0] = spikes[0][::-1]
    spikes[2] = np.append(spikes[2], np.nan)
    path = write_raw_nwb(tmp_path / "bad.nwb", spikes, base.trials)
    lines = fit_lines(capsys, str(path), tmp_path)
    assert len(lines) == 2
    assert "unit 0: spike times not sorted" in lines[0]
    assert lines[1] == f"{path}: unit 2: 1 spike times are NaN or infinite"
    COUNTS["two problems in one file", "exit 2, two lines"] += 1


@pytest.mark.parametrize("content", [b"", b"not an hdf5 file\n", b"\x89HDF\r\n\x1a\n" + b"0" * 64])
def test_not_an_nwb_file(capsys, tmp_path, content):
    path = tmp_path / "bad.nwb"
    path.write_bytes(content)
    (line,) = fit_lines(capsys, str(path), tmp_path)
    assert line.startswith(f"{path}: file: cannot read as NWB (")
    COUNTS["not an NWB file", "exit 2, one line"] += 1


# ---------------------------------------------------------------------- bundled recordings
@pytest.mark.parametrize(("cls", "change", "message"), [
    ("mismatched shapes", lambda r: dataclasses.replace(r, unit_ids=r.unit_ids[:-1]),
     "unit_ids: expected one id per unit (3), got 2"),
    ("duplicated unit ids", lambda r: dataclasses.replace(r, unit_ids=np.array(["a", "a", "b"])),
     "unit_ids: duplicated ids ['a']"),
    ("2-D spike times", lambda r: dataclasses.replace(
        r, spike_times=[r.spike_times[0].reshape(-1, 1), *r.spike_times[1:]]),
     "spike times must be 1-D, got shape"),
    ("missing stimulus values", lambda r: dataclasses.replace(
        r, trials=r.trials.assign(direction=r.trials["direction"].where(
            r.trials.index != 3))), "trials.direction: 1 missing values"),
])
def test_corrupted_bundled_recording(capsys, base, tmp_path, monkeypatch, cls, change, message):
    bad = change(base)
    with pytest.raises(DataError) as info:
        validate_recording(bad)
    assert len(info.value.lines) == 1 and message in info.value.lines[0]

    def loader(source):  # the bundled dataset, as the fit command reads it, then validated
        validate_recording(bad)
        return bad

    monkeypatch.setattr("neurorec.workflows.pipeline.load_recording", loader)
    (line,) = fit_lines(capsys, bad.source, tmp_path)
    assert message in line
    COUNTS[f"bundled: {cls}", "exit 2, one line"] += 1


# ---------------------------------------------------------------------- memory refused up front
def test_memory_estimate_refuses_huge_valid_spec(capsys, tmp_path):
    """1 µs bins on V1 (0.9 s trials): ~900k bins × 2300 trials × 38 units; valid spec."""
    code = main(["fit", str(GLM_V1), "--data", "v1_gratings:0", "--out", str(tmp_path / "o"),
                 "--set", "data.bin_size=1 us", "--quiet"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    m = re.fullmatch(r"v1_gratings:0: memory: fitting glm needs about ([\d.e+]+) GiB for (\d+) "
                     r"trials × (\d+) bins × 38 units \(.+\), but ([\d.e+]+) GiB are available; "
                     r"use a larger data.bin_size.*", err[0])
    assert m, err[0]
    assert abs(int(m[3]) - 900_000) <= 1  # floor(0.9 s / 1 µs + 1e-9)
    assert float(m[1]) > float(m[4])
    assert not (tmp_path / "o").exists()
    COUNTS["valid spec, too much memory", "exit 2, one line"] += 1


@pytest.mark.slow
def test_memory_estimate_bounds_a_measured_fit():
    """The estimate is an upper bound of a real fit's peak memory, within a small factor:
    measured here as the growth of the process's peak RSS around a fit of V1 session 0."""
    import resource
    import subprocess

    code = ("import resource, torch; torch.set_num_threads(1)\n"
            "from neurorec.datasets import load\n"
            "from neurorec.workflows.pipeline import fit_and_evaluate\n"
            "from neurorec.spec import load_model_spec\n"
            f"spec = load_model_spec('{GLM_V1}', ['fit.max_iter=3'])\n"
            "rec = load('v1_gratings:0')\n"
            "fit_and_evaluate(spec, rec, progress=False)\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    peak = int(proc.stdout.split()[-1])
    est = estimate_fit_memory(load_model_spec(GLM_V1, ["fit.max_iter=3"]), load("v1_gratings:0"))
    print(f"\nGLM V1 session 0: estimated {est.total_bytes / 2**20:.0f} MiB, measured peak RSS "
          f"{peak / 2**20:.0f} MiB ({est.describe()})", file=sys.__stderr__)
    assert peak <= est.total_bytes <= 2 * peak
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_available_memory_and_refusal_text():
    avail = available_memory_bytes()
    assert avail is not None and 0 < avail <= 2**50
    spec = load_model_spec(GLM_V1)
    rec = load("v1_gratings:0")
    est = estimate_fit_memory(spec, rec)
    check_fit_memory(spec, rec, available=est.total_bytes)  # exactly enough: accepted
    with pytest.raises(NeurorecError, match=r"^v1_gratings:0: memory: fitting glm needs about "):
        check_fit_memory(spec, rec, available=est.total_bytes - 1)
