"""``pytest --shapekit-infer=mypkg``: record the shapes that flow through mypkg while the tests run.

shapekit's plugin calls :func:`start` before any ``conftest.py`` loads (so the packages conftests
import are observed as they load); from then on this module is a plugin of its own: it reports
what it records in the header, checks the packages can be imported once collection has put the
test folders on ``sys.path``, and at the end of the session writes the observations to
``.shapekit/observations.json`` in the directory pytest was started from, where
``shapekit annotate`` looks by default.
"""

from __future__ import annotations

from typing import Any

import pytest

from . import _deps


def start(config: pytest.Config, value: str) -> None:
    """Begin observing the comma-separated packages in ``value``."""
    try:
        packages = _deps.package_list("--shapekit-infer", value, "mypkg,otherpkg")
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    from ._observe import _Observer

    observer = _Observer(packages)
    observer.start()
    config.pluginmanager.register(_InferPlugin(observer, config), "shapekit-infer")


def check_started(config: pytest.Config) -> None:
    """``--shapekit-infer`` given, but the plugin came too late to start observing (it was loaded
    by ``pytest_plugins`` in a conftest): a usage error, not a session that records nothing."""
    if not config.pluginmanager.has_plugin("shapekit-infer"):
        raise pytest.UsageError(
            "--shapekit-infer needs the plugin loaded before conftest.py files, got it loaded "
            "later (pytest_plugins in a conftest); fix: rely on the installed entry point, or pass "
            "-p shapekit (the entry point's name) when plugin autoloading is off"
        )


class _InferPlugin:
    """The hooks of one observing session."""

    def __init__(self, observer: Any, config: pytest.Config) -> None:
        self.observer = observer
        self.config = config
        self.saved = None
        self.running = True
        self.aborted = False  # a usage error: nothing ran

    def pytest_report_header(self) -> str:
        packages = ", ".join(self.observer.packages)
        return f"shapekit: recording tensor shapes in {packages} (for shapekit annotate)"

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        missing = self.observer.missing()
        if missing:
            self.aborted = True  # nothing is saved: a typo must not replace good observations
            self._stop()
            raise pytest.UsageError(
                f"--shapekit-infer names {', '.join(map(repr, missing))}, which Python cannot "
                "import here; fix: check the spelling (the import name, not the distribution "
                "name), install the project (pip install -e .) or add its folder to pythonpath "
                "under [tool.pytest.ini_options]"
            )

    def _stop(self) -> None:
        if self.running:
            self.running = False
            self.observer.stop()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        from ._observe import DEFAULT_PATH

        if self.aborted:
            return
        self._stop()
        if self.observer.observations.functions:  # an empty record replaces nothing
            path = self.config.invocation_params.dir / DEFAULT_PATH
            self.saved = self.observer.observations.save(path)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        obs = self.observer.observations
        packages = ",".join(obs.packages)
        if self.saved is None:
            if not self.aborted:
                terminalreporter.write_line(
                    f"shapekit: no function of {packages} was called by the tests that ran, so "
                    "no observations were saved; expected tests that call into it; fix: run the "
                    f"tests that exercise {packages}")
            return
        calls = sum(r.total for r in obs.functions.values())
        try:
            shown = self.saved.relative_to(self.config.invocation_params.dir)
        except ValueError:
            shown = self.saved
        terminalreporter.write_line(
            f"shapekit: observed {calls} calls of {len(obs.functions)} functions in {packages}; "
            f"saved to {shown}; next: shapekit annotate {' '.join(obs.packages)}"
        )

    def pytest_unconfigure(self) -> None:
        self._stop()
