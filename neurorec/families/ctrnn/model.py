"""Continuous-time rate RNN in torch: batched, CPU/CUDA, float32/float64.

Euler step (``α = Δt/τ``), the same in every backend:

    r_t = (1-α) r_{t-1} + α f(W_rec r_{t-1} + W_in u_t + b + sqrt(2σ²/α) ξ_t),  ξ_t ~ N(0, I)
    z_t = W_out r_t

``rates[:, t]`` is ``r_t`` (it has consumed ``u_t = inputs[:, t]``), starting from the constant
``r_0 = init.r0``. ``W_rec`` is the trainable matrix times a fixed mask (zero diagonal, random
sparsity); with Dale's law it is ``|W| · diag(sign)`` (column j keeps unit j's sign).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch

from neurorec.core.errors import SpecError
from neurorec.families.ctrnn.spec import CTRNNSpec

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def activation(name: str, leak_angle_deg: float = 0.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The nonlinearity ``f`` (elementwise, differentiable; picklable, so a saved model holds
    its network whole)."""
    if name == "relu":
        return torch.relu
    if name == "tanh":
        return torch.tanh
    if name == "softplus":
        return torch.nn.functional.softplus  # log(1+e^x); x itself above 20, as in brian2
    if name == "leaky_relu":
        return functools.partial(_leaky_relu, slope=math.tan(math.radians(leak_angle_deg)))
    raise ValueError(f"unknown nonlinearity {name!r}")


def _leaky_relu(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.where(x > 0, x, slope * x)


def noise_std(spec: CTRNNSpec) -> float:
    """Std of the noise inside ``f`` per Euler step: ``sqrt(2σ²/α)``."""
    return math.sqrt(2.0 * spec.sigma ** 2 / spec.alpha)


class CTRNN(torch.nn.Module):
    """The network of a ``ctrnn`` spec with ``n_inputs`` inputs and ``n_outputs`` readouts.

    Parameters (all ``nn.Parameter``; only those in ``spec.train`` require grad):
    ``w_rec_raw`` (N, N), ``w_in`` (N, I), ``w_out`` (O, N), ``b`` (N,).
    Buffers: ``mask`` (N, N) of 0/1, ``sign`` (N,) of ±1 (all +1 without Dale's law).
    """

    def __init__(self, spec: CTRNNSpec, n_inputs: int, n_outputs: int, seed: int = 0,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None):
        super().__init__()
        self.spec = spec
        self.n_units, self.n_inputs, self.n_outputs = spec.n_units, n_inputs, n_outputs
        dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        dtype = dtype or DTYPES[spec.training.dtype]
        self.f = activation(spec.nonlinearity, spec.leak_angle)
        params = init_weights(spec, n_inputs, n_outputs, seed)
        for name, value in params.items():
            if name in ("mask", "sign"):
                self.register_buffer(name, torch.as_tensor(value, dtype=dtype))
            else:
                p = torch.nn.Parameter(torch.as_tensor(value, dtype=dtype))
                p.requires_grad_(_trained_name(name) in spec.train)
                setattr(self, name, p)
        self.to(device)

    @property
    def w_rec(self) -> torch.Tensor:
        """(N, N) effective recurrent matrix, row = post-synaptic unit."""
        if self.spec.dale.enabled:
            return self.w_rec_raw.abs() * self.mask * self.sign[None, :]
        return self.w_rec_raw * self.mask

    def forward(self, inputs: torch.Tensor, generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None, r0: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the Euler map over a batch.

        inputs: (B, T, I). noise: optional (B, T, N) standard normals ξ (else drawn from
        ``generator`` when σ > 0). r0: optional (B, N) initial rates.
        Returns rates (B, T, N) and outputs (B, T, O).
        """
        n_batch, n_steps, _ = inputs.shape
        alpha, sd = self.spec.alpha, noise_std(self.spec)
        w_rec = self.w_rec
        drive = inputs @ self.w_in.T + self.b  # (B, T, N): all input currents at once
        r = (torch.full((n_batch, self.n_units), self.spec.init.r0, dtype=drive.dtype,
                        device=drive.device) if r0 is None else r0)
        rates = []
        for t in range(n_steps):
            x = r @ w_rec.T + drive[:, t]
            if sd > 0:
                xi = noise[:, t] if noise is not None else torch.randn(
                    r.shape, generator=generator, dtype=r.dtype, device=r.device)
                x = x + sd * xi
            r = (1 - alpha) * r + alpha * self.f(x)
            rates.append(r)
        rates_t = torch.stack(rates, dim=1)
        return rates_t, rates_t @ self.w_out.T

    def step_map(self, r: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Noise-free one-step map ``F(r)`` for a constant input ``u`` (I,); r: (K, N)."""
        x = r @ self.w_rec.T + u @ self.w_in.T + self.b
        return (1 - self.spec.alpha) * r + self.spec.alpha * self.f(x)

    def weights(self) -> dict[str, np.ndarray]:
        """Effective weights as float64 numpy: ``w_rec`` (N, N), ``w_in``, ``w_out``, ``b``."""
        with torch.no_grad():
            return {"w_rec": self.w_rec.double().cpu().numpy(),
                    "w_in": self.w_in.double().cpu().numpy(),
                    "w_out": self.w_out.double().cpu().numpy(),
                    "b": self.b.double().cpu().numpy()}


def _trained_name(param: str) -> str:
    return "w_rec" if param == "w_rec_raw" else param


def init_weights(spec: CTRNNSpec, n_inputs: int, n_outputs: int, seed: int
                 ) -> dict[str, np.ndarray]:
    """Initial parameters and masks (float64 numpy) drawn from ``seed``; see :class:`CTRNN`."""
    rng = np.random.default_rng(seed)
    n, g = spec.n_units, spec.init.gain
    if spec.init.w_rec == "normal":
        w = rng.normal(0.0, g / math.sqrt(n), size=(n, n))
    elif spec.init.w_rec == "uniform":
        w = rng.uniform(-1, 1, size=(n, n)) * g * math.sqrt(3.0 / n)
    else:
        q, rr = np.linalg.qr(rng.standard_normal((n, n)))
        w = g * q * np.sign(np.diag(rr))[None, :]
    mask = (rng.random((n, n)) < spec.density).astype(float)
    if spec.zero_diagonal:
        np.fill_diagonal(mask, 0.0)
    sign = np.ones(n)
    if spec.dale.enabled:
        n_exc = round(spec.dale.excitatory_fraction * n)
        if not 0 < n_exc < n:
            raise SpecError(f"dale.excitatory_fraction: {spec.dale.excitatory_fraction} of "
                            f"{n} units leaves no excitatory or no inhibitory unit")
        sign[n_exc:] = -1.0
        w = np.abs(w)
        w[:, n_exc:] *= n_exc / (n - n_exc)  # balanced on average: E and I columns cancel
    return {"w_rec_raw": w, "mask": mask, "sign": sign,
            "w_in": rng.normal(0.0, spec.init.w_in_scale, size=(n, n_inputs)),
            "w_out": rng.normal(0.0, spec.init.w_out_scale / math.sqrt(n), size=(n_outputs, n)),
            "b": np.full(n, spec.init.bias)}


def build_ctrnn(spec: CTRNNSpec, n_inputs: int, n_outputs: int, seed: int = 0,
                device: str = "cpu", dtype: str | None = None) -> CTRNN:
    """Validate the spec against the task's channels and build the network."""
    problems = []
    for field, want in (("n_inputs", n_inputs), ("n_outputs", n_outputs)):
        have = getattr(spec, field)
        if have is not None and have != want:
            problems.append(f"{spec.name}: {field}: spec says {have}, the task has {want}")
    if problems:
        raise SpecError(problems)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"--device {device}: CUDA is not available here (use cpu)")
    return CTRNN(spec, n_inputs, n_outputs, seed=seed, device=device, dtype=dtype)


def load_weights(model: CTRNN, weights: dict[str, np.ndarray]) -> CTRNN:
    """Set ``model``'s parameters from effective weights (as :meth:`CTRNN.weights` returns)."""
    with torch.no_grad():
        for name in ("w_in", "w_out", "b"):
            getattr(model, name).copy_(torch.as_tensor(weights[name]))
        w = torch.as_tensor(weights["w_rec"], dtype=model.w_rec_raw.dtype)
        model.w_rec_raw.copy_(w.abs() if model.spec.dale.enabled else w)
    return model
