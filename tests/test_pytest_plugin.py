"""End-to-end tests of the pytest plugin: inner pytest sessions on a user's package (pytester).

The user's package has two shape bugs that plain pytest lets through: ``pred - target`` with a
``(N, 1)`` prediction and ``(N,)`` targets (silently ``(N, N)``; a pitfall the detectors catch), and
a ``Float[Tensor, "batch 3"]`` function given ``(4, 2)`` points (the annotations, checked). The
oracle: plain pytest passes, the options fail each test with the rule, the user's line, the shapes
and the fix; the corrected package passes with the options on.

Inner sessions run in-process (torch is already imported); one runs in a subprocess, as users do.
"""

from __future__ import annotations

import textwrap

# Inner sessions run in this process, and pytester forgets the modules they import afterwards;
# torch's C extension cannot be imported a second time, so load it once, up front. The checkers
# too: a beartype first imported inside an inner session is imported again after it, and the
# next session's jaxtyping then holds the forgotten copy's BeartypeConf (an "invalid beartype
# configuration" error when this file runs before others that use them).
import beartype  # noqa: F401
import jaxtyping  # noqa: F401
import pytest
import torch  # noqa: F401

import shapekit

pytest_plugins = ["pytester"]

BUGGY = {
    "mypkg/__init__.py": "from .geometry import centre\nfrom .losses import mse\n",
    "mypkg/losses.py": '''
        def mse(pred, target):
            """Mean squared error of a Linear(d, 1) output (N, 1) against targets (N,)."""
            return ((pred - target) ** 2).mean()
    ''',
    "mypkg/geometry.py": '''
        from jaxtyping import Float
        from torch import Tensor


        def centre(points: Float[Tensor, "batch 3"]) -> Float[Tensor, "batch 3"]:
            return points - points.mean(0)
    ''',
    "test_mypkg.py": """
        import torch

        from mypkg import centre, mse


        def test_mse():
            pred = torch.zeros(8, 1)  # what a Linear(d, 1) returns
            target = torch.ones(8)
            assert mse(pred, target).item() == 1.0


        def test_centre():
            points = torch.arange(8.0).reshape(4, 2)  # 2-D points where 3-D were meant
            assert centre(points).sum().item() == 0
    """,
}

CORRECT = {
    **BUGGY,
    "mypkg/losses.py": '''
        def mse(pred, target):
            """Mean squared error of a Linear(d, 1) output (N, 1) against targets (N,)."""
            return ((pred.squeeze(-1) - target) ** 2).mean()
    ''',
    "test_mypkg.py": """
        import torch

        from mypkg import centre, mse


        def test_mse():
            assert mse(torch.zeros(8, 1), torch.ones(8)).item() == 1.0


        def test_centre():
            assert centre(torch.arange(12.0).reshape(4, 3)).sum().item() == 0
    """,
}

OPTIONS = ("--shapekit", "--shapekit-packages=mypkg")
HEADER = "shapekit: runtime checks on for mypkg; detectors on"


def write(pytester: pytest.Pytester, files: dict[str, str]) -> None:
    for path, text in files.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip())
    pytester.syspathinsert()  # the package beside the tests, as in a checkout


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # hypothesis's plugin re-imports hypothesis in every in-process session (seconds each).
    quiet = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    return pytester.runpytest_inprocess(*quiet, *args)


def test_plain_pytest_lets_both_bugs_through(pytester):
    write(pytester, BUGGY)
    result = run(pytester)
    result.assert_outcomes(passed=2)
    assert "shapekit:" not in result.stdout.str()  # no header when nothing is on


def test_the_options_fail_both_bugs_with_line_shapes_and_fix(pytester):
    write(pytester, BUGGY)
    result = run(pytester, *OPTIONS)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        HEADER,
        "*_ test_mse _*",
        "test_mypkg.py:9: in test_mse",
        "    assert mse(pred, target).item() == 1.0",
        "mypkg/losses.py:3: in mse",
        "    return ((pred - target) ** 2).mean()",
        "E   shapekit.ShapeError: mypkg/losses.py:3 pred - target expected * got "
        "pred: (8, 1) and target: (8,), broadcast to (8, 8)*",
        "E     fix: make the shapes equal: pred.squeeze(-1) or target.unsqueeze(-1)*",
        "E     docs: https://*/pitfalls/broadcast-n-by-n/",
        "*- shapekit -*",
        "pitfall broadcast-n-by-n: (N,) against (N, 1) in an elementwise op*",
        "*_ test_centre _*",
        "test_mypkg.py:14: in test_centre",
        "    assert centre(points).sum().item() == 0",
        "E   shapekit.ShapeError: centre() expected points: (batch, 3), got (4, 2)",
        "E     bound so far: batch=4",
        "E     fix: give points size 3 along axis 1",
    ])
    out = result.stdout.str()
    for internal in ("site-packages", "beartype/", "jaxtyping/", "shapekit/checking/_shaped.py"):
        assert internal not in out, f"the failure report shows {internal} frames"


def test_torch_shape_errors_are_explained_in_a_short_report(pytester):
    pytester.makepyfile(test_matmul="""
        import torch

        def test_logits():
            h, W2 = torch.randn(32, 200), torch.randn(27, 200)
            logits = h @ W2
    """)
    result = run(pytester, "--shapekit")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "test_matmul.py:5: in test_logits",
        "    logits = h @ W2",
        "E   shapekit.ShapeError: test_matmul.py:5 h @ W2 expected h's last axis == W2's "
        "first axis, got h: (32, 200) float32, W2: (27, 200) float32*",
        "E     fix: *h @ W2.T*",
    ])
    out = result.stdout.str()
    assert "mat1 and mat2 shapes cannot be multiplied" not in out  # torch's error: not chained in
    assert "- shapekit -" not in out  # not a pitfall: no rule section


def test_the_correct_package_passes_with_the_options(pytester):
    write(pytester, CORRECT)
    result = run(pytester, *OPTIONS)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([HEADER])


def test_packages_are_checked_even_when_checks_are_off(pytester):
    write(pytester, BUGGY)
    previous = shapekit.set_checks("off")  # the process-wide mode, as SHAPEKIT_CHECKS=off sets it
    try:
        result = run(pytester, "--shapekit-packages=mypkg", "-k", "centre")
        assert shapekit.get_checks() == "off"  # put back when the session ended
    finally:
        shapekit.set_checks(previous)
    result.assert_outcomes(failed=1, deselected=1)


def test_packages_a_conftest_imports_are_checked(pytester):
    write(pytester, BUGGY)
    pytester.makeconftest("""
        import pytest
        from mypkg import centre

        @pytest.fixture
        def centred():
            return centre
    """)
    pytester.makepyfile(test_fixture="""
        import torch

        def test_fixture(centred):
            centred(torch.ones(4, 2))
    """)
    result = run(pytester, "--shapekit-packages=mypkg", "test_fixture.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["E   shapekit.ShapeError: centre() expected points: *"])


def test_packages_imported_before_the_plugin_are_instrumented_in_place(pytester):
    write(pytester, BUGGY)
    pytester.makepyfile(early_plugin="import mypkg.geometry\n")  # loaded with -p, before us
    result = run(pytester, "-p", "early_plugin", "--shapekit-packages=mypkg", "-k", "centre")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["E   shapekit.ShapeError: centre() expected points: *"])


def test_unknown_and_malformed_package_names_are_usage_errors(pytester):
    write(pytester, CORRECT)
    result = run(pytester, "--shapekit-packages=mypkg,mypgk")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --shapekit-packages names 'mypgk', which Python cannot import here; fix: check the "
        "spelling*"
    ])
    result = run(pytester, "--shapekit-packages=my-pkg")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: --shapekit-packages='my-pkg': expected a comma-separated list of importable "
        "package names, got 'my-pkg'; fix: --shapekit-packages=mypkg*"
    ])


def test_packages_need_the_plugin_loaded_before_conftests(pytester, monkeypatch):
    write(pytester, CORRECT)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest('pytest_plugins = ["shapekit.pytest.plugin"]\n')
    result = run(pytester, "--shapekit-packages=mypkg")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --shapekit-packages needs the plugin loaded before "
                                 "conftest.py files, *; fix: * -p shapekit *"])
    pytester.makeconftest("")
    run(pytester, "-p", "shapekit", "--shapekit-packages=mypkg").assert_outcomes(passed=2)


def test_header_says_what_is_on(pytester):
    write(pytester, CORRECT)
    run(pytester, "--shapekit").stdout.fnmatch_lines(["shapekit: detectors on"])
    run(pytester, "--shapekit-packages=mypkg").stdout.fnmatch_lines(
        ["shapekit: runtime checks on for mypkg; detectors off"]
    )


def test_no_shapekit_turns_everything_off(pytester):
    write(pytester, BUGGY)
    result = run(pytester, "-p", "no:shapekit")
    result.assert_outcomes(passed=2)
    result = run(pytester, "-p", "no:shapekit", *OPTIONS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unrecognized arguments: --shapekit*"])


MARKED = """
    import pytest
    import torch

    def broadcast_bug():
        pred, target = torch.zeros(8, 1), torch.ones(8)
        return ((pred - target) ** 2).mean()

    @pytest.mark.shapekit
    def test_opted_in():
        broadcast_bug()

    @pytest.mark.shapekit(strict=False)
    def test_warned():
        broadcast_bug()

    @pytest.mark.shapekit(enabled=False)
    def test_opted_out():
        broadcast_bug()

    def test_unmarked():
        broadcast_bug()

    @pytest.mark.shapekit(strict=False, enable=False)
    def test_misspelt():
        pass
"""


def test_marker_opts_tests_in_and_out(pytester):
    pytester.makepyfile(test_marked=MARKED)
    result = run(pytester, "--strict-markers")
    result.assert_outcomes(passed=3, failed=2)  # opted_in, misspelt fail; no --shapekit
    result.stdout.fnmatch_lines([
        "*_ test_misspelt _*",
        "@pytest.mark.shapekit takes the keywords strict= and enabled= (True or False), got "
        "enable=False; fix: *",
    ])
    result.stdout.fnmatch_lines(["*test_warned*", "*PitfallWarning*"])
    result = run(pytester, "--strict-markers", "--shapekit")
    result.assert_outcomes(passed=2, failed=3)  # opted_in, unmarked and misspelt fail
    outcomes = {r.nodeid.split("::")[1]: r.outcome for r in result.reprec.getreports()
                if r.when == "call"}
    assert outcomes == {"test_opted_in": "failed", "test_warned": "passed",
                        "test_opted_out": "passed", "test_unmarked": "failed",
                        "test_misspelt": "failed"}


def test_shapes_fixture_reports_where_each_dim_was_bound(pytester):
    pytester.makepyfile(test_user_dims="""
        import torch

        def test_dims(shapes):
            logits = shapes.check(torch.zeros(4, 8, 27), "batch time vocab")
            targets = torch.zeros(5, 8)
            shapes.check(targets, "batch time")
    """)
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "test_user_dims.py:6: in test_dims",
        '    shapes.check(targets, "batch time")',
        "E   shapekit.ShapeError: shapes.check at test_user_dims.py:6 expected targets: "
        "(4 = batch, 8 = time), got (5, 8)",
        "E     bound so far: batch=4 time=8 vocab=27 (from logits at test_user_dims.py:4)",
        "E     fix: give targets size 4 along axis 0 (batch), as bound by logits at "
        "test_user_dims.py:4",
    ])
    assert "_pytest_shapes.py" not in result.stdout.str()


def test_the_installed_entry_point_adds_no_torch_import_to_an_unused_session(pytester):
    # As users run it: a subprocess, the plugin loaded by its entry point (the package included).
    pytester.makepyfile(test_plain="""
        import sys

        def test_plain():
            assert not {"torch", "beartype", "jaxtyping"} & set(sys.modules)
    """)
    result = pytester.runpytest_subprocess("-p", "no:jaxtyping", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["plugins:*shapekit*"])
    result.assert_outcomes(passed=1)
