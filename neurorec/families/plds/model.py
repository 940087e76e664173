"""Poisson linear dynamical system (PLDS; Macke et al. 2011), fitted by Laplace EM.

::

    x_0 ~ N(mu0[c], Q0),   x_t = A x_{t-1} + B s_t + eps_t,   eps_t ~ N(0, Q)
    y_t,n ~ Poisson(exp(C_n . x_t + d_n + D_n . s_t))

``s_t``: the trial's condition one-hot ⊗ a raised-cosine basis over the trial (the GLM's
stimulus features); ``B`` and ``D`` are optional (``stimulus.latent_input``,
``stimulus.observation``). Held-out score: the latent filtered causally (past spikes only,
:func:`~neurorec.families.plds.inference.causal_filter`), so bits/spike is one step ahead like
the GLM's. Co-smoothing (``heldout`` set before ``fit``): only held-in units inform the latent,
in training and on test trials; every unit's ``C``, ``d``, ``D`` are fitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from neurorec.core.bases import raised_cosine_linear
from neurorec.core.errors import DataError
from neurorec.core.metrics import bits_per_spike
from neurorec.data.recording import BinnedTrials, TrialLayout, sample_layout
from neurorec.data.session import BinnedSession
from neurorec.data.session_inputs import CovariateScaler, segments, windows
from neurorec.families.base import Model
from neurorec.families.plds import inference as inf
from neurorec.families.plds.spec import PLDSSpec
from neurorec.fit.run import FitLog, Run

#: Newton steps per E-step after the first: started from the previous mode, a partial E-step
#: (generalised EM) costs a third of a converged one and changes the fit by far less than the
#: held-out noise
WARM_NEWTON = 2


class PLDS(Model):
    """Poisson LDS; ``params_``: ``A, B, Q, mu0, Q0, C, d`` and, with a per-unit stimulus
    drive, ``beta`` (the weights ``D``, (n_units, n_conditions, n_basis)), numpy arrays."""

    def __init__(self, spec: PLDSSpec, *, device: str = "cpu", seed: int = 0,
                 heldout: np.ndarray | None = None):
        self.spec = spec
        self.device = device
        self.seed = seed
        #: None, or the (n_units,) bool mask of co-smoothing's held-out units
        self.heldout = heldout

    # ----------------------------------------------------------------- features
    def _basis(self, n_bins: int) -> np.ndarray:
        return raised_cosine_linear(n_bins, self.spec.stimulus.n_basis)

    def _features(self, condition: np.ndarray, n_bins: int, n_conditions: int) -> np.ndarray:
        """(K, T, n_conditions · n_basis) condition one-hot ⊗ time basis."""
        onehot = np.eye(n_conditions)[np.asarray(condition)]
        return np.einsum("kc,tb->ktcb", onehot, self._basis(n_bins)).reshape(
            len(condition), n_bins, -1)

    def _drive(self, beta: np.ndarray | None, condition: np.ndarray, n_bins: int) -> np.ndarray:
        """(K, T, N) per-unit stimulus drive ``D s_t`` (zeros without one)."""
        if beta is None:
            return 0.0
        psth = np.einsum("ncb,tb->ctn", beta, self._basis(n_bins))
        return psth[np.asarray(condition)]

    def _mask(self, n_units: int) -> np.ndarray | None:
        if self.heldout is None:
            return None
        if len(self.heldout) != n_units:
            raise DataError(f"units: held-out mask has {len(self.heldout)} entries, the data "
                            f"{n_units} units")
        return ~np.asarray(self.heldout, dtype=bool)

    def _chain(self, p: dict, condition: np.ndarray, n_bins: int) -> tuple:
        """``(u, eta, mu0)`` for trials of ``condition``: latent inputs (K, T, D),
        observation offsets (K, T, N), initial means (K, D)."""
        K, D = len(condition), p["A"].shape[0]
        if p["B"].shape[1]:
            u = self._features(condition, n_bins, self.n_conditions_) @ p["B"].T
        else:
            u = np.zeros((K, n_bins, D))
        eta = p["d"] + self._drive(p.get("beta"), condition, n_bins)
        eta = np.broadcast_to(eta, (K, n_bins, len(p["d"])))
        mu0 = p["mu0"][np.asarray(condition) if len(p["mu0"]) > 1 else np.zeros(K, int)]
        return u, eta, mu0

    # ----------------------------------------------------------------- fitting
    def fit(self, data: BinnedTrials | BinnedSession, *, progress: bool = True,
            run: Run | None = None) -> PLDS:
        """Laplace EM on the training trials ``data``, or on the ``train`` bins of a session
        (covariates as inputs: :meth:`_fit_session`). Laplace EM keeps no checkpoints
        (``run`` is accepted and unused: the family has no ``resume`` capability)."""
        if isinstance(data, BinnedSession):
            return self._fit_session(data)
        start = time.perf_counter()
        spec = self.spec
        y = data.counts.astype(float)
        K, T, N = y.shape
        self.n_conditions_ = data.n_conditions
        self.n_bins_, self.bin_size_, self.n_units_ = T, data.bin_size, N
        mask = self._mask(N)
        cond = np.asarray(data.condition)
        s = self._features(cond, T, data.n_conditions) if spec.stimulus.latent_input else \
            np.zeros((K, T, 0))
        n_cond0 = data.n_conditions if spec.latent.initial_state == "condition" else 1
        basis = self._basis(T)
        onehot = np.eye(data.n_conditions)[cond]

        def drive(beta):
            return self._drive(beta, cond, T)

        def drive_grad(r):  # adjoint of drive: sum over trials of each condition, then basis
            Rc = (onehot.T @ r.reshape(K, T * N)).reshape(-1, T, N)
            return np.einsum("ctn,tb->ncb", Rc, basis)

        beta0 = np.zeros((N, data.n_conditions, spec.stimulus.n_basis)) \
            if spec.stimulus.observation else None
        self._em(y, s, cond, n_cond0, drive, drive_grad, beta0, mask,
                 lambda p: self._chain(p, cond, T), start)
        return self

    def _em(self, y: np.ndarray, s: np.ndarray, cond: np.ndarray, n_cond0: int,
            drive: Callable, drive_grad: Callable, beta0: np.ndarray | None,
            mask: np.ndarray | None, chain: Callable[[dict], tuple], start: float) -> None:
        """Laplace EM on counts ``y`` (K, T, N) with latent inputs ``s`` (K, T, P); sets
        ``params_``, ``unit_order_``, ``fit_report_``. ``chain(p)`` gives ``(u, eta, mu0)``,
        ``drive`` / ``drive_grad`` the observation's input drive and its adjoint."""
        spec = self.spec
        K, T, N = y.shape
        D = spec.latent.dim
        rate = y.mean(axis=(0, 1)) + 1e-3
        # initial observation model: each unit's PSTH with the latent at zero
        zero = inf.Posterior(np.zeros((K, T, D)), np.zeros((K, T, D, D)),
                             np.zeros((K, T - 1, D, D)))
        C0 = np.zeros((N, D))
        _, d, beta = inf.m_step_observation(y, zero, C0, np.log(rate), beta0, drive, drive_grad,
                                            spec.penalty.l2, spec.penalty.stimulus_l2,
                                            spec.fit.m_step_iter * 4)
        # loadings from the residuals' principal axes (deterministic: no seed needed)
        lam = np.exp(d + (drive(beta) if beta is not None else 0.0))
        resid = ((y - lam) / np.sqrt(lam)).reshape(-1, N)
        if mask is not None:
            resid = resid * mask
        evals, evecs = np.linalg.eigh(np.cov(resid.T) + 1e-9 * np.eye(N))
        order = np.argsort(evals)[::-1]
        C = np.zeros((N, D))
        k = min(D, N)
        C[:, :k] = evecs[:, order[:k]] * 0.3
        p = {"A": 0.9 * np.eye(D), "B": np.zeros((D, s.shape[2])), "Q": 0.19 * np.eye(D),
             "mu0": np.zeros((n_cond0, D)), "Q0": np.eye(D), "C": C, "d": d}
        if beta is not None:
            p["beta"] = beta
        history, x, prev = [], None, None
        converged, reason = False, "max_iter"
        spikes = max(y.sum(), 1.0)
        for it in range(spec.fit.max_iter):
            u, eta, mu0 = chain(p)
            post, obj = inf.laplace_posterior(y, p["C"], eta, p["A"], u, p["Q"], mu0, p["Q0"],
                                              x_init=x, mask=mask,
                                              max_iter=spec.fit.newton_iter if x is None else
                                              min(spec.fit.newton_iter, WARM_NEWTON))
            x = post.mean
            value = float(obj.sum()) / spikes
            # objective: minus the Laplace log joint log p(y, x_mode) per training spike
            history.append({"iter": it, "objective": -value})
            if prev is not None and abs(value - prev) < spec.fit.tol:
                converged, reason = True, "tol"
                break
            prev = value
            p.update(inf.m_step_dynamics(post, s, condition=cond if n_cond0 > 1 else None,
                                         n_conditions=n_cond0))
            p["C"], p["d"], beta = inf.m_step_observation(
                y, post, p["C"], p["d"], p.get("beta"), drive, drive_grad, spec.penalty.l2,
                spec.penalty.stimulus_l2, spec.fit.m_step_iter)
            if beta is not None:
                p["beta"] = beta
        self.params_ = p
        self.unit_order_ = np.arange(N)  # no in-bin order (the report's common attributes)
        self.fit_report_ = FitLog(
            converged=converged, reason=reason, n_iter=len(history), n_evals=len(history),
            final_objective=history[-1]["objective"], max_abs_grad=float("nan"),
            best_validation_nll=None, fit_time_s=time.perf_counter() - start, history=history,
            optimizer="Laplace EM")

    # ----------------------------------------------------------------- sessions
    def _fit_session(self, session: BinnedSession) -> PLDS:
        """Laplace EM on the ``train`` bins of ``session``: each of their contiguous stretches
        is cut into windows of ``fit.window`` bins (a stretch's last, shorter remainder is
        left out of the fit), every window a trial starting from the shared initial state.
        The inputs ``s_t`` are the covariates (standardised), driving the latent (``B s_t``,
        ``stimulus.latent_input``) and each unit (``D s_t``, ``stimulus.observation``)."""
        start = time.perf_counter()
        spec = self.spec
        train = session.select(session.mask("train"))
        self.inputs_scaler_ = CovariateScaler.of(train)
        cut = windows(train, spec.fit.window)
        z = self.inputs_scaler_(train)
        y = np.stack([train.counts[a:b] for a, b in cut]).astype(float)
        s_all = np.stack([z[a:b] for a, b in cut])
        K, T, N = y.shape
        self.n_conditions_, self.n_bins_, self.n_units_ = 1, T, N
        self.bin_size_ = session.bin_size
        mask = self._mask(N)
        s = s_all if spec.stimulus.latent_input else np.zeros((K, T, 0))

        def drive(beta):
            return 0.0 if beta is None else s_all @ beta.T

        def drive_grad(r):
            return np.einsum("ktn,ktp->np", r, s_all)

        beta0 = np.zeros((N, s_all.shape[2])) if spec.stimulus.observation else None
        self._em(y, s, np.zeros(K, int), 1, drive, drive_grad, beta0, mask,
                 lambda p: self._session_chain(p, s_all), start)
        return self

    def _session_chain(self, p: dict, z: np.ndarray) -> tuple:
        """``(u, eta, mu0)`` for session windows with standardised inputs ``z`` (K, T, P)."""
        K, T = z.shape[:2]
        D = p["A"].shape[0]
        u = z @ p["B"].T if p["B"].shape[1] else np.zeros((K, T, D))
        eta = p["d"] + (z @ p["beta"].T if "beta" in p else 0.0)
        eta = np.broadcast_to(eta, (K, T, len(p["d"])))
        return u, eta, np.broadcast_to(p["mu0"][0], (K, D))

    def _session_rates(self, session: BinnedSession) -> np.ndarray:
        """(n_bins, n_units) one-step-ahead expected counts of every bin of ``session``: the
        latent filtered causally along each contiguous stretch from the initial state."""
        self._check_session(session)
        z, p = self.inputs_scaler_(session), self.params_
        rates = np.empty(session.counts.shape)
        for a, b in segments(session):
            u, eta, mu0 = self._session_chain(p, z[None, a:b])
            rates[a:b] = inf.causal_filter(session.counts[None, a:b].astype(float), p["C"],
                                           eta, p["A"], u, p["Q"], mu0, p["Q0"],
                                           mask=self._mask(self.n_units_))[0][0]
        return rates

    def score(self, data: BinnedTrials | BinnedSession, split: str = "test") -> float:
        """Bits per spike (NLB) one step ahead; of a session, its ``split`` bins."""
        if not isinstance(data, BinnedSession):
            return super().score(data)
        keep = data.mask(split)
        return bits_per_spike(data.counts[keep][None], self._session_rates(data)[keep][None])

    # ----------------------------------------------------------------- using it
    def predict_rate(self, data: BinnedTrials | BinnedSession) -> np.ndarray:
        """(K, T, N) expected counts one step ahead: the latent filtered from past spikes
        (held-in units only in co-smoothing mode); of a session, (n_bins, N) for its bins."""
        if isinstance(data, BinnedSession):
            return self._session_rates(data)
        self._check_shape(data)
        p, T = self.params_, data.counts.shape[1]
        u, eta, mu0 = self._chain(p, data.condition, T)
        rates, _ = inf.causal_filter(data.counts.astype(float), p["C"], eta, p["A"], u, p["Q"],
                                     mu0, p["Q0"], mask=self._mask(self.n_units_))
        return rates

    def posterior_mean(self, data: BinnedTrials) -> np.ndarray:
        """(K, T, D) smoothed latents (Laplace mode given all of each trial's spikes)."""
        self._check_shape(data)
        p, T = self.params_, data.counts.shape[1]
        u, eta, mu0 = self._chain(p, data.condition, T)
        post, _ = inf.laplace_posterior(data.counts.astype(float), p["C"], eta, p["A"], u,
                                        p["Q"], mu0, p["Q0"], mask=self._mask(self.n_units_),
                                        max_iter=self.spec.fit.newton_iter)
        return post.mean

    def sample(self, n: int, *, seed: int,
               like: BinnedTrials | TrialLayout | None = None) -> np.ndarray:
        """(n, n_bins, n_units) counts drawn ancestrally (latent, then spikes) with
        ``numpy.random.default_rng(seed)``; conditions and bins per trial from ``like``'s first
        ``n`` trials, or conditions ``0, 1, …`` in turn and ``n_bins_`` bins
        (:func:`~neurorec.data.recording.sample_layout`)."""
        self.check_fitted()
        condition, T, _ = sample_layout(n, like, self.n_conditions_, self.n_bins_,
                                        self.spec.name)
        p = self.params_
        u, eta, mu0 = self._chain(p, np.asarray(condition), T)
        _, counts = inf.sample_plds(p["A"], u, p["Q"], mu0, p["Q0"], p["C"], eta,
                                    np.random.default_rng(seed))
        return counts

    def time_constants(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues of ``A`` (largest modulus first) and time constants ``-dt / ln|λ|`` (s)."""
        self.check_fitted()
        eig = np.linalg.eigvals(self.params_["A"])
        eig = eig[np.argsort(-np.abs(eig))]
        mod = np.abs(eig)
        with np.errstate(divide="ignore"):
            tau = np.where((mod < 1) & (mod > 0), -self.bin_size_ / np.log(mod), np.inf)
        return eig, tau

    def stimulus_drive(self) -> np.ndarray | None:
        """(n_units, n_conditions, n_bins) per-unit stimulus drive ``D s_t``, or None."""
        self.check_fitted()
        if "beta" not in self.params_:
            return None
        return np.einsum("ncb,tb->nct", self.params_["beta"], self._basis(self.n_bins_))

    def history_filters(self) -> None:
        """A PLDS has no spike-history filters (the report asks every model)."""
        return None

    def coupling_filters(self) -> None:
        """A PLDS has no coupling filters (the report asks every model)."""
        return None

    def n_parameters(self) -> int:
        self.check_fitted()
        D = self.params_["A"].shape[0]
        cov = D * (D + 1) // 2
        return int(sum(v.size for k, v in self.params_.items() if k not in ("Q", "Q0"))
                   + 2 * cov)

