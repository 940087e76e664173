"""Property-based tests of the spec schema: randomly mutated versions of every YAML spec in
``models/`` and ``stimuli/`` (found at test time) are answered by ``neurorec validate`` and by
every command that takes a spec with exit code 2 and one line ``PATH: field.path: message``
naming the mutated field, never a traceback; unmutated specs always pass.

Mutation classes: deleted keys, wrong types, zero/negative durations, NaN/Inf, huge sizes,
unknown keys, broken YAML; and the same mutations given as ``--set`` overrides. The number of
mutated specs tried and how each class was answered is printed at the end of the module.
"""

from __future__ import annotations

import collections
import copy
import math
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurorec.cli import cli, main

REPO = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted([*REPO.glob("models/**/*.yaml"), *REPO.glob("stimuli/**/*.yaml")])
SPECS = {p: yaml.safe_load(p.read_text()) for p in SPEC_FILES}
EXAMPLES = 50
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
# time-valued leaves: a number with a time unit
TIME = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*(s|ms|us|min)\s*$")
# fields that are durations by name and must be positive
POSITIVE_DURATIONS = re.compile(r"^(duration|bin_size|dt|tau.*|.*_duration)$")

# (command, class, answer) -> count; printed when the module ends
COUNTS: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    lines = ["", "mutated specs tried (command, class: answer = count):"]
    for (cmd, cls, answer), n in sorted(COUNTS.items()):
        lines.append(f"  {cmd:<10} {cls:<22} {answer:<28} {n}")
    print("\n".join(lines), file=sys.__stderr__)


# ---------------------------------------------------------------------- helpers
def leaves(node, path=()):
    """(path, value) of every scalar in a parsed spec, list items included."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, (*path, str(i)))
    else:
        yield path, node


def keys(node, path=()):
    """Every mapping key path."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, str(k))
            yield from keys(v, (*path, str(k)))


def mappings(node, path=()):
    if isinstance(node, dict):
        yield path
        for k, v in node.items():
            yield from mappings(v, (*path, str(k)))


def get_parent(raw, path):
    node = raw
    for p in path[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    return node


def set_at(raw, path, value):
    parent = get_parent(raw, path)
    if isinstance(parent, list):
        parent[int(path[-1])] = value
    else:
        parent[path[-1]] = value


def is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def related(field: str, path: tuple[str, ...]) -> bool:
    """The reported field is the mutated one, a section holding it, or a part of it."""
    if field in ("(top)", "kind"):
        return True
    f = tuple(field.split("."))
    n = min(len(f), len(path))
    return f[:n] == path[:n]


def cli_run(capsys, *args) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def assert_error_lines(lines: list[str], where: str) -> list[str]:
    """Every line is ``WHERE: field.path: message``; returns the field paths."""
    assert lines, "exit 2 without a message"
    fields = []
    for line in lines:
        assert "Traceback" not in line
        m = re.fullmatch(re.escape(where) + r": (yaml|\(top\)|[\w\-]+(?:\.[\w\-]+)*): (\S.*)",
                         line)
        assert m, line
        fields.append(m[1])
    return fields


def _line_of(path: Path, key: tuple[str, ...]) -> int:
    """1-based line of ``key`` in the YAML file, found with PyYAML's composer."""
    node = yaml.compose(path.read_text())
    line = node.start_mark.line
    for k in key:
        if isinstance(node, yaml.SequenceNode):
            node = node.value[int(k)]
            line = node.start_mark.line
        else:
            knode, node = next((kn, v) for kn, v in node.value if kn.value == k)
            line = knode.start_mark.line
    return line + 1


def spec_commands() -> dict[str, click.Command]:
    """Commands of the CLI that read a spec (they take ``--set``), found at test time."""
    return {name: c for name, c in cli.commands.items()
            if any(p.name == "overrides" for p in c.params)}


def other_command_argv(name: str, spec: Path, tmp: Path) -> list[str] | None:
    """Arguments for a spec command this module has no template for, or None if unknown."""
    cmd = cli.commands[name]
    argv = [name]
    for p in cmd.params:
        if isinstance(p, click.Argument):
            if "spec" in p.name or "path" in p.name:
                argv.append(str(spec))
            elif p.required:
                return None
        elif p.required:
            fill = {"out": str(tmp / "o"), "data": "v1_gratings:0",
                    "protocol": str(REPO / "stimuli" / "v1_drifting_gratings.yaml"),
                    "task_path": str(next(iter(sorted(REPO.glob("stimuli/task_*.yaml"))),
                                          REPO / "stimuli" / "task.yaml"))}.get(p.name)
            if fill is None:
                return None
            argv += [p.opts[0], fill]
    return argv


def check_all_commands(capsys, path: Path, raw_kind, expected: list[str], cls: str,
                       tmp: Path) -> None:
    """Every command that takes a spec refuses ``path`` (rejected by validate) the same way."""
    is_model = SPECS_KIND_TABLE.get(raw_kind) == "model"
    # fit: same lines for a model spec; a stimulus protocol is refused by kind
    out = tmp / "fit_out"
    code, stdout, err = cli_run(capsys, "fit", path, "--data", "v1_gratings:0", "--out", out,
                                "--quiet")
    assert code == 2 and stdout == "" and not out.exists()
    assert_error_lines(err, str(path))
    if is_model:
        assert err == expected
    COUNTS["fit", cls, "exit 2, one line each"] += 1
    # demo reads glm_v1.yaml from --specs: a mutated model spec under that name
    if is_model:
        specs = tmp / "specs"
        specs.mkdir(exist_ok=True)
        (specs / "glm_v1.yaml").write_text(path.read_text())
        (specs / "rglm_v1.yaml").write_text((REPO / "models" / "rglm_v1.yaml").read_text())
        demo_out = tmp / "demo_out"
        code, stdout, err = cli_run(capsys, "demo", "--specs", specs, "--out", demo_out)
        assert code == 2 and stdout == "" and not demo_out.exists()
        assert err == [line.replace(str(path), str(specs / "glm_v1.yaml"), 1)
                       for line in expected]
        COUNTS["demo", cls, "exit 2, one line each"] += 1
    for name in sorted(set(spec_commands()) - {"validate", "fit", "demo"}):
        argv = other_command_argv(name, path, tmp)
        if argv is None:
            COUNTS[name, cls, "skipped (no template)"] += 1
            continue
        code, _, err = cli_run(capsys, *argv)
        assert code == 2, (name, err)
        assert err and all("Traceback" not in line for line in err)
        COUNTS[name, cls, "exit 2"] += 1


def _kind_table() -> dict[str, str]:
    from neurorec.spec import MODEL_KINDS, STIMULUS_KINDS

    return {**{k: "model" for k in MODEL_KINDS}, **{k: "stimulus" for k in STIMULUS_KINDS}}


SPECS_KIND_TABLE = _kind_table()


def validate_mutant(capsys, raw, cls: str, text: str | None = None):
    """Write the mutant, run ``validate``; returns (tmp dir, path, code, stdout, stderr)."""
    tmp = Path(tempfile.mkdtemp(prefix="mutant-"))
    path = tmp / "spec.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(raw, sort_keys=False))
    code, out, err = cli_run(capsys, "validate", path)
    assert code in (0, 2)
    if code == 0:
        assert err == [] and re.fullmatch(re.escape(str(path)) + r": ok \([\w]+\)\n", out)
        COUNTS["validate", cls, "accepted (valid)"] += 1
    else:
        assert out == ""
        COUNTS["validate", cls, "exit 2, one line each"] += 1
    return tmp, path, code, out, err


# ---------------------------------------------------------------------- shipped specs pass
@pytest.mark.parametrize("path", SPEC_FILES, ids=[str(p.relative_to(REPO)) for p in SPEC_FILES])
def test_unmutated_spec_passes(path, capsys):
    code, out, err = cli_run(capsys, "validate", path)
    assert (code, err) == (0, [])
    assert out.startswith(f"{path}: ok (")
    COUNTS["validate", "unmutated", "accepted (valid)"] += 1


# ---------------------------------------------------------------------- mutation strategies
spec_file = st.sampled_from(SPEC_FILES)


@SETTINGS
@given(spec_file, st.data())
def test_deleted_key(capsys, path, data):
    raw = copy.deepcopy(SPECS[path])
    key = data.draw(st.sampled_from(list(keys(raw))))
    del get_parent(raw, key)[key[-1]]
    tmp, p, code, _, err = validate_mutant(capsys, raw, "deleted key")
    if code == 2:
        fields = assert_error_lines(err, str(p))
        assert len(err) == 1, err
        assert related(fields[0], key), (key, err)
        if fields[0] == ".".join(key):
            assert err[0].split(": ", 2)[2].startswith("required field is missing")
        check_all_commands(capsys, p, raw.get("kind"), err, "deleted key", tmp)


@SETTINGS
@given(spec_file, st.data(), st.sampled_from(["banana", {"a": 1}, [[1]], True]))
def test_wrong_type(capsys, path, data, value):
    raw = copy.deepcopy(SPECS[path])
    numeric = [(k, v) for k, v in leaves(raw) if is_number(v) or
               (isinstance(v, str) and TIME.match(v))]
    key, _ = data.draw(st.sampled_from(numeric))
    if value is True and not is_number(get_parent(raw, key)[int(key[-1])] if isinstance(
            get_parent(raw, key), list) else get_parent(raw, key)[key[-1]]):
        value = "banana"
    set_at(raw, key, value)
    tmp, p, code, _, err = validate_mutant(capsys, raw, "wrong type")
    if value is True and code == 0:
        return  # YAML true is 1 for pydantic's lax int/float: accepted like the number 1
    assert code == 2, f"{'.'.join(key)}={value!r} accepted"
    fields = assert_error_lines(err, str(p))
    assert len(err) == 1 and related(fields[0], key), (key, err)
    check_all_commands(capsys, p, raw.get("kind"), err, "wrong type", tmp)


@SETTINGS
@given(spec_file, st.data(), st.sampled_from(["0 s", "-10 ms", 0, -1.5, "-1 min", "0 ms"]))
def test_nonpositive_duration(capsys, path, data, value):
    raw = copy.deepcopy(SPECS[path])
    durations = [(k, v) for k, v in leaves(raw)
                 if (isinstance(v, str) and TIME.match(v))
                 or (is_number(v) and POSITIVE_DURATIONS.match(k[-1]))]
    if not durations:
        COUNTS["validate", "nonpositive duration", "no duration in file"] += 1
        return
    key, _ = data.draw(st.sampled_from(durations))
    set_at(raw, key, value)
    tmp, p, code, _, err = validate_mutant(capsys, raw, "nonpositive duration")
    named = next((k for k in reversed(key) if not k.isdigit()), "")
    if POSITIVE_DURATIONS.match(named):
        assert code == 2, f"{'.'.join(key)}={value!r} accepted"
    if code == 2:
        fields = assert_error_lines(err, str(p))
        assert len(err) == 1 and related(fields[0], key), (key, err)
        check_all_commands(capsys, p, raw.get("kind"), err, "nonpositive duration", tmp)


@SETTINGS
@given(spec_file, st.data(), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_nan(capsys, path, data, value):
    raw = copy.deepcopy(SPECS[path])
    key, _ = data.draw(st.sampled_from(list(leaves(raw))))
    set_at(raw, key, value)
    tmp, p, code, _, err = validate_mutant(capsys, raw, "NaN/Inf")
    assert code == 2
    assert_error_lines(err, str(p))
    if key == ("kind",):  # the kind is looked up first
        assert len(err) == 1 and err[0].startswith(f"{p}: kind: unknown kind {value} (known: ")
    else:
        assert err == [f"{p}: {'.'.join(key)}: must be a finite number, got {value} "
                       f"(line {_line_of(p, key)})"], err
    check_all_commands(capsys, p, raw.get("kind"), err, "NaN/Inf", tmp)


@SETTINGS
@given(spec_file, st.data(), st.sampled_from([10**12, 2**63, 10**100, 1e300, -(10**12)]))
def test_huge_size(capsys, path, data, value):
    raw = copy.deepcopy(SPECS[path])
    numeric = [k for k, v in leaves(raw) if is_number(v)]
    if not numeric:
        return
    key = data.draw(st.sampled_from(numeric))
    set_at(raw, key, value)
    tmp, p, code, _, err = validate_mutant(capsys, raw, "huge size")
    if code == 2:
        fields = assert_error_lines(err, str(p))
        assert len(err) == 1 and related(fields[0], key), (key, err)
        check_all_commands(capsys, p, raw.get("kind"), err, "huge size", tmp)


@SETTINGS
@given(spec_file, st.data(), st.sampled_from(["zz_unknown", "maxiter", "Kind", "bin-size"]))
def test_unknown_key(capsys, path, data, name):
    raw = copy.deepcopy(SPECS[path])
    where = data.draw(st.sampled_from(list(mappings(raw))))
    node = raw
    for k in where:
        node = node[k]
    node[name] = 1
    tmp, p, code, _, err = validate_mutant(capsys, raw, "unknown key")
    assert code == 2
    assert_error_lines(err, str(p))
    field = ".".join((*where, name))
    assert len(err) == 1 and re.fullmatch(
        re.escape(f"{p}: {field}: unknown key (line ") + r"\d+\)", err[0]), err
    check_all_commands(capsys, p, raw.get("kind"), err, "unknown key", tmp)


BREAKERS = ["zz: [1, 2\n", 'zz: "unterminated\n', "\tzz: 1\n", "zz: {a: 1\n", "- item\n",
            "zz: a: b\n", "  : :\n"]


@SETTINGS
@given(spec_file, st.data(), st.sampled_from(BREAKERS))
def test_broken_yaml(capsys, path, data, breaker):
    lines = path.read_text().splitlines(keepends=True)
    at = data.draw(st.integers(0, len(lines)))
    text = "".join([*lines[:at], breaker, *lines[at:]])
    try:
        yaml.safe_load(text)
        parses = True
    except yaml.YAMLError:
        parses = False
    tmp, p, code, _, err = validate_mutant(capsys, None, "broken YAML", text)
    assert code == 2
    fields = assert_error_lines(err, str(p))
    if not parses:
        assert fields == ["yaml"] and re.match(re.escape(f"{p}: yaml: ") + r"line \d+, column "
                                               r"\d+: \S", err[0]), err
    check_all_commands(capsys, p, SPECS[path].get("kind"), err, "broken YAML", tmp)


# ---------------------------------------------------------------------- the same, via --set
DEMO_SPECS = [REPO / "models" / "glm_v1.yaml", REPO / "models" / "rglm_v1.yaml"]
OVERRIDE_VALUES = [".nan", ".inf", "banana", "{a: 1}", "-1", "0", "1e12", "0 ms", "-5 ms",
                   "[1, 2", "null"]


def _override_paths() -> list[str]:
    paths = set()
    for p in DEMO_SPECS:
        raw = yaml.safe_load(p.read_text())
        paths |= {".".join(k) for k, _ in leaves(raw) if not k[-1].isdigit()}
        paths |= {".".join(k) for k in keys(raw)}
    paths.discard("kind")
    return [*sorted(paths), "fit.nosuch", "nosuch", "recurrent.dim", "data.window"]


@SETTINGS
@given(st.sampled_from(_override_paths()), st.sampled_from(OVERRIDE_VALUES))
def test_bad_override_in_every_command(capsys, field, value):
    item = f"{field}={value}"
    code, _out, err = cli_run(capsys, "validate", *DEMO_SPECS, "--set", item)
    assert code in (0, 2)
    if code == 0:
        COUNTS["validate --set", "override", "accepted (valid)"] += 1
        return
    COUNTS["validate --set", "override", "exit 2, one line each"] += 1
    # which file failed first: demo and fit stop at the first spec they cannot load
    first = [line for line in err if line.startswith(str(DEMO_SPECS[0]))]
    source = DEMO_SPECS[0] if first or err[0].startswith("--set") else DEMO_SPECS[1]
    expected = (first or [line for line in err if line.startswith(str(source))]
                or err[:1])
    for line in err:
        assert "Traceback" not in line
        assert re.fullmatch(r"(--set \S.*|\S+\.yaml: [\w.()]+: \S.*)", line), line
    with tempfile.TemporaryDirectory() as tmp:
        demo_out = Path(tmp) / "demo"
        code, dout, derr = cli_run(capsys, "demo", "--out", demo_out, "--set", item)
        assert (code, dout, derr) == (2, "", expected)
        assert not demo_out.exists()
        COUNTS["demo --set", "override", "exit 2, one line each"] += 1
        fit_out = Path(tmp) / "fit"
        code, _, ferr = cli_run(capsys, "fit", source, "--data", "v1_gratings:0", "--out",
                                fit_out, "--set", item)
        assert (code, ferr) == (2, expected)
        assert not fit_out.exists()
        COUNTS["fit --set", "override", "exit 2, one line each"] += 1


# ---------------------------------------------------------------------- the real entry point
@pytest.mark.parametrize("args", [
    ["validate", "{bad}"],
    ["fit", "{bad}", "--data", "v1_gratings:0", "--out", "{tmp}/o"],
], ids=["validate", "fit"])
def test_subprocess_exit_2_without_traceback(args, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: glm\nfit:\n  max_iter: -3\n  bogus: 1\n")
    argv = [a.format(bad=bad, tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "neurorec.cli", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    if args[0] == "demo":
        assert lines == [f"{REPO / 'models' / 'glm_v1.yaml'}: fit.max_iter: must be a finite "
                         "number, got nan (from --set)"]
    else:
        assert sorted(lines) == sorted([
            f"{bad}: fit.max_iter: Input should be greater than or equal to 1 (got -3) "
            "(line 3)", f"{bad}: fit.bogus: unknown key (line 4)"])
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()
    COUNTS[f"{args[0]} (subprocess)", "mixed", "exit 2, one line each"] += 1


@pytest.mark.parametrize("script, args, want", [
    ("ptb_perplexity", ["--specs", "{tmp}/missing.yaml"], "{tmp}/missing.yaml: file not found"),
    ("ptb_perplexity", ["--specs", "models/lm/irlm.yaml", "--set", "train.lr=-1"],
     "models/lm/irlm.yaml: train.lr: Input should be greater than 0 (got -1) (from --set)"),
    ("ptb_perplexity", ["--dynamic-lrs", "0.1,rms:abc"],
     "--dynamic-lrs: 'rms:abc' is not LR or METHOD:LR[:DECAY] (METHOD sgd or rms)"),
    ("ctrnn_tasks", ["--spec", "{tmp}/missing.yaml"], "{tmp}/missing.yaml: file not found"),
    ("cosmoothing", ["--models", "glm,foo"],
     "--models: unknown ['foo']; choose from "
     "['smoothing', 'gpfa', 'plds', 'glm', 'rglm', 'ctrnn']"),
    ("cosmoothing", ["--v1-sessions", "3-x"],
     "sessions '3-x': expected numbers and ranges like '0-3,7'"),
], ids=["ptb-missing", "ptb-set", "ptb-dynamic-lrs", "ctrnn-missing", "cosmoothing-model",
        "cosmoothing-sessions"])
def test_analysis_scripts_exit_2_in_one_line(script, args, want, tmp_path):
    """The analyses' run.py scripts answer a user mistake as the CLI does: one line, exit 2,
    nothing written, before any training."""
    argv = [a.format(tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, str(REPO / "analyses" / script / "run.py"), "--out",
                           str(tmp_path / "o"), *argv], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [want.format(tmp=tmp_path)]
    assert not (tmp_path / "o").exists()
    COUNTS[script, "script argument", "exit 2, one line each"] += 1
