"""Run every benchmark in ``benchmarks/`` and write ``benchmarks/RESULTS.md``.

Each ``benchmarks/*.py`` script (except this one and files starting with ``_``) runs as its own
process, one after another (the machine is shared; benchmarks must not time each other),
with ``--quick`` when given and the script accepts it, and ``--device`` when given and the
script accepts it. Every printed line that states a ratio against a peer, a fraction of the
measured matmul peak, or a fitted scaling exponent is collected; ``RESULTS.md`` gets the date,
the machine (CPU model, cores, torch threads, GPU if any), the command, and per benchmark its
command, wall time, exit status, those lines, and the tail of its output.

Usage::

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--skip NAME ...]
                                 [--device cpu] [--timeout 1800] [--out benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# lines worth quoting: ratios against peers, fractions of peak, scaling exponents
KEY_LINE = re.compile(r"ratio|fraction of|exponent|speed-?up|\bpeak\b", re.IGNORECASE)
TAIL_LINES = 40


@dataclass
class Outcome:
    name: str
    command: list[str]
    seconds: float = 0.0
    returncode: int | None = None
    output: str = ""
    key_lines: list[str] = field(default_factory=list)
    note: str = ""


def discover(only: list[str] | None, skip: list[str]) -> list[Path]:
    scripts = sorted(p for p in HERE.glob("*.py")
                     if p.name != Path(__file__).name and not p.name.startswith("_"))
    if only:  # in the order given: under a time limit (a GPU lease) the first ones matter most
        scripts = sorted((p for p in scripts if p.stem in only), key=lambda p: only.index(p.stem))
    return [p for p in scripts if p.stem not in skip]


def accepts(script: Path, flag: str) -> bool:
    """Whether the script declares ``flag`` (read from its source: no import, no run)."""
    return f'"{flag}"' in script.read_text() or f"'{flag}'" in script.read_text()


def machine() -> dict[str, str]:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = (", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
           if torch.cuda.is_available() else "none (torch.cuda.is_available() is False)")
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {"cpu": cpu, "cores": str(os.cpu_count()),
            "torch threads (default)": str(torch.get_num_threads()),
            "gpu": gpu, "load average at start (1, 5, 15 min)": load,
            "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def run_one(script: Path, quick: bool, device: str | None, timeout: float) -> Outcome:
    cmd = [sys.executable, "-u", str(script.relative_to(REPO))]
    note = []
    if quick:
        if accepts(script, "--quick"):
            cmd.append("--quick")
        else:
            note.append("no --quick option: ran with its defaults")
    if device:
        if accepts(script, "--device"):
            cmd += ["--device", device]
        else:
            note.append(f"no --device option: ran on its default device, not {device}")
    out = Outcome(script.stem, cmd, note="; ".join(note))
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        out.returncode, out.output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        out.output = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) \
            else (err.stdout or "")
        out.note = "; ".join(filter(None, [out.note, f"killed after the {timeout:.0f} s timeout"]))
    out.seconds = time.perf_counter() - start
    out.key_lines = [line.strip() for line in out.output.splitlines()
                     if KEY_LINE.search(line) and not line.lstrip().startswith(("usage", "-"))]
    return out


def write_results(path: Path, outcomes: list[Outcome], info: dict[str, str], command: str,
                  started: dt.datetime, quick: bool) -> None:
    lines = [
        "# Benchmark results", "",
        "Written by `benchmarks/run_all.py`; the latest run replaces this file."
        + (" Quick settings (`--quick`): small sizes, few repeats; ratios are indicative."
           if quick else ""),
        "",
        f"- date: {started:%Y-%m-%d %H:%M} (local time)",
        f"- command: `{command}`",
        *[f"- {k}: {v}" for k, v in info.items()],
        "- the machine is shared (2 cores, several engineers): absolute times vary with load; "
        "ratios are measured within one process, both sides under the same load.",
        "", "## Summary", "",
        "| benchmark | status | wall (s) | ratios, fractions of peak, exponents |",
        "|---|---|---:|---|",
    ]
    for o in outcomes:
        status = "ok" if o.returncode == 0 else (
            "timeout" if o.returncode is None else f"exit {o.returncode}")
        quoted = "<br>".join(line.replace("|", "\\|") for line in o.key_lines) or "—"
        lines.append(f"| `{o.name}` | {status} | {o.seconds:.0f} | {quoted} |")
    for o in outcomes:
        lines += ["", f"## `{o.name}`", "", f"- command: `{' '.join(o.command[1:])}`",
                  f"- wall time: {o.seconds:.1f} s; exit status: {o.returncode}"]
        if o.note:
            lines.append(f"- note: {o.note}")
        tail = o.output.rstrip().splitlines()[-TAIL_LINES:]
        lines += ["", f"Last {len(tail)} lines of its output:", "", "```", *tail, "```"]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="run only these (file stems), in this order")
    ap.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="leave these out")
    ap.add_argument("--device", default=None, help="pass --device to benchmarks that take it")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per benchmark (default 900 with --quick, 7200 without)")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    args = ap.parse_args(argv)
    timeout = args.timeout or (900.0 if args.quick else 7200.0)
    started = dt.datetime.now()
    command = " ".join(["python", "benchmarks/run_all.py", *(argv or sys.argv[1:])])
    info = machine()
    scripts = discover(args.only, args.skip)
    print(f"{len(scripts)} benchmarks: {', '.join(p.stem for p in scripts)}")
    outcomes = []
    for script in scripts:
        print(f"\n=== {script.stem}", flush=True)
        o = run_one(script, args.quick, args.device, timeout)
        outcomes.append(o)
        print(f"{' '.join(o.command[1:])}: {o.seconds:.1f} s, exit {o.returncode}"
              + (f" ({o.note})" if o.note else ""))
        for line in o.key_lines:
            print(f"  {line}")
        if o.returncode != 0:
            print("\n".join("  | " + t for t in o.output.rstrip().splitlines()[-10:]))
        write_results(args.out, outcomes, info, command, started, args.quick)  # as we go
    print(f"\nwrote {args.out}")
    return 0 if all(o.returncode == 0 for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
