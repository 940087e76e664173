"""Scale of the session GLM and R-GLM (issue 29): wall time, peak memory and held-out
bits/spike against the true intensity over units × minutes of a simulated open-field session.

    python benchmarks/scale_session.py       # the grid U {50,100,200,400} × T {10,30,60}
    python benchmarks/scale_session.py --configs 50x10,400x60 --models glm,rglm

Each (units, minutes) session is simulated once (``neurorec.datasets.open_field``, Tanni et
al. 2022's trajectory from 500 s on, seed 100 + units: sessions the shipped specs never saw)
and cached as ``.npz`` under ``--work``; each fit runs in its own process (its peak resident
memory is that process's ``ru_maxrss``: the interpreter, the data as the package holds them
— int64 counts, covariates — and the fit) with one torch / BLAS thread. Models:
``models/session_glm.yaml`` (covariates + history) and ``models/session_rglm.yaml`` (the
same GLM + a 3-d latent; its time is its GLM's — the GLM row's fit, saved and reused — plus
the latent's; its peak memory is the latent phase's, the GLM row's is the GLM phase's).
GLM + dense coupling is not fitted: the
memory preflight's prediction and its refusal are recorded instead. Results accumulate in
``--work/results.jsonl`` (a finished fit is not rerun); the table, the fitted exponents
(least squares of log time and log peak memory on log U and log T) and the log-log figure
are written into ``benchmarks/RESULTS.md`` between the ``scale_session`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPECS = {"glm": ROOT / "models/session_glm.yaml", "rglm": ROOT / "models/session_rglm.yaml"}
MARK_START, MARK_END = "<!-- scale_session:start -->", "<!-- scale_session:end -->"
GRID = [(u, t) for t in (10, 30, 60) for u in (50, 100, 200, 400)]


def data_path(work: Path, units: int, minutes: int) -> Path:
    return work / f"session_U{units}_T{minutes}.npz"


def make(work: Path, units: int, minutes: int) -> None:
    """Simulate and cache one session (truth kept on the test bins only)."""
    from neurorec.datasets.open_field import simulate_open_field

    s = simulate_open_field(units, minutes * 60.0, trajectory="tanni", seed=100 + units,
                            start_s=500.0)
    test = s.mask("test")
    np.savez(data_path(work, units, minutes), counts=s.counts, time=s.time, split=s.split,
             segment=s.segment, unit_ids=s.unit_ids, bin_size=s.bin_size,
             truth_rates_test=s.truth["rates"][test],
             truth_no_gain_test=s.truth["rates_no_gain"][test],
             **{f"cov_{k}": v for k, v in s.covariates.items()})


def load(work: Path, units: int, minutes: int):
    from neurorec.data.session import BinnedSession

    z = np.load(data_path(work, units, minutes), allow_pickle=False)
    covs = {k[4:]: z[k] for k in z.files if k.startswith("cov_")}
    session = BinnedSession(counts=z["counts"], bin_size=float(z["bin_size"]), time=z["time"],
                            covariates=covs, split=z["split"], segment=z["segment"],
                            unit_ids=z["unit_ids"], source=f"open_field U{units} T{minutes}")
    return session, z["truth_rates_test"], z["truth_no_gain_test"]


def fit_one(work: Path, model: str, units: int, minutes: int, overrides: list[str]) -> dict:
    """One fit in this process; returns its row (time, peak RSS, bits/spike)."""
    import torch

    from neurorec.core.metrics import bits_per_spike
    from neurorec.families.glm.resources import session_fit_memory
    from neurorec.families.glm.rglm import SessionRGLM
    from neurorec.families.glm.session import SessionGLM
    from neurorec.spec import load_model_spec
    from neurorec.workflows.resources import SESSION_PROCESS_BYTES

    torch.set_num_threads(1)
    session, truth, no_gain = load(work, units, minutes)
    spec = load_model_spec(SPECS[model], overrides)
    predicted = sum(session_fit_memory(spec, session.n_bins, session.n_units).values()) \
        + SESSION_PROCESS_BYTES
    test = session.mask("test")
    y = session.counts[test][None]
    t0 = time.perf_counter()
    c0 = time.process_time()
    row = {"model": model, "units": units, "minutes": minutes, "n_bins": session.n_bins,
           "overrides": overrides}
    glm_dir = work / f"glm_U{units}_T{minutes}"
    if model == "glm":
        m = SessionGLM(spec).fit(session)
        row["fit_s"] = time.perf_counter() - t0
        row["fit_cpu_s"] = time.process_time() - c0
        m.save(glm_dir)  # the R-GLM of the same session starts from it
        (work / f"glm_U{units}_T{minutes}.json").write_text(json.dumps(
            {"fit_cpu_s": row["fit_cpu_s"]}))
        row["bits_per_spike"] = m.score(session)
    else:
        if (glm_dir / "session_glm.npz").exists():  # fitted by this script's GLM row
            glm = SessionGLM.load(glm_dir)
            row["glm_fit_s"] = glm.fit_time_s_
            glm_row = work / f"glm_U{units}_T{minutes}.json"
            if glm_row.exists():
                row["glm_fit_cpu_s"] = json.loads(glm_row.read_text())["fit_cpu_s"]
            row["glm_reused"] = True
        else:
            glm = SessionGLM(spec).fit(session)
            row["glm_fit_s"] = time.perf_counter() - t0
            row["glm_fit_cpu_s"] = time.process_time() - c0
        row["glm_bits_per_spike"] = glm.score(session)
        t1, c1 = time.perf_counter(), time.process_time()
        m = SessionRGLM(spec).fit(session, glm=glm)
        row["latent_fit_s"] = time.perf_counter() - t1
        row["latent_fit_cpu_s"] = time.process_time() - c1
        row["fit_s"] = row["glm_fit_s"] + row["latent_fit_s"]
        if "glm_fit_cpu_s" in row:
            row["fit_cpu_s"] = row["glm_fit_cpu_s"] + row["latent_fit_cpu_s"]
        row["latent_evals"] = m.report_["n_evals"]
        row["time_constants_s"] = [float(v) for v in m.time_constants()[1]]
        row["bits_per_spike"] = m.score(session)
        if spec.fit.dtype == "float32" and session.n_bins * session.n_units <= 60e6:
            # the same parameters scored with float64 arithmetic: float32's own effect
            m.spec = spec.model_copy(update={"fit": spec.fit.model_copy(
                update={"dtype": "float64"})})
            row["bits_per_spike_float64_arithmetic"] = m.score(session)
            m.spec = spec
    row["truth_bits_per_spike"] = bits_per_spike(y, truth[None])
    row["no_gain_bits_per_spike"] = bits_per_spike(y, no_gain[None])
    row["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    row["predicted_peak_bytes"] = int(predicted)
    row["load_average"] = os.getloadavg()[0]
    return row


def run_child(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=ROOT)


def coupling_refusal(work: Path) -> dict:
    """GLM + dense coupling at 400 units × 60 min: the CLI's preflight, timed end to end."""
    from datetime import UTC, datetime

    from pynwb import NWBHDF5IO, NWBFile

    path = work / "u400_60min_metadata.nwb"
    if not path.exists():
        nwb = NWBFile(session_description="scale", identifier="scale",
                      session_start_time=datetime(2026, 1, 1, tzinfo=UTC))
        rng = np.random.default_rng(0)
        for _ in range(400):
            nwb.add_unit(spike_times=np.sort(rng.uniform(0, 3600.0, 5)))
        nwb.add_epoch(start_time=0.0, stop_time=3600.0)
        with NWBHDF5IO(str(path), "w") as io:
            io.write(nwb)
    t0 = time.perf_counter()
    proc = subprocess.run(["neurorec", "fit", str(SPECS["glm"]), "--data", str(path), "--out",
                           str(work / "coupling_out"), "--set", "coupling.enabled=true"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    wall = time.perf_counter() - t0
    return {"model": "glm+coupling", "units": 400, "minutes": 60, "exit_code": proc.returncode,
            "wall_s": wall, "stderr": proc.stderr.strip(), "load_average": os.getloadavg()[0]}


def exponents(rows: list[dict], key: str) -> tuple[float, float] | None:
    """Least-squares exponents (in U, in T) of ``key`` over rows: log y = a + b log U + c log T."""
    if len({r["units"] for r in rows}) < 2 or len({r["minutes"] for r in rows}) < 2:
        return None
    A = np.array([[1.0, np.log(r["units"]), np.log(r["minutes"])] for r in rows])
    b = np.log([r[key] for r in rows])
    coef, *_ = np.linalg.lstsq(A, b, rcond=None)
    return float(coef[1]), float(coef[2])


def write_results(rows: list[dict], refusal: dict | None, figure: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fits = sorted((r for r in rows if r["model"] in ("glm", "rglm") and not r["overrides"]),
                  key=lambda r: (r["model"], r["minutes"], r["units"]))
    lines = [MARK_START, "", "### Session GLM and R-GLM at scale (issue 29)", "",
             "Generated by `python benchmarks/scale_session.py` (simulated open-field sessions "
             "of Tanni's trajectory, 10 ms bins, shared slow gain s.d. 0.5 / 10 s; one process "
             "per fit, 1 thread; the 2-core machine was shared with other jobs — the load "
             "average at the end of each fit is listed, so times are inflated by about "
             "load / 2 when it exceeds 2). Gap closed = (R-GLM − GLM) / (truth − GLM), "
             "held-out bits/spike on the test bins; truth = the true conditional intensity.",
             "", "| model | units | min | bins | fit wall (s) | fit CPU (s) | peak RSS (GiB) | "
             "predicted (GiB) | bits/spike | GLM | truth | gap closed | load |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in fits:
        glm_b = r.get("glm_bits_per_spike", r["bits_per_spike"] if r["model"] == "glm" else None)
        closed = ""
        if r["model"] == "rglm":
            closed = (f"{(r['bits_per_spike'] - glm_b) / (r['truth_bits_per_spike'] - glm_b):.0%}")
        lines.append(
            f"| {r['model']} | {r['units']} | {r['minutes']} | {r['n_bins']} | "
            f"{r['fit_s']:.1f}" + (f" (GLM {r['glm_fit_s']:.1f})" if "glm_fit_s" in r else "")
            + f" | {r.get('fit_cpu_s', float('nan')):.1f}"
            + f" | {r['peak_rss_bytes'] / 2**30:.2f} | {r['predicted_peak_bytes'] / 2**30:.2f} | "
            f"{r['bits_per_spike']:.4f} | {glm_b:.4f} | {r['truth_bits_per_spike']:.4f} | "
            f"{closed} | {r['load_average']:.1f} |")
    lines.append("")
    for model in ("glm", "rglm"):
        sub = [r for r in fits if r["model"] == model]
        et, em = exponents(sub, "fit_s"), exponents(sub, "peak_rss_bytes")
        cpu = [r for r in sub if "fit_cpu_s" in r]
        ec = exponents(cpu, "fit_cpu_s") if len(cpu) == len(sub) else None
        if et is None:
            lines.append(f"- {model}: exponents need ≥ 2 sizes in both U and T (have "
                         f"{len(sub)} fits).")
        else:
            lines.append(f"- {model}: wall time ∝ U^{et[0]:.2f} T^{et[1]:.2f}"
                         + (f", CPU time ∝ U^{ec[0]:.2f} T^{ec[1]:.2f}" if ec else "")
                         + f"; peak memory ∝ U^{em[0]:.2f} T^{em[1]:.2f} (least squares over "
                         f"{len(sub)} fits).")
    f32 = [r for r in fits if "bits_per_spike_float64_arithmetic" in r]
    if f32:
        worst = max(abs(r["bits_per_spike"] - r["bits_per_spike_float64_arithmetic"])
                    for r in f32)
        lines.append(f"- float32 (the shipped `fit.dtype`): the fitted R-GLM scored with "
                     f"float64 arithmetic differs by at most {worst:.1e} bits/spike over "
                     f"{len(f32)} fits.")
    extra = [r for r in rows if r["overrides"]]
    for r in extra:
        lines.append(f"- {r['model']} {r['units']} units × {r['minutes']} min with "
                     f"`{' '.join(r['overrides'])}`: {r['bits_per_spike']:.5f} bits/spike, fit "
                     f"{r['fit_s']:.1f} s, peak {r['peak_rss_bytes'] / 2**30:.2f} GiB.")
    if refusal is not None:
        lines.append(f"- GLM + dense coupling, 400 units × 60 min: exit {refusal['exit_code']} "
                     f"in {refusal['wall_s']:.1f} s wall (load {refusal['load_average']:.1f}); "
                     f"stderr: `{refusal['stderr'].splitlines()[-1]}`")
    if fits:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for model, marker in (("glm", "o"), ("rglm", "s")):
            for minutes in sorted({r["minutes"] for r in fits}):
                sub = [r for r in fits if r["model"] == model and r["minutes"] == minutes]
                if not sub:
                    continue
                u = [r["units"] for r in sub]
                axes[0].loglog(u, [r["fit_s"] for r in sub], marker=marker,
                               label=f"{model} {minutes} min")
                axes[1].loglog(u, [r["peak_rss_bytes"] / 2**30 for r in sub], marker=marker,
                               label=f"{model} {minutes} min")
        axes[0].set(xlabel="units", ylabel="fit time (s)")
        axes[1].set(xlabel="units", ylabel="peak RSS (GiB)")
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(figure, dpi=110)
        plt.close(fig)
        lines += ["", f"![scale]({figure.name})"]
    lines += ["", MARK_END]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default=None,
                    help="UxT list, e.g. 50x10,400x60 (default: the full grid)")
    ap.add_argument("--models", default="glm,rglm")
    ap.add_argument("--work", type=Path, default=Path("/tmp/neurorec_scale_session"),
                    help="cached sessions and results.jsonl")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="spec override for extra rows (e.g. fit.dtype=float64)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--no-coupling", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="write the results section from --work/results.jsonl, run nothing")
    ap.add_argument("--make", nargs=2, type=int, help=argparse.SUPPRESS)
    ap.add_argument("--fit", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.make:
        make(a.work, *a.make)
        return
    if a.fit:
        row = fit_one(a.work, a.fit[0], int(a.fit[1]), int(a.fit[2]), a.overrides)
        print("ROW " + json.dumps(row))
        return
    configs = GRID if a.configs is None else [tuple(int(v) for v in c.split("x"))
                                             for c in a.configs.split(",")]
    log = a.work / "results.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    done = {(r["model"], r["units"], r["minutes"], tuple(r.get("overrides", ())))
            for r in rows}
    for units, minutes in [] if a.report_only else configs:
        if not data_path(a.work, units, minutes).exists():
            t0 = time.perf_counter()
            proc = run_child(["--work", str(a.work), "--make", str(units), str(minutes)],
                             a.timeout)
            if proc.returncode:
                sys.exit(proc.stderr)
            print(f"simulated {units} units × {minutes} min in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        for model in a.models.split(","):
            key = (model, units, minutes, tuple(a.overrides))
            if key in done:
                continue
            sets = [x for o in a.overrides for x in ("--set", o)]
            proc = run_child(["--work", str(a.work), *sets, "--fit", model, str(units),
                              str(minutes)], a.timeout)
            out = [x for x in proc.stdout.splitlines() if x.startswith("ROW ")]
            if proc.returncode or not out:
                print(f"FAILED {model} {units}x{minutes}: {proc.stderr[-2000:]}", flush=True)
                continue
            row = json.loads(out[-1][4:])
            rows.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{model} {units} units × {minutes} min: fit {row['fit_s']:.1f} s, peak "
                  f"{row['peak_rss_bytes'] / 2**30:.2f} GiB (predicted "
                  f"{row['predicted_peak_bytes'] / 2**30:.2f}), {row['bits_per_spike']:.4f} "
                  f"bits/spike (truth {row['truth_bits_per_spike']:.4f})", flush=True)
    refusal = None
    ref_path = a.work / "coupling_refusal.json"
    if not (a.no_coupling or a.report_only):
        refusal = coupling_refusal(a.work)
        ref_path.write_text(json.dumps(refusal))
    elif ref_path.exists():
        refusal = json.loads(ref_path.read_text())
    section = write_results(rows, refusal, HERE / "scale_session.png")
    text = a.results.read_text() if a.results.exists() else ""
    if MARK_START in text:
        text = text[:text.index(MARK_START)] + section + text[text.index(MARK_END)
                                                              + len(MARK_END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    a.results.write_text(text)
    print(f"wrote {a.results}")


if __name__ == "__main__":
    main()
