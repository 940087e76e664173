"""Issue 18 analyses of the sequential-MNIST study on constructed cases with known answers:
the periodicity residual and attractor census (rotation maps with known periods, two known
limit cycles, an irrational rotation), label separation per time step (separable vs shuffled
clusters, silhouette against its definition), and blank rows = zero input in the tanh RNN."""

from __future__ import annotations

import numpy as np
import torch

from neurorec.analysis.attractors import attractor_census, periodicity_residual, run_orbits
from neurorec.analysis.clustering import separation_over_time, silhouette
from neurorec.families.rnn.model import TanhRNN, autonomous_step, sequence_variant


def rotation_map(angle: float, lock: float = 0.0):
    """Polar map on (x, y): r -> sqrt r (orbits off the origin converge to the unit circle),
    θ -> θ + angle − lock · sin(5θ). With angle = 2π/5 and 0 < lock < 0.4 the 5 points
    θ = 2πk/5 form the one attracting cycle of period 5; with lock = 0 every point of the circle
    rotates rigidly (quasi-periodic when angle/2π is irrational). A third coordinate
    z -> sign(z) |z|^0.5 goes to ±1: two copies of the cycle."""

    def step(x: np.ndarray) -> np.ndarray:
        r = np.sqrt(np.linalg.norm(x[:, :2], axis=1))
        th = np.arctan2(x[:, 1], x[:, 0])
        th = th + angle - lock * np.sin(5 * th)
        z = np.sign(x[:, 2]) * np.sqrt(np.abs(x[:, 2]))
        return np.stack([r * np.cos(th), r * np.sin(th), z], 1)

    return step


def test_census_finds_two_period_5_cycles_of_a_rotation_map():
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(40, 3))
    census = attractor_census(rotation_map(2 * np.pi / 5, 0.1), x0, n_transient=200,
                              tols=[1e-8, 1e-4], max_period=12)
    for row in census.summary(labels=(x0[:, 2] > 0).astype(int)):
        assert row["limit_cycle_orbits"] == 40 and row["n_limit_cycles"] == 2
        assert row["cycle_periods"] == [5, 5]
        assert row["labels_per_attractor"] == [1, 1]  # each cycle holds one sign of z
    np.testing.assert_array_equal(census.best_period % 5, 0)
    assert census.min_residual.max() < 1e-10
    np.testing.assert_allclose(census.scale, np.sqrt(2), atol=1e-10)  # |(cos, sin, ±1)|


def test_irrational_rotation_has_the_closed_form_residual_and_no_cycle():
    """On the unit circle a rotation by α moves a point by the chord 2|sin(pα/2)| in p
    steps: the residual of period p is exactly that, and no tolerance below its minimum
    over p ≤ P finds a cycle."""
    alpha = 2 * np.pi * (np.sqrt(5) - 1) / 2  # golden-angle rotation: quasi-periodic
    x0 = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, -1.0]])
    P = 30
    _, tail = run_orbits(rotation_map(alpha), x0, 10, 2 * P)
    res = periodicity_residual(tail, P)
    chord = 2 * np.abs(np.sin(np.arange(1, P + 1) * alpha / 2))
    np.testing.assert_allclose(res, np.broadcast_to(chord, res.shape), atol=1e-12)
    census = attractor_census(rotation_map(alpha), x0, 10, tols=[0.5 * chord.min()],
                              max_period=P)
    assert census.summary()[0]["aperiodic_orbits"] == 2
    np.testing.assert_allclose(census.min_residual, chord.min(), atol=1e-12)
    census = attractor_census(rotation_map(alpha), x0, 10, tols=[1.01 * chord.min()],
                              max_period=P)
    assert census.summary()[0]["limit_cycle_orbits"] == 2  # the tolerance decides


def brute_silhouette(x: np.ndarray, y: np.ndarray) -> float:
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    s = []
    for i in range(len(x)):
        same = (y == y[i]) & (np.arange(len(x)) != i)
        a = d[i, same].mean()
        b = min(d[i, y == c].mean() for c in np.unique(y) if c != y[i])
        s.append((b - a) / max(a, b))
    return float(np.mean(s))


def test_separation_over_time_separable_then_mixed():
    """Time step 0: ten well-separated Gaussian clusters (k-NN 1, silhouette near 1); time
    step 1: the same points with no relation to the labels (k-NN at chance, silhouette ≈ 0)."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(10), 30)
    centres = rng.normal(size=(10, 8)) * 20
    sep = centres[y] + rng.normal(size=(300, 8))
    mixed = rng.normal(size=(300, 8))
    out = separation_over_time(np.stack([sep, mixed], 1), y, seed=0)
    assert out["knn"][0] == 1.0 and out["silhouette"][0] > 0.85
    assert abs(out["knn"][1] - 0.1) < 0.07 and abs(out["silhouette"][1]) < 0.1
    small = slice(0, 300, 5)
    assert abs(silhouette(sep[small], y[small]) - brute_silhouette(sep[small], y[small])) < 1e-12


def test_blank_rows_are_the_zero_input_map():
    """Appending blank rows (pixel value 0) drives the tanh RNN by U·0 + b = b: the states are
    the autonomous map tanh(W h + b) iterated from the last state, to float32 rounding."""
    gen = torch.Generator().manual_seed(0)
    net = TanhRNN(28, 50, 10, 1.5, gen)
    with torch.no_grad():
        net.b.normal_(0, 0.3, generator=gen)
    x = np.random.default_rng(0).uniform(size=(6, 28, 28)).astype(np.float32)
    with torch.no_grad():
        _, hs = net(torch.as_tensor(sequence_variant(x, "extended", 10)))
    hs = hs.double().numpy()
    W, b = net.W.detach().double().numpy(), net.b.detach().double().numpy()
    h = hs[:, 27]
    for t in range(28, 38):
        h = autonomous_step(W, b, h)
        np.testing.assert_allclose(hs[:, t], h, atol=1e-4)


def test_variant_accuracies_from_one_pass_equal_scoring_each_variant():
    """The study script's one-pass accuracies (cut reads h_n, extended h_{T+n}, hidden runs
    h_{T−n} with zero input) equal ``model.score`` on every variant's own sequences."""
    import importlib.util
    from pathlib import Path

    from neurorec.families.rnn.model import VARIANTS, SequenceRNN
    from neurorec.families.rnn.spec import RNNSpec

    path = Path(__file__).resolve().parents[1] / "analyses" / "seqmnist_dynamics" / "run.py"
    spec_ = importlib.util.spec_from_file_location("seqmnist_run", path)
    run = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(run)
    rng = np.random.default_rng(0)
    x = (rng.uniform(size=(300, 8, 6)) * (rng.uniform(size=(300, 8, 1)) > 0.3)).astype(
        np.float32)
    y = (x[:, :4].sum((1, 2)) > x[:, 4:].sum((1, 2))).astype(int) + 2 * (x[:, 0, 0] > 0.5)
    model = SequenceRNN(RNNSpec(n_units=16, n_inputs=6, n_outputs=4,
                                fit={"epochs": 2, "batch_size": 50, "lr": 1e-2}), seed=0)
    model.fit(x, y=y, progress=False)
    acc = run.variant_accuracies(model, x, y)
    for v in VARIANTS:
        ref = [model.score(sequence_variant(x, v, n), y) for n in range(9)]
        np.testing.assert_array_equal(acc[v], ref)
    assert len(set(acc["hidden"])) > 2  # the check is not vacuous
