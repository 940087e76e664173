"""A ctrnn run as a Brian 2 network: the same Euler map as the torch model.

- One ``NeuronGroup`` of ``n_trials × N`` units (trial ``b``, unit ``i`` at ``b * N + i``) with
  the rate equation ``dr/dt = (-r + f(I_rec + drive(t, i) + eta)) / tau`` integrated by Brian's
  ``euler`` method at ``dt = Δt``: one step is exactly ``r + α (f(x) - r)``, the torch step.
- The input drive ``W_in u_t + b`` is computed per unit from one 2-D ``TimedArray`` (step ×
  trial) per input channel and the unit's trial index, input weights and bias.
- ``eta`` is redrawn every step (``sqrt(2σ²/α) randn()``, slot ``start``): the noise sits inside
  ``f`` as in the model, which Brian's ``xi`` (additive SDE noise) cannot express.
- The recurrent input ``I_rec = W_rec r`` comes from either ``Synapses`` with a summed variable
  (block-diagonal over trials, one synapse per non-zero weight; updated in slot ``groups`` just
  before the state update) or a ``network_operation`` doing the batched mat-mul in numpy (slot
  ``before_groups``). ``recurrent="auto"`` uses the network operation on the runtime device —
  it is 40–60× faster than Synapses at N = 256, batch 64, and Synapses need B·N² synapses
  (1.6e8 at N = 1600), see ``benchmarks/ctrnn_sim.py`` and ``benchmarks/README.md`` — and
  Synapses on cpp_standalone, which cannot run Python code.

Devices: ``runtime`` (Cython, compiled code cached like the GLM backend:
``$NEUROREC_BRIAN2_CACHE``) and ``cpp_standalone`` (built and run in a child process, because
``set_device`` must precede every Brian object and cannot be undone cleanly in one process).
Subnormal floats (silent units decaying towards 0) slow every step ~35×: the runtime run
flushes them to zero in the calling thread (``torch.set_flush_denormal``, which sets the
FTZ/DAZ bits that the Cython code also obeys), standalone links with ``-ffast-math``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from neurorec.core.errors import DataError, SpecError
from neurorec.families.ctrnn.spec import CTRNNSpec
from neurorec.families.glm.brian2 import _brian2_settings, _seeded, _target

_F = {
    "relu": "clip(x_in, 0, inf)",
    "tanh": "tanh(x_in)",
    "softplus": "int(x_in > 20) * x_in + int(x_in <= 20) * log(1 + exp(clip(x_in, -1000, 20)))",
    "leaky_relu": "int(x_in > 0) * x_in + int(x_in <= 0) * slope * x_in",
}


def _equations(spec: CTRNNSpec, n_inputs: int) -> str:
    drive = " + ".join([f"u{k}(t, trial) * win{k}" for k in range(n_inputs)] + ["bias"])
    f = _F[spec.nonlinearity].replace("x_in", f"(I_rec + {drive} + eta)")
    constants = "".join(f"win{k} : 1 (constant)\n" for k in range(n_inputs))
    return (f"dr/dt = (-r + {f}) / tau : 1\n"
            "I_rec : 1\n"
            "eta : 1\n"
            "trial : integer (constant)\n"
            "bias : 1 (constant)\n" + constants)


def build_network(spec: CTRNNSpec, weights: dict[str, np.ndarray], inputs: np.ndarray,
                  recurrent: str, r0: np.ndarray | float | None = None, record: bool = True,
                  standalone: bool = False):
    """The Brian 2 network of one batched ctrnn run (the current device; nothing is run).

    weights: float64 ``w_rec`` (N, N), ``w_in`` (N, I), ``b`` (N,); inputs: (B, T, I);
    r0: initial rates, scalar or (B, N) (default ``spec.init.r0``); recurrent: ``synapses`` or
    ``network_operation``. The inputs travel as I TimedArrays of (T, B) and each unit keeps its
    trial index and input weights, so memory is O(T·B·I), not O(T·B·N) (6400 units × 64 trials ×
    1000 steps would be 3 GB as a per-unit drive). Returns ``(network, group, monitor)``;
    ``monitor`` records ``r`` (B·N, T) at the end of every step, ``None`` when ``record`` is off.
    """
    import brian2 as b2

    n_batch, _, n_inputs = inputs.shape
    n = spec.n_units
    dt = spec.dt * b2.second
    w = np.asarray(weights["w_rec"], dtype=float)
    namespace = {"tau": spec.tau * b2.second, "inf": np.inf,
                 "slope": float(np.tan(np.radians(spec.leak_angle)))}
    for k in range(n_inputs):
        namespace[f"u{k}"] = b2.TimedArray(np.ascontiguousarray(inputs[:, :, k].T), dt=dt,
                                           name=f"ctrnn_u{k}")
    group = b2.NeuronGroup(n_batch * n, _equations(spec, n_inputs), method="euler", dt=dt,
                           namespace=namespace, name="ctrnn_units")
    group.r = np.broadcast_to(spec.init.r0 if r0 is None else r0, (n_batch, n)).ravel()
    group.trial = np.repeat(np.arange(n_batch), n)
    group.bias = np.tile(np.asarray(weights["b"], dtype=float), n_batch)
    w_in = np.asarray(weights["w_in"], dtype=float)
    for k in range(n_inputs):
        setattr(group, f"win{k}", np.tile(w_in[:, k], n_batch))
    sd = float(np.sqrt(2.0 * spec.sigma ** 2 / spec.alpha))
    objects: list = [group]
    if sd > 0:
        objects.append(group.run_regularly(f"eta = {sd!r} * randn()", when="start",
                                           name="ctrnn_noise"))
    if recurrent == "synapses":
        post, pre = np.nonzero(w)
        syn = b2.Synapses(group, group, "w : 1\nI_rec_post = w * r_pre : 1 (summed)",
                          dt=dt, name="ctrnn_recurrent")
        offsets = (np.arange(n_batch) * n)[:, None]
        if standalone:
            syn.connect(i=(pre[None, :] + offsets).ravel(), j=(post[None, :] + offsets).ravel())
        else:
            with _target("numpy"):  # one-off set-up code: no Cython compilation for it
                syn.connect(i=(pre[None, :] + offsets).ravel(),
                            j=(post[None, :] + offsets).ravel())
        syn.w = np.tile(w[post, pre], n_batch)
        objects.append(syn)
    else:
        w_t = np.ascontiguousarray(w.T)

        @b2.network_operation(when="before_groups", dt=dt, name="ctrnn_recurrent_op")
        def recurrent_input() -> None:
            group.I_rec_[:] = (group.r_[:].reshape(n_batch, n) @ w_t).ravel()

        objects.append(recurrent_input)
    monitor = None
    if record:
        monitor = b2.StateMonitor(group, "r", record=True, when="end", dt=dt,
                                  name="ctrnn_monitor")
        objects.append(monitor)
    return b2.Network(*objects), group, monitor


def _build_and_run(spec: CTRNNSpec, weights: dict[str, np.ndarray], inputs: np.ndarray,
                   recurrent: str, standalone: bool = False) -> np.ndarray:
    import brian2 as b2

    n_batch, n_steps, _ = inputs.shape
    net, _, monitor = build_network(spec, weights, inputs, recurrent, standalone=standalone)
    net.run(n_steps * spec.dt * b2.second, namespace={})
    rates = np.asarray(monitor.r_)  # (B·N, T)
    if rates.shape[1] != n_steps:
        raise AssertionError(f"brian2 recorded {rates.shape[1]} steps, expected {n_steps}")
    return rates.reshape(n_batch, spec.n_units, n_steps).transpose(0, 2, 1)


def simulate_brian2(spec: CTRNNSpec, weights: dict[str, np.ndarray], inputs: np.ndarray,
                    seed: int = 0, device: str = "runtime", recurrent: str = "auto",
                    build_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the ctrnn with Brian 2.

    weights: effective float64 weights ``w_rec`` (N, N), ``w_in`` (N, I), ``w_out`` (O, N),
    ``b`` (N,) (e.g. ``CTRNN.weights()``). inputs: (B, T, I).
    device: ``runtime`` or ``cpp_standalone``; recurrent: ``synapses``,
    ``network_operation`` or ``auto``.
    Returns rates (B, T, N) and outputs (B, T, O), float64.
    """
    inputs = np.asarray(inputs, dtype=float)
    if inputs.ndim != 3 or inputs.shape[2] != weights["w_in"].shape[1]:
        raise DataError(f"inputs: expected (trials, steps, {weights['w_in'].shape[1]}), "
                        f"got {inputs.shape}")
    if device not in ("runtime", "cpp_standalone"):
        raise SpecError(f"brian2 device: {device!r} is not runtime or cpp_standalone")
    if recurrent == "auto":
        recurrent = "network_operation" if device == "runtime" else "synapses"
    if recurrent not in ("synapses", "network_operation"):
        raise SpecError(f"recurrent: {recurrent!r} is not synapses, network_operation or auto")
    if device == "cpp_standalone":
        if recurrent != "synapses":
            raise SpecError("recurrent: cpp_standalone runs no Python code; use synapses")
        rates = _run_standalone(spec, weights, inputs, seed, build_dir)
    else:
        rates = _run_runtime(spec, weights, inputs, seed, recurrent)
    return rates, rates @ weights["w_out"].T


def _run_runtime(spec, weights, inputs, seed, recurrent) -> np.ndarray:
    import brian2 as b2
    import torch

    b2.start_scope()
    flushed = torch.set_flush_denormal(True)
    try:
        with _brian2_settings(), _seeded(seed):
            return _build_and_run(spec, weights, inputs, recurrent)
    finally:
        if flushed:
            torch.set_flush_denormal(False)


def _run_standalone(spec, weights, inputs, seed, build_dir) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="neurorec_b2sa_") as tmp:
        job = Path(tmp) / "job.npz"
        result = Path(tmp) / "rates.npy"
        build = Path(build_dir) if build_dir else Path(tmp) / "build"
        np.savez(job, inputs=inputs, seed=seed, spec=spec.model_dump_json(),
                 **{f"w_{k}": v for k, v in weights.items()})
        proc = subprocess.run([sys.executable, "-m", "neurorec.families.ctrnn.brian2",
                               "--standalone", str(job), str(result), str(build)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"brian2 cpp_standalone run failed:\n{proc.stderr[-4000:]}")
        return np.load(result)


def _standalone_child(job: str, result: str, build: str) -> None:
    import brian2 as b2

    data = np.load(job)
    spec = CTRNNSpec.model_validate_json(str(data["spec"]))
    weights = {k[2:]: data[k] for k in data.files if k.startswith("w_")}
    b2.set_device("cpp_standalone", directory=build, build_on_run=True)
    b2.prefs.codegen.cpp.extra_link_args = ["-ffast-math"]  # FTZ/DAZ: subnormals flushed
    b2.seed(int(data["seed"]))
    rates = _build_and_run(spec, weights, data["inputs"], "synapses", standalone=True)
    np.save(result, rates)


if __name__ == "__main__":
    if sys.argv[1] == "--standalone":
        _standalone_child(*sys.argv[2:5])
