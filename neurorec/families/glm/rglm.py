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
from neurorec.families.glm.spec import RecurrentSpec, RGLMSpec
from neurorec.families.glm.terms import Term

Tensor = torch.Tensor
__all__ = ["RGLM", "Latent", "linear_recurrence", "time_constants"]


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


class Latent(Term):
    """``B_i · x_t`` with ``x_t = W0 y_{t-1} + R x_{t-1}``, ``x_{-1} = 0``, ``y_{-1} = 0`` at
    each trial start: the R-GLM's hidden linear state (``y``: the counts predictors may see).

    Not linear in fixed features (``B`` multiplies a state that ``W0``, ``R`` shape), so a
    model with it is fitted by L-BFGS; ``W0``, ``R``, ``B`` take the ``l1`` / ``l2`` penalties.
    Warm start: the readout ``B`` starts at zero, so the first iterate is the GLM of the
    other terms (``W0``, ``R`` keep their random start so that the gradient in ``B`` is not
    zero).
    """

    params = ("W0", "R", "B")
    linear = False

    def __init__(self, recurrent: RecurrentSpec):
        self.rec = recurrent

    def init(self, m, data, gen, baseline):
        rec, n_units = self.rec, data.counts.shape[2]
        W0 = torch.randn(rec.dim, n_units, generator=gen, dtype=torch.float64) * rec.init_scale
        B = torch.randn(n_units, rec.dim, generator=gen, dtype=torch.float64) * rec.init_scale
        q, _ = torch.linalg.qr(torch.randn(rec.dim, rec.dim, generator=gen, dtype=torch.float64))
        if m.heldout is not None:  # co-smoothing: no latent input from held-out units
            W0[:, np.asarray(m.heldout, dtype=bool)] = 0.0
        return {"W0": m._tensor(W0), "R": m._tensor(q * rec.init_radius), "B": m._tensor(B)}

    def warm_start(self, m: GLM) -> bool:
        return self.rec.warm_start

    def warm_values(self, m: GLM, init: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"B": torch.zeros_like(init["B"])}

    def states(self, m: GLM, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        """(n_trials, n_bins, dim) hidden states given the counts ``d["y"]``."""
        y = m._inputs(d["y"])
        y_prev = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)
        return linear_recurrence(y_prev @ p["W0"].T, p["R"])

    def drive(self, m, p, d):
        return self.states(m, p, d) @ p["B"].T

    def n_fixed(self, m, params):
        n_ho = 0 if m.heldout is None else int(np.sum(m.heldout))
        return n_ho * params["W0"].shape[0]

    def brian2_equations(self, net):
        net.eqs.append("lat : 1")
        net.drive_terms.append("lat")

    def brian2_objects(self, net):
        """A second ``NeuronGroup`` of ``n_trials × dim`` latents updated once per bin by the
        exact map ``x_t = W0 y_{t-1} + R x_{t-1}`` (summed variables of ``Synapses`` for
        ``W0 y`` and ``R x``, then ``x = inp + rec``); ``B x_t`` reaches the units through a
        third summed variable."""
        import brian2 as b2

        p, n_units = net.p, net.model.n_units_
        dim = p["R"].shape[0]
        latent = b2.NeuronGroup(net.n_trials * dim, "x : 1\ninp : 1\nrec : 1", dt=net.bin_dt,
                                name="neurorec_latent")

        def linear_map(source, target, expr: str, weights: np.ndarray, n_pre: int,
                       n_post: int, name: str):
            """Synapses computing ``expr = Σ_pre weights[post, pre] · pre_var`` per trial."""
            syn = net.synapses(source, target, f"w : 1 (constant)\n{expr} : 1 (summed)", name,
                               n_pre, n_post)
            post, pre = net.by_pair(syn, n_pre, n_post)
            syn.w = weights[post, pre]
            return syn

        syn_in = linear_map(net.units, latent, "inp_post = w * ybin_pre", p["W0"], n_units, dim,
                            "neurorec_latent_in")
        syn_rec = linear_map(latent, latent, "rec_post = w * x_pre", p["R"], dim, dim,
                             "neurorec_latent_rec")
        syn_out = linear_map(latent, net.units, "lat_post = w * x_pre", p["B"], dim, n_units,
                             "neurorec_latent_out")
        step = latent.run_regularly("x = inp + rec", when="start", order=1,
                                    name="neurorec_latent_step")
        net.objects.append(latent)
        net.add_summed(syn_in, 0)
        net.add_summed(syn_rec, 0)
        net.objects.append(step)
        net.add_summed(syn_out, 3)


class RGLM(GLM):
    """The GLM plus the :class:`Latent` term; ``params_`` gains ``W0``, ``R``, ``B``."""

    spec: RGLMSpec

    @staticmethod
    def default_terms(spec: RGLMSpec) -> list[Term]:
        return [*GLM.default_terms(spec), Latent(spec.recurrent)]

    @property
    def latent(self) -> Latent:
        """The model's latent term."""
        return next(t for t in self.terms if isinstance(t, Latent))

    def hidden_state(self, data: BinnedTrials) -> np.ndarray:
        """(n_trials, n_bins, dim) hidden states ``x_t`` given the observed spikes."""
        self._check_shape(data)
        p = self._fitted_tensors()
        with torch.no_grad():
            return self.latent.states(self, p, self._design(data)).cpu().numpy()

    def time_constants(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues of the fitted ``R`` and their time constants in seconds."""
        self._check_fitted()
        return time_constants(self.params_["R"], self.bin_size_)
