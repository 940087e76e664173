"""Every torch path gives the same numbers on CUDA as on CPU.

Each test computes on ``"cpu"`` and on ``OTHER = $NEUROREC_TEST_DEVICE`` (default ``"cuda"``)
from identical parameters (drawn once, or copied across) and asserts agreement: float64 to
~1e-9 relative or better, float32 to ~1e-4. Random draws are the one exception: CPU and CUDA
generators give different streams for the same seed, so samples are compared through their
statistics (sample means against exact rates, or the two devices' means against each other,
within sampling error), never sample by sample.

Fits are iterative, so rounding differences of ~1e-16 between devices can grow. The tolerances
of the fit tests were set by perturbing the initial parameters by 1e-12 (relative) on CPU,
which grows far more than device rounding does: the GLM with early stopping stays within
3e-13, the R-GLM within 2e-9 after 20 L-BFGS iterations (3e-7 after 40, and an unconverged
R-GLM fit of 200 iterations ends elsewhere entirely: its fits are compared after 20).

The module is skipped when ``OTHER`` is a CUDA device and torch sees none. On a CPU machine
``NEUROREC_TEST_DEVICE=cpu python -m pytest tests/test_cuda.py`` runs the same comparisons
CPU against CPU (a dry run of the test logic). TF32 is switched off while these tests run
(cuDNN convolutions use it by default; it rounds float32 products to 10-bit mantissas).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

OTHER = os.environ.get("NEUROREC_TEST_DEVICE", "cuda")
if OTHER.startswith("cuda") and not torch.cuda.is_available():
    pytest.skip(f"NEUROREC_TEST_DEVICE={OTHER}: torch {torch.__version__} sees no CUDA device "
                "(set NEUROREC_TEST_DEVICE=cpu to dry-run these comparisons on CPU)",
                allow_module_level=True)

from neurorec.cli import main  # noqa: E402
from neurorec.data import bin_trials, read_nwb  # noqa: E402
from neurorec.data.recording import TrialLayout  # noqa: E402
from neurorec.datasets import load  # noqa: E402
from neurorec.families import GLM, RGLM, CTRNNObs  # noqa: E402
from neurorec.families.conv_rnn.model import CodeRNN, ConvAutoencoder, ConvRNN  # noqa: E402
from neurorec.families.conv_rnn.spec import ConvRNNSpec  # noqa: E402
from neurorec.families.ctrnn.model import CTRNN, noise_std  # noqa: E402
from neurorec.families.ctrnn.spec import CTRNNSpec  # noqa: E402
from neurorec.families.ctrnn.train import evaluate, train  # noqa: E402
from neurorec.families.ctrnn_obs.spec import CTRNNObsSpec  # noqa: E402
from neurorec.families.glm.spec import GLMSpec, RGLMSpec  # noqa: E402
from neurorec.families.rglm_lm.model import RGLMLanguageModel  # noqa: E402
from neurorec.families.rglm_lm.spec import RGLMLMSpec  # noqa: E402
from neurorec.families.rnn.model import SequenceRNN  # noqa: E402
from neurorec.families.rnn.spec import RNNSpec  # noqa: E402
from neurorec.families.ssrnn.model import SpikeSlabRNN  # noqa: E402
from neurorec.families.ssrnn.spec import SSRNNSpec  # noqa: E402
from neurorec.fit.run import Run  # noqa: E402
from neurorec.spec import load_model_spec, load_stimulus_spec  # noqa: E402
from neurorec.tasks import make_task  # noqa: E402
from neurorec.workflows.pipeline import fit_and_evaluate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEVICES = ("cpu", OTHER)
Z_MAX = 5.0  # sampling vs exact rates: |z| beyond 5 s.e. (p ≈ 6e-7 per comparison)
T_MAX = 5.5  # two devices' sample means (40 + 40 trials, ~400 comparisons): p ≈ 2e-4 in all


def close(got, want, rtol: float, what: str = "") -> None:
    """``got`` equals ``want`` to ``rtol`` relative to the largest |want| (so near-zero entries
    of a tensor are held to the tensor's scale, not to their own)."""
    got, want = (np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, dtype=float)
                 for x in (got, want))
    assert got.shape == want.shape, what
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-300)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.fixture(autouse=True)
def exact_float32_and_device_used():
    """TF32 off (exact float32 products on both devices); on CUDA, check that the test
    really allocated GPU memory (a path that silently stayed on CPU fails here)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    cuda = OTHER.startswith("cuda")
    key = "allocation.all.allocated"  # cumulative count of allocations on the device
    before = torch.cuda.memory_stats(OTHER).get(key, 0) if cuda else 0
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    if cuda:
        assert torch.cuda.memory_stats(OTHER).get(key, 0) > before, \
            f"the test allocated nothing on {OTHER}: the path ran on the CPU"


@pytest.fixture(scope="module")
def v1_small():
    """V1 session 0, units 0, 3, 21, 29: (train, test) of 160 / 48 trials × 90 bins of 10 ms."""
    rec = load("v1_gratings:0")
    keep = [0, 3, 21, 29]
    rec = dataclasses.replace(rec, spike_times=[rec.spike_times[i] for i in keep],
                              unit_ids=rec.unit_ids[keep])
    data = bin_trials(rec, 0.01, conditions=["direction"], test_fraction=0.2, seed=0)
    return data.subset(~data.is_test), data.subset(data.is_test)


def glm_spec(cls=GLMSpec, **kw) -> GLMSpec:
    base = dict(stimulus={"n_basis": 6}, history={"n_basis": 3, "duration": 0.05},
                penalty={"l2": 1e-4})
    return cls(**{**base, **kw})


def copy_fitted(model, device: str):
    """The same fitted model on ``device``: a new instance with the learned attributes."""
    twin = type(model)(model.spec, device=device, seed=model.seed)
    for key, value in vars(model).items():
        if key.endswith("_"):
            setattr(twin, key, copy.deepcopy(value))
    twin.heldout = model.heldout
    return twin


# ------------------------------------------------------------------ GLM / R-GLM fits
def test_glm_fit_is_the_same_on_both_devices(v1_small):
    """Stimulus + history + coupling + in-bin correlations, early stopping (default use)."""
    train_, test = v1_small
    spec = glm_spec(coupling={"enabled": True, "n_basis": 2, "duration": 0.03},
                    correlated={"enabled": True}, fit={"max_iter": 100})
    cpu, other = (GLM(spec, device=d).fit(train_, progress=False) for d in DEVICES)
    assert other.fit_report_.n_iter == cpu.fit_report_.n_iter
    assert other.fit_report_.reason == cpu.fit_report_.reason
    for k, v in cpu.params_.items():
        close(other.params_[k], v, 1e-8, k)
    close(other.predict_rate(test), cpu.predict_rate(test), 1e-9, "rates")
    assert other.score(test) == pytest.approx(cpu.score(test), rel=1e-9)


def test_rglm_fit_is_the_same_on_both_devices(v1_small):
    """20 L-BFGS iterations (no early stopping): parameters, hidden states, held-out score."""
    train_, test = v1_small
    spec = glm_spec(RGLMSpec, recurrent={"dim": 2}, penalty={"l2": 1e-6},
                    fit={"max_iter": 20, "early_stopping": False})
    cpu, other = (RGLM(spec, device=d).fit(train_, progress=False) for d in DEVICES)
    assert other.fit_report_.n_iter == cpu.fit_report_.n_iter
    for k, v in cpu.params_.items():
        close(other.params_[k], v, 1e-6, k)
    close(other.hidden_state(test), cpu.hidden_state(test), 1e-6, "hidden state")
    assert other.log_likelihood(test) == pytest.approx(cpu.log_likelihood(test), rel=1e-9)


@pytest.mark.parametrize("observation, link", [("poisson", "exp"), ("poisson", "softplus"),
                                               ("bernoulli", "logistic"),
                                               ("gaussian", "identity")])
def test_evaluation_of_the_same_parameters_agrees(v1_small, observation, link):
    """Rates, log-likelihood, bits/spike and hidden states of one parameter set (fitted on CPU,
    copied to the other device), for every observation family; R-GLM with coupling and A."""
    train_, test = v1_small
    spec = glm_spec(RGLMSpec, observation=observation, link=link, recurrent={"dim": 2},
                    coupling={"enabled": True, "n_basis": 2, "duration": 0.03},
                    correlated={"enabled": True}, fit={"max_iter": 5, "early_stopping": False})
    cpu = RGLM(spec).fit(train_, progress=False)
    other = copy_fitted(cpu, OTHER)
    close(other.predict_rate(test), cpu.predict_rate(test), 1e-12, "rates")
    close(other.hidden_state(test), cpu.hidden_state(test), 1e-12, "hidden state")
    assert other.log_likelihood(test) == pytest.approx(cpu.log_likelihood(test), rel=1e-12)
    assert other.score(train_) == pytest.approx(cpu.score(train_), rel=1e-10, abs=1e-12)


# ------------------------------------------------------------------ sampling statistics
@pytest.mark.parametrize("observation, link", [("poisson", "exp"), ("bernoulli", "logistic")])
def test_samples_of_a_stimulus_glm_have_the_exact_rates(v1_small, observation, link):
    """Without history, samples are independent given the condition: on each device, the
    count summed over trials and bins per unit and condition is within 5 s.e. of its exact
    expectation."""
    train_, _ = v1_small
    spec = glm_spec(observation=observation, link=link, history={"enabled": False},
                    fit={"max_iter": 30, "early_stopping": False})
    cpu = GLM(spec).fit(train_, progress=False)
    drive = torch.as_tensor(cpu.stimulus_drive())  # (unit, condition, bin)
    p = torch.exp(drive) if observation == "poisson" else torch.sigmoid(drive)
    n_rep = 40
    condition = np.repeat(np.arange(cpu.n_conditions_), n_rep)
    for device in DEVICES:
        model = copy_fitted(cpu, device)
        like = TrialLayout(condition, model.n_bins_)
        y = model.sample(len(condition), seed=3, like=like)  # (trial, bin, unit)
        assert y.shape == (len(condition), cpu.n_bins_, cpu.n_units_)
        got = y.reshape(cpu.n_conditions_, n_rep, cpu.n_bins_, -1).sum(axis=(1, 2)).T
        mean = n_rep * p.sum(-1).numpy()
        var = n_rep * (p if observation == "poisson" else p * (1 - p)).sum(-1).numpy()
        z = (got - mean) / np.sqrt(var)
        assert np.abs(z).max() < Z_MAX, (device, z)


def test_closed_loop_samples_agree_in_distribution(v1_small):
    """History + coupling + in-bin correlations (spikes feed back): the two devices' mean
    counts per unit and condition, and per unit and time bin, agree within 5.5 s.e."""
    train_, _ = v1_small
    spec = glm_spec(coupling={"enabled": True, "n_basis": 2, "duration": 0.03},
                    correlated={"enabled": True}, link="softplus",
                    fit={"max_iter": 30, "early_stopping": False})
    cpu = GLM(spec).fit(train_, progress=False)
    n_rep = 40
    condition = np.repeat(np.arange(cpu.n_conditions_), n_rep)
    like = TrialLayout(condition, cpu.n_bins_)
    ys = [copy_fitted(cpu, d).sample(len(condition), seed=11, like=like).astype(float)
          for d in DEVICES]
    per = [y.reshape(cpu.n_conditions_, n_rep, cpu.n_bins_, -1) for y in ys]
    # (a) trial totals per condition: n_rep values per (condition, unit)
    # (b) per bin, counts summed over conditions: n_rep values per (bin, unit)
    for what, totals in (("condition", [p.sum(axis=2).transpose(1, 0, 2) for p in per]),
                         ("bin", [p.sum(axis=0) for p in per])):
        (m0, m1), (v0, v1) = ([t.mean(axis=0) for t in totals],
                              [t.var(axis=0, ddof=1) / n_rep for t in totals])
        z = (m1 - m0) / np.sqrt(np.maximum(v0 + v1, 1e-12))
        assert np.abs(z).max() < T_MAX, (what, z)


# ------------------------------------------------------------------ ct-RNN
def _task(name: str, *overrides: str):
    return make_task(load_stimulus_spec(REPO / "stimuli" / f"task_{name}.yaml", list(overrides)))


@pytest.mark.parametrize("nonlinearity, dale, dtype, rtol", [
    ("relu", False, "float64", 1e-10), ("tanh", False, "float64", 1e-10),
    ("softplus", True, "float64", 1e-10), ("leaky_relu", False, "float64", 1e-10),
    ("tanh", False, "float32", 1e-4)])
def test_ctrnn_trajectories_are_the_same(nonlinearity, dale, dtype, rtol):
    """σ = 0: rates and outputs of one network on one batch agree (float64 to 1e-10)."""
    task = _task("flip_flop", "duration=0.5")
    spec = CTRNNSpec(n_units=48, sigma=0.0, nonlinearity=nonlinearity, leak_angle=10.0,
                     dale={"enabled": dale}, init={"gain": 1.2, "r0": 0.1})
    trials = task.generate(8, np.random.default_rng(0))
    out = []
    for device in DEVICES:
        net = CTRNN(spec, task.n_inputs, task.n_outputs, seed=4, device=device, dtype=dtype)
        with torch.no_grad():
            out.append(net(torch.as_tensor(trials.inputs, dtype=net.w_out.dtype,
                                           device=device)))
    (r0, z0), (r1, z1) = out
    assert r1.device.type == torch.device(OTHER).type
    close(r1, r0, rtol, "rates")
    close(z1, z0, rtol, "outputs")


def test_ctrnn_noise_path_given_and_drawn():
    """σ > 0: with the same ξ given, trajectories agree to 1e-10; with ξ drawn on the device,
    the ξ recovered from the trajectory (tanh is invertible) is standard normal."""
    task = _task("flip_flop", "duration=0.5")
    spec = CTRNNSpec(n_units=32, sigma=0.05, nonlinearity="tanh", init={"gain": 0.5})
    trials = task.generate(16, np.random.default_rng(1))
    xi = torch.randn(16, trials.n_steps, 32, generator=torch.Generator().manual_seed(2),
                     dtype=torch.float64)
    out = []
    for device in DEVICES:
        net = CTRNN(spec, task.n_inputs, task.n_outputs, seed=0, device=device,
                    dtype="float64")
        u = torch.as_tensor(trials.inputs, device=device)
        with torch.no_grad():
            out.append(net(u, noise=xi.to(device))[0])
    close(out[1], out[0], 1e-10, "rates, same noise")
    with torch.no_grad():
        u = torch.as_tensor(trials.inputs, device=OTHER)
        r, _ = net(u, generator=torch.Generator(device=OTHER).manual_seed(5))
        a, sd = spec.alpha, noise_std(spec)
        prev = torch.cat([torch.full_like(r[:, :1], spec.init.r0), r[:, :-1]], dim=1)
        x = torch.atanh((r - (1 - a) * prev) / a)
        drive = prev @ net.w_rec.T + u @ net.w_in.T + net.b
        xi_hat = ((x - drive) / sd).double().cpu().numpy().ravel()
    n = xi_hat.size
    assert abs(xi_hat.mean()) < Z_MAX / math.sqrt(n)
    assert abs(xi_hat.var() - 1) < Z_MAX * math.sqrt(2 / n)


def test_ctrnn_training_steps_are_the_same():
    """Adam steps (float64, σ = 0): losses, validation losses and weights agree."""
    task = _task("perception", "duration=0.3", "response_delay=0.1")
    spec = CTRNNSpec(n_units=16, sigma=0.0, nonlinearity="tanh",
                     train=("w_rec", "w_in", "w_out", "b"),
                     training={"n_steps": 6, "batch_size": 8, "learning_rate": 0.02,
                               "validate_every": 3, "validation_trials": 16,
                               "dtype": "float64"})
    results = []
    for device in DEVICES:
        net = CTRNN(spec, task.n_inputs, task.n_outputs, seed=0, device=device)
        results.append(train(net, task, spec.training, seed=0, progress=False))
    cpu, other = results
    assert other.model.w_out.device.type == torch.device(OTHER).type
    close(other.history.train_loss, cpu.history.train_loss, 1e-10, "train loss")
    close(other.history.val_loss, cpu.history.val_loss, 1e-10, "validation loss")
    for k, v in cpu.model.weights().items():
        close(other.model.weights()[k], v, 1e-9, k)


def test_ctrnn_training_resumes_on_the_device(tmp_path):
    """σ > 0 (noise from the device's generator, its state in the checkpoint): a run
    interrupted after step 3 and resumed ends where the uninterrupted run on the device ends."""
    task = _task("perception", "duration=0.3", "response_delay=0.1")
    spec = CTRNNSpec(n_units=12, sigma=0.05, train=("w_rec", "b"),
                     training={"n_steps": 6, "batch_size": 4, "validate_every": 3,
                               "validation_trials": 8, "checkpoint_every": 3,
                               "dtype": "float64"})

    def build():
        return CTRNN(spec, task.n_inputs, task.n_outputs, seed=0, device=OTHER)

    full = train(build(), task, spec.training, seed=1, progress=False)

    def stop(step, model, loss):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(build(), task, spec.training, seed=1, run=Run(checkpoint_dir=tmp_path),
              progress=False, callback=stop)
    resumed = train(build(), task, spec.training, seed=1,
                    run=Run(checkpoint_dir=tmp_path, resume=True), progress=False)
    assert resumed.resumed_from == 3
    close(resumed.history.train_loss, full.history.train_loss, 1e-10, "train loss")
    for k, v in full.model.weights().items():
        close(resumed.model.weights()[k], v, 1e-10, k)


def test_simulate_command_path_is_the_same(tmp_path):
    """`neurorec simulate` (simulate_to_dir via the CLI), σ = 0, float64: activity.npz agrees."""
    spec, proto = REPO / "models" / "ctrnn_flipflop.yaml", REPO / "stimuli/task_flip_flop.yaml"
    rates = []
    for i, device in enumerate(DEVICES):
        out = tmp_path / f"run{i}"
        assert main(["simulate", str(spec), "--protocol", str(proto), "--out", str(out),
                     "--trials", "4", "--device", device, "--quiet", "--set", "n_units=24"]) == 0
        with np.load(out / "activity.npz") as act:
            rates.append((act["rates"], act["outputs"]))
    close(rates[1][0], rates[0][0], 1e-10, "rates")
    close(rates[1][1], rates[0][1], 1e-10, "outputs")


def test_ctrnn_obs_fit_is_the_same(v1_small):
    """Data-constrained ct-RNN: Adam + BPTT on spike counts (float64), a few steps."""
    train_, test = v1_small
    spec = CTRNNObsSpec(network={"n_units": 8},
                        training={"n_steps": 4, "batch_size": 16, "dtype": "float64",
                                  "early_stopping": False, "validate_every": 2})
    cpu, other = (CTRNNObs(spec, device=d, seed=0).fit(train_, progress=False)
                  for d in DEVICES)
    for k, v in cpu.params_.items():
        close(other.params_[k], v, 1e-9, k)
    close(other.predict_rate(test), cpu.predict_rate(test), 1e-9, "rates")


# ------------------------------------------------------------------ spike-and-slab RNN
def test_ssrnn_greedy_filtering_and_learning_are_the_same():
    """Greedy filtering (float64) of the same parameters, then 3 learning iterations."""
    rng = np.random.default_rng(0)
    D, n = 16, 10
    clips = rng.standard_normal((6, 5, D))
    spec = SSRNNSpec(n_units=n, learning={"n_iterations": 3, "batch_clips": 4,
                                          "dtype": "float64"})
    cpu, other = SpikeSlabRNN(spec), SpikeSlabRNN(spec, device=OTHER)
    W = rng.standard_normal((D, n))
    params = W / np.linalg.norm(W, axis=0), 0.3 * rng.standard_normal((n, n)), np.full(n, -2.0)
    for m in (cpu, other):
        m.W_, m.R_, m.b_ = (a.copy() for a in params)
    (z0, l0), (z1, l1) = cpu.infer(clips), other.infer(clips)
    assert (z0 != 0).any()
    np.testing.assert_array_equal(z1 != 0, z0 != 0)  # the same units switched on
    close(z1, z0, 1e-10, "z")
    close(l1, l0, 1e-10, "logits")
    assert other.log_likelihood(clips) == pytest.approx(cpu.log_likelihood(clips), rel=1e-12)
    fits = [SpikeSlabRNN(spec, device=d, seed=1).fit(clips, progress=False) for d in DEVICES]
    for k in ("W_", "R_", "b_"):
        close(getattr(fits[1], k), getattr(fits[0], k), 1e-9, k)
    close([r.log_likelihood_per_frame for r in fits[1].history_],
          [r.log_likelihood_per_frame for r in fits[0].history_], 1e-10, "history")


# ------------------------------------------------------------------ language model
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-4)])
def test_lm_token_nll_of_the_same_parameters(dtype, rtol):
    V = 60
    spec = RGLMLMSpec(recurrent={"dim": 24}, train={"dtype": dtype})
    cpu = RGLMLanguageModel(spec, seed=0, device="cpu").init_net(V, eos_id=0)
    other = RGLMLanguageModel(spec, seed=1, device=OTHER).init_net(V, eos_id=0)
    other.net_.load_state_dict(cpu.net_.state_dict())  # the same parameters, copied
    assert other.net_.R.device.type == torch.device(OTHER).type
    ids = np.random.default_rng(0).integers(0, V, size=700)
    nll0, nll1 = cpu.token_nll(ids), other.token_nll(ids)
    assert nll0.shape == (700,) and np.isfinite(nll0).all()
    close(nll1, nll0, rtol, "token NLL")


# ------------------------------------------------------------------ conv-RNN, tanh RNN
def test_conv_autoencoder_and_code_rnn_forward():
    """float32 forward passes of copied modules: codes, reconstructions, RNN states."""
    gen = torch.Generator().manual_seed(0)
    ae = ConvAutoencoder(21, (4, 4), gen)
    rnn = CodeRNN(4 * 6 * 6, 8, gen)
    x = torch.rand(6, 1, 21, 21, generator=gen)
    out = []
    for device in DEVICES:
        a, r = copy.deepcopy(ae).to(device), copy.deepcopy(rnn).to(device)
        with torch.no_grad():
            code = a.encoder(x.to(device))
            hs, zhat = r(code.flatten(1)[None])
            out.append((code, a.decoder(code), hs, zhat))
    for name, v0, v1 in zip(("code", "reconstruction", "hidden", "prediction"), *out,
                            strict=True):
        close(v1, v0, 1e-4, name)


def test_conv_rnn_two_stage_fit_and_transform():
    from neurorec.spec.oscillator import OscillatingObjectSpec
    from neurorec.stimuli.oscillator import make_movies

    movies = make_movies(OscillatingObjectSpec(size_px=21, n_frames=10, n_angles=8,
                                               amplitude_px=5, period_frames=8,
                                               object={"sigma_px": 1.0})).frames
    spec = ConvRNNSpec(autoencoder={"channels": (4, 4), "epochs": 1, "batch_size": 16},
                       rnn={"n_units": 8, "delta_t": 3, "epochs": 1, "batch_size": 2})
    fits = [ConvRNN(spec, device=d, seed=1).fit(movies, progress=False) for d in DEVICES]
    close([h["loss"] for h in fits[1].history_], [h["loss"] for h in fits[0].history_], 1e-3,
          "losses")
    twin = ConvRNN(spec, device=OTHER)  # the CPU-fitted modules, copied to the device
    twin.autoencoder_ = copy.deepcopy(fits[0].autoencoder_).to(OTHER)
    twin.rnn_ = copy.deepcopy(fits[0].rnn_).to(OTHER)
    got, want = twin.transform(movies[:2]), fits[0].transform(movies[:2])
    for k, v in want.items():
        close(got[k], v, 1e-4, k)


def test_tanh_rnn_training_and_forward():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(40, 7, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    spec = RNNSpec(n_units=12, n_inputs=5, n_outputs=3, fit={"epochs": 2, "batch_size": 10})
    fits = [SequenceRNN(spec, device=d, seed=0).fit(x, y=y, progress=False) for d in DEVICES]
    close([h["loss"] for h in fits[1].history_], [h["loss"] for h in fits[0].history_], 1e-4,
          "losses")
    for a, b in zip(fits[1].recurrent_params(), fits[0].recurrent_params(), strict=True):
        close(a, b, 1e-4, "W, b")
    twin = SequenceRNN(spec, device=OTHER)
    twin.net_ = copy.deepcopy(fits[0].net_).to(OTHER)
    (lo1, hs1), (lo0, hs0) = twin.forward(x), fits[0].forward(x)
    close(lo1, lo0, 1e-5, "logits")
    close(hs1, hs0, 1e-5, "states")


# ------------------------------------------------------------------ the command line
def test_fit_command_on_the_device_matches_cpu(small_nwb, tmp_path, capsys):
    """`neurorec fit models/glm_v1.yaml --device OTHER` writes the bits/spike of the CPU fit."""
    out = tmp_path / "fit"
    args = ["--set", "fit.max_iter=40"]
    code = main(["fit", str(REPO / "models" / "glm_v1.yaml"), "--data", str(small_nwb),
                 "--out", str(out), "--device", OTHER, "--quiet", *args])
    assert code == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["device"] == OTHER
    spec = load_model_spec(REPO / "models" / "glm_v1.yaml", ["fit.max_iter=40"])
    ref = fit_and_evaluate(spec, read_nwb(small_nwb), seed=0, device="cpu",
                           progress=False).metrics
    assert m["convergence"]["n_iter"] == ref["convergence"]["n_iter"]
    assert m["bits_per_spike"] == pytest.approx(ref["bits_per_spike"], rel=1e-9)
    assert m["log_likelihood"] == pytest.approx(ref["log_likelihood"], rel=1e-9)
    close(np.array(m["per_neuron_bits_per_spike"], dtype=float),
          np.array(ref["per_neuron_bits_per_spike"], dtype=float), 1e-8, "per neuron")


def test_evaluate_helper_runs_on_the_device():
    """fit.train.evaluate (validation loss and accuracy) with the device's generator."""
    task = _task("perception", "duration=0.3", "response_delay=0.1")
    spec = CTRNNSpec(n_units=8, sigma=0.0, training={"dtype": "float64"})
    trials = task.generate(8, np.random.default_rng(0))
    res = [evaluate(CTRNN(spec, 1, 1, seed=0, device=d), task, trials, seed=0)
           for d in DEVICES]
    assert res[1][0] == pytest.approx(res[0][0], rel=1e-10)
    assert res[1][1] == res[0][1]
