"""Recurrent GLM (Pachitariu, Petreska & Sahani 2013).

A hidden linear state summarises the population's past and adds to every unit's drive::

    x_t = W0 y_{t-1} + R x_{t-1} [+ U s_t] [+ x0_c if t = 0],   x_{-1} = 0, y_{-1} = 0
    drive_i(t) = GLM drive_i(t) + B_i · x_t          [B_i · s tanh(x_t / s) with saturation]

The R-GLM is the GLM's terms plus the :class:`Latent` term (``recurrent.*`` options in
:class:`~neurorec.families.glm.spec.RecurrentSpec`).

In co-smoothing mode (``heldout`` set) ``y`` here is the held-in units' counts only: ``W0``'s
held-out columns start and stay at zero (their input is zeroed).

Eigenvalues ``λ`` of ``R`` give the latent time constants ``τ = -Δt / ln|λ|``.
"""

from __future__ import annotations

import numpy as np
import torch

from neurorec.core.bases import raised_cosine_linear
from neurorec.core.errors import DataError
from neurorec.core.recurrence import linear_recurrence
from neurorec.data.recording import BinnedTrials
from neurorec.families.glm.glm import GLM
from neurorec.families.glm.spec import RecurrentSpec, RGLMSpec
from neurorec.families.glm.terms import Inputs, Term

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

    Options (``recurrent.*``, all off by default): ``stimulus_input`` adds ``U s_t`` to the
    state's input (``U`` (dim, n_conditions, K) on the one-hot condition × raised-cosine basis
    ``S``, or (dim, n_channels) on the stimulus series when the model has a stimulus filter);
    ``initial_state`` adds ``x0[c]`` (n_conditions, dim) in the first bin; ``max_radius`` uses
    ``R · min(1, ρ/‖R‖₂)`` (stored after the fit); ``saturation`` reads out ``s·tanh(x/s)``;
    ``l2`` gives the latent's weights their own L2 (penalty group ``latent``).

    Not linear in fixed features (``B`` multiplies a state that ``W0``, ``R`` shape), so a
    model with it is fitted by L-BFGS; its weights take the ``l1`` / ``l2`` penalties.
    Warm start: the readout ``B`` starts at zero, so the first iterate is the GLM of the
    other terms whatever ``W0``, ``R``, ``U``, ``x0`` are (they keep their random / zero start
    so that the gradient in ``B`` is not zero).
    """

    linear = False

    def __init__(self, recurrent: RecurrentSpec, n_basis: int = 8, series: bool = False):
        self.rec = recurrent
        self.n_basis, self.series = n_basis, series
        self.params = ("W0", "R", "B", *(("U",) if recurrent.stimulus_input else ()),
                       *(("x0",) if recurrent.initial_state else ()))
        self.group = "weights" if recurrent.l2 is None else "latent"

    def group_l2(self) -> dict[str, float]:
        return {} if self.rec.l2 is None else {"latent": self.rec.l2}

    # ------------------------------------------------------------------ features
    def static_features(self, m, inputs):
        if not self.rec.stimulus_input:
            return {}
        if not self.series:
            return {"S_u": m._tensor(raised_cosine_linear(inputs.n_bins, self.n_basis))}
        if inputs.source is None:  # sampling: the caller's series must fit the trials
            got = None if inputs.stimulus is None else np.shape(inputs.stimulus)
            if got is None or tuple(got[:2]) != (len(inputs.condition), inputs.n_bins):
                raise DataError(f"{m.spec.name}: stimulus: a latent with stimulus input samples "
                                f"given a stimulus of shape ({len(inputs.condition)}, "
                                f"{inputs.n_bins}, n_channels), got {got}")
        if inputs.stimulus is None:
            raise DataError(f"{inputs.source}: stimulus: recurrent.stimulus_input with "
                            "stimulus_filter.enabled needs a stimulus time series; this data "
                            "has none")
        return {"s_u": m._tensor(inputs.stimulus)}

    def init(self, m, data, gen, baseline):
        rec, n_units = self.rec, data.counts.shape[2]
        W0 = torch.randn(rec.dim, n_units, generator=gen, dtype=torch.float64) * rec.init_scale
        B = torch.randn(n_units, rec.dim, generator=gen, dtype=torch.float64) * rec.init_scale
        q, _ = torch.linalg.qr(torch.randn(rec.dim, rec.dim, generator=gen, dtype=torch.float64))
        if m.heldout is not None:  # co-smoothing: no latent input from held-out units
            W0[:, np.asarray(m.heldout, dtype=bool)] = 0.0
        out = {"W0": m._tensor(W0), "R": m._tensor(q * rec.init_radius), "B": m._tensor(B)}
        if rec.stimulus_input:
            shape = ((rec.dim, data.stimulus.shape[2]) if self.series
                     else (rec.dim, data.n_conditions, self.n_basis))
            out["U"] = m._tensor(torch.randn(*shape, generator=gen, dtype=torch.float64)
                                 * rec.init_scale)
        if rec.initial_state:
            out["x0"] = m._tensor(np.zeros((data.n_conditions, rec.dim)))
        return out

    def warm_start(self, m: GLM) -> bool:
        return self.rec.warm_start

    def warm_values(self, m: GLM, init: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"B": torch.zeros_like(init["B"])}

    # ------------------------------------------------------------------ the model
    def recurrence(self, R: Tensor) -> Tensor:
        """The recurrence used: ``R``, or ``R · min(1, max_radius / ‖R‖₂)``."""
        if self.rec.max_radius is None:
            return R
        norm = torch.linalg.matrix_norm(R, ord=2)
        return R * torch.clamp(self.rec.max_radius / norm.clamp_min(1e-300), max=1.0)

    def finalise(self, m, params):
        return {} if self.rec.max_radius is None else {"R": self.recurrence(params["R"])}

    def external(self, p: dict[str, Tensor], d: dict[str, Tensor],
                 like: Tensor) -> Tensor | None:
        """(n_trials, n_bins, dim) input that reads no spike: ``U s_t`` and ``x0`` at t = 0."""
        ext = None
        if "U" in p:
            if "S_u" in d:
                ext = torch.einsum("tk,dbk->btd", d["S_u"], p["U"][:, d["condition"]])
            else:
                ext = d["s_u"] @ p["U"].T
        if "x0" in p:
            first = torch.zeros_like(like)
            first[:, 0] = p["x0"][d["condition"]]
            ext = first if ext is None else ext + first
        return ext

    def states(self, m: GLM, p: dict[str, Tensor], d: dict[str, Tensor]) -> Tensor:
        """(n_trials, n_bins, dim) hidden states given the counts ``d["y"]``."""
        y = m._inputs(d["y"])
        y_prev = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)
        u = y_prev @ p["W0"].T
        ext = self.external(p, d, u)
        if ext is not None:
            u = u + ext
        return linear_recurrence(u, self.recurrence(p["R"]))

    def readout(self, x: Tensor) -> Tensor:
        """What ``B`` reads of the state: ``x``, or ``s·tanh(x/s)`` with ``saturation``."""
        s = self.rec.saturation
        return x if s is None else s * torch.tanh(x / s)

    def drive(self, m, p, d):
        return self.readout(self.states(m, p, d)) @ p["B"].T

    def n_fixed(self, m, params):
        n_ho = 0 if m.heldout is None else int(np.sum(m.heldout))
        return n_ho * params["W0"].shape[0]

    # ------------------------------------------------------------------ Brian 2
    def brian2_equations(self, net):
        net.eqs.append("lat : 1")
        net.drive_terms.append("lat")

    def brian2_objects(self, net):
        """A second ``NeuronGroup`` of ``n_trials × dim`` latents updated once per bin by the
        exact map ``x_t = W0 y_{t-1} + R x_{t-1} (+ ext_t)`` (summed variables of
        ``Synapses`` for ``W0 y`` and ``R x``, then ``x = inp + rec + ext``; ``ext`` a
        ``TimedArray`` of ``U s_t`` and ``x0``, which read no spike); ``B x_t`` (or
        ``B s·tanh(x_t/s)``) reaches the units through a third summed variable."""
        import brian2 as b2

        p, n_units = net.p, net.model.n_units_
        dim = p["R"].shape[0]
        R = self.recurrence(torch.as_tensor(p["R"], dtype=torch.float64)).numpy()
        namespace, step = {}, "x = inp + rec"
        ext = self._brian2_external(net)
        if ext is not None:
            namespace["neurorec_latent_ext"] = b2.TimedArray(ext, dt=net.bin_dt,
                                                             name="neurorec_latent_ext")
            step += " + neurorec_latent_ext(t, i)"
        read = "x"
        if self.rec.saturation is not None:
            namespace["lat_sat"] = float(self.rec.saturation)
            step += "\nxs = lat_sat * tanh(x / lat_sat)"
            read = "xs"
        latent = b2.NeuronGroup(net.n_trials * dim, "x : 1\nxs : 1\ninp : 1\nrec : 1",
                                dt=net.bin_dt, namespace=namespace, name="neurorec_latent")

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
        syn_rec = linear_map(latent, latent, "rec_post = w * x_pre", R, dim, dim,
                             "neurorec_latent_rec")
        syn_out = linear_map(latent, net.units, f"lat_post = w * {read}_pre", p["B"], dim,
                             n_units, "neurorec_latent_out")
        update = latent.run_regularly(step, when="start", order=1,
                                      name="neurorec_latent_step")
        net.objects.append(latent)
        net.add_summed(syn_in, 0)
        net.add_summed(syn_rec, 0)
        net.objects.append(update)
        net.add_summed(syn_out, 3)

    def _brian2_external(self, net) -> np.ndarray | None:
        """(n_bins, n_trials * dim) ``U s_t`` (+ ``x0`` in bin 0), column ``b * dim + d``."""
        if "U" not in net.p and "x0" not in net.p:
            return None
        m = net.model
        cond = torch.as_tensor(net.condition, dtype=torch.int64)
        inputs = Inputs(cond, net.n_bins, net.stimulus, m.bin_size_, None)
        p = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in net.p.items()}
        d = {k: v.to(torch.float64) if v.is_floating_point() else v
             for k, v in self.static_features(m, inputs).items()}
        d["condition"] = cond
        like = torch.zeros(net.n_trials, net.n_bins, p["R"].shape[0], dtype=torch.float64)
        ext = self.external(p, d, like)
        return np.ascontiguousarray(ext.numpy().transpose(1, 0, 2).reshape(net.n_bins, -1))


class RGLM(GLM):
    """The GLM plus the :class:`Latent` term; ``params_`` gains ``W0``, ``R``, ``B``."""

    spec: RGLMSpec

    @staticmethod
    def default_terms(spec: RGLMSpec) -> list[Term]:
        return [*GLM.default_terms(spec),
                Latent(spec.recurrent, spec.stimulus.n_basis, spec.stimulus_filter.enabled)]

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
