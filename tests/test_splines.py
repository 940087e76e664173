"""Spline bases (neurorec.core.splines) against closed forms, scipy and nemos; the row-pattern
design (neurorec.fit.sparse_newton.BlockDesign) against dense products."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.interpolate import BSpline

from neurorec.core.splines import (
    bspline,
    clamped_knots,
    cyclic_bspline,
    dense,
    lagged,
    row_kron,
)
from neurorec.fit.sparse_newton import BlockDesign

NEMOS_PY = Path("/work/peers/nemos/bin/python")
ALT_NEMOS_PY = Path(__file__).resolve().parents[1] / "benchmarks" / "peers" / ".venv" / "bin" / \
    "python"


def _cardinal_cubic(t: np.ndarray) -> np.ndarray:
    """The uniform cubic B-spline on [0, 4) (closed form, unit knot spacing)."""
    t = np.asarray(t, float)
    out = np.zeros_like(t)
    a = (t >= 0) & (t < 1)
    b = (t >= 1) & (t < 2)
    c = (t >= 2) & (t < 3)
    d = (t >= 3) & (t < 4)
    out[a] = t[a] ** 3 / 6
    out[b] = (-3 * t[b] ** 3 + 12 * t[b] ** 2 - 12 * t[b] + 4) / 6
    out[c] = (3 * t[c] ** 3 - 24 * t[c] ** 2 + 60 * t[c] - 44) / 6
    out[d] = (4 - t[d]) ** 3 / 6
    return out


def test_linear_bspline_is_the_hat_basis():
    # order 2 (degree 1), uniform knots: basis j is the hat centred on knot j (closed form)
    x = np.linspace(0, 1, 301)
    n = 6
    got = bspline(x, n, order=2, bounds=(0.0, 1.0)).toarray()
    centres = np.linspace(0, 1, n)
    h = centres[1] - centres[0]
    hats = np.maximum(0.0, 1 - np.abs(x[:, None] - centres[None]) / h)
    np.testing.assert_allclose(got, hats, atol=1e-13)


def test_cubic_bspline_matches_scipy_evaluation_and_sums_to_one():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.3, 1.7, 500)
    x[::50] = np.nan
    n, lo, hi = 9, 0.0, 1.5
    got = bspline(x, n, order=4, bounds=(lo, hi))
    dense_got = got.toarray()
    knots = clamped_knots(n, 4, lo, hi)
    xc = np.clip(x, lo, hi)
    finite = np.isfinite(x)
    for j in range(n):  # scipy's BSpline evaluated per coefficient vector, not design_matrix
        ref = BSpline(knots, np.eye(n)[j], 3, extrapolate=False)(xc[finite])
        np.testing.assert_allclose(dense_got[finite, j], np.nan_to_num(ref), atol=1e-12)
    np.testing.assert_allclose(dense_got[finite].sum(axis=1), 1.0, atol=1e-12)
    assert np.all(dense_got[~finite] == 0)
    assert got.nnz_per_row == 4
    # rows with the same start share columns (what the Newton solver groups on)
    for s in np.unique(got.start):
        cols = got.cols[got.start == s]
        assert np.all(cols == cols[0])


def test_cyclic_cubic_bspline_is_the_wrapped_cardinal_spline():
    n = 8
    theta = np.linspace(-3 * np.pi, 3 * np.pi, 997)
    got = cyclic_bspline(theta, n, order=4).toarray()
    h = 2 * np.pi / n
    u = np.mod(theta, 2 * np.pi) / h  # in knot spacings
    # basis j: the cardinal cubic starting at knot j - 3, wrapped around the circle
    ref = np.stack([_cardinal_cubic(np.mod(u - (j - 3), n)) for j in range(n)], axis=1)
    np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(cyclic_bspline(theta + 2 * np.pi, n).toarray(), got, atol=1e-12)


def test_tensor_product_is_the_rowwise_kronecker():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, 200), rng.uniform(0, 2, 200)
    a, b = bspline(x, 6), bspline(y, 5)
    got = row_kron(a, b).toarray()
    A, B = a.toarray(), b.toarray()
    ref = (A[:, :, None] * B[:, None, :]).reshape(200, -1)
    np.testing.assert_allclose(got, ref, atol=1e-15)
    assert row_kron(a, b).nnz_per_row == 16


def test_lagged_filters_stay_inside_segments():
    rng = np.random.default_rng(2)
    y = rng.poisson(1.0, (60, 3)).astype(float)
    segment = np.repeat([0, 1, 2], 20)
    got = lagged(y, segment, n_lags=5, n_basis=3, first_lag=1)
    from neurorec.core.bases import raised_cosine_log

    basis = raised_cosine_log(5, 3)
    ref = np.zeros_like(got)
    for t in range(60):
        for row in range(5):
            s = t - row - 1
            if s >= 0 and segment[s] == segment[t]:
                ref[t] += y[s][:, None] * basis[row][None, :]
    np.testing.assert_allclose(got, ref, atol=1e-13)
    assert np.all(got[[0, 20, 40]] == 0)


def test_block_design_gram_gradient_and_predictor_equal_dense_products():
    rng = np.random.default_rng(3)
    n = 3000
    pos = rng.uniform(0, 1, (n, 2))
    hd = rng.uniform(-np.pi, np.pi, n)
    speed = rng.gamma(2.0, 0.1, n)
    blocks = [dense(np.ones((n, 1))), row_kron(bspline(pos[:, 0], 7), bspline(pos[:, 1], 7)),
              cyclic_bspline(hd, 8), bspline(speed, 6)]
    X = np.hstack([b.toarray() for b in blocks])
    w = rng.uniform(0.0, 2.0, (n, 5))
    design = BlockDesign(blocks, dtype=np.float64)
    ref = np.einsum("na,nu,nb->uab", X, w, X)
    np.testing.assert_allclose(design.gram(w), ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    coef = rng.normal(size=(X.shape[1], 5))
    np.testing.assert_allclose(design.dot(coef), X @ coef, atol=1e-12)
    np.testing.assert_allclose(design.tdot(w), X.T @ w, atol=1e-10)
    # the default float32 Gram is within float32 rounding
    g32 = BlockDesign(blocks).gram(w)
    assert np.abs(g32 - ref).max() <= 1e-5 * np.abs(ref).max()


def _nemos_python() -> Path | None:
    for py in (NEMOS_PY, ALT_NEMOS_PY):
        if py.exists():
            return py
    return None


@pytest.mark.skipif(_nemos_python() is None, reason="no nemos peer venv (/work/peers/nemos)")
def test_column_spaces_equal_nemos_bases(tmp_path):
    """Our B-spline, cyclic B-spline and tensor-product bases span the same columns as nemos'
    BSplineEval / CyclicBSplineEval / product of the same order and size (nemos 0.2.x in its
    Python 3.12 venv, called on NPZ files)."""
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0.1, 0.9, 800), rng.uniform(0.0, 1.0, 800)
    theta = rng.uniform(-np.pi, np.pi, 800)
    np.savez(tmp_path / "in.npz", x=x, y=y, theta=theta)
    script = """
import sys, numpy as np, jax
jax.config.update("jax_enable_x64", True)
import nemos as nmo
f = np.load(sys.argv[1])
x, y, th = f["x"], f["y"], f["theta"]
b1 = nmo.basis.BSplineEval(8, order=4, bounds=(0.1, 0.9)).compute_features(x)
b2 = nmo.basis.CyclicBSplineEval(8, order=4, bounds=(-np.pi, np.pi)).compute_features(th)
b3 = (nmo.basis.BSplineEval(5, order=4, bounds=(0.1, 0.9))
      * nmo.basis.BSplineEval(6, order=4, bounds=(0.0, 1.0))).compute_features(x, y)
np.savez(sys.argv[2], bspline=np.asarray(b1), cyclic=np.asarray(b2), tensor=np.asarray(b3),
         version=nmo.__version__)
"""
    (tmp_path / "peer.py").write_text(script)
    subprocess.run([str(_nemos_python()), str(tmp_path / "peer.py"), str(tmp_path / "in.npz"),
                    str(tmp_path / "out.npz")], check=True, timeout=600, capture_output=True)
    peer = np.load(tmp_path / "out.npz")
    ours = {"bspline": bspline(x, 8, 4, (0.1, 0.9)).toarray(),
            "cyclic": cyclic_bspline(theta, 8, 4, (-np.pi, np.pi)).toarray(),
            "tensor": row_kron(bspline(x, 5, 4, (0.1, 0.9)), bspline(y, 6, 4, (0.0, 1.0)))
            .toarray()}
    for name, A in ours.items():
        B = peer[name]
        assert A.shape == B.shape, name
        # each basis lies in the other's column space (least-squares residual ~ 0)
        for P, Q in ((A, B), (B, A)):
            coef, *_ = np.linalg.lstsq(P, Q, rcond=None)
            assert np.abs(P @ coef - Q).max() < 1e-8, name
        assert np.linalg.matrix_rank(np.hstack([A, B]), tol=1e-8) == A.shape[1], name


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
