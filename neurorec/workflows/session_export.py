"""``neurorec export-nwb FIT_DIR`` for a session fit (``data.mode: session``).

The file holds what the fit predicted, on the fit's own bins (``predictions.npz``):

- ``processing/neurorec/predicted_rates``: a ``TimeSeries`` (n_bins, n_units) of the model's
  predicted rates in **Hz** (expected spikes per bin / bin width), one-step-ahead: each bin's
  rate given the covariates and the *recorded* spikes before it, timestamps at the bin
  centres (seconds, the session's clock); the columns are the units in ``units`` order
  (``unit_name`` there, and the series' ``comments``). ``nap.load_file(F)["predicted_rates"]``
  reads it back as a ``TsdFrame``;
- ``units``: spike times drawn from those rates — each bin's count ``Poisson(rate × bin)``
  independently given the recorded past, placed uniformly inside its bin (seeded). This is
  a draw of the fitted conditional intensity, *not* a closed-loop sample of the model (whose
  history would read its own draws; :func:`neurorec.families.glm.brian2_session.
  simulate_brian2_session` draws one of those, given the session's covariates);
- ``epochs`` with the fit's ``split`` column (one row per run of bins with one segment and
  one split value), as :func:`neurorec.data.sessions_io.write_session_nwb` writes them.
  The behavioural covariates are not copied (they are in the recording the fit read).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from neurorec.core.errors import DataError
from neurorec.data.session import BinnedSession

PROCESSING_MODULE = "neurorec"
RATES_SERIES = "predicted_rates"


def _predictions(fit_dir: Path) -> dict[str, np.ndarray]:
    path = fit_dir / "predictions.npz"
    with np.load(path) as pred:
        need = ("rates", "time_s", "split", "segment", "unit_ids", "bin_size_s")
        missing = [k for k in need if k not in pred.files]
        if missing:
            raise DataError(f"{path}: {', '.join(missing)}: not found (not a session fit's "
                            "predictions)")
        return {k: pred[k] for k in need}


def export_session_fit(fit_dir: Path, out: Path, seed: int = 0) -> dict:
    """Write ``fit_dir``'s predicted rates (Hz) and spikes drawn from them to ``out``.

    Args:
        fit_dir: a ``neurorec fit`` output of a session model (``predictions.npz`` with
            ``rates`` (n_bins, n_units) expected counts per bin, ``time_s``, ``split``,
            ``segment``, ``unit_ids``, ``bin_size_s``).
        out: the NWB file (written atomically).
        seed: seed of the Poisson draws and of the spikes' places inside their bins.
    Returns:
        ``n_units``, ``n_bins``, ``n_spikes`` written.
    """
    from pynwb import NWBHDF5IO, TimeSeries

    from neurorec.core.outputs import chmod_per_umask
    from neurorec.data.sessions_io import write_session_nwb

    fit_dir, out = Path(fit_dir), Path(out)
    pred = _predictions(fit_dir)
    rates = np.asarray(pred["rates"], float)  # expected counts per bin
    bin_size = float(pred["bin_size_s"])
    if not np.isfinite(rates).all() or (rates < 0).any():
        raise DataError(f"{fit_dir / 'predictions.npz'}: rates: not finite and non-negative")
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rates).astype(np.int64)
    unit_ids = np.asarray(pred["unit_ids"]).astype(str)
    session = BinnedSession(
        counts=counts, bin_size=bin_size, time=np.asarray(pred["time_s"], float),
        covariates={}, split=np.asarray(pred["split"]).astype(str),
        segment=np.asarray(pred["segment"], np.int64), unit_ids=unit_ids,
        source=f"spikes drawn from the predicted rates of {fit_dir}",
        metadata={"description": f"neurorec export-nwb of {fit_dir}: predicted rates (Hz) "
                                 f"and Poisson draws from them, seed {seed}"})
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".nwb", dir=out.parent)
    os.close(fd)
    try:
        write_session_nwb(session, tmp, seed=seed + 1, series=[])
        with NWBHDF5IO(tmp, "a") as io:
            nwb = io.read()
            module = nwb.create_processing_module(
                PROCESSING_MODULE, f"neurorec fit {fit_dir.name}: the model's predictions")
            module.add(TimeSeries(
                name=RATES_SERIES, data=rates / bin_size, unit="Hz",
                timestamps=session.time,
                description=(f"one-step-ahead predicted rate of each unit (columns in units "
                             f"order), Hz = expected spikes per {bin_size * 1e3:g} ms bin / "
                             "bin width; timestamps are bin centres"),
                comments="units: " + ", ".join(unit_ids)))
            io.write(nwb)
        chmod_per_umask(tmp)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"n_units": int(counts.shape[1]), "n_bins": int(counts.shape[0]),
            "n_spikes": int(counts.sum())}


__all__ = ["PROCESSING_MODULE", "RATES_SERIES", "export_session_fit"]
