"""``neurorec export-nwb`` of a session fit: the predicted rates as an NWB TimeSeries that
pynapple reads back, spikes drawn from them as units, the split as epochs."""

from __future__ import annotations

import numpy as np
import pytest

nap = pytest.importorskip("pynapple")


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory):
    from neurorec.cli import main
    from neurorec.data.sessions_io import write_session_nwb
    from neurorec.datasets.open_field import simulate_open_field

    folder = tmp_path_factory.mktemp("export")
    session = simulate_open_field(n_units=8, duration_s=120.0, seed=9)
    write_session_nwb(session, folder / "s.nwb", seed=0)
    out = folder / "fit"
    assert main(["fit", "models/session_glm.yaml", "--data", str(folder / "s.nwb"), "--out",
                 str(out), "--quiet"]) == 0
    return out


def test_predicted_rates_read_back_by_pynapple(fit_dir, tmp_path):
    from neurorec.cli import main

    f = tmp_path / "pred.nwb"
    assert main(["export-nwb", str(fit_dir), "--out", str(f), "--seed", "4"]) == 0
    pred = np.load(fit_dir / "predictions.npz")
    data = nap.load_file(str(f))
    rates = data["predicted_rates"]
    assert isinstance(rates, nap.TsdFrame)
    hz = pred["rates"] / float(pred["bin_size_s"])
    assert rates.shape == hz.shape == (12000, 8)
    np.testing.assert_allclose(rates.values, hz, rtol=1e-6, atol=0)
    np.testing.assert_allclose(rates.times(), pred["time_s"], rtol=0, atol=1e-9)
    # units: spikes drawn from the rates; their total is Poisson with the rates' sum as mean
    units = data["units"]
    assert len(units) == 8
    total = sum(len(units[k]) for k in units.keys())
    expected = pred["rates"].sum()
    assert abs(total - expected) < 5 * np.sqrt(expected)
    # re-binned on the fit's bins, each unit's count in 1 s windows follows its rate
    b = float(pred["bin_size_s"])
    edges = np.r_[pred["time_s"] - b / 2, pred["time_s"][-1] + b / 2]
    for k, key in enumerate(units.keys()):
        y = np.histogram(units[key].times(), edges)[0]
        mu = pred["rates"][:, k]
        assert abs(y.sum() - mu.sum()) < 5 * np.sqrt(mu.sum())
        r = np.corrcoef(y.reshape(-1, 100).sum(1), mu.reshape(-1, 100).sum(1))[0, 1]
        assert r > 0.5  # measured 0.69 .. 0.95 (seed 4)
    # the split as epochs, as the fit used it
    epochs = data["epochs"]
    test_s = sum(e - s for s, e, lab in zip(epochs.start, epochs.end, epochs.get_info("split"),
                                            strict=True) if lab == "test")
    assert test_s == pytest.approx((pred["split"] == "test").sum() * float(pred["bin_size_s"]),
                                   rel=1e-6)


def test_session_export_refuses_set_in_one_line(fit_dir, tmp_path, capsys):
    from neurorec.cli import main

    f = tmp_path / "x.nwb"
    code = main(["export-nwb", str(fit_dir), "--out", str(f), "--set",
                 "sampling.max_rate_hz=500"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "--set" in err and not f.exists()
