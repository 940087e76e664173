"""Census: can the shipped spike-train specs be sampled on every bundled V1 session?

For each spec in ``models/`` that fits V1 drifting gratings and each session 0..26: ``neurorec
fit`` (default seed 0), then ``neurorec export-nwb`` of the fit (seed 0). A row records the
held-out bits/spike, the export's exit code and stderr, the largest per-unit rate in the
exported sample (spikes / s, over each trial's duration), and — for a spec with a sampling cap
— whether the same fitted model sampled *without* the cap diverges (so the cap is shown to be
needed, or not).

    OMP_NUM_THREADS=1 python tools/export_census.py --out /tmp/census [--specs glm_v1 ...]

Writes ``census.csv`` into ``--out`` (one row per spec × session) and prints a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SPECS = ("glm_v1", "rglm_v1", "glm_stimulus_only", "glm_bernoulli")
"""The models/*.yaml spike-train specs whose conditions exist in the V1 sessions
(glm_grasshopper needs a stimulus series, rglm_locust the locust's odours)."""


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from neurorec.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def max_rate_hz(nwb: Path) -> float:
    """Largest per-unit spike rate of any exported trial (spikes / trial duration)."""
    from neurorec.data import read_nwb

    rec = read_nwb(nwb)
    starts = rec.trials["start_time"].to_numpy(float)
    stops = rec.trials["stop_time"].to_numpy(float)
    worst = 0.0
    for spikes in rec.spike_times:
        counts = (np.searchsorted(spikes, stops) - np.searchsorted(spikes, starts))
        worst = max(worst, float((counts / (stops - starts)).max()))
    return worst


def uncapped_diverges(fit_dir: Path) -> bool | None:
    """Whether the fitted model sampled without ``sampling.max_rate_hz`` diverges (None if
    the spec has no cap)."""
    from neurorec.core.errors import DivergenceError
    from neurorec.data.recording import TrialLayout
    from neurorec.workflows.simulate import load_fitted

    model = load_fitted(fit_dir)
    sampling = getattr(model.spec, "sampling", None)
    if sampling is None or sampling.max_rate_hz is None:
        return None
    model.spec = model.spec.model_copy(
        update={"sampling": sampling.model_copy(update={"max_rate_hz": None})})
    with np.load(fit_dir / "predictions.npz") as pred:
        condition = pred["condition"]
    try:
        model.sample(len(condition), seed=0,
                     like=TrialLayout(condition, model.n_bins_))
    except DivergenceError:
        return True
    return False


def merge(tables: list[Path], csv_out: Path, md_out: Path) -> None:
    """One table from several census runs (a row per spec × session; a fit stopped by a
    signal, exit 143, is left out as not measured) and a Markdown summary per spec."""
    rows: dict[tuple[str, int], dict] = {}
    for table in tables:
        with table.open() as f:
            for r in csv.DictReader(f):
                if r["fit_rc"] == "143":
                    continue
                rows[(r["spec"], int(r["session"]))] = r
    ordered = [rows[k] for k in sorted(rows)]
    with csv_out.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(ordered[0]))
        writer.writeheader()
        writer.writerows(ordered)
    lines = ["| spec | sessions measured | bounded samples (export-nwb exit 0) | uncapped "
             "sample diverges | capped unit-bins (max) | max sampled rate (Hz) | held-out "
             "bits/spike (mean) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in dict.fromkeys(r["spec"] for r in ordered):
        mine = [r for r in ordered if r["spec"] == name]
        ok = sum(r["export_rc"] == "0" for r in mine)
        div = [r for r in mine if r["uncapped_diverges"] in ("True", "False")]
        capped = [float(r["export_stderr"].split(" % of unit-bins")[0].rsplit(" ", 1)[-1])
                  for r in mine if " % of unit-bins" in r["export_stderr"]]
        rates = [float(r["max_rate_hz"]) for r in mine if r["max_rate_hz"]]
        bps = [float(r["bits_per_spike"]) for r in mine if r["bits_per_spike"]]
        lines.append(
            f"| {name} | {len(mine)} of 27 | {ok}/{len(mine)} | "
            + (f"{sum(r['uncapped_diverges'] == 'True' for r in div)}/{len(div)}" if div
               else "no cap (n/a)")
            + f" | {max(capped) if capped else 0:g} % | {max(rates) if rates else float('nan'):.1f}"
            f" | {np.mean(bps):.4f} |")
    md_out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="census.csv files to merge into --out (a .csv) and a .md beside it")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--specs", nargs="+", default=list(SPECS))
    ap.add_argument("--sessions", type=int, nargs="+", default=list(range(27)))
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out, args.out.with_suffix(".md"))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "census.csv"
    done = set()
    if table.is_file():
        with table.open() as f:
            done = {(r["spec"], int(r["session"])) for r in csv.DictReader(f)}
    fields = ["spec", "session", "fit_rc", "bits_per_spike", "fit_s", "export_rc",
              "max_rate_hz", "export_stderr", "uncapped_diverges"]
    new = not table.is_file()
    with table.open("a", newline="") as f:
        writer = csv.DictWriter(f, fields)
        if new:
            writer.writeheader()
        for name in args.specs:
            for session in args.sessions:
                if (name, session) in done:
                    continue
                work = args.out / f"{name}_{session}"
                shutil.rmtree(work, ignore_errors=True)
                t0 = time.perf_counter()
                rc, _, err = run_cli(["fit", str(REPO / "models" / f"{name}.yaml"), "--data",
                                      f"v1_gratings:{session}", "--out", str(work / "fit"),
                                      "--quiet"])
                row = {"spec": name, "session": session, "fit_rc": rc,
                       "fit_s": round(time.perf_counter() - t0, 1)}
                if rc == 0:
                    m = json.loads((work / "fit" / "metrics.json").read_text())
                    row["bits_per_spike"] = m["bits_per_spike"]
                    nwb = work / "sample.nwb"
                    erc, _, eerr = run_cli(["export-nwb", str(work / "fit"), "--out", str(nwb)])
                    row.update(export_rc=erc, export_stderr=eerr.strip().replace("\n", " | "))
                    if erc == 0:
                        row["max_rate_hz"] = round(max_rate_hz(nwb), 1)
                    row["uncapped_diverges"] = uncapped_diverges(work / "fit")
                else:
                    row["export_stderr"] = err.strip().replace("\n", " | ")[:300]
                writer.writerow(row)
                f.flush()
                print(row, flush=True)
                shutil.rmtree(work, ignore_errors=True)
    with table.open() as f:
        rows = list(csv.DictReader(f))
    for name in args.specs:
        mine = [r for r in rows if r["spec"] == name]
        ok = sum(r["export_rc"] == "0" for r in mine)
        print(f"{name}: bounded samples {ok}/{len(mine)}; uncapped diverges on "
              f"{sum(r['uncapped_diverges'] == 'True' for r in mine)}", file=sys.stderr)


if __name__ == "__main__":
    main()
