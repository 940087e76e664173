"""A session's covariates as model inputs, and its contiguous stretches cut into windows:
what lets a trial-based model (PLDS, ctrnn_obs) fit a :class:`BinnedSession`."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from neurorec.core.errors import DataError
from neurorec.data.session import BinnedSession


def covariate_columns(session: BinnedSession, names: tuple[str, ...]) -> np.ndarray:
    """(n_bins, P) the named covariates side by side (each (n_bins,) or (n_bins, dims))."""
    cols = [np.asarray(session.covariates[k], float).reshape(session.n_bins, -1)
            for k in names]
    return np.concatenate(cols, axis=1) if cols else np.zeros((session.n_bins, 0))


@dataclass(frozen=True)
class CovariateScaler:
    """Standardises the covariates ``names`` (sorted) with the mean and SD of the bins it was
    made from; NaN (unobserved) becomes 0, the mean."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, session: BinnedSession) -> CovariateScaler:
        names = tuple(sorted(session.covariates))
        raw = covariate_columns(session, names)
        with np.errstate(all="ignore"):
            mean, std = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
        return cls(names, np.nan_to_num(mean), np.where(np.isfinite(std) & (std > 0), std, 1.0))

    def __call__(self, session: BinnedSession) -> np.ndarray:
        """(n_bins, P) the standardised covariates of ``session``."""
        missing = [k for k in self.names if k not in session.covariates]
        if missing:
            raise DataError(f"{session.source}: covariates: the model was fitted with "
                            f"{list(self.names)}, missing {missing}")
        z = (covariate_columns(session, self.names) - self.mean) / self.std
        return np.where(np.isnan(z), 0.0, z)


def windows(session: BinnedSession, length: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive ``length``-bin windows inside each contiguous stretch
    (segment) of ``session``; a stretch's remainder shorter than ``length`` is left out.
    DataError when there is no window at all."""
    bounds = session.segment_bounds()
    out = [(int(a) + k * length, int(a) + (k + 1) * length)
           for a, b in itertools.pairwise(bounds) for k in range(int(b - a) // length)]
    if not out:
        raise DataError(f"{session.source}: split: no stretch of {length} contiguous "
                        "training bins (the model's session window)")
    return out


def segments(session: BinnedSession) -> list[tuple[int, int]]:
    """``(start, stop)`` of each contiguous stretch of ``session``."""
    return [(int(a), int(b)) for a, b in itertools.pairwise(session.segment_bounds())]
