"""The ``neurorec`` command.

User mistakes (a :class:`~neurorec.core.errors.NeurorecError`) print one line per problem on
stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from neurorec.core.errors import EXIT_USER_ERROR, NeurorecError, OutputError, SpecError
from neurorec.workflows import arguments as args

REPO_ROOT = Path(__file__).resolve().parents[1]

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="FIELD.PATH=VALUE",
    help="Override a spec field (repeatable), validated like the file.")
seed_option = args.seed_option("Seeds the train/test split, initialisation and sampling "
                               "(0 .. 2**32 - 1).")
device_option = click.option("--device", default="cpu", show_default=True,
                             help="torch device: cpu or cuda.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurorec")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Recurrent models of neural data: specs, fits, simulations and analyses."""
    from neurorec.core.outputs import OUTPUT_OWNER

    OUTPUT_OWNER.set(ctx.invoked_subcommand)  # folders it makes carry its marker


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@set_option
def validate(paths: Sequence[Path], overrides: Sequence[str]) -> None:
    """Check model specs, stimulus protocols and sweep files (YAML) against their schemas."""
    from neurorec.spec import load_spec
    from neurorec.spec.sweep import load_sweep_spec

    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            problems.append(f"{path}: a folder, not a spec file")
            continue
        try:
            spec = (load_sweep_spec if _kind_of(path) == "sweep" else load_spec)(path, overrides)
        except SpecError as err:
            problems.extend(err.lines)
        else:
            click.echo(f"{path}: ok ({spec.kind})")
    if problems:
        raise SpecError(problems)


def _kind_of(path: Path) -> object:
    """The ``kind:`` a YAML file declares (None if unreadable: the loader reports why)."""
    from neurorec.spec.load import read_yaml

    try:
        raw, _ = read_yaml(path)
    except SpecError:
        return None
    return raw.get("kind") if isinstance(raw, dict) else None


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--data", "data", required=True, metavar="PATH_OR_DATASET",
              help="An NWB file, or a bundled dataset such as v1_gratings:3 (see `datasets`).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@seed_option
@device_option
@set_option
@click.option("--overwrite", is_flag=True,
              help="Replace an existing output directory (and discard checkpoints).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from its checkpoints in OUT.partial/.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--heldout-neurons", "heldout_neurons", default=None, metavar="FRACTION|IDS",
              help="Co-smoothing: hold out this fraction of units (drawn with --seed) or these "
                   "comma-separated unit ids; adds co_bps to metrics.json.")
@click.option("--cv", "cv", type=click.IntRange(min=2), default=None, metavar="K",
              help="Choose penalty.l2 (and penalty.l1 where used) by K-fold cross-validation "
                   "over the training trials, stratified by condition; adds cv to "
                   "metrics.json and a CV curve to the report.")
@click.option("--workers", "workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="Split the GLM's units over a LocalCluster of N worker processes "
                   "(127.0.0.1, no dashboard); bit-identical to the same split run locally.")
@click.option("--scheduler", "scheduler", default=None, metavar="ADDR",
              help="Split the GLM's units over the workers of a running dask scheduler "
                   "(tcp://host:8786).")
@click.option("--units-per-task", "units_per_task", type=click.IntRange(min=1), default=None,
              metavar="K", help="Units per Dask task (default: units / workers).")
def fit(spec_path: Path, data: str, out: Path, seed: int, device: str,
        overrides: Sequence[str], overwrite: bool, resume: bool, quiet: bool,
        heldout_neurons: str | None = None, cv: int | None = None,
        workers: int | None = None, scheduler: str | None = None,
        units_per_task: int | None = None) -> None:
    """Fit a model spec to recorded spike trains and evaluate it on held-out trials.

    The optimiser checkpoints to OUT.partial/ as it goes; a run stopped by SIGTERM saves a
    checkpoint and exits with code 143, and `--resume` (also after SIGKILL) continues it to
    the same final parameters an uninterrupted run reaches. OUT appears whole at the end.
    """
    import shutil

    from neurorec.spec import load_model_spec

    args.check_file(spec_path, "SPEC")
    if Path(data).is_dir():
        raise NeurorecError(f"{data}: --data: a folder, not an NWB file or a dataset name "
                            "(see `neurorec datasets`)")
    args.check_device(device)
    args.check_local_workers(workers, scheduler)
    if scheduler is not None:
        args.check_scheduler(scheduler)
    args.check_out_dir(out, overwrite, "fit")
    spec = load_model_spec(spec_path, overrides)
    _require_spike_train_model(spec, spec_path)
    if getattr(getattr(spec, "data", None), "mode", "trials") == "session":
        from neurorec.workflows.resources import check_session_memory

        if units_per_task is not None:
            raise NeurorecError("--units-per-task: a session GLM's Dask tasks are its chunks "
                                "of 32 units (the local fit's, so the numbers are the same)")
        # the memory preflight: from the file's metadata, before any binning or fitting
        check_session_memory(spec, data, echo=lambda line: click.echo(line, err=True))
        from neurorec.workflows.session_fit import run_fit_command

        with _units_split(workers, scheduler, None):
            lines = run_fit_command(spec, data, out, seed=seed, overwrite=overwrite,
                                    resume=resume, quiet=quiet,
                                    heldout_neurons=heldout_neurons, cv=cv)
        for line in lines:
            click.echo(line)
        return
    # imported here: a session's preflight refusal above needs none of them (issue 29: the
    # whole refused command within 10 s)
    from neurorec.core.outputs import _lock
    from neurorec.fit import interrupt
    from neurorec.fit.run import Run
    from neurorec.workflows.fit_outputs import write_fit_outputs
    from neurorec.workflows.pipeline import fit_and_evaluate, load_recording

    recording = load_recording(data)  # a bad --data is refused before anything is created
    _check_recording(spec, recording, heldout_neurons)
    work = out.with_name(f"{out.name}.partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(work), interrupt.handle_signals():  # one writer of OUT.partial at a time
        if work.exists() and not resume:
            if any(work.iterdir()) and not overwrite:
                raise OutputError(f"{work}: checkpoints of an interrupted run; pass --resume "
                                  "to continue it or --overwrite to start over")
            shutil.rmtree(work)
        if resume:
            found = sorted(work.glob("*.pt")) if work.is_dir() else []
            click.echo(f"resuming from {work}" if found else
                       f"--resume: no checkpoint in {work}, starting from the beginning",
                       err=True)
        try:
            with _units_split(workers, scheduler, units_per_task):
                result = fit_and_evaluate(spec, recording, seed=seed, device=device,
                                          progress=not quiet,
                                          run=Run(checkpoint_dir=work, resume=resume),
                                          heldout_neurons=heldout_neurons, cv=cv)
            report = write_fit_outputs(result, out, overwrite=overwrite)
        finally:
            if work.is_dir() and not any(work.iterdir()):
                work.rmdir()  # nothing checkpointed: leave no trace
        shutil.rmtree(work, ignore_errors=True)  # OUT is complete: checkpoints are spent
    m = result.metrics
    _warn_unconverged(spec.name, m)
    click.echo(f"{spec.name}: held-out {m['bits_per_spike']:.4f} bits/spike, "
               f"log-likelihood {m['log_likelihood']:.1f} nats over {m['n_bins']} bins × "
               f"{m['n_neurons']} units, fit {m['fit_time_s']:.1f} s "
               f"({m['convergence']['reason']})")
    if "cv" in m:
        chosen = ", ".join(f"{k} = {v:g}" for k, v in m["cv"]["chosen"].items())
        click.echo(f"cross-validation ({m['cv']['k']} folds): chose {chosen}")
    if "co_bps" in m:
        click.echo(f"co-smoothing: co-bps {m['co_bps']:.4f} ({m['n_heldout_neurons']} held-out "
                   f"units), held-in {m['heldin_bits_per_spike']:.4f} bits/spike")
    click.echo(f"report: {report}")


@contextlib.contextmanager
def _units_split(workers: int | None, scheduler: str | None, units_per_task: int | None):
    """The Dask units split of ``neurorec fit --workers/--scheduler`` (nothing without them)."""
    if workers is None and scheduler is None:
        if units_per_task is not None:
            raise NeurorecError("--units-per-task: needs --workers N or --scheduler ADDR")
        yield
        return
    from neurorec.fit.distributed import UnitSplit, open_client, unit_split

    try:
        opened = open_client(workers=workers, scheduler=scheduler)
        client = opened.__enter__()
    except (OSError, TimeoutError, ValueError) as err:
        raise NeurorecError(f"--scheduler {scheduler}: cannot connect "
                            f"({type(err).__name__}: {err})".split("\n")[0]) from None
    try:
        with unit_split(UnitSplit(client, units_per_task=units_per_task)):
            yield
    finally:
        opened.__exit__(None, None, None)


def _check_recording(spec, recording, heldout_neurons: str | None = None) -> None:
    """Refuse overlapping trials; warn (stderr) about bins that can never hold a spike,
    trials cropped to the shortest, and how a bare integer --heldout-neurons was read."""
    from neurorec.workflows.data_checks import check_trials_disjoint, recording_warnings

    if getattr(getattr(spec, "data", None), "mode", "trials") == "trials":
        check_trials_disjoint(recording)
        # a fit that cannot fit in memory is refused in its one line, before any warning
        from neurorec.workflows.resources import check_fit_memory

        check_fit_memory(spec, recording)
    for line in recording_warnings(spec, recording):
        click.echo(line, err=True)
    text = (heldout_neurons or "").strip()
    if text.isdigit() and int(text) == 0:
        first = str(recording.unit_ids[0]) if len(recording.unit_ids) else "0"
        raise NeurorecError(f"--heldout-neurons {text}: read as a fraction, which must lie in "
                            f"(0, 1); to hold out the unit at position 0 give its id ({first})")
    if text.isdigit():
        ids = [str(u) for u in recording.unit_ids]
        how = (f"the unit with id {text}" if text in ids else
               f"the unit at position {text} (id {ids[int(text)]})" if int(text) < len(ids)
               else None)
        if how is not None:
            click.echo(f"--heldout-neurons {text}: warning: read as {how}, not a fraction "
                       "(a fraction is written 0.x)", err=True)


def _warn_unconverged(name: str, metrics: dict) -> None:
    """A fit that stopped short says so on stderr, naming the solver that ran."""
    conv = metrics.get("convergence", {})
    if conv and not conv.get("converged", True):
        click.echo(f"{name}: warning: the {conv.get('optimizer', 'optimizer')} fit did not "
                   f"converge ({conv.get('reason')}, {conv.get('n_iter')} iterations); see "
                   "convergence.png, raise fit.max_iter or the penalty", err=True)


def _require_spike_train_model(spec, spec_path: Path) -> None:
    """`fit` fits models of recorded spike trains; other kinds have their own commands."""
    from neurorec.families import MODELS

    if spec.kind not in MODELS:
        raise SpecError(f"{spec_path}: kind: '{spec.kind}' is not a model of recorded spike "
                        f"trains, so `neurorec fit` cannot fit it (it fits: "
                        f"{', '.join(sorted(MODELS))}; ctrnn: `neurorec train`; others: their "
                        "pipeline in analyses/)")


DEMO_SPECS = ("glm_v1.yaml", "rglm_v1.yaml")


@cli.command()
@click.option("--session", default="1", show_default=True,
              help="V1 drifting-gratings session (0..26), or open_field / open_field:tanni "
                   "(a simulated open-field session: session_glm.yaml and session_rglm.yaml).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("neurorec_demo"),
              show_default=True, help="Output directory (new; an earlier demo's output is "
              "replaced only with --overwrite).")
@click.option("--specs", type=click.Path(path_type=Path), default=REPO_ROOT / "models",
              show_default=True, help="Folder holding glm_v1.yaml and rglm_v1.yaml.")
@seed_option
@device_option
@set_option
@click.option("--overwrite", is_flag=True,
              help="Replace the output directory of an earlier `neurorec demo` (only such a "
                   "folder: it holds the demo's marker).")
def demo(session: str, out: Path, specs: Path, seed: int, device: str,
         overrides: Sequence[str], overwrite: bool = False) -> None:
    """Fit the GLM and the R-GLM to a bundled V1 session and compare them on held-out trials
    (or, with --session open_field, to a simulated open-field session on held-out bins)."""
    from neurorec.core.outputs import atomic_dir
    from neurorec.datasets import load
    from neurorec.report import html
    from neurorec.spec import load_model_spec
    from neurorec.workflows.fit_outputs import write_fit_outputs
    from neurorec.workflows.pipeline import fit_and_evaluate

    args.check_out_dir(out, overwrite, "demo")
    if str(session).split(":")[0] == "open_field":
        from neurorec.workflows.session_fit import demo_session

        rows = demo_session(session, out, specs, seed, tuple(overrides), overwrite, click.echo)
        click.echo(f"\n{'model':<14}{'kind':<6}{'bits/spike':>12}{'fit time (s)':>14}")
        for name, kind, bps, _, secs in rows:
            click.echo(f"{name:<14}{kind:<6}{bps:>12.4f}{secs:>14.1f}")
        click.echo(f"\nreport: {out / 'report.html'}")
        return
    if not str(session).isdigit():
        raise NeurorecError(f"--session {session}: expected a V1 session number (0..26) or "
                            "open_field")
    session = int(session)
    paths = [specs / name for name in DEMO_SPECS]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SpecError([f"{p}: demo spec not found (the demo reads models/ of a checkout: "
                         "install with `pip install -e .`, or pass --specs DIR)" for p in missing])
    loaded = [load_model_spec(p, overrides) for p in paths]
    recording = load(f"v1_gratings:{session}")
    click.echo(f"data: {recording.source}, {recording.n_units} units, "
               f"{len(recording.trials)} trials ({recording.metadata.get('citation', '')})")
    rows = []
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for spec in loaded:
            click.echo(f"fitting {spec.name} ...")
            start = time.perf_counter()
            _check_recording(spec, recording)
            result = fit_and_evaluate(spec, recording, seed=seed, device=device)
            seconds = time.perf_counter() - start  # binning, fit and held-out scoring
            write_fit_outputs(result, tmp / spec.name)
            m = result.metrics
            _warn_unconverged(spec.name, m)
            rows.append((spec.name, spec.kind, m["bits_per_spike"], m["log_likelihood"],
                         seconds))
        body = html.table([(n, k, f"{b:.4f}", f"{ll:.1f}", f"{t:.1f}") for n, k, b, ll, t in rows],
                          ("model", "kind", "held-out bits/spike", "held-out LL (nats)",
                           "fit time (s)"))
        links = "".join(f"<li><a href='{n}/report.html'>{n}</a></li>" for n, *_ in rows)
        html.page(f"neurorec demo: V1 session {session}",
                  [("Held-out comparison", body), ("Reports", f"<ul>{links}</ul>")],
                  tmp / "report.html")
    click.echo("")
    click.echo(f"{'model':<14}{'kind':<6}{'bits/spike':>12}{'fit time (s)':>14}")
    for name, kind, bps, _, secs in rows:
        click.echo(f"{name:<14}{kind:<6}{bps:>12.4f}{secs:>14.1f}")
    click.echo(f"\nreport: {out / 'report.html'}")


@cli.command()
def datasets() -> None:
    """List the bundled datasets with size, licence and citation."""
    from neurorec.datasets import list_datasets

    for info in list_datasets():
        last = info.first + info.sessions - 1
        choices = f"{info.name}:{info.first}..{last}" if info.sessions > 1 else info.name
        click.echo(f"{info.name}  ({info.size_bytes / 1e6:.1f} MB; load as {choices})\n"
                   f"  {info.description}\n  licence: {info.licence}\n"
                   f"  cite: {info.citation}\n")


@cli.command("export-nwb")
@click.argument("source", metavar="DATASET_OR_FIT_DIR")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="NWB file to write.")
@args.seed_option("Seeds the samples drawn from a fitted model (0 .. 2**32 - 1); unused for a "
                  "dataset.")
@click.option("--overwrite", is_flag=True, help="Replace an existing NWB file.")
@set_option
def export_nwb(source: str, out: Path, seed: int, overwrite: bool,
               overrides: Sequence[str] = ()) -> None:
    """Write a bundled dataset, or samples from a fitted model (a `fit` output dir), to NWB.

    A fit directory is simulated: the fitted model generates one trial for every held-out
    trial's condition, with the seed given. `--set` changes the fitted model's spec for
    sampling only (`--set sampling.max_rate_hz=500` caps each unit's expected count
    while sampling); fitted parameters are kept.

    A session fit (data.mode: session) writes its predicted rates in Hz as the TimeSeries
    processing/neurorec/predicted_rates (pynapple key 'predicted_rates'), spikes drawn from
    those rates (Poisson, seeded) as units, and the split as epochs.
    """
    from neurorec.data.nwb import write_nwb

    args.check_out_file(out, overwrite, magic=b"\x89HDF\r\n\x1a\n")
    if Path(source).is_dir():
        from neurorec.workflows.simulate import check_fit_dir, simulate_fit_dir

        check_fit_dir(Path(source))
        from neurorec.spec import load_model_spec

        if load_model_spec(Path(source) / "spec.yaml").data.mode == "session":
            from neurorec.workflows.session_export import export_session_fit

            if overrides:
                raise SpecError(f"{source}: --set: a session fit's export writes its "
                                "predicted rates; there is no sampling field to change")
            n = export_session_fit(Path(source), out, seed=seed)
            click.echo(f"{out}: {n['n_units']} units, predicted rates (Hz) on {n['n_bins']} "
                       f"bins in processing/neurorec/predicted_rates, {n['n_spikes']} spikes "
                       "drawn from them")
            return
        recording = _drop_silent_units(simulate_fit_dir(Path(source), seed=seed,
                                                        overrides=overrides), out)
    else:
        if overrides:
            raise SpecError(f"{source}: --set applies to a fit directory's spec; a dataset "
                            "has none")
        from neurorec.datasets import load

        recording = load(source)
    write_nwb(recording, out)
    click.echo(f"{out}: {recording.n_units} units, {len(recording.trials)} trials, "
               f"{sum(len(s) for s in recording.spike_times)} spikes")


@cli.command()
@click.argument("fit_dir", metavar="FIT_DIR", type=click.Path(path_type=Path))
@click.option("--data", "data", default=None, metavar="PATH_OR_DATASET",
              help="Score on every trial of this NWB file or bundled dataset (the fit's units); "
                   "default: the fit's own held-out trials.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True,
              help="Seeds the rescaling draws and the forward-prediction continuations.")
@click.option("--fp-draws", "fp_draws", type=click.IntRange(min=1), default=20,
              show_default=True, help="Ancestral continuations averaged for fp_bps.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def evaluate(fit_dir: Path, data: str | None, out: Path, seed: int, fp_draws: int,
             overwrite: bool) -> None:
    """Judge a fitted spike-train model (glm, rglm, plds, ctrnn_obs): bits/spike, co-bps,
    fp-bps, PSTH R², time-rescaling KS tests with the discrete-time correction, GLM standard
    errors; OUT/evaluation.json and OUT/report.html."""
    from neurorec.workflows.evaluate import evaluate_fit_dir

    m = evaluate_fit_dir(fit_dir, data, out, seed=seed, overwrite=overwrite,
                         fp_draws=fp_draws).metrics

    def fmt(key: str) -> str:
        value = m.get(key)
        return "n/a" if value is None else f"{value:.4f}"

    failing = m.get("ks_failing_units", [])
    click.echo(f"{m['model']} on {m['evaluated_on']}: {fmt('bits_per_spike')} bits/spike, "
               f"fp-bps {fmt('fp_bps')}, PSTH R² {fmt('psth_r2')}"
               + (f", co-bps {fmt('co_bps')}" if "co_bps" in m else ""))
    click.echo(f"KS inside the 95 % band: {fmt('ks_fraction_in_band')} of "
               f"{m.get('ks_n_units_tested', 0)} units; outside: "
               f"{', '.join(failing) if failing else 'none'}")
    click.echo(f"report: {out / 'report.html'}")


def _drop_silent_units(recording, out: Path):
    """A simulated unit may fire no spike in its sample; NWB readers (and neurorec's) refuse
    an empty unit, so it is left out of the file with one warning line naming it."""
    from dataclasses import replace

    import numpy as np

    silent = [i for i, t in enumerate(recording.spike_times) if len(t) == 0]
    if not silent:
        return recording
    if len(silent) == len(recording.spike_times):
        raise NeurorecError(f"{recording.source}: no unit fired a spike in the sample; nothing "
                            "to write")
    keep = [i for i in range(len(recording.spike_times)) if i not in set(silent)]
    ids = np.asarray(recording.unit_ids)
    click.echo(f"{out}: warning: {len(silent)} simulated unit(s) fired no spike and are left "
               f"out ({', '.join(str(u) for u in ids[silent][:5])}"
               f"{' ...' if len(silent) > 5 else ''}); {len(keep)} units written", err=True)
    return replace(recording, spike_times=[recording.spike_times[i] for i in keep],
                   unit_ids=ids[keep])


@cli.command()
@click.argument("sweep_path", metavar="SWEEP.yaml", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="Sweep directory: runs/<run-id>/ per run, results.csv.")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="A running dask scheduler (tcp://host:8786); default: a LocalCluster.")
@click.option("--workers", type=click.IntRange(1, 4096), default=None,
              help="LocalCluster worker processes (default: one per core); with --scheduler, "
                   "wait for this many workers.")
@click.option("--threads", type=click.IntRange(1, 4096), default=None,
              help="torch threads per run (default: a host's cores / its dask threads).")
@click.option("--device", default=None, help="torch device for every run (default: the "
                                              "sweep's `device`, cpu).")
@click.option("--overwrite", is_flag=True, help="Run finished runs again, replacing them.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD.PATH=VALUE",
              help="Override a field of the sweep file (repeatable; e.g. --set seeds=[0,1]), "
                   "validated like the file.")
def sweep(sweep_path: Path, out: Path, scheduler: str | None, workers: int | None,
          threads: int | None, device: str | None, overwrite: bool, quiet: bool,
          overrides: Sequence[str] = ()) -> None:
    """Fit a model spec over a grid or list of --set values × seeds × datasets on dask.

    Each run writes what `neurorec fit` writes into OUT/runs/<run-id>/; a sweep started again
    skips finished runs; OUT/results.csv has one row per run (swept fields, then metrics).
    Exit code 2 when a run failed after its retry (each failure printed with its error).
    """
    from neurorec.core.errors import NeurorecError
    from neurorec.spec.sweep import load_sweep_spec
    from neurorec.workflows.sweep import run_sweep

    for flag, value in (("--workers", workers), ("--threads", threads)):
        if value is not None and value < 1:
            raise NeurorecError(f"{flag} {value}: expected ≥ 1")
    args.check_file(sweep_path, "SWEEP.yaml")
    args.check_device(device)
    spec = load_sweep_spec(sweep_path, overrides)
    args.check_sweep_out(out)
    args.check_local_workers(workers, scheduler)
    if scheduler is not None:
        args.check_scheduler(scheduler)
    outcomes = run_sweep(spec, sweep_path, out, scheduler=scheduler, workers=workers,
                         threads=threads, device=device, overwrite=overwrite, progress=not quiet,
                         echo=click.echo)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise NeurorecError(f"{out}: {len(failed)} of {len(outcomes)} runs failed after "
                            f"{failed[0].attempts} attempts; errors in {out}/failures.json")


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--protocol", "protocol", required=True, type=click.Path(path_type=Path),
              metavar="STIM", help="A task protocol (stimuli/task_*.yaml) giving the inputs.")
@click.option("--backend", type=click.Choice(["torch", "brian2"]), default="torch",
              show_default=True, help="Simulator; both run the same Euler step.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@click.option("--trials", type=click.IntRange(1, 1_000_000), default=16, show_default=True,
              help="Trials to simulate (1 .. 1,000,000; refused if the activity would not "
                   "fit in memory).")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="weights .npz (e.g. weights_after.npz of a `train` run); default: the "
              "spec's initialisation drawn with --seed.")
@click.option("--brian2-device", type=click.Choice(["runtime", "cpp_standalone"]),
              default="runtime", show_default=True)
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True, help="torch precision (brian2 is float64).")
@args.seed_option("Seeds the initial weights (when no --weights), the trials drawn from the task "
                  "and the network noise (0 .. 2**32 - 1).")
@device_option
@set_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", is_flag=True, help="No progress output.")
def simulate(spec_path: Path, protocol: Path, backend: str, out: Path, trials: int,
             weights: Path | None, brian2_device: str, dtype: str, seed: int, device: str,
             overrides: Sequence[str], overwrite: bool, quiet: bool) -> None:
    """Simulate a ctrnn spec on trials of a task protocol: DIR/activity.npz and a report."""
    from neurorec.families.ctrnn.run import check_inputs, simulate_to_dir
    from neurorec.spec import load_model_spec, load_stimulus_spec

    args.check_file(spec_path, "SPEC")
    args.check_file(protocol, "--protocol")
    args.check_out_dir(out, overwrite, "simulate")
    spec = load_model_spec(spec_path, overrides)
    task_spec = load_stimulus_spec(protocol)
    check_inputs(spec, task_spec, spec_path, protocol)
    if weights is not None:
        args.check_file(weights, "--weights")
    _check_simulation_memory(spec, task_spec, trials)
    summary = simulate_to_dir(spec, task_spec, out, backend=backend, n_trials=trials,
                              weights_path=weights, brian2_device=brian2_device, dtype=dtype,
                              seed=seed, device=device, overwrite=overwrite)
    click.echo(f"{spec.name} on {task_spec.name} ({backend}): {summary['n_trials']} trials × "
               f"{summary['n_steps']} steps × {summary['n_units']} units in "
               f"{summary['seconds']:.2f} s; accuracy {summary['accuracy']:.3f}")
    click.echo(f"report: {out / 'report.html'}")


def _check_simulation_memory(spec, task_spec, n_trials: int) -> None:
    """``--trials`` whose activity (trial × step × (units + inputs + outputs), float64, held
    about four times over while written) exceeds half the available memory is refused."""
    import numpy as np

    from neurorec.tasks import make_task
    from neurorec.workflows.resources import available_memory_bytes, gib

    one = make_task(task_spec).generate(1, np.random.default_rng(0))
    width = spec.n_units + one.inputs.shape[-1] + 2 * one.targets.shape[-1]
    per_trial = one.n_steps * width * 8
    need = 4 * per_trial * n_trials
    available = available_memory_bytes()
    if available is not None and need > available / 2:
        raise NeurorecError(f"--trials {n_trials}: the activity needs about {gib(need)} "
                            f"({one.n_steps} steps × {spec.n_units} units per trial); "
                            f"{gib(available)} available: simulate fewer trials")


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--task", "task_path", default=None, type=click.Path(path_type=Path),
              metavar="STIM", help="A task protocol (stimuli/task_*.yaml) for a ctrnn.")
@click.option("--stimulus", "stimulus_path", default=None, type=click.Path(path_type=Path),
              metavar="PROTOCOL", help="A stimulus protocol to learn from without a task "
              "(an ssrnn on a natural_movie, e.g. stimuli/natural_movie_12px.yaml).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@args.seed_option("Seeds the initial weights, the training and validation trials and the noise "
                  "(ctrnn), or the ssrnn's initialisation and random draws (0 .. 2**32 - 1).")
@device_option
@set_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from its checkpoint in OUT.partial/.")
def train(spec_path: Path, task_path: Path | None, stimulus_path: Path | None, out: Path,
          seed: int, device: str, overrides: Sequence[str], overwrite: bool, quiet: bool,
          resume: bool) -> None:
    """Train a ctrnn spec on a task (--task; Adam, masked L2) or a spec that learns from a
    stimulus (--stimulus: an ssrnn on a natural movie); checkpoints in OUT.partial/."""
    from neurorec.families import family_of
    from neurorec.families.ctrnn.run import check_inputs
    from neurorec.fit import interrupt
    from neurorec.spec import load_model_spec, load_stimulus_spec
    from neurorec.workflows.study import refuse_existing

    if (task_path is None) == (stimulus_path is None):
        raise SpecError("train: give exactly one of --task (a ctrnn on a task) or --stimulus "
                        "(an ssrnn on a natural movie)")
    args.check_file(spec_path, "SPEC")
    args.check_file(task_path if task_path is not None else stimulus_path,
                    "--task" if task_path is not None else "--stimulus")
    if not resume:
        args.check_out_dir(out, overwrite, "train")
    spec = load_model_spec(spec_path, overrides)
    family = family_of(spec.kind)
    if stimulus_path is not None and "train_task" not in family.commands:
        stim_spec = load_stimulus_spec(stimulus_path)
        if "train_stimulus" not in family.commands or stim_spec.kind != "natural_movie":
            raise SpecError(f"{stimulus_path}: kind: `train --stimulus` trains an ssrnn on a "
                            f"natural_movie (got {spec.kind} on {stim_spec.kind})")
        refuse_existing(out, overwrite)
        with interrupt.handle_signals():
            m = family.command("train_stimulus")(
                spec, stim_spec, out, seed=seed, device=device, overwrite=overwrite,
                resume=resume, progress=not quiet)
        if m["n_iterations"]:
            click.echo(f"{spec.name} on {stim_spec.name}: {m['n_iterations']} iterations in "
                       f"{m['train_s']:.1f} s, MSE/pixel {m['mse_per_pixel_last20']:.3f}, "
                       f"{100 * m['fraction_active_last20']:.1f} % units on")
        else:
            click.echo(f"{spec.name} on {stim_spec.name}: 0 iterations "
                       "(learning.n_iterations = 0): the untrained network was saved")
        click.echo(f"report: {out / 'report.html'}")
        return
    task_path = task_path if task_path is not None else stimulus_path
    task_spec = load_stimulus_spec(task_path)
    check_inputs(spec, task_spec, spec_path, task_path)
    refuse_existing(out, overwrite)
    with interrupt.handle_signals():  # SIGTERM: stop at the next checkpoint, exit 143
        m = family.command("train_task")(spec, task_spec, out, seed=seed, device=device,
                                         overwrite=overwrite, resume=resume, progress=not quiet)
    click.echo(f"{spec.name} on {task_spec.name}: {m['n_steps']} steps in "
               f"{m['train_time_s']:.1f} s, validation loss {m['val_loss']:.4g}, "
               f"accuracy {m['val_accuracy']:.3f}")
    click.echo(f"report: {out / 'report.html'}")


@cli.command()
@click.argument("fit_dir", metavar="FIT_DIR", type=click.Path(path_type=Path))
@click.option("--protocol", "protocol", required=True, type=click.Path(path_type=Path),
              metavar="STIM.yaml", help="A drifting_gratings protocol (e.g. "
              "stimuli/ssrnn_direction_probe.yaml); aliased protocols are refused.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@args.seed_option("Seeds the network's noise and the shuffled-R and untrained controls "
                  "(0 .. 2**32 - 1).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD.PATH=VALUE",
              help="Override a field of the probe protocol (STIM.yaml; repeatable), "
                   "validated like the file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def probe(fit_dir: Path, protocol: Path, out: Path, seed: int, overwrite: bool,
          overrides: Sequence[str] = (), quiet: bool = False) -> None:
    """Probe a trained ssrnn (`train --stimulus`) or a fitted ctrnn_obs with direction input
    with drifting gratings: responses.npz, tuning.csv (one row per unit), controls (R = 0,
    shuffled R, untrained), polar / speed-tuning figures and a report."""
    from neurorec.workflows.probe import probe_to_dir

    args.check_dir(fit_dir, "FIT_DIR", ("spec.yaml",), "a `train --stimulus` or `fit` output")
    args.check_file(protocol, "--protocol")
    args.check_out_dir(out, overwrite, "probe")
    m = probe_to_dir(fit_dir, protocol, out, seed=seed, overwrite=overwrite,
                     overrides=overrides, progress=not quiet)
    click.echo(f"{m['n_responsive']} of {m['n_units']} units responsive; median DI "
               f"{m['di_median']:.3f} (R = 0: {m['di_median_r_zero']:.3f}, shuffled R: "
               f"{m['di_median_r_shuffled']:.3f}, off-diagonal shuffled: "
               f"{m['di_median_r_shuffled_offdiag']:.3f}, untrained: "
               f"{m['di_median_untrained']:.3f}); "
               f"DI > 0.5: {100 * m['di_frac_above_0_5']:.0f} %; DI >= 0.3: "
               f"{m['n_ds_units']} units")
    click.echo(f"report: {out / 'report.html'}")


@cli.command()
@click.argument("fit_dir", metavar="FIT_DIR", type=click.Path(path_type=Path))
@click.option("--tuning", "tuning", required=True, type=click.Path(path_type=Path),
              metavar="TUNING.csv", help="tuning.csv written by `neurorec probe` on FIT_DIR.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@args.seed_option("Seeds the bootstrap, the permutations and the shuffled-R control "
                  "(0 .. 2**32 - 1).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
def connectomics(fit_dir: Path, tuning: Path, out: Path, seed: int, overwrite: bool) -> None:
    """Test connectivity predictions on the network's recurrent weights from its tuning:
    predictions.csv (effect, bootstrap CI, permutation p, and shuffled-R control)."""
    from neurorec.workflows.probe import connectomics_to_dir

    args.check_dir(fit_dir, "FIT_DIR", ("spec.yaml",), "a `train --stimulus` output")
    args.check_file(tuning, "--tuning")
    args.check_out_dir(out, overwrite, "connectomics")
    rows = connectomics_to_dir(fit_dir, tuning, out, seed=seed, overwrite=overwrite)
    for r in rows:
        click.echo(f"{r['prediction']}: {r['effect']:.3g} [{r['ci_low']:.3g}, "
                   f"{r['ci_high']:.3g}], p = {r['p']:.3g} ({r['n_units']} units)")
    if not rows:
        click.echo("no prediction testable (fewer than 5 tuned units)")
    click.echo(f"report: {out / 'report.html'}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line each and exit code 2."""
    import contextvars
    import warnings

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        click.echo(text if ": warning: " in text or text.startswith("warning:")
                   else f"warning: {text}", err=True)

    try:  # in a copy of the context: the command's output owner does not outlive it
        with warnings.catch_warnings():
            warnings.showwarning = one_line  # a warning is one stderr line, not two
            contextvars.copy_context().run(
                cli.main, args=list(argv) if argv is not None else None,
                prog_name="neurorec", standalone_mode=False)
    except NeurorecError as err:
        for line in err.lines:
            click.echo(line, err=True)
        return getattr(err, "exit_code", EXIT_USER_ERROR)  # Interrupted: 128 + signal
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as err:  # `neurorec` alone: its help
        click.echo(err.ctx.get_help() if err.ctx is not None else err.format_message())
        return 0
    except click.UsageError as err:  # one line: the command, the problem, where help is
        where = err.ctx.command_path if err.ctx is not None else "neurorec"
        message = " ".join(err.format_message().split())
        click.echo(f"{where}: {message} (see '{where} --help')", err=True)
        return err.exit_code
    except click.ClickException as err:
        click.echo(" ".join(err.format_message().split()), err=True)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
