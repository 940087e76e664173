"""The GLM is assembled from parts: an observation plus a list of drive terms, the penalty from
the terms' masks by a regulariser outside the model.

Checks: a GLM with one term removed is the spec with that term disabled (bit for bit); a new
term, defined here and never named in glm.py, fits and equals statsmodels on the same design;
the R-GLM is the GLM's terms plus the latent; the regulariser's penalty equals the one written
out by hand; the observation owns the scores the metrics use, and the NLL and derivatives the
batched Newton uses (against scipy and autograd of the NLL L-BFGS differentiates); terms see a
public ``TermContext``, never the model; the filters are in the model's own terms' bases;
terms.py imports no other module of the GLM family (no import cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import statsmodels.api as sm
import torch
from scipy import stats

from neurorec.core import metrics
from neurorec.core.bases import raised_cosine_log
from neurorec.core.observations import make_observation
from neurorec.data.recording import TrialLayout
from neurorec.families.glm.conformance import v1_small
from neurorec.families.glm.glm import GLM
from neurorec.families.glm.rglm import RGLM, Latent
from neurorec.families.glm.spec import GLMSpec, RGLMSpec
from neurorec.families.glm.terms import (
    Bias,
    Column,
    Coupling,
    History,
    InBin,
    StimulusBasis,
    Term,
    TermContext,
    default_terms,
)
from neurorec.fit.regularise import L1_SMOOTHING, Regulariser

_SMALL = {"stimulus": {"n_basis": 4}, "history": {"n_basis": 2, "duration": "30 ms"},
          "penalty": {"l2": 1e-4}, "fit": {"max_iter": 30, "early_stopping": False}}


def test_glm_without_a_term_equals_the_spec_with_it_disabled():
    train, test = v1_small()
    spec = GLMSpec(**_SMALL, coupling={"enabled": True, "n_basis": 2, "duration": "30 ms"})
    terms = [t for t in default_terms(spec) if not isinstance(t, Coupling)]
    removed = GLM(spec, terms=terms).fit(train, progress=False)
    disabled = GLM(spec.model_copy(update={"coupling": spec.coupling.model_copy(
        update={"enabled": False})})).fit(train, progress=False)
    assert removed.params_.keys() == disabled.params_.keys() == {"beta", "h"}
    for k in removed.params_:
        np.testing.assert_array_equal(removed.params_[k], disabled.params_[k])
    np.testing.assert_array_equal(removed.predict_rate(test), disabled.predict_rate(test))
    assert removed.n_parameters() == disabled.n_parameters()


class Ramp(Term):
    """A per-unit gain on time in the trial (0 at the first bin, 1 at the last): a term this
    test adds without touching glm.py."""

    params = ("ramp",)
    group = None

    def static_features(self, ctx, inputs):
        return {"ramp_t": ctx.tensor(np.linspace(0.0, 1.0, inputs.n_bins)[:, None])}

    def init(self, ctx, data, gen, baseline):
        return {"ramp": ctx.tensor(np.zeros((data.counts.shape[2], 1)))}

    def drive(self, ctx, p, d):
        return d["ramp_t"][None] * p["ramp"][:, 0]

    def columns(self, ctx, d, n_conditions):
        y = d["y"]
        feature = d["ramp_t"].expand(y.shape[0], -1, -1).reshape(-1, 1)
        return [Column("ramp", feature, y.new_ones(y.shape[2], 1), self.group)]


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_a_new_term_fits_and_equals_statsmodels(solver):
    train, _ = v1_small()
    spec = GLMSpec(stimulus={"enabled": False}, history={"enabled": False},
                   penalty={"stimulus_l2": 0.0},
                   fit={"solver": solver, "early_stopping": False, "max_iter": 500,
                        "tol": 1e-12})
    model = GLM(spec, terms=[Bias(), Ramp()]).fit(train, progress=False)
    n_trials, n_bins, n_units = train.counts.shape
    ramp = np.tile(np.linspace(0.0, 1.0, n_bins), n_trials)
    X = np.column_stack([np.ones_like(ramp), ramp])
    y = train.counts.reshape(-1, n_units).astype(float)
    for i in range(n_units):
        ref = sm.GLM(y[:, i], X, family=sm.families.Poisson()).fit(tol=1e-12, maxiter=200)
        ours = [model.params_["bias"][i], model.params_["ramp"][i, 0]]
        np.testing.assert_allclose(ours, ref.params, rtol=1e-5, atol=1e-6)
    sample = model.sample(3, seed=0, like=TrialLayout(train.condition, n_bins))
    assert sample.shape == (3, n_bins, n_units)
    assert model.n_parameters() == 2 * n_units


def test_rglm_is_the_glm_plus_the_latent():
    train, test = v1_small()
    spec = RGLMSpec(**_SMALL, recurrent={"dim": 2},
                    correlated={"enabled": True})
    rglm = RGLM(spec)
    assert [type(t) for t in rglm.terms] == [*map(type, default_terms(spec)), Latent]
    assert any(isinstance(t, InBin) for t in rglm.terms)
    rglm.fit(train, progress=False)
    assembled = GLM(spec, terms=[*default_terms(spec), Latent(spec.recurrent)])
    assembled.fit(train, progress=False)
    assert assembled.solver() == "lbfgs"
    for k in rglm.params_:
        np.testing.assert_array_equal(rglm.params_[k], assembled.params_[k])
    np.testing.assert_array_equal(rglm.predict_rate(test), assembled.predict_rate(test))


def test_regulariser_penalty_equals_the_hand_written_one():
    gen = torch.Generator().manual_seed(0)
    n, k = 4, 3
    p = {"beta": torch.randn(n, 2, k, generator=gen, dtype=torch.float64),
         "J": torch.randn(n, n, k, generator=gen, dtype=torch.float64),
         "A": torch.randn(n, n, generator=gen, dtype=torch.float64),
         "bias": torch.randn(n, generator=gen, dtype=torch.float64)}
    centre = torch.randn(n, 2, k, generator=gen, dtype=torch.float64)
    lower = torch.tril(torch.ones(n, n, dtype=torch.float64), -1)
    off = 1 - torch.eye(n, dtype=torch.float64)
    pieces = [("beta", "stimulus", None), ("bias", None, None),
              ("J", "weights", lambda w: off[..., None]), ("A", "weights", lambda w: lower)]
    reg = Regulariser(l1=0.3, l2=0.2, stimulus_l2=0.1)
    got = float(reg.add(torch.tensor(0.0, dtype=torch.float64), p, pieces, {"beta": centre}))

    def l1(w):
        return float((torch.sqrt(w**2 + L1_SMOOTHING**2) - L1_SMOOTHING).sum())

    J, A = p["J"] * off[..., None], p["A"] * lower
    want = (0.1 * float(((p["beta"] - centre) ** 2).sum())
            + 0.2 * float((J**2).sum()) + 0.3 * l1(J)
            + 0.2 * float((A**2).sum()) + 0.3 * l1(A))
    assert got == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("name", ["poisson", "bernoulli", "gaussian"])
def test_observation_owns_the_scores(name):
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.7, size=(3, 20, 4)).astype(float)
    mean = rng.uniform(0.2, 0.9, size=counts.shape)
    scale = np.full(4, 0.8) if name == "gaussian" else None
    obs = make_observation(name)
    y, r = counts.reshape(-1, 4), mean.reshape(-1, 4)
    model_nll, null_nll = obs.score_tables(y, r, scale)
    ref = {"poisson": lambda: -stats.poisson.logpmf(y, r),
           "bernoulli": lambda: -stats.bernoulli.logpmf(y > 0, r),
           "gaussian": lambda: -stats.norm.logpdf(y, r, 0.8)}[name]()
    np.testing.assert_allclose(model_nll, ref, rtol=1e-10)
    assert metrics.log_likelihood(counts, mean, name, scale) == pytest.approx(
        -model_nll.sum(), rel=1e-14)
    assert null_nll.shape == model_nll.shape


@pytest.mark.parametrize(("name", "link"), [("poisson", "exp"), ("poisson", "softplus"),
                                            ("bernoulli", None)])
def test_observation_owns_the_newton_likelihood(name, link):
    """One likelihood per observation: what the batched Newton sums (kernel + constant) is
    scipy's NLL and the function L-BFGS differentiates; its derivatives are autograd's."""
    rng = np.random.default_rng(1)
    obs = make_observation(name, link)
    drive = torch.as_tensor(rng.uniform(-3.0, 2.0, size=(5, 40)), dtype=torch.float64)
    y = torch.as_tensor(rng.poisson(1.0, size=drive.shape), dtype=torch.float64)
    y = obs.prepare(y)
    mean = obs.mean(drive).numpy()
    ref = (-stats.poisson.logpmf(y.numpy(), mean) if name == "poisson"
           else -stats.bernoulli.logpmf(y.numpy(), mean))
    full = (obs.nll_kernel(y, drive) + obs.nll_constant(y)).numpy()
    np.testing.assert_allclose(full, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(obs.nll(y, drive).numpy(), ref, rtol=1e-12, atol=1e-12)
    d = drive.clone().requires_grad_()
    (g,) = torch.autograd.grad(obs.nll(y, d).sum(), d, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), d)
    r, c = obs.derivatives(y, drive)
    np.testing.assert_allclose(r.numpy(), g.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.numpy(), h.numpy(), rtol=1e-10, atol=1e-12)
    assert obs.derivatives(y, drive, curvature=False)[1] is None
    m = torch.as_tensor(rng.uniform(0.05, 0.95, size=7), dtype=torch.float64)
    np.testing.assert_allclose(obs.mean(obs.drive_of_mean(m)).numpy(), m.numpy(), rtol=1e-12)


def test_gaussian_and_a_rate_ceiling_have_no_newton_form():
    from neurorec.fit.newton import fit_batched_glm

    X, Y = torch.ones(10, 1, dtype=torch.float64), torch.ones(10, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="gaussian has no Newton form"):
        fit_batched_glm(X, Y, observation=make_observation("gaussian"))
    with pytest.raises(ValueError, match="rate ceiling"):
        fit_batched_glm(X, Y, observation=make_observation("poisson", ceiling=5.0))
    with pytest.raises(ValueError, match="Poisson counts must be >= 0"):
        fit_batched_glm(X, -Y, observation=make_observation("poisson"))


def test_history_filters_are_in_the_models_history_basis():
    """``GLM(spec, terms=[..., History(...)])``: the filters use that term's basis, not the
    spec's history settings (which here differ in size and window)."""
    train, _ = v1_small()
    spec = GLMSpec(**_SMALL)  # history: 2 functions over 30 ms
    model = GLM(spec, terms=[StimulusBasis(4), History(3, 0.05)]).fit(train, progress=False)
    n_lags = round(0.05 / train.bin_size)
    assert model.params_["h"].shape == (train.counts.shape[2], 3)
    want = model.params_["h"] @ raised_cosine_log(n_lags, 3).T
    got = model.history_filters()
    assert got.shape == (train.counts.shape[2], n_lags)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


class _Spy(Ramp):
    """The ramp term, recording what each hook is handed as the model."""

    def __init__(self):
        self.seen: set[type] = set()

    def static_features(self, ctx, inputs):
        self.seen.add(type(ctx))
        return super().static_features(ctx, inputs)

    def init(self, ctx, data, gen, baseline):
        self.seen.add(type(ctx))
        return super().init(ctx, data, gen, baseline)

    def drive(self, ctx, p, d):
        self.seen.add(type(ctx))
        return super().drive(ctx, p, d)

    def columns(self, ctx, d, n_conditions):
        self.seen.add(type(ctx))
        return super().columns(ctx, d, n_conditions)

    def penalties(self, ctx):
        self.seen.add(type(ctx))
        return super().penalties(ctx)


@pytest.mark.parametrize("solver", ["newton", "lbfgs"])
def test_terms_see_a_public_context_not_the_model(solver):
    train, test = v1_small()
    spec = GLMSpec(**{**_SMALL, "fit": {"solver": solver, "early_stopping": False,
                                        "max_iter": 5}})
    spy = _Spy()
    model = GLM(spec, seed=3, terms=[*default_terms(spec), spy]).fit(train, progress=False)
    model.predict_rate(test)
    assert spy.seen == {TermContext}
    ctx = model.context()
    assert (ctx.name, ctx.dtype, ctx.bin_size) == (spec.name, torch.float64, train.bin_size)
    np.testing.assert_array_equal(ctx.unit_order, model.unit_order_)
    # co-smoothing: the context zeroes held-out units' counts and masks them out of A
    heldout = np.zeros(train.counts.shape[2], dtype=bool)
    heldout[1] = True
    ctx = TermContext("x", torch.float64, torch.device("cpu"), heldout, np.arange(len(heldout)))
    y = torch.ones(2, 3, len(heldout), dtype=torch.float64)
    assert float(ctx.inputs(y)[..., 1].abs().sum()) == 0.0
    mask = ctx.order_mask().numpy()
    want = np.tril(np.ones((len(heldout),) * 2), -1)
    want[:, 1] = 0.0
    np.testing.assert_array_equal(mask, want)


def test_terms_module_imports_nothing_of_the_glm_family():
    """No import cycle: terms.py imports no other module of neurorec.families.glm (not even
    for type checking), and the family's modules import each other without a cycle."""
    folder = Path(__file__).resolve().parents[1] / "neurorec" / "families" / "glm"
    pkg = "neurorec.families.glm"
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        if path.stem == "__init__":
            continue
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            deps |= {n.removeprefix(pkg + ".") for n in names if n.startswith(pkg + ".")}
        graph[path.stem] = deps
    assert graph["terms"] == set()

    def visit(node: str, stack: tuple[str, ...]) -> None:
        assert node not in stack, f"import cycle: {' -> '.join((*stack, node))}"
        for dep in graph.get(node, ()):
            visit(dep, (*stack, node))

    for name in graph:
        visit(name, ())
