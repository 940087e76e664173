"""`neurorec probe` / `connectomics` / `train --stimulus`: the direction protocol measures what
it claims (no aliasing, whole cycles, closed-form DI of a constructed direction-selective
bank, exactly 0 without recurrence) and the commands run end to end or refuse bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurorec.cli import main
from neurorec.core.errors import SpecError
from neurorec.spec import load_stimulus_spec
from neurorec.spec.stimuli import DriftingGratingsSpec
from neurorec.stimuli.gratings import (
    conditions,
    cycle_window,
    grating_clips,
    sampling_problems,
    temporal_frequency,
)
from neurorec.workflows.probe import ProbeTarget, load_protocol, probe_target, tuning_rows

ROOT = Path(__file__).resolve().parents[1]
PROBE = ROOT / "stimuli" / "ssrnn_direction_probe.yaml"


def small_protocol(**kw) -> DriftingGratingsSpec:
    base = {"directions": [0, 45, 90, 135, 180, 225, 270, 315], "speeds": [1.0, 2.0],
            "spatial_frequencies": [2.5], "phases": [0, 90, 180, 270], "size_px": 12,
            "degrees_per_px": 0.1,
            "timing": {"frame_rate": 30.0, "duration": 1.0, "shuffle_seed": None}}
    return DriftingGratingsSpec(**{**base, **kw})


def test_bundled_probe_has_no_aliased_condition():
    spec = load_stimulus_spec(PROBE)
    rate = float(spec.timing.frame_rate)
    tfs = np.array([temporal_frequency(c) for c in conditions(spec)])
    assert tfs.max() <= rate / 4 + 1e-12  # <= 90 deg of phase per frame
    periods = rate / tfs
    assert np.allclose(periods, np.round(periods))  # whole frames per cycle
    window = cycle_window(spec)
    assert window is not None and np.all(window % np.round(periods) == 0)
    assert sampling_problems(spec) == []
    assert len(spec.phases) >= 4


def test_aliased_protocol_is_refused_with_one_line(tmp_path):
    old = ROOT / "stimuli" / "ssrnn_probe_gratings.yaml"  # 6 deg/s at 4 cyc/deg: 24 Hz
    with pytest.raises(SpecError) as err:
        load_protocol(old)
    assert len(err.value.lines) == 1 and "aliased" in err.value.lines[0]
    assert sampling_problems(small_protocol(phases=[0, 90]))  # too few phases
    assert sampling_problems(small_protocol(phases=[0, 10, 20, 30]))  # not spread


def motion_energy_target(spec: DriftingGratingsSpec) -> ProbeTarget:
    """One quadrature motion-energy unit on gratings along x (direction 0 / 180):
    ``a_t = <cos kx, frame_t> + i <sin kx, frame_t>``, response ``|a_t − i a_{t−1}|²``.
    A grating drifting along 0° gives ``a_t ∝ e^{iωt}`` and energy ∝ 2 − 2 sin ω; along 180°,
    2 + 2 sin ω (ω the phase step per frame), so DI = 2 sin ω / (1 + sin ω)."""
    x = (np.arange(spec.size_px) - (spec.size_px - 1) / 2) * spec.degrees_per_px
    kx = 2 * np.pi * 2.5 * np.broadcast_to(x, (spec.size_px, spec.size_px))

    def respond(pspec, contrast, R=None, untrained_model=False):
        frames = grating_clips(pspec, contrast).astype(np.float64)
        a = np.einsum("ctij,ij->ct", frames, np.cos(kx)) + 1j * np.einsum(
            "ctij,ij->ct", frames, np.sin(kx))
        e = np.abs(a[:, 1:] - 1j * a[:, :-1]) ** 2
        return e[:, -cycle_window(pspec):].mean(axis=1)[:, None]

    return ProbeTarget("test", 1, np.zeros((1, 1)), respond,
                       lambda s: np.ones(len(conditions(s))), None, False, True)


def test_di_of_constructed_direction_selective_unit():
    spec = small_protocol()
    target = motion_energy_target(spec)
    responses = probe_target(target, spec)
    rows, metrics = tuning_rows(target, spec, responses)
    omega = 2 * np.pi * 2.5 * 2.0 / 30.0  # preferred speed 2 deg/s: 5 Hz, 60° per frame
    expected = 2 * np.sin(omega) / (1 + np.sin(omega))
    assert rows[0]["preferred_direction"] == 180.0
    assert rows[0]["preferred_speed"] == 2.0
    assert rows[0]["di"] == pytest.approx(expected, rel=1e-9)
    assert metrics["di_median"] == pytest.approx(expected, rel=1e-9)


TINY_MODEL = """kind: ssrnn
name: tiny
n_units: 16
prior_p: 0.1
slab: {slab}
inference: {{max_steps: 20, tol: 0.05}}
learning: {{n_iterations: 6, batch_clips: 8, checkpoint_every: 3, lr_r: 5.0}}
"""
TINY_MOVIE = """kind: natural_movie
name: tiny_movie
images: [skimage:camera]
downsample: 2
patch_px: 12
n_clips: 24
blur_px: 0.7
whitening: {method: zca, eps: 0.1}
timing: {frame_rate: 30 Hz, duration: 0.4 s}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    (d / "model.yaml").write_text(TINY_MODEL.format(slab="nonnegative"))
    (d / "movie.yaml").write_text(TINY_MOVIE)
    spec = small_protocol(speeds=[1.0], directions=[0, 90, 180, 270], contrasts=[0.5, 1.0])
    (d / "probe.yaml").write_text(json.dumps({"kind": "drifting_gratings",
                                              **spec.model_dump(mode="json")}))
    assert main(["train", str(d / "model.yaml"), "--stimulus", str(d / "movie.yaml"),
                 "--out", str(d / "fit"), "--quiet"]) == 0
    return d


def test_probe_and_connectomics_on_a_small_trained_model(trained):
    d = trained
    assert main(["probe", str(d / "fit"), "--protocol", str(d / "probe.yaml"), "--out",
                 str(d / "probe")]) == 0
    tun = pd.read_csv(d / "probe" / "tuning.csv")
    assert len(tun) == 16
    for col in ("preferred_direction", "di", "osi", "preferred_speed", "preferred_sf",
                "responsive"):
        assert col in tun.columns
    with np.load(d / "probe" / "responses.npz") as r:
        assert r["learned"].shape == (16, 4, 1, 1)
        assert r["sweep"].shape == (16, 4, 1, 1, 2)
        learned = r["learned"]
    # DI recomputed from responses.npz by hand
    k = int(np.argmax(learned[:, :, 0, 0].max(axis=1)))
    curve = learned[k, :, 0, 0]
    assert tun["di"][k] == pytest.approx(1 - curve[(curve.argmax() + 2) % 4] / curve.max())
    # without recurrence the network is feed-forward: a grating and its opposite show the
    # same frames over whole cycles, so DI is 0 up to float32 rounding of the frames
    ok = tun["responsive"].to_numpy(bool)
    assert ok.any()
    assert np.nanmax(np.abs(tun.loc[ok, "di_r_zero"])) < 1e-6
    assert np.nanmax(np.abs(tun.loc[ok, "di_untrained"])) < 1e-6  # untrained: R = 0 too
    m = json.loads((d / "probe" / "metrics.json").read_text())
    for key in ("di_median", "di_frac_above_0_5", "di_median_r_zero", "di_median_r_shuffled",
                "di_median_untrained", "n_ds_units"):
        assert key in m
    assert (d / "probe" / "polar.png").is_file() and (d / "probe" / "report.html").is_file()
    # connectomics on this R with every unit tuned and direction-selective (tuning drawn at
    # random, seeded), so that every prediction is testable
    rng = np.random.default_rng(0)
    pref = rng.choice(np.arange(0, 360, 45.0), 16)
    tun2 = tun.assign(responsive=True, osi=1.0, di=1.0, preferred_direction=pref,
                      preferred_orientation=pref % 180)
    tun2.to_csv(d / "tuning_all.csv", index=False)
    assert main(["connectomics", str(d / "fit"), "--tuning", str(d / "tuning_all.csv"),
                 "--out", str(d / "cx")]) == 0
    pred = pd.read_csv(d / "cx" / "predictions.csv")
    assert list(pred.columns[:6]) == ["prediction", "effect", "ci_low", "ci_high", "p",
                                      "n_units"]
    assert "effect_r_shuffled" in pred.columns
    assert pred["prediction"].str.contains("preferred direction").any()
    assert (pred["p"] > 0).all() and (pred["p"] <= 1).all()
    assert (pred["ci_low"] <= pred["ci_high"]).all()


@pytest.mark.parametrize("what", ["protocol", "fit_dir", "tuning"])
def test_bad_input_one_line_exit_2_nothing_written(trained, tmp_path, capsys, what):
    d = trained
    out = tmp_path / "out"
    bad_protocol = ROOT / "stimuli" / "ssrnn_probe_gratings.yaml"  # aliased
    if what == "protocol":
        argv = ["probe", str(d / "fit"), "--protocol", str(bad_protocol), "--out", str(out)]
    elif what == "fit_dir":
        argv = ["probe", str(tmp_path), "--protocol", str(d / "probe.yaml"), "--out", str(out)]
    else:
        (tmp_path / "t.csv").write_text("unit,di\n0,0.1\n")
        argv = ["connectomics", str(d / "fit"), "--tuning", str(tmp_path / "t.csv"), "--out",
                str(out)]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert not out.exists()


@pytest.mark.slow
def test_probe_and_connectomics_on_a_ctrnn_obs_with_direction_input(tmp_path):
    """A ct-RNN fitted to V1 spikes with the direction as (cos, sin) input is probed at
    every direction of the protocol and its W_rec tested; R = 0 keeps the input's own
    direction selectivity (a cos/sin input is direction selective by itself)."""
    fit = tmp_path / "fit"
    assert main(["fit", str(ROOT / "models" / "ctrnn_v1_direction.yaml"), "--data",
                 "v1_gratings:3", "--out", str(fit), "--quiet", "--set",
                 "training.n_steps=5", "--set", "training.early_stopping=false"]) == 0
    assert main(["probe", str(fit), "--protocol", str(PROBE), "--out",
                 str(tmp_path / "probe")]) == 0
    tun = pd.read_csv(tmp_path / "probe" / "tuning.csv")
    assert len(tun) == 32 and tun["preferred_speed"].isna().all()
    assert set(tun["preferred_direction"]) <= set(load_stimulus_spec(PROBE).directions)
    assert main(["connectomics", str(fit), "--tuning", str(tmp_path / "probe" / "tuning.csv"),
                 "--out", str(tmp_path / "cx")]) == 0
    assert (tmp_path / "cx" / "predictions.csv").is_file()
