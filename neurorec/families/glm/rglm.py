"""Recurrent GLM (Pachitariu, Petreska & Sahani 2013).

A hidden linear state summarises the population's past and adds to every unit's drive::

    x_t = W0 y_{t-1} + R x_{t-1},   x_{-1} = 0, y_{-1} = 0 at each trial start
    drive_i(t) = GLM drive_i(t) + B_i · x_t

In co-smoothing mode (``heldout`` set) ``y`` here is the held-in units' counts only: ``W0``'s
held-out columns start and stay at zero (their input is zeroed).

Eigenvalues ``λ`` of ``R`` give the latent time constants ``τ = -Δt / ln|λ|``.
"""

from __future__ import annotations

import numpy as np
import torch

from neurorec.core.recurrence import linear_recurrence
from neurorec.data.recording import BinnedTrials
from neurorec.families.glm.glm import GLM
from neurorec.families.glm.spec import GLMSpec, RGLMSpec

Tensor = torch.Tensor
__all__ = ["RGLM", "linear_recurrence", "time_constants"]
def time_constants(R: np.ndarray, bin_size: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of ``R`` (sorted by modulus, largest first) and their time constants (s).

    ``τ = -bin_size / ln|λ|``; ``inf`` for |λ| ≥ 1 (a non-decaying mode).
    """
    eig = np.linalg.eigvals(R)
    eig = eig[np.argsort(-np.abs(eig))]
    modulus = np.abs(eig)
    with np.errstate(divide="ignore"):
        tau = np.where((modulus < 1) & (modulus > 0), -bin_size / np.log(modulus), np.inf)
    tau[modulus == 0] = 0.0
    return eig, tau


class RGLM(GLM):
    """GLM plus the hidden linear recurrent state; ``params_`` gains ``W0``, ``R``, ``B``."""

    spec: RGLMSpec

    def _extra_init(self, data: BinnedTrials, gen: torch.Generator) -> dict[str, Tensor]:
        rec, n_units = self.spec.recurrent, data.counts.shape[2]
        W0 = torch.randn(rec.dim, n_units, generator=gen, dtype=torch.float64) * rec.init_scale
        B = torch.randn(n_units, rec.dim, generator=gen, dtype=torch.float64) * rec.init_scale
        q, _ = torch.linalg.qr(torch.randn(rec.dim, rec.dim, generator=gen, dtype=torch.float64))
        if self.heldout is not None:  # co-smoothing: no latent input from held-out units
            W0[:, np.asarray(self.heldout, dtype=bool)] = 0.0
        return {"W0": self._tensor(W0), "R": self._tensor(q * rec.init_radius),
                "B": self._tensor(B)}

    def _warm_start(self, data: BinnedTrials, init: dict[str, Tensor]) -> dict[str, Tensor]:
        """The fitted GLM (the same spec without the latent, batched Newton on the same
        trials) with the latent's readout ``B = 0``: the first iterate *is* that GLM, and
        L-BFGS can only lower the penalised objective from there (``W0``, ``R`` keep their
        random start so that the gradient in ``B`` is not zero)."""
        if not self.spec.recurrent.warm_start or self.observation_name == "gaussian" or \
                self.spec.penalty.l1:
            return init
        glm_spec = GLMSpec(**self.spec.model_dump(exclude={"kind", "recurrent", "name"}),
                           name=f"{self.spec.name} (warm start)")
        glm = GLM(glm_spec, device=str(self.device), seed=self.seed)
        glm.heldout = self.heldout
        glm.unit_order_ = self.unit_order_
        glm._fit_newton(data, progress=False)
        start = dict(init)
        for name, value in glm.params_.items():
            start[name] = self._tensor(value)
        start["B"] = torch.zeros_like(init["B"])
        return start

    def penalised_names(self) -> tuple[str, ...]:
        return (*super().penalised_names(), "W0", "R", "B")

    @staticmethod
    def _states(p: dict[str, Tensor], y: Tensor) -> Tensor:
        y_prev = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)
        return linear_recurrence(y_prev @ p["W0"].T, p["R"])

    def _extra_drive(self, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        return self._states(p, self._inputs(d["y"])) @ p["B"].T

    def hidden_state(self, data: BinnedTrials) -> np.ndarray:
        """(n_trials, n_bins, dim) hidden states ``x_t`` given the observed spikes."""
        self._check_shape(data)
        p = self._fitted_tensors()
        with torch.no_grad():
            return self._states(p, self._inputs(self._design(data)["y"])).cpu().numpy()

    def time_constants(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues of the fitted ``R`` and their time constants in seconds."""
        self._check_fitted()
        return time_constants(self.params_["R"], self.bin_size_)
