"""The penalty of a model built from parts, computed outside the model.

A model lists its penalised parameters as ``(name, group, mask)`` (the GLM's terms, see
:mod:`neurorec.families.glm.terms`): ``group`` ``"stimulus"`` takes the ``stimulus_l2`` ridge
(centred where the model gives a centre), ``"weights"`` the ``l1`` / ``l2`` penalties (other
named groups: ``l1`` and their own L2 weight), None nothing; ``mask`` (a function of the
parameter's value, or None) zeroes weights the model does not use, so that they neither count
nor move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

Tensor = torch.Tensor
L1_SMOOTHING = 1e-6  # |w| ≈ sqrt(w² + ε²) - ε keeps the objective smooth for L-BFGS
Piece = tuple[str, str | None, Callable[[Tensor], Tensor] | None]


@dataclass(frozen=True)
class Regulariser:
    """``stimulus_l2 Σ (w - centre)²`` on the stimulus group, ``l2 Σ w² + l1 Σ |w|`` (smoothed)
    on the weights group; weights per bin and neuron (the objective is the mean NLL)."""

    l1: float = 0.0
    l2: float = 0.0
    stimulus_l2: float = 0.0
    #: (group, l2) of further weight groups with their own L2 (e.g. the R-GLM's latent);
    #: they take ``l1`` like the weights group
    group_l2: tuple[tuple[str, float], ...] = ()

    def weight(self, group: str | None) -> float:
        """The L2 weight of a penalty group."""
        return {"stimulus": self.stimulus_l2, "weights": self.l2,
                **dict(self.group_l2)}.get(group, 0.0)

    def add(self, objective: Tensor, params: dict[str, Tensor], pieces: Iterable[Piece],
            centres: dict[str, Tensor] | None = None) -> Tensor:
        """``objective`` plus the penalty of ``params`` (parameters absent are skipped).

        The stimulus ridge comes first, then each weight's ``l2`` and ``l1`` in ``pieces``
        order (a fixed order keeps the summed floats reproducible).
        """
        pieces = [p for p in pieces if p[0] in params]
        centres = centres or {}
        if self.stimulus_l2:
            for name, group, _ in pieces:
                if group == "stimulus":
                    w = params[name]
                    if name in centres:
                        w = w - centres[name]
                    objective = objective + self.stimulus_l2 * (w**2).sum()
        for name, group, mask in pieces:
            if group in (None, "stimulus"):
                continue
            w = params[name]
            if mask is not None:
                w = w * mask(w)
            l2 = self.weight(group)
            if l2:
                objective = objective + l2 * (w**2).sum()
            if self.l1:
                objective = objective + self.l1 * (
                    torch.sqrt(w**2 + L1_SMOOTHING**2) - L1_SMOOTHING).sum()
        return objective

    def newton_l2(self, groups: list[tuple[slice, str | None]], n_cols: int, n_rows: int,
                  n_units: int, like: Tensor) -> Tensor:
        """(n_cols,) L2 weight of each design column on the summed NLL (the mean NLL's
        weights times its denominator ``n_rows · n_units``)."""
        weight = torch.zeros(n_cols, dtype=like.dtype, device=like.device)
        for sl, group in groups:
            weight[sl] = self.weight(group)
        return weight * n_rows * n_units


__all__ = ["L1_SMOOTHING", "Regulariser"]
