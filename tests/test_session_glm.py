"""The GLM on continuous sessions: the row-sparse batched Newton against a dense solver, tuning
recovered on the simulated open-field session, and `neurorec fit` on a session NWB."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neurorec.core.metrics import bits_per_spike
from neurorec.core.splines import bspline, cyclic_bspline, dense, row_kron
from neurorec.data.session import BinnedSession
from neurorec.families.glm.session import SessionGLM, history_features
from neurorec.fit.run import Run
from neurorec.fit.sparse_newton import BlockDesign, fit_poisson
from neurorec.spec.load import load_model_spec, validate_spec


def _dense_reference(Z: np.ndarray, y: np.ndarray, ridge: np.ndarray, start: np.ndarray):
    """Σ NLL + n Σ ridge w² minimised by scipy's trust-region Newton on the dense design (an
    independent solver: exact gradient and Hessian, dense linear algebra)."""
    from scipy.optimize import minimize

    lam = ridge * len(y)

    def f(w):
        eta = Z @ w
        return np.exp(eta).sum() - y @ eta + lam @ w**2

    def g(w):
        return Z.T @ (np.exp(Z @ w) - y) + 2 * lam * w

    def h(w):
        return (Z * np.exp(Z @ w)[:, None]).T @ Z + np.diag(2 * lam)

    res = minimize(f, start, jac=g, hess=h, method="trust-exact", options={"gtol": 1e-10})
    return res.x, res.fun


def test_sparse_newton_reaches_the_dense_newton_optimum():
    rng = np.random.default_rng(0)
    n = 4000
    pos = rng.uniform(0, 1, (n, 2))
    hd = rng.uniform(-np.pi, np.pi, n)
    blocks = [dense(np.ones((n, 1))), row_kron(bspline(pos[:, 0], 5), bspline(pos[:, 1], 5)),
              cyclic_bspline(hd, 6)]
    X = np.hstack([b.toarray() for b in blocks])
    n_units = 3
    own = rng.normal(0, 0.3, (n, n_units, 2))
    beta = rng.normal(0, 0.4, (n_units, X.shape[1]))
    beta[:, 0] = -1.0
    eta = X @ beta.T + np.einsum("nuk,uk->nu", own, rng.normal(0, 0.5, (n_units, 2)))
    y = rng.poisson(np.exp(eta))
    init = np.zeros((n_units, X.shape[1] + 2))
    init[:, 0] = np.log(y.mean(axis=0))
    ridge = np.full(X.shape[1] + 2, 1e-4)
    ridge[0] = 0.0
    res = fit_poisson(BlockDesign(blocks), y, own, ridge, init, tol=1e-12)
    assert res.converged.all()
    for u in range(n_units):
        ref, f_ref = _dense_reference(np.hstack([X, own[:, u]]), y[:, u], ridge, init[u])
        np.testing.assert_allclose(res.coef[u], ref, atol=1e-6)
        assert res.objective[u] - (f_ref + 0) <= 1e-6 * abs(f_ref)


def test_sparse_newton_with_an_offset_equals_statsmodels():
    """The offset (the R-GLM's latent drive while the GLM's weights are refitted) against
    statsmodels' Poisson GLM with the same offset (IRLS, an independent implementation)."""
    import statsmodels.api as sm

    rng = np.random.default_rng(1)
    n = 3000
    x = rng.uniform(0, 1, n)
    blocks = [dense(np.ones((n, 1))), bspline(x, 6)]
    X = np.hstack([b.toarray() for b in blocks])[:, :-1]  # drop one column: identifiable
    blocks[1] = dense(blocks[1].toarray()[:, :-1])
    offset = rng.normal(0, 0.5, (n, 2))
    beta = rng.normal(0, 0.5, (2, X.shape[1]))
    y = rng.poisson(np.exp(X @ beta.T + offset))
    init = np.zeros((2, X.shape[1]))
    init[:, 0] = np.log(y.mean(axis=0))
    res = fit_poisson(BlockDesign(blocks), y, None, None, init, tol=1e-14, offset=offset)
    assert res.converged.all()
    for u in range(2):
        ref = sm.GLM(y[:, u], X, family=sm.families.Poisson(), offset=offset[:, u]).fit(
            tol=1e-12)
        np.testing.assert_allclose(res.coef[u], ref.params, rtol=1e-6, atol=1e-7)


def _session(n_bins=6000, n_units=4, seed=0) -> tuple[BinnedSession, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n_bins) * 0.01
    pos = np.stack([0.5 + 0.4 * np.sin(t / 7.0), 0.5 + 0.4 * np.sin(t / 5.3 + 1)], axis=1)
    hd = np.mod(t / 3.0, 2 * np.pi) - np.pi
    centres = rng.uniform(0.2, 0.8, (n_units, 2))
    rate = 2 + 20 * np.exp(-((pos[:, None, :] - centres[None]) ** 2).sum(-1) / 0.02)
    rate *= np.exp(0.5 * np.cos(hd[:, None] - rng.uniform(-np.pi, np.pi, n_units)))
    counts = rng.poisson(rate * 0.01)
    segment = np.repeat([0, 1, 2], n_bins // 3)
    split = np.where(np.arange(n_bins) % 1000 < 800, "train", "test")
    return BinnedSession(counts=counts, bin_size=0.01, time=t,
                         covariates={"position": pos, "head_direction": hd[:, None]},
                         split=split, segment=segment, unit_ids=np.arange(n_units),
                         source="synthetic"), rate * 0.01


SPEC = {"kind": "glm", "name": "s", "data": {"mode": "session"},
        "stimulus": {"enabled": False},
        "covariates": [{"name": "position", "basis": "tensor_bspline", "n_basis": [6, 6]},
                       {"name": "head_direction", "basis": "cyclic_bspline", "n_basis": 6}],
        "history": {"enabled": True, "n_basis": 3, "duration": 0.05}}


def test_session_glm_matches_a_dense_fit_with_history_inside_segments():
    session, _ = _session()
    spec = validate_spec(SPEC)
    model = SessionGLM(spec).fit(session)
    assert model.converged_.all()
    train = session.mask("train")
    H = history_features(session.counts, session.segment, 3, 0.05, 0.01)
    assert np.all(H[[0, 2000, 4000]] == 0)  # no history reaches across a segment change
    from neurorec.families.glm.session import covariate_design

    cov = covariate_design(spec.covariates, session)
    X = np.hstack([np.ones((session.n_bins, 1))] + [b.toarray() for b in cov.blocks])
    ridge = np.concatenate([[0.0], cov.ridge, np.zeros(3)])
    for u in range(2):
        Z = np.hstack([X, H[:, u]])[train]
        start = np.zeros(Z.shape[1])
        start[0] = np.log(session.counts[train, u].mean())
        ref, _ = _dense_reference(Z, session.counts[train, u].astype(float), ridge, start)
        np.testing.assert_allclose(model.coef_[u], ref, atol=1e-6)
    # the prediction on every bin is exp of the same design
    eta = np.stack([np.hstack([X, H[:, u]]) @ model.coef_[u] for u in range(4)], axis=1)
    np.testing.assert_allclose(model.predict_rate(session), np.exp(eta), rtol=1e-10)


@pytest.mark.slow  # ~15 s on a quiet machine (simulation, fit, pynapple tuning)
def test_tuning_recovered_on_the_simulated_open_field_session():
    from neurorec.datasets.open_field import simulate_open_field
    from neurorec.workflows.session_fit import fit_session

    session = simulate_open_field(n_units=30, duration_s=600.0, seed=3)
    spec = load_model_spec("models/session_glm.yaml")
    result = fit_session(spec, session, progress=False)
    truth, model = session.truth, result.model
    kind = truth["cell_type"]
    gx, gy = np.meshgrid(truth["grid_x"], truth["grid_y"], indexing="ij")
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    pd_pos = model.partial_dependence(session, "position", grid)
    pd_hd = model.partial_dependence(session, "head_direction",
                                      truth["grid_head_direction"][:, None])
    # where the animal went (the fitted range; beyond it the spline is extrapolated flat)
    lo = np.array(model.bounds_["position"])
    inside = ((grid[:, 0] >= lo[0]) & (grid[:, 0] <= lo[1]) & (grid[:, 1] >= lo[2])
              & (grid[:, 1] <= lo[3]))
    r_place = [np.corrcoef(pd_pos[u][inside], truth["tuning_position"][u].ravel()[inside])[0, 1]
               for u in np.flatnonzero(kind == "place")]
    r_hd = [np.corrcoef(pd_hd[u], truth["tuning_head_direction"][u])[0, 1]
            for u in np.flatnonzero(kind == "head_direction")]
    assert len(r_place) >= 5 and len(r_hd) >= 3
    assert np.median(r_place) > 0.9, r_place
    assert np.median(r_hd) > 0.9, r_hd
    # the tuning_curves.npz arrays: pynapple's data tuning beside the model on one grid
    tc = result.tuning
    assert tc["position_data"].shape == tc["position_model"].shape == (30, 16, 16)
    assert tc["head_direction_data"].shape == (30, 24)


@pytest.fixture(scope="module")
def session_nwb(tmp_path_factory):
    from neurorec.data.sessions_io import write_session_nwb
    from neurorec.datasets.open_field import simulate_open_field

    session = simulate_open_field(n_units=12, duration_s=240.0, seed=5)
    path = tmp_path_factory.mktemp("nwb") / "s.nwb"
    write_session_nwb(session, path, seed=0)
    return path


def test_cli_fit_on_a_session_nwb_writes_bins_by_units_and_resumes(session_nwb, tmp_path):
    from neurorec.cli import main

    out = tmp_path / "run"
    assert main(["fit", "models/session_glm.yaml", "--data", str(session_nwb), "--out",
                 str(out), "--quiet"]) == 0
    pred = np.load(out / "predictions.npz")
    m = json.loads((out / "metrics.json").read_text())
    assert pred["rates"].shape == pred["counts"].shape == (len(pred["time_s"]), 12)
    test = pred["split"] == "test"
    assert m["n_bins"] == int(test.sum())
    assert m["bits_per_spike"] == pytest.approx(
        bits_per_spike(pred["counts"][test][None], pred["rates"][test][None]), abs=1e-12)
    assert (out / "tuning_curves.npz").exists() and (out / "report.html").exists()
    # resume: finished unit chunks are loaded, not refitted, and give the same coefficients
    from neurorec.workflows.session_fit import fit_session, load_session_for

    spec = load_model_spec("models/session_glm.yaml")
    session = load_session_for(spec, str(session_nwb))
    work = tmp_path / "work"
    first = fit_session(spec, session, progress=False, run=Run(checkpoint_dir=work))
    (work / "chunk_0.npz").touch(exist_ok=True)
    again = fit_session(spec, session, progress=False,
                        run=Run(checkpoint_dir=work, resume=True))
    np.testing.assert_array_equal(first.model.coef_, again.model.coef_)
    assert again.model.fit_time_s_ < first.model.fit_time_s_
    saved = np.load(out / "session_glm.npz")["coef"]
    np.testing.assert_array_equal(saved, first.model.coef_)


def test_cosmoothing_on_a_session_drops_the_heldout_units_history(session_nwb):
    from neurorec.workflows.session_fit import fit_session, load_session_for

    spec = load_model_spec("models/session_glm.yaml")
    session = load_session_for(spec, str(session_nwb))
    result = fit_session(spec, session, progress=False, heldout_neurons="0,1,2")
    coef = result.model.coef_
    p = coef.shape[1] - spec.history.n_basis
    assert np.all(coef[:3, p:] == 0) and np.all(coef[3:, p:] != 0)
    assert result.metrics["n_heldout_neurons"] == 3
    assert np.isfinite(result.metrics["co_bps"])


def test_cv_on_a_session_uses_blocked_folds_with_guard_bands():
    from neurorec.core.metrics import log_likelihood
    from neurorec.data.session_splits import blocked_folds
    from neurorec.workflows.session_fit import RIDGE_GRID, cross_validate_ridge, with_ridge

    session, _ = _session(n_bins=3000, n_units=2)
    spec = validate_spec(SPEC)
    cv = cross_validate_ridge(spec, session, 2)
    assert cv["chosen"]["ridge"] in RIDGE_GRID and len(cv["mean_heldout_ll"]) == len(RIDGE_GRID)
    folds = blocked_folds(session, 2, gap_s=0.05)
    for fold in folds:  # the guard band: no train bin within 5 bins of a held-out bin
        test = np.flatnonzero(fold.mask("test"))
        train = np.flatnonzero(fold.mask("train"))
        assert np.min(np.abs(train[:, None] - test[None, :])) > 5
    # fold 0, strongest ridge: the same number as a fit by hand
    fold = folds[0]
    model = SessionGLM(with_ridge(spec, RIDGE_GRID[0])).fit(fold)
    rows = fold.mask("test")
    ll = log_likelihood(fold.counts[rows][None], model.predict_rate(fold)[rows][None])
    assert cv["fold_heldout_ll"][0][0] == pytest.approx(ll, rel=1e-12)


def test_session_glm_standard_errors_equal_statsmodels_bse_and_the_dense_information():
    """The session GLM's standard errors: without covariates (bias + own history, no ridge)
    equal statsmodels' ``bse``; with spline covariates and their ridges equal the dense
    ``sqrt(diag((Z' diag(mu) Z + 2 n Λ)^-1))`` computed from the dense design."""
    import statsmodels.api as sm

    session, _ = _session(n_bins=6000, n_units=3, seed=2)
    train = session.mask("train")
    plain = SessionGLM(validate_spec({**SPEC, "covariates": [], "penalty": {"l2": 0.0}},
                                     "<test>")).fit(session)
    se = plain.standard_errors(session)
    own = plain._history(session, np.arange(3))[train]
    for u in range(3):
        Z = np.hstack([np.ones((int(train.sum()), 1)), own[:, u]])
        ref = sm.GLM(session.counts[train, u], Z, family=sm.families.Poisson()).fit(tol=1e-13)
        np.testing.assert_allclose(plain.coef_[u], ref.params, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(se["coef"][u], ref.bse, rtol=1e-5)
    m = SessionGLM(validate_spec(SPEC, "<test>")).fit(session)
    se = m.standard_errors(session)
    blocks, cov = m._design(session, m.bounds_)
    X = np.hstack([b.toarray() for b in blocks])[train]
    own = m._history(session, np.arange(3))[train]
    lam = 2 * len(X) * np.concatenate([[0.0], cov.ridge, np.full(3, m.spec.penalty.l2)])
    for u in range(3):
        Z = np.hstack([X, own[:, u]])
        info = (Z * np.exp(Z @ m.coef_[u])[:, None]).T @ Z + np.diag(lam)
        np.testing.assert_allclose(se["coef"][u], np.sqrt(np.diag(np.linalg.inv(info))),
                                   rtol=1e-9)
    assert se["position"].shape == (3, 36) and se["history"].shape == (3, 3)
