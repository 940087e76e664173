"""The R-GLM on sessions: streamed recurrence and gradient (issues 27 and 29)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurorec.core.recurrence import linear_recurrence_loop
from neurorec.families.glm.rglm import (
    SessionProblem,
    block_recurrence,
    init_session_latent,
    session_chunks,
    session_latent_objective,
    session_latent_rates,
)


def _problem(chunk: int, dtype=torch.float64, seed: int = 0, with_design: bool = True):
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    n, units, p = 700, 9, 5
    counts = rng.poisson(0.3, (n, units)).astype(np.int32)
    offset = torch.as_tensor(rng.normal(np.log(0.3), 0.3, (n, units)), dtype=dtype)
    weight = torch.as_tensor(rng.random(n) < 0.7, dtype=torch.float64)
    segment = np.repeat([0, 1, 2], [250, 300, 150])
    design = sp.random(n, p, density=0.3, random_state=seed, format="csr") if with_design \
        else None
    y_mean = torch.as_tensor(counts[weight.numpy() > 0].mean(0), dtype=torch.float64)
    return SessionProblem(torch.from_numpy(counts), offset, weight,
                          session_chunks(segment, chunk), y_mean, design, dtype), segment


def _params(prob, seed=1, dim=3):
    gen = torch.Generator().manual_seed(seed)
    p = init_session_latent(prob, dim, (0.05, 1.0), 0.01, seed, n_design=5)
    p["B"] = torch.randn(prob.n_units, dim, generator=gen, dtype=torch.float64) * 0.5
    p["b"] = torch.randn(prob.n_units, generator=gen, dtype=torch.float64) * 0.1
    p["V"] = torch.randn(dim, 5, generator=gen, dtype=torch.float64) * 0.1
    p["W0"] = p["W0"] * 5 + torch.randn(p["W0"].shape, generator=gen, dtype=torch.float64) * 0.05
    p["R"] = 0.9 * p["R"] + torch.randn(dim, dim, generator=gen, dtype=torch.float64) * 0.02
    return p


def _autograd_reference(prob, segment, p):
    """The same NLL written bin by bin (step loop per segment) and differentiated by torch."""
    q = {k: v.clone().requires_grad_() for k, v in p.items()}
    y = prob.counts.to(torch.float64)
    ybar = prob.y_mean
    z = torch.as_tensor(prob.design.toarray())
    total = 0.0
    for s in np.unique(segment):
        idx = np.flatnonzero(segment == s)
        ys = y[idx]
        prev = torch.cat([torch.zeros(1, ys.shape[1], dtype=torch.float64), ys[:-1] - ybar])
        u = prev @ q["W0"].T + z[idx] @ q["V"].T
        x = linear_recurrence_loop(u[None], q["R"])[0]
        eta = prob.offset[idx] + q["b"] + x @ q["B"].T
        total = total + (prob.weight[idx, None] * (torch.exp(eta) - ys * eta)).sum()
    total.backward()
    return float(total.detach()), {k: v.grad for k, v in q.items()}


def test_block_recurrence_equals_step_loop():
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(301, 4, generator=gen, dtype=torch.float64)
    R = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))[0] * 0.97
    x0 = torch.randn(4, generator=gen, dtype=torch.float64)
    ref = linear_recurrence_loop((u + torch.cat([(R @ x0)[None], torch.zeros(300, 4,
                                 dtype=torch.float64)]))[None], R)[0]
    for block in (1, 7, 64, 400):
        torch.testing.assert_close(block_recurrence(u, R, x0, block=block), ref,
                                   rtol=1e-12, atol=1e-12)


def test_chunks_never_cross_segments():
    segment = np.repeat([0, 1, 5], [10, 3, 8])
    assert session_chunks(segment, 4) == [(0, 4, True), (4, 8, False), (8, 10, False),
                                          (10, 13, True), (13, 17, True), (17, 21, False)]


@pytest.mark.parametrize("chunk", [1, 37, 128])
def test_chunked_gradient_equals_unchunked_and_autograd(chunk):
    """Streamed over chunks of `chunk` bins, the NLL and its gradient equal the one-chunk
    (per segment) computation and an autograd reference to 1e-10 (float64)."""
    full, segment = _problem(10_000)
    part, _ = _problem(chunk)
    p_full, p_part = _params(full), _params(part)
    f_full = session_latent_objective(full, p_full)
    f_part = session_latent_objective(part, p_part)
    f_ref, g_ref = _autograd_reference(full, segment, _params(full))
    assert abs(f_part - f_full) <= 1e-10 * abs(f_full)
    assert abs(f_full - f_ref) <= 1e-10 * abs(f_ref)
    for k in g_ref:
        scale = float(g_ref[k].abs().max())
        assert float((p_part[k].grad - p_full[k].grad).abs().max()) <= 1e-10 * scale, k
        assert float((p_full[k].grad - g_ref[k]).abs().max()) <= 1e-10 * scale, k


def test_rates_follow_the_states():
    prob, segment = _problem(50)
    p = _params(prob)
    rates = session_latent_rates(prob, p)
    _, _ = _autograd_reference(prob, segment, p)
    # rates are exp(offset + b + B x): NLL from them equals the objective (weighted bins)
    y = prob.counts.numpy().astype(float)
    w = prob.weight.numpy()[:, None]
    nll = float((w * (rates - y * np.log(rates))).sum())
    assert nll == pytest.approx(session_latent_objective(prob, p, grad=False), rel=1e-12)


@pytest.mark.slow
def test_session_rglm_tracks_the_shared_gain():
    """On a simulated open-field session with a shared slow gain (40 cells, 10 min), the
    R-GLM's latent drive follows the true log gain on held-out bins and its held-out
    bits/spike beats the GLM it starts from."""
    from neurorec.datasets.open_field import simulate_open_field
    from neurorec.families.glm.rglm import SessionRGLM
    from neurorec.families.glm.session import SessionGLM
    from neurorec.spec import load_model_spec

    s = simulate_open_field(40, 600.0, trajectory="tanni", seed=7, start_s=200.0)
    spec = load_model_spec("models/session_rglm.yaml", ["fit.max_iter=60"])
    glm = SessionGLM(spec).fit(s)
    m = SessionRGLM(spec).fit(s, glm=glm)
    test = s.mask("test")
    assert m.score(s) > glm.score(s) + 0.02
    drive = (m.hidden_state(s) @ m.latent_["B"].T).mean(axis=1)
    r = np.corrcoef(drive[test], np.log(s.truth["gain"][test]))[0, 1]
    assert r > 0.6


def test_newton_readout_reaches_the_readout_optimum():
    """With the states fixed, newton_readout's B, b zero the penalised gradient in B and b
    (the per-unit Poisson regressions on [1, x_t] are solved)."""
    from neurorec.families.glm.rglm import newton_readout

    prob, _ = _problem(64, with_design=False)
    p = init_session_latent(prob, 2, (0.05, 1.0), 0.01, 0)
    p["W0"] = p["W0"] * 20
    l2 = 1e-4
    q = newton_readout(prob, p, l2=l2, n_iter=8)
    f0 = session_latent_objective(prob, {k: v.clone() for k, v in p.items()}, grad=False)
    q = {k: v.clone() for k, v in q.items()}
    f1 = session_latent_objective(prob, q)
    assert f1 < f0
    ridge = l2 * float(prob.weight.sum()) * prob.n_units
    g_b = q["b"].grad
    g_B = q["B"].grad + 2 * ridge * q["B"]
    assert float(g_b.abs().max()) < 1e-8 * f1 and float(g_B.abs().max()) < 1e-8 * f1


def test_shipped_session_rglm_reuses_the_session_glm():
    from neurorec.spec import load_model_spec

    glm = load_model_spec("models/session_glm.yaml", [])
    rglm = load_model_spec("models/session_rglm.yaml", [])
    assert rglm.kind == "rglm" and rglm.data == glm.data
    assert rglm.covariates == glm.covariates and rglm.history == glm.history
    assert rglm.penalty == glm.penalty and 1 <= rglm.recurrent.dim <= 4


def test_heldout_units_spikes_never_reach_the_predictions(tmp_path):
    """Co-smoothing on a session: after the fit, replacing the held-out units' spikes by
    anything leaves every unit's predicted rate unchanged (their spikes feed neither the
    latent nor their own history), while a held-in unit's spikes do change them; the
    held-out units' W0 columns are 0."""
    import dataclasses

    from neurorec.datasets.open_field import simulate_open_field
    from neurorec.families.glm.rglm import SessionRGLM

    s = simulate_open_field(8, 90.0, trajectory="sargolini", seed=2, start_s=0.0)
    import yaml

    from neurorec.spec.load import validate_spec

    raw = yaml.safe_load(open("models/session_rglm.yaml"))
    raw["fit"].update(max_iter=5, dtype="float64")
    raw["recurrent"]["alternations"] = 0
    for entry, size in zip(raw["covariates"], ([4, 4], 4, 4), strict=True):
        entry["n_basis"] = size
    spec = validate_spec(raw, "<test>")
    heldout = np.zeros(8, bool)
    heldout[[1, 5]] = True
    m = SessionRGLM(spec, heldout=heldout).fit(s)
    assert np.all(m.latent_["W0"][:, heldout] == 0)
    rates = m.predict_rate(s)
    rng = np.random.default_rng(0)
    other = s.counts.copy()
    other[:, heldout] = rng.poisson(1.0, (s.n_bins, 2))
    same = m.predict_rate(dataclasses.replace(s, counts=other))
    np.testing.assert_array_equal(same, rates)
    m.save(tmp_path)  # the latent and the mask are saved: the same predictions, bitwise
    np.testing.assert_array_equal(SessionRGLM.load(tmp_path).predict_rate(s), rates)
    other = s.counts.copy()
    other[:, 0] = rng.poisson(1.0, s.n_bins)
    assert not np.allclose(m.predict_rate(dataclasses.replace(s, counts=other)), rates)


def test_session_rglm_resumes_each_stage_bitwise(tmp_path):
    """With a Run's checkpoint folder, every stage (GLM chunks, latent, refit, latent) is
    kept as it finishes; a run cut after the first latent (the later stages' files removed)
    resumes to bitwise the numbers of the uninterrupted run, without refitting what it kept."""
    import shutil

    import yaml

    from neurorec.datasets.open_field import simulate_open_field
    from neurorec.families.glm.rglm import SessionRGLM
    from neurorec.fit.run import Run
    from neurorec.spec.load import validate_spec

    s = simulate_open_field(6, 60.0, trajectory="sargolini", seed=4, start_s=0.0)
    raw = yaml.safe_load(open("models/session_rglm.yaml"))
    raw["fit"].update(max_iter=5)
    for entry, size in zip(raw["covariates"], ([4, 4], 4, 4), strict=True):
        entry["n_basis"] = size
    spec = validate_spec(raw, "<test>")
    assert spec.recurrent.alternations == 1
    full = SessionRGLM(spec).fit(s, run=Run(checkpoint_dir=tmp_path))
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["glm_0", "glm_1", "latent_0.pt", "latent_1.pt"]
    shutil.rmtree(tmp_path / "glm_1")
    (tmp_path / "latent_1.pt").unlink()
    stamp = (tmp_path / "latent_0.pt").stat().st_mtime_ns
    resumed = SessionRGLM(spec).fit(s, run=Run(checkpoint_dir=tmp_path, resume=True))
    assert (tmp_path / "latent_0.pt").stat().st_mtime_ns == stamp  # reloaded, not refitted
    np.testing.assert_array_equal(resumed.glm_.coef_, full.glm_.coef_)
    for key, value in full.latent_.items():
        np.testing.assert_array_equal(resumed.latent_[key], value)
    np.testing.assert_array_equal(resumed.predict_rate(s), full.predict_rate(s))
