"""``shapekit annotate`` as a user runs it, in subprocesses, on a copy of a small unannotated
project (``tests/annotate_fixtures/project``: the package ``mypkg`` and its own tests):

    pytest --shapekit-infer=mypkg        observe the tests
    shapekit annotate mypkg --write      write the annotations (the diff pinned exactly)
    shapekit annotate mypkg --write      again: nothing changes
    pytest --shapekit-packages=mypkg     the same tests pass with the annotations checked
    (a shape bug put in)                 caught, with the inferred dim names in the message
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent / "annotate_fixtures" / "project"
TIMEOUT = 240


def _run(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           **extra}
    env.pop("SHAPEKIT_CHECKS", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def observed(tmp_path_factory) -> Path:
    """A copy of the project after ``pytest --shapekit-infer=mypkg`` ran in it."""
    root = tmp_path_factory.mktemp("annotate") / "project"
    shutil.copytree(PROJECT, root, ignore=shutil.ignore_patterns("__pycache__", ".shapekit"))
    proc = _run(root, "-m", "pytest", "--shapekit-infer=mypkg")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "shapekit: recording tensor shapes in mypkg (for shapekit annotate)" in proc.stdout
    assert ("shapekit: observed 22 calls of 8 functions in mypkg; saved to "
            ".shapekit/observations.json; next: shapekit annotate mypkg") in proc.stdout
    assert (root / ".shapekit" / "observations.json").is_file()
    assert (root / ".shapekit" / ".gitignore").read_text().endswith("\n*\n")
    return root


# What `shapekit annotate mypkg` prints for the project's tests, reviewed by hand.
EXPECTED_DIFF = (PROJECT.parent / "expected.diff").read_text()


def _own_copy(observed: Path, tmp_path: Path) -> Path:
    """A copy of the observed project to change, its observations pointing into the copy."""
    root = tmp_path / "project"
    shutil.copytree(observed, root)
    obs = root / ".shapekit" / "observations.json"
    obs.write_text(obs.read_text().replace(json.dumps(str(observed))[1:-1],
                                           json.dumps(str(root))[1:-1]))
    return root


def test_the_diff_then_write_then_idempotent_then_checked_then_a_bug_caught(observed, tmp_path):
    observed = _own_copy(observed, tmp_path)
    before = {p: p.read_text() for p in (observed / "mypkg").glob("*.py")}
    proc = _run(observed, "-m", "shapekit", "annotate", "mypkg")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == EXPECTED_DIFF
    assert proc.stderr == "shapekit annotate: 6 functions to annotate; write them with --write\n"
    assert {p: p.read_text() for p in before} == before  # a diff only: nothing written

    proc = _run(observed, "-m", "shapekit", "annotate", "mypkg", "--write")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == EXPECTED_DIFF
    assert proc.stderr == "shapekit annotate: annotated 6 functions in 2 files\n"
    written = {p: p.read_text() for p in before}
    assert "# any leading axes ride along" in written[observed / "mypkg" / "layers.py"]

    again = _run(observed, "-m", "shapekit", "annotate", "mypkg", "--write")
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert "nothing to change" in again.stderr
    assert {p: p.read_text() for p in before} == written

    checked = _run(observed, "-m", "pytest", "--shapekit-packages=mypkg")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "shapekit: runtime checks on for mypkg" in checked.stdout
    assert "4 passed" in checked.stdout

    # Observed again with the checks on: both hooks at once, and the annotations now in the
    # source agree with every call.
    both = _run(observed, "-m", "pytest", "-q", "--shapekit-infer=mypkg",
                "--shapekit-packages=mypkg")
    assert both.returncode == 0, both.stdout + both.stderr
    after = _run(observed, "-m", "shapekit", "annotate", "mypkg")
    assert after.returncode == 0 and after.stdout == ""
    assert after.stderr == ("shapekit annotate: nothing to change: every observed function that "
                            "handles tensors is annotated\n")

    # The bug: the default mask loses its batch axis. Torch fails far away with its own words;
    # the annotations stop it at the call, naming batch and time.
    layers = observed / "mypkg" / "layers.py"
    good = "mask = torch.ones_like(ids, dtype=torch.bool)\n"
    assert good in written[layers]
    layers.write_text(written[layers].replace(good, good.replace(")\n", ")[0]\n")))
    plain = _run(observed, "-m", "pytest", "-q")
    assert plain.returncode == 1 and "RuntimeError" in plain.stdout
    caught = _run(observed, "-m", "pytest", "-q", "--shapekit-packages=mypkg")
    assert caught.returncode == 1
    assert ("shapekit.ShapeError: masked_mean() expected mask: (4 = batch, 6 = time), got (6,): "
            "1 axis, expected 2: the batch axis is missing") in caught.stdout
    assert "bound so far: batch=4 time=6 (from x)" in caught.stdout


def test_the_report_gives_the_evidence(observed: Path):
    proc = _run(observed, "-m", "shapekit", "annotate", "mypkg", "--report",
                "--observations", str(observed / ".shapekit" / "observations.json"))
    assert proc.returncode == 0, proc.stderr
    report = proc.stdout
    assert ("mypkg.layers:Projection.forward  (6 calls, 6 distinct)\n"
            '  x: Float[Tensor, "batch *time {self.fan_in}"]  [float32]\n'
            '  -> Float[Tensor, "batch *time {self.fan_out}"]  [float32]\n'
            "    batch           x axis 0, return axis 0: 3, 2, 7, 4 (varied between calls)\n"
            "    *time           x axes 1.., return axes 1..: (), (5,), (7,), (6,) (the number of "
            "axes varied between calls)\n"
            "    {self.fan_in}   x axis -1: 6, 8 (= self.fan_in in every call)\n"
            "    {self.fan_out}  return axis -1: 4, 3, 8 (= self.fan_out in every call)\n"
            ) in report
    assert ("    8      x axis 2, return axis 1: 8 (the same in every call, nothing equals it)"
            in report)
    assert ("    dim    return[0] axis 1, return[1] axis 2: 8 (= __init__ argument dim in every "
            "call)") in report
    assert "    size  return axis 0, return axis 1: 4, 6 (= argument size in every call)" in report


def test_no_observations_is_one_line_naming_the_fix(tmp_path: Path):
    proc = _run(tmp_path, "-m", "shapekit", "annotate", "mypkg")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        "shapekit annotate: no observations at .shapekit/observations.json; expected the file "
        "that 'pytest --shapekit-infer=mypkg' writes in the directory it runs in; fix: run "
        "pytest --shapekit-infer=mypkg here first, or pass --observations PATH\n")


def test_a_package_that_was_not_observed(observed: Path):
    proc = _run(observed, "-m", "shapekit", "annotate", "otherpkg")
    assert proc.returncode == 2
    assert proc.stderr == (
        "shapekit annotate: no calls into 'otherpkg' were observed (.shapekit/observations.json "
        "holds mypkg); expected calls recorded by pytest --shapekit-infer=otherpkg; fix: run "
        "pytest --shapekit-infer=otherpkg (tests that call into it)\n")


def test_a_bad_package_name_and_a_foreign_file(tmp_path: Path):
    proc = _run(tmp_path, "-m", "shapekit", "annotate", "my-pkg")
    assert proc.returncode == 2
    assert proc.stderr.startswith("shapekit annotate: 'my-pkg' is not a package name;")
    (tmp_path / "obs.json").write_text('{"hello": 1}')
    proc = _run(tmp_path, "-m", "shapekit", "annotate", "mypkg", "--observations", "obs.json")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("shapekit annotate: obs.json cannot be read as observations")
    assert "fix: delete it and run pytest --shapekit-infer=mypkg again" in proc.stderr


def test_help_and_a_misspelt_infer_package(tmp_path: Path):
    proc = _run(tmp_path, "-m", "shapekit", "annotate", "--help")
    assert proc.returncode == 0
    for text in ("usage: shapekit annotate [-h] [--write] [--report]", "--observations PATH",
                 "pytest --shapekit-infer=mypkg && shapekit annotate mypkg --write"):
        assert text in proc.stdout
    top = _run(tmp_path, "-m", "shapekit", "--help")
    assert "annotate" in top.stdout and "write jaxtyping annotations inferred from runs" in (
        top.stdout)
    shutil.copytree(PROJECT, tmp_path / "p", ignore=shutil.ignore_patterns("__pycache__"))
    proc = _run(tmp_path / "p", "-m", "pytest", "-q", "--shapekit-infer=mypgk")
    assert proc.returncode == 4
    assert "--shapekit-infer names 'mypgk', which Python cannot import here" in proc.stderr
    proc = _run(tmp_path / "p", "-m", "pytest", "-q", "--shapekit-infer=my-pkg")
    assert proc.returncode == 4
    assert "--shapekit-infer='my-pkg': expected a comma-separated list" in proc.stderr
    assert not (tmp_path / "p" / ".shapekit").exists()  # a typo saves nothing
    proc = _run(tmp_path / "p", "-m", "pytest", "-q", "--shapekit-infer=mypkg", "-k", "nomatch")
    assert ("shapekit: no function of mypkg was called by the tests that ran, so no observations "
            "were saved; expected tests that call into it; fix: run the tests that exercise "
            "mypkg") in proc.stdout
    # Loaded by a conftest, the plugin comes too late to observe: an error, not an empty record.
    (tmp_path / "p" / "conftest.py").write_text('pytest_plugins = ["shapekit.pytest.plugin"]\n')
    proc = _run(tmp_path / "p", "-m", "pytest", "-q", "--shapekit-infer=mypkg",
                PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    assert proc.returncode == 4
    assert ("ERROR: --shapekit-infer needs the plugin loaded before conftest.py files, got it "
            "loaded later") in proc.stderr
    assert not (tmp_path / "p" / ".shapekit").exists()
