"""shapekit's pytest plugin (the ``pytest11`` entry point ``shapekit``): shape bugs fail tests.

    pytest --shapekit                      # every test inside shapekit.detect(strict=True)
    pytest --shapekit-packages=mypkg       # jaxtyping annotations in mypkg checked at run time
    pytest --shapekit-infer=mypkg          # record shapes in mypkg for `shapekit annotate mypkg`
    pytest -p no:shapekit                  # the plugin off altogether

Without an option, a ``@pytest.mark.shapekit`` marker or the ``shapes`` fixture it does nothing:
loading it imports neither torch nor beartype. The header line of the session says what is on::

    shapekit: runtime checks on for mypkg; detectors on
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from ..checking import ShapeError

if TYPE_CHECKING:
    from ..checking import Instrumenter
    from ._shapes import Shapes

_MARKER = (
    "shapekit(strict=True, enabled=True): run the test inside shapekit.detect(), even without "
    "--shapekit; strict=False warns (PitfallWarning) instead of failing; enabled=False opts the "
    "test out of --shapekit"
)


@dataclass
class _Settings:
    detect: bool = False
    instrumenter: Instrumenter | None = None
    previous_mode: str = ""  # the check mode to restore at the end, when the plugin changed it


_SETTINGS = pytest.StashKey[_Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("shapekit", "shapekit: catch tensor shape bugs")
    group.addoption(
        "--shapekit",
        action="store_true",
        help="run every test inside shapekit.detect(strict=True): a silent shape bug (a pitfall) "
        "or a torch shape error fails the test with the rule, the line, the shapes and a fix",
    )
    group.addoption(
        "--shapekit-packages",
        metavar="PKG[,PKG...]",
        help="check the jaxtyping-annotated functions and methods of these packages at run time "
        "(beartype, shapekit's messages and check mode: SHAPEKIT_CHECKS=always checks every "
        "call); e.g. --shapekit-packages=mypkg",
    )
    group.addoption(
        "--shapekit-infer",
        metavar="PKG[,PKG...]",
        help="record the shapes and dtypes of tensors passed to and returned by every function "
        "of these packages, into .shapekit/observations.json, for 'shapekit annotate PKG'",
    )


def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Runs before any conftest.py, so the packages conftests import are instrumented as they load.
    settings = early_config.stash.setdefault(_SETTINGS, _Settings())
    infer = early_config.known_args_namespace.shapekit_infer
    if infer is not None:  # shapekit.annotate registers its own hooks for the recording
        from ..annotate import start_pytest_recording

        start_pytest_recording(early_config, infer)
    value = early_config.known_args_namespace.shapekit_packages
    if value is None:
        return
    from ..checking import Instrumenter, get_checks, package_list, set_checks

    try:
        packages = package_list("--shapekit-packages", value, "mypkg,mypkg.models")
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None

    if get_checks() == "off":  # SHAPEKIT_CHECKS=off would silence the checks asked for here
        settings.previous_mode = set_checks("once")
    settings.instrumenter = Instrumenter(packages)
    settings.instrumenter.start()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER)
    settings = config.stash.setdefault(_SETTINGS, _Settings())
    settings.detect = config.getoption("shapekit")
    if config.getoption("shapekit_infer"):  # started in time?
        from ..annotate import check_pytest_recording

        check_pytest_recording(config)
    if config.getoption("shapekit_packages") and settings.instrumenter is None:
        raise pytest.UsageError(
            "--shapekit-packages needs the plugin loaded before conftest.py files, got it loaded "
            "later (pytest_plugins in a conftest); fix: rely on the installed entry point, or pass "
            "-p shapekit (the entry point's name) when plugin autoloading is off"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    settings = config.stash.get(_SETTINGS, None)
    if settings is None or settings.instrumenter is None:
        return
    settings.instrumenter.stop()
    if settings.previous_mode:
        from ..checking import set_checks

        set_checks(settings.previous_mode)


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(_SETTINGS, None)
    if settings is None or not (settings.detect or settings.instrumenter):
        return None
    parts = []
    if settings.instrumenter is not None:
        parts.append("runtime checks on for " + ", ".join(settings.instrumenter.packages))
    parts.append("detectors on" if settings.detect else "detectors off")
    return "shapekit: " + "; ".join(parts)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Checked only now: a package beside the tests is importable once pytest has put its folder
    # on sys.path while collecting them.
    instrumenter = session.config.stash[_SETTINGS].instrumenter
    missing = instrumenter.missing() if instrumenter is not None else []
    if missing:
        raise pytest.UsageError(
            f"--shapekit-packages names {', '.join(map(repr, missing))}, which Python cannot "
            "import here; fix: check the spelling (the import name, not the distribution name), "
            "install the project (pip install -e .) or add its folder to pythonpath under "
            "[tool.pytest.ini_options]"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    strict = _detect_strictness(item)
    if strict is None:
        return (yield)
    from ..debug import detect

    with detect(strict=strict):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and excinfo.errisinstance(ShapeError) and _asked(item):
        from ._report import short_failure

        report.longrepr = short_failure(item.config, excinfo)
    return report


@pytest.fixture
def shapes() -> Shapes:
    """Named dims bound across one test, and a batch-size sweep for modules.

    ``shapes.check(x, "batch time channels")`` binds the names; a later ``check`` in the same
    test that disagrees raises ShapeError saying where each size was bound.
    ``shapes.batch_sizes(model, make_input, sizes=(1, 2, 7))`` runs ``model`` on batches of each
    size and checks the output's batch axis follows the input's.
    """
    from ._shapes import Shapes

    return Shapes()


def _detect_strictness(item: pytest.Item) -> bool | None:
    """True/False: run the test in detect(strict=...); None: leave it alone."""
    marker = item.get_closest_marker("shapekit")
    on = item.config.stash[_SETTINGS].detect
    if marker is None:
        return True if on else None
    bad = [f"{k}={v!r}" for k, v in marker.kwargs.items()
           if k not in ("strict", "enabled") or not isinstance(v, bool)]
    if marker.args or bad:
        got = ", ".join([*map(repr, marker.args), *bad])
        pytest.fail(
            f"@pytest.mark.shapekit takes the keywords strict= and enabled= (True or False), got "
            f"{got}; fix: @pytest.mark.shapekit(strict=False) or "
            "@pytest.mark.shapekit(enabled=False)",
            pytrace=False,
        )
    if not marker.kwargs.get("enabled", True):
        return None
    return marker.kwargs.get("strict", True)


def _asked(item: pytest.Item) -> bool:
    settings = item.config.stash[_SETTINGS]
    return bool(
        settings.detect
        or settings.instrumenter is not None
        or item.get_closest_marker("shapekit")
        or "shapes" in getattr(item, "fixturenames", ())
    )
