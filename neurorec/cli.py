"""The ``neurorec`` command.

User mistakes (a :class:`~neurorec.errors.NeurorecError`) print one line per problem on
stderr and exit with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from neurorec.errors import NeurorecError, SpecError

EXIT_USER_ERROR = 2
REPO_ROOT = Path(__file__).resolve().parents[1]

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="FIELD.PATH=VALUE",
    help="Override a spec field (repeatable), validated like the file.")
seed_option = click.option("--seed", type=int, default=0, show_default=True,
                           help="Seeds the train/test split, initialisation and sampling.")
device_option = click.option("--device", default="cpu", show_default=True,
                             help="torch device: cpu or cuda.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurorec")
def cli() -> None:
    """Recurrent models of neural data: specs, fits, simulations and analyses."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@set_option
def validate(paths: Sequence[Path], overrides: Sequence[str]) -> None:
    """Check model specs and stimulus protocols (YAML) against their schemas."""
    from neurorec.spec import load_spec

    problems: list[str] = []
    for path in paths:
        try:
            spec = load_spec(path, overrides)
        except SpecError as err:
            problems.extend(err.lines)
        else:
            click.echo(f"{path}: ok ({spec.kind})")
    if problems:
        raise SpecError(problems)


@cli.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--data", "data", required=True, metavar="PATH_OR_DATASET",
              help="An NWB file, or a bundled dataset such as v1_gratings:3 (see `datasets`).")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output directory.")
@seed_option
@device_option
@set_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def fit(spec_path: Path, data: str, out: Path, seed: int, device: str,
        overrides: Sequence[str], overwrite: bool, quiet: bool) -> None:
    """Fit a model spec to recorded spike trains and evaluate it on held-out trials."""
    from neurorec.pipeline import fit_and_evaluate, load_recording
    from neurorec.report.fit_outputs import write_fit_outputs
    from neurorec.spec import load_model_spec

    spec = load_model_spec(spec_path, overrides)
    _refuse_existing(out, overwrite)
    recording = load_recording(data)
    result = fit_and_evaluate(spec, recording, seed=seed, device=device, progress=not quiet)
    report = write_fit_outputs(result, out, overwrite=overwrite)
    m = result.metrics
    click.echo(f"{spec.name}: held-out {m['bits_per_spike']:.4f} bits/spike, "
               f"log-likelihood {m['log_likelihood']:.1f} nats over {m['n_bins']} bins × "
               f"{m['n_neurons']} units, fit {m['fit_time_s']:.1f} s "
               f"({m['convergence']['reason']})")
    click.echo(f"report: {report}")


def _refuse_existing(out: Path, overwrite: bool) -> None:
    # Checked before the fit too, so a long run is not wasted on a path it cannot write.
    from neurorec.errors import OutputError

    if out.exists() and not overwrite:
        raise OutputError(f"{out}: output directory exists (pass --overwrite to replace it)")


DEMO_SPECS = ("glm_v1.yaml", "rglm_v1.yaml")


@cli.command()
@click.option("--session", type=int, default=1, show_default=True,
              help="V1 drifting-gratings session (0..26).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("neurorec_demo"),
              show_default=True, help="Output directory (replaced on each demo run).")
@click.option("--specs", type=click.Path(path_type=Path), default=REPO_ROOT / "models",
              show_default=True, help="Folder holding glm_v1.yaml and rglm_v1.yaml.")
@seed_option
@device_option
@set_option
def demo(session: int, out: Path, specs: Path, seed: int, device: str,
         overrides: Sequence[str]) -> None:
    """Fit the GLM and the R-GLM to a bundled V1 session and compare them on held-out trials."""
    from neurorec.datasets import load
    from neurorec.outputs import atomic_dir
    from neurorec.pipeline import fit_and_evaluate
    from neurorec.report import html
    from neurorec.report.fit_outputs import write_fit_outputs
    from neurorec.spec import load_model_spec

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
    with atomic_dir(out, overwrite=True) as tmp:
        for spec in loaded:
            click.echo(f"fitting {spec.name} ...")
            start = time.perf_counter()
            result = fit_and_evaluate(spec, recording, seed=seed, device=device)
            write_fit_outputs(result, tmp / spec.name)
            m = result.metrics
            rows.append((spec.name, spec.kind, m["bits_per_spike"], m["log_likelihood"],
                         time.perf_counter() - start))
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
@seed_option
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
def export_nwb(source: str, out: Path, seed: int, overwrite: bool) -> None:
    """Write a bundled dataset, or samples from a fitted model (a `fit` output dir), to NWB.

    A fit directory is simulated: the fitted model generates one trial for every held-out
    trial's condition, with the seed given.
    """
    from neurorec.data.nwb import write_nwb
    from neurorec.errors import OutputError

    if out.exists() and not overwrite:
        raise OutputError(f"{out}: file exists (pass --overwrite to replace it)")
    if Path(source).is_dir():
        from neurorec.simulate import simulate_fit_dir

        recording = simulate_fit_dir(Path(source), seed=seed)
    else:
        from neurorec.datasets import load

        recording = load(source)
    write_nwb(recording, out)
    click.echo(f"{out}: {recording.n_units} units, {len(recording.trials)} trials, "
               f"{sum(len(s) for s in recording.spike_times)} spikes")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line each and exit code 2."""
    try:
        cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except NeurorecError as err:
        for line in err.lines:
            click.echo(line, err=True)
        return EXIT_USER_ERROR
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
