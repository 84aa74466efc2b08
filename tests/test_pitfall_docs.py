"""The pitfall catalogue (docs/pitfalls/<rule>.md) cannot drift from the code: each page's bug is
run under detect() and must print exactly the warning the page shows, and its fix must run silent.

Each page has three blocks: ``## The bug`` (a script), ``## What shapekit says`` (the warning as
Python prints it, for a script saved as example.py) and ``## The fix`` (the corrected script).
"""

from __future__ import annotations

import linecache
import re
import warnings
from pathlib import Path

import pytest

from shapekit import PitfallWarning
from shapekit.debug._pitfalls import RULES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "pitfalls"
BLOCK = r"## {title}\n\n```{lang}\n(.*?)```"


def block(page: str, title: str, lang: str) -> str:
    m = re.search(BLOCK.format(title=title, lang=lang), page, re.S)
    assert m, f"no '## {title}' ```{lang} block"
    return m.group(1)


def run_example(code: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Run ``code`` as example.py in ``tmp_path``; its PitfallWarnings as Python prints them."""
    monkeypatch.chdir(tmp_path)
    lines = code.splitlines(keepends=True)
    linecache.cache["example.py"] = (len(code), None, lines, "example.py")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(code, "example.py", "exec"), {"__name__": "__main__"})
        return "".join(  # formatted while linecache still has the source line to show
            warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line)
            for w in caught if issubclass(w.category, PitfallWarning)
        )
    finally:
        linecache.cache.pop("example.py", None)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_page_shows_what_detect_really_says(rule, monkeypatch, tmp_path):
    page = (DOCS / f"{rule}.md").read_text()
    assert page.startswith("# "), "a page starts with its title"
    assert f"Rule `{rule}`: {RULES[rule]}." in page
    said = run_example(block(page, "The bug", "python"), monkeypatch, tmp_path)
    assert f"docs: https://shapekit.readthedocs.io/en/latest/pitfalls/{rule}/" in said
    assert said == block(page, "What shapekit says", "text")


@pytest.mark.parametrize("rule", sorted(RULES))
def test_page_fix_runs_silent(rule, monkeypatch, tmp_path):
    page = (DOCS / f"{rule}.md").read_text()
    assert run_example(block(page, "The fix", "python"), monkeypatch, tmp_path) == ""


def test_index_lists_every_rule_with_its_summary():
    index = (DOCS / "index.md").read_text()
    for rule, summary in RULES.items():
        assert f"| [`{rule}`]({rule}.md) | {summary} |" in index
