"""The failure report of a ShapeError in a test: the user's frames only, and the rule broken.

beartype, jaxtyping, torch and shapekit frames say nothing about the user's bug and push the
message off the screen, so they are left out; pytest's short style shows each remaining frame as
``file:line: in function`` plus the line. An error ``detect()`` or ``explain()`` re-raised at the
end of the block has no user frame of its own: the frames of the torch error it explains are used.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..debug import RULES, docs_url, is_user_file

__all__ = ["short_failure"]


def short_failure(config: pytest.Config, excinfo: pytest.ExceptionInfo) -> Any:
    """The ``longrepr`` of a failed test whose exception is a ShapeError."""
    tbstyle = config.getoption("tbstyle", "auto")
    longrepr = excinfo.getrepr(
        style="short" if tbstyle == "auto" else tbstyle,
        showlocals=config.getoption("showlocals", False),
        tbfilter=_user_frames,
        chain=False,
    )
    rule = _rule(excinfo.value)
    if rule and hasattr(longrepr, "addsection"):
        longrepr.addsection("shapekit", f"pitfall {rule}: {RULES[rule]}")
    return longrepr


def _rule(error: BaseException) -> str | None:
    """The detector rule behind a strict detect() ShapeError (its message links the rule's page)."""
    rule = getattr(error, "rule", None)
    if rule in RULES:
        return rule
    return next((r for r in RULES if docs_url(r) in str(error)), None)


def _user_frames(excinfo: pytest.ExceptionInfo) -> Any:
    def users(entry: Any) -> bool:
        return is_user_file(str(entry.path))

    kept = excinfo.traceback.filter(users)
    cause = excinfo.value.__cause__
    if not len(kept) and cause is not None and cause.__traceback__ is not None:
        kept = pytest.ExceptionInfo.from_exception(cause).traceback.filter(users)
    return kept if len(kept) else excinfo.traceback
