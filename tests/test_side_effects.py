"""Importing neurorec and fitting through the pipeline leave the caller's global state alone:
torch's global generator and matplotlib's backend (each checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FIT = """
from neurorec.datasets import load
from neurorec.spec import load_model_spec
from neurorec.workflows.pipeline import fit_and_evaluate

spec = load_model_spec("models/glm_stimulus_only.yaml", ["fit.max_iter=5"])
result = fit_and_evaluate(spec, load("v1_gratings:14"), seed=3, progress=False)
"""


def _python(*parts: str) -> str:
    """Last line printed by ``parts`` (each dedented) run in a fresh interpreter."""
    code = "\n".join(textwrap.dedent(part) for part in parts)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_fit_and_evaluate_keeps_torch_global_rng_state():
    out = _python("""
        import torch
        torch.manual_seed(1234)
        torch.rand(3)
        before = torch.random.get_rng_state().clone()
        import neurorec.families, neurorec.workflows.fit_outputs, neurorec.cli
        """, FIT, """
        same = torch.equal(before, torch.random.get_rng_state())
        again = torch.rand(1).item()
        torch.random.set_rng_state(before)
        print(same, again == torch.rand(1).item())
        """)
    assert out == "True True", "fit_and_evaluate changed torch's global RNG state"


def test_fit_and_figures_keep_matplotlib_backend(tmp_path):
    out = _python("""
        import matplotlib
        matplotlib.use("svg")
        from pathlib import Path
        import numpy as np
        import neurorec.families, neurorec.workflows.fit_outputs, neurorec.cli
        from neurorec.report import figures
        """, FIT, f"""
        png = figures.bits_per_spike_figure(np.array([0.1, -0.2]), np.array(["a", "b"]),
                                            Path({str(tmp_path)!r}) / "b.png")
        print(matplotlib.get_backend(), png.read_bytes()[:4] == b"\\x89PNG")
        """)
    assert out == "svg True", f"backend / PNG after importing neurorec and fitting: {out}"


def test_ctrnn_obs_fit_and_ctrnn_report_leave_global_state():
    """A direct ``CTRNNObs.fit`` keeps torch's global RNG; the ctrnn report module does not
    switch matplotlib's backend when imported."""
    out = _python("""
        import matplotlib
        matplotlib.use("svg")
        import torch
        import neurorec.families.ctrnn.report  # noqa: F401
        from neurorec.families.ctrnn_obs.conformance import ctrnn_obs_example
        before = torch.random.get_rng_state().clone()
        ex = ctrnn_obs_example()
        ex.fit(ex.make())
        print(matplotlib.get_backend(), bool(torch.equal(before, torch.random.get_rng_state())))
    """)
    assert out.split()[-2:] == ["svg", "True"]
