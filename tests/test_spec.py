"""YAML specs: every shipped file validates; units; one exact line per problem through
``load_spec`` and ``neurorec validate``; ``--set`` overrides; the resolved spec round-trips."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from neurorec.cli import main
from neurorec.core.errors import SpecError
from neurorec.families.glm.spec import GLMSpec
from neurorec.spec import (
    MODEL_KINDS,
    STIMULUS_KINDS,
    DriftingGratingsSpec,
    dump_spec,
    load_spec,
)
from neurorec.spec.units import parse_quantity

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted([*REPO.glob("models/**/*.yaml"), *REPO.glob("stimuli/**/*.yaml")])
KNOWN = ", ".join(sorted({*MODEL_KINDS, *STIMULUS_KINDS}))


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def validate_cli(capsys, *args: str) -> tuple[int, str, list[str]]:
    """Exit code, stdout and stderr lines of ``neurorec validate ARGS``."""
    capsys.readouterr()
    code = main(["validate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


# ---------------------------------------------------------------------- shipped specs
def test_specs_are_shipped():
    assert len(list(REPO.glob("models/*.yaml"))) >= 1
    assert len(list(REPO.glob("stimuli/*.yaml"))) >= 1


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_shipped_spec_validates(path, capsys):
    spec = load_spec(path)
    # a model folder holds model specs, a stimulus folder protocols
    assert spec.kind in (MODEL_KINDS if "models" in path.parts else STIMULUS_KINDS)
    code, out, err = validate_cli(capsys, path)
    assert (code, err) == (0, [])
    assert out == f"{path}: ok ({spec.kind})\n"


# ---------------------------------------------------------------------- units
@pytest.mark.parametrize(("text", "seconds"), [
    ("100 ms", 0.1), ("100ms", 0.1), ("0.1 s", 0.1), (0.1, 0.1), ("0.1", 0.1), (2, 2.0),
    ("250 us", 250e-6), ("0.1 min", 6.0), ("1e-2 s", 0.01),
])
def test_durations(text, seconds):
    assert parse_quantity(text, "time") == pytest.approx(seconds, rel=1e-15)
    assert GLMSpec(data={"bin_size": text}).data.bin_size == pytest.approx(seconds, rel=1e-15)


def test_frequency_and_angles():
    assert parse_quantity("2 kHz", "frequency") == 2000.0
    assert parse_quantity("40 Hz", "frequency") == 40.0
    assert parse_quantity(f"{math.pi} rad", "angle") == pytest.approx(180.0, rel=1e-15)
    spec = DriftingGratingsSpec(directions=["90 deg", "0.5 rad"],
                                timing={"frame_rate": "2 kHz", "duration": "500 ms"})
    assert spec.timing.frame_rate == 2000.0
    assert spec.timing.duration == pytest.approx(0.5, rel=1e-15)
    assert spec.directions == pytest.approx((90.0, 0.5 * 180.0 / math.pi), rel=1e-15)


def test_unit_of_another_dimension_is_rejected_by_name():
    with pytest.raises(ValueError, match=r"'Hz' is a frequency, expected a time in s, ms"):
        parse_quantity("10 Hz", "time")
    with pytest.raises(ValueError, match=r"'ms' is a time, expected a frequency in Hz, kHz"):
        parse_quantity("10 ms", "frequency")


@pytest.mark.parametrize("bad", ["banana", "10 parsecs", "1..2 s", "", "ms", True, [1, 2]])
def test_garbage_quantities_are_rejected(bad):
    with pytest.raises(ValueError, match=r"time"):
        parse_quantity(bad, "time")


def test_duration_in_hertz_through_the_loader(tmp_path, capsys):
    path = write(tmp_path, "kind: glm\ndata:\n  bin_size: 10 Hz\n")
    line = (f"{path}: data.bin_size: 'Hz' is a frequency, expected a time in s, ms, us, min "
            "(line 3)")
    with pytest.raises(SpecError, match=re.escape(line)):
        load_spec(path)
    assert validate_cli(capsys, path) == (2, "", [line])


# ---------------------------------------------------------------------- one line per problem
# (file text, the exact stderr line with PATH standing for the file)
BAD_SPECS = {
    "unknown_nested_key": ("kind: glm\nfit:\n  max_itr: 5\n",
                           "PATH: fit.max_itr: unknown key (line 3)"),
    "wrong_type": ("kind: glm\nfit:\n  max_iter: many\n",
                   "PATH: fit.max_iter: Input should be a valid integer, unable to parse string "
                   "as an integer (got 'many') (line 3)"),
    "missing_required": ("kind: drifting_gratings\ntiming:\n  duration: 1 s\n",
                         "PATH: directions: required field is missing"),
    "out_of_range": ("kind: glm\ndata:\n  test_fraction: 0.95\n",
                     "PATH: data.test_fraction: Input should be less than or equal to 0.9 "
                     "(got 0.95) (line 3)"),
    "nan": ("kind: glm\npenalty:\n  l2: .nan\n",
            "PATH: penalty.l2: must be a finite number, got nan (line 3)"),
    "inf": ("kind: glm\nfit:\n  tol: .inf\n",
            "PATH: fit.tol: must be a finite number, got inf (line 3)"),
    "unknown_kind": ("kind: lstm\n",
                     f"PATH: kind: unknown kind 'lstm' (known: {KNOWN})"),
    "no_kind": ("name: x\n",
                f"PATH: kind: required field is missing (known: {KNOWN})"),
    "yaml_syntax": ("kind: glm\nfit:\n  max_iter: [1, 2\n",
                    "PATH: yaml: line 4, column 1: expected ',' or ']', but got '<stream end>'"),
    "bad_indent": ("kind: glm\nfit:\n  max_iter: 5\n tol: 1\n",
                   "PATH: yaml: line 4, column 2: expected <block end>, but found '<block "
                   "mapping start>'"),
    "empty": ("", "PATH: (top): expected a mapping with a 'kind' key, got an empty file"),
    "top_level_list": ("- kind: glm\n",
                       "PATH: (top): expected a mapping with a 'kind' key, got a list"),
    "top_level_scalar": ("glm\n", "PATH: (top): expected a mapping with a 'kind' key, got a str"),
    "link_mismatch": ("kind: glm\nobservation: bernoulli\nlink: exp\n",
                      "PATH: (top): link: 'exp' does not suit observation 'bernoulli' "
                      "(use logistic)"),
    "window_order": ("kind: glm\ndata:\n  window: [1 s, 500 ms]\n",
                     "PATH: data: window: stop must be after start (line 2)"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_gives_one_exact_line(case, tmp_path, capsys):
    text, template = BAD_SPECS[case]
    path = write(tmp_path, text)
    line = template.replace("PATH", str(path))
    with pytest.raises(SpecError, match=re.escape(line)) as info:
        load_spec(path)
    assert info.value.lines == [line]
    code, out, err = validate_cli(capsys, path)
    assert (code, out, err) == (2, "", [line])
    assert "Traceback" not in line


def test_yaml_error_names_the_line(tmp_path):
    path = write(tmp_path, "kind: glm\nname: ok\nfit: {max_iter: 3\n")
    with pytest.raises(SpecError, match=r": yaml: line \d+, column \d+: "):
        load_spec(path)


def test_missing_file(tmp_path, capsys):
    path = tmp_path / "absent.yaml"
    with pytest.raises(SpecError, match=re.escape(f"{path}: file not found")):
        load_spec(path)
    assert validate_cli(capsys, path) == (2, "", [f"{path}: file not found"])


def test_several_problems_one_line_each(tmp_path, capsys):
    path = write(tmp_path, "kind: glm\nfit:\n  max_iter: 0\n  bogus: 1\n"
                           "data:\n  bin_size: 10 Hz\n")
    expected = {
        f"{path}: fit.max_iter: Input should be greater than or equal to 1 (got 0) (line 3)",
        f"{path}: fit.bogus: unknown key (line 4)",
        f"{path}: data.bin_size: 'Hz' is a frequency, expected a time in s, ms, us, min "
        "(line 6)",
    }
    with pytest.raises(SpecError, match=r"fit\.bogus: unknown key") as info:
        load_spec(path)
    assert sorted(info.value.lines) == sorted(expected)
    code, out, err = validate_cli(capsys, path)
    assert (code, out) == (2, "")
    assert sorted(err) == sorted(expected)


def test_validate_reports_every_file(tmp_path, capsys):
    good = REPO / "models" / "glm_v1.yaml"
    bad = write(tmp_path, "kind: glm\nfit:\n  max_itr: 5\n")
    code, out, err = validate_cli(capsys, good, bad)
    assert code == 2
    assert out == f"{good}: ok (glm)\n"
    assert err == [f"{bad}: fit.max_itr: unknown key (line 3)"]


def test_valid_file_exit_0(tmp_path, capsys):
    path = write(tmp_path, "kind: rglm\nrecurrent:\n  dim: 3\n")
    assert load_spec(path).recurrent.dim == 3
    assert validate_cli(capsys, path) == (0, f"{path}: ok (rglm)\n", [])


# ---------------------------------------------------------------------- --set overrides
GLM_V1 = REPO / "models" / "glm_v1.yaml"


def test_override_nested_field():
    spec = load_spec(GLM_V1, ["fit.max_iter=5", "history.duration=20 ms"])
    assert spec.fit.max_iter == 5
    assert spec.history.duration == pytest.approx(0.02, rel=1e-15)
    # everything else as in the file
    assert spec.model_copy(update={"fit": load_spec(GLM_V1).fit,
                                   "history": load_spec(GLM_V1).history}) == load_spec(GLM_V1)


def test_override_is_validated(capsys):
    line = (f"{GLM_V1}: fit.max_iter: Input should be greater than or equal to 1 (got -1) "
            "(from --set)")
    with pytest.raises(SpecError, match=re.escape(line)):
        load_spec(GLM_V1, ["fit.max_iter=-1"])
    assert validate_cli(capsys, GLM_V1, "--set", "fit.max_iter=-1") == (2, "", [line])
    assert validate_cli(capsys, GLM_V1, "--set", "fit.max_iter=5") == (
        0, f"{GLM_V1}: ok (glm)\n", [])


@pytest.mark.parametrize("item", ["foo", "=3", "fit..max_iter=3", ".x=1"])
def test_malformed_override(item, capsys):
    line = f"--set {item}: expected field.path=value"
    with pytest.raises(SpecError, match=re.escape(line)):
        load_spec(GLM_V1, [item])
    assert validate_cli(capsys, GLM_V1, "--set", item) == (2, "", [line])


def test_override_value_must_be_yaml(capsys):
    line = "--set name=[unclosed: cannot read the value as YAML"
    assert validate_cli(capsys, GLM_V1, "--set", "name=[unclosed") == (2, "", [line])


def test_override_through_a_scalar_is_refused():
    with pytest.raises(SpecError, match=r"^--set fit\.max_iter\.x=1: fit\.max_iter is not a "
                                        r"mapping$"):
        load_spec(GLM_V1, ["fit.max_iter.x=1"])


def test_override_creates_intermediate_mapping(tmp_path):
    path = write(tmp_path, "kind: rglm\n")
    spec = load_spec(path, ["recurrent.dim=3", "fit.tol=1e-6"])
    assert spec.recurrent.dim == 3
    assert spec.fit.tol == 1e-6
    # a created mapping with an unknown key is reported as coming from --set
    with pytest.raises(SpecError, match=re.escape(f"{path}: nosuch: unknown key (from --set)")):
        load_spec(path, ["nosuch.deeper=1"])


def test_override_values_are_yaml():
    spec = load_spec(GLM_V1, ["data.conditions=[direction]", "stimulus.enabled=false",
                              "penalty.l2=1e-3", "data.window=[0 s, 500 ms]"])
    assert spec.data.conditions == ("direction",)
    assert spec.stimulus.enabled is False
    assert spec.penalty.l2 == 1e-3
    assert spec.data.window == pytest.approx((0.0, 0.5), rel=1e-15)


# ---------------------------------------------------------------------- round trip
@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_resolved_spec_round_trips(path, tmp_path):
    spec = load_spec(path, ["name=renamed"])
    again = load_spec(write(tmp_path, dump_spec(spec), "resolved.yaml"))
    assert again == spec
    assert type(again) is type(spec)
    assert again.name == "renamed"
