"""The docs site builds strictly, and its lesson pages show what the lessons really print.

    python -m pytest -m docs tests/test_docs.py

The ``docs`` tests build the site once (it runs every lesson and example: a minute or two) and are
skipped when the docs extra is not installed (``pip install -e '.[docs]'``). The cell runner the
build uses is tested without mkdocs, in the default suite.
"""

from __future__ import annotations

import functools
import html
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]

NEEDS_MKDOCS = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None,
    reason="the docs extra is not installed; fix: pip install -e '.[docs]'",
)
RUNNER = ROOT / "docs" / "hooks" / "cell_runner.py"


@functools.cache
def build_site(out: Path) -> subprocess.CompletedProcess:
    """``mkdocs build --strict`` into ``out``, once per session (the browser test shares it)."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.getbasetemp() / "site"
    proc = build_site(out)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def page_text(page: Path) -> str:
    """The visible text of a built page: tags dropped, entities decoded, whitespace collapsed."""
    text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
    return re.sub(r"\s+", " ", html.unescape(text))


_TIMING = re.compile(r"\d(\.\d+)?\s?(ms|s|min|steps/s|it/s)\b")
_NUMBER = re.compile(r"\d[\d,.]*")


def shown_on_page(line: str, shown: str) -> bool:
    """``line`` is in the page text; a line that reports a duration or a speed (``3.2s``,
    ``640 steps/s``, a ratio "measured on the build machine") may differ in its numbers, since two
    runs never take the same time."""
    if line in shown:
        return True
    timing = bool(_TIMING.search(line)) or "measured on the build machine" in line
    return timing and _NUMBER.sub("#", line) in _NUMBER.sub("#", shown)


def lessons() -> list[Path]:
    return sorted((ROOT / "lessons").glob("[0-9][0-9]_*.py"))


@pytest.mark.docs
@NEEDS_MKDOCS
def test_strict_build_has_every_section(site: Path) -> None:
    for page in ["index.html", "lessons/index.html", "guide/index.html", "guide/trace/index.html",
                 "guide/explain/index.html", "guide/detect/index.html",
                 "guide/pytest-plugin/index.html", "pitfalls/index.html", "results/index.html",
                 "performance/index.html", "api/index.html", "api/nn/index.html",
                 "api/checking/index.html", "api/trace/index.html", "api/debug/index.html",
                 "api/pytest/index.html", "api/lecture/index.html"]:
        assert (site / page).is_file(), page
    for figure in ["figures/wavenet.svg", "figures/batchnorm_axes.svg",
                   "figures/dilated_convolution.svg"]:
        assert b"<svg" in (site / figure).read_bytes()[:2000], figure
    for script in lessons():  # each lesson as a notebook and as its script, beside its page
        notebook = json.loads((site / "lessons" / f"{script.stem}.ipynb").read_text("utf-8"))
        assert "".join(notebook["cells"][2]["source"]) == "%load_ext shapekit"
        assert (site / "lessons" / script.name).read_bytes() == script.read_bytes()
        page = (site / "lessons" / script.stem / "index.html").read_text("utf-8")
        assert f'href="../{script.stem}.ipynb"' in page, f"{script.stem}: no notebook link"


@pytest.mark.docs
@NEEDS_MKDOCS
def test_every_lesson_page_shows_the_output_the_script_prints(site: Path) -> None:
    """Oracle: the script run as a user runs it. Every line it prints is on its page."""
    assert lessons(), "no lessons/NN_*.py found"
    env = {**os.environ, "MPLBACKEND": "Agg", "NO_COLOR": "1", "COLUMNS": "100"}
    for script in lessons():
        page = site / "lessons" / script.stem / "index.html"
        assert page.is_file(), f"no page for {script.name}"
        proc = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        shown = page_text(page)
        printed = [re.sub(r"\s+", " ", line).strip() for line in proc.stdout.splitlines()]
        missing = [line for line in printed if line and not shown_on_page(line, shown)]
        assert not missing, f"{script.name}: printed but not on its page: {missing[:3]}"
        if printed:  # the output blocks the build rendered under the code cells
            assert 'class="filename">output<' in page.read_text(encoding="utf-8")


@pytest.mark.docs
@NEEDS_MKDOCS
def test_home_quick_start_is_the_readme_s(site: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
                .splitlines() if line.startswith(("python ", "pip "))]
    assert len(commands) >= 2
    home = page_text(site / "index.html")
    for command in commands:
        assert re.sub(r"\s+", " ", command) in home


@pytest.mark.docs
@NEEDS_MKDOCS
def test_api_pages_document_every_public_name_with_rendered_roles(site: Path) -> None:
    pages = {p: p.read_text(encoding="utf-8") for p in (site / "api").rglob("index.html")}
    api = "".join(pages.values())
    surfaces = ("shapekit", "shapekit.nn", "shapekit.lecture", "shapekit.pytest")
    names = [f"{s}.{n}" for s in surfaces for n in importlib.import_module(s).__all__
             if not inspect.ismodule(getattr(importlib.import_module(s), n))]  # a module: its text
    missing = [name for name in names if f'id="{name}"' not in api]
    assert not missing, f"public names without API docs: {missing}"
    for page in pages:
        text = page_text(page)
        roles = re.findall(r":(?:func|class|meth|attr|mod|data|exc):`", text)
        assert not roles, f"{page}: raw Sphinx roles {roles[:3]}"
        assert " ::" not in text and not re.search(r"\w::\s", text), f"{page}: a raw '::'"
        private = re.findall(r"from shapekit(?:\.\w+)*\._\w+ import", text)
        assert not private, f"{page}: private imports {private[:3]}"
    # constants are described, not dumped (ROWS is a dict of 5 specs, RULES of every rule)
    assert "'view-transposes':" not in page_text(site / "api" / "debug" / "index.html")


@pytest.mark.docs
@NEEDS_MKDOCS
def test_results_page_says_how_to_regenerate(site: Path) -> None:
    text = page_text(site / "results" / "index.html")
    assert "shapekit reproduce --publish docs/results" in text
    table = ROOT / "docs" / "results" / "table.md"
    if table.exists():  # the committed table is on the page
        first_row = next(line for line in table.read_text().splitlines() if line.startswith("|"))
        cells = [c.strip() for c in first_row.strip("|").split("|") if c.strip()]
        assert all(html.unescape(re.sub(r"[`*]", "", c)) in text for c in cells)
    else:
        assert "Results pending" in text


@pytest.mark.docs
@NEEDS_MKDOCS
def test_every_pitfall_url_a_warning_prints_is_a_page(site: Path) -> None:
    """Oracle: the rule ids ``detect()`` reports (``shapekit.debug.RULES``) and their URLs."""
    pitfalls = importlib.util.find_spec("shapekit.debug._pitfalls")
    if pitfalls is None or not list((ROOT / "docs" / "pitfalls").glob("*.md")):
        pytest.skip("no pitfall catalogue yet (shapekit/debug/_pitfalls.py, docs/pitfalls/*.md)")
    from shapekit.debug._pitfalls import RULES, docs_url

    nav = (site / "index.html").read_text(encoding="utf-8")
    for rule in RULES:
        path = urlparse(docs_url(rule)).path.split("/pitfalls/", 1)[1]
        page = site / "pitfalls" / path / "index.html"
        assert page.is_file(), f"{docs_url(rule)} has no page; fix: write docs/pitfalls/{rule}.md"
        assert f'href="pitfalls/{path}"' in nav, f"pitfall {rule} is not in the nav"


SCRIPT = """\"\"\"A lesson.\"\"\"

# %% [markdown]
# # Title
#
# Some *prose*.

# %%
import sys
import warnings

import matplotlib.pyplot as plt

print("out 1")
warnings.warn("careful")
print("out 2", file=sys.stderr)
plt.plot([1, 2, 3])

# %%
value = 41 + 1
print("value", value, __name__, sys.argv[1:])

# %%
assert value == 43, "value is not 43"

# %%
print("never")
"""


def run_runner(tmp_path: Path, script_text: str) -> tuple[int, list[dict], Path]:
    script = tmp_path / "01_demo.py"
    script.write_text(script_text, encoding="utf-8")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(RUNNER), str(script), str(out)], cwd=tmp_path,
                          env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True, text=True)
    return proc.returncode, json.loads((out / "cells.json").read_text()), out


def test_cell_runner_splits_percent_cells() -> None:
    sys.path.insert(0, str(RUNNER.parent))
    try:
        from cell_runner import split_cells
    finally:
        sys.path.remove(str(RUNNER.parent))
    cells = split_cells(SCRIPT)
    assert [c["kind"] for c in cells] == ["preamble", "markdown", "code", "code", "code", "code"]
    assert cells[1]["source"] == "# Title\n\nSome *prose*."
    lines = SCRIPT.splitlines()
    for cell in cells[2:]:  # each code cell starts where its source starts in the script
        assert lines[cell["line"] - 1] == cell["source"].splitlines()[0]


def test_cell_runner_runs_cells_in_one_namespace_and_stops_at_a_failure(tmp_path: Path) -> None:
    code, cells, out = run_runner(tmp_path, SCRIPT)
    lines = SCRIPT.splitlines()
    warn_line = lines.index('warnings.warn("careful")') + 1
    assert_line = lines.index('assert value == 43, "value is not 43"') + 1
    assert code == 1
    first, second, failing, never = cells[2:]
    # stdout and stderr merged in the order printed; the warning names the script's own line
    assert first["output"].startswith("out 1\n")
    assert f"{tmp_path / '01_demo.py'}:{warn_line}: UserWarning: careful" in first["output"]
    assert first["output"].index("careful") < first["output"].index("out 2")
    assert first["figures"] == ["cell2-1.svg"]
    assert b"<svg" in (out / "cell2-1.svg").read_bytes()[:2000]
    assert second["output"] == "value 42 __main__ []\n"  # quick mode: no --full
    assert "AssertionError: value is not 43" in failing["error"]
    assert f'{tmp_path / "01_demo.py"}", line {assert_line}' in failing["error"]
    assert "output" not in never


LOADS_NAMES = '''"""A lesson that trains on the names.

What it shows.
"""
# %%
from shapekit.lecture import load_names
print(len(load_names().words) > 0)
'''


@pytest.mark.docs
@NEEDS_MKDOCS
@pytest.mark.parametrize("names", ["fallback", "lecture"])
def test_a_lesson_page_built_on_the_fallback_names_says_so(tmp_path: Path, names: str) -> None:
    """Oracle: the real notice shapekit prints when it falls back (offline, no names.txt), as the
    cell runner captures it; a build with the lecture's file shows no warning."""
    hook = load_hook("lessons")
    script = tmp_path / "01_demo.py"
    script.write_text(LOADS_NAMES, encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "SHAPEKIT_OFFLINE": "1",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    env.pop("SHAPEKIT_NAMES", None)
    if names == "lecture":
        data = tmp_path / "names.txt"
        data.write_text("emma\nolivia\nava\nisabella\nsophia\ncharlotte\n", encoding="utf-8")
        env["SHAPEKIT_NAMES"] = str(data)
    out = tmp_path / "out"
    subprocess.run([sys.executable, str(RUNNER), str(script), str(out)], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    cells = json.loads((out / "cells.json").read_text())
    page = hook.render_lesson(script, cells, 1.0)
    warned = "Built on the fallback names, not the lecture's data" in page
    assert warned == (names == "fallback"), page
    if warned:
        assert "SHAPEKIT_NAMES=/path/to/names.txt" in page and "python lessons/01_demo.py" in page


def load_hook(name: str):
    """docs/hooks/<name>.py as a module (its own imports resolve from docs/hooks/)."""
    hooks = str(ROOT / "docs" / "hooks")
    sys.path.insert(0, hooks)
    try:
        spec = importlib.util.spec_from_file_location(f"shapekit_docs_{name}_hook",
                                                      ROOT / "docs" / "hooks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(hooks)
    return module


@pytest.mark.docs
@NEEDS_MKDOCS
@pytest.mark.parametrize(("remote", "url"), [
    ("git@github.com:someone/shapekit.git", "https://github.com/someone/shapekit"),
    ("https://github.com/someone/shapekit.git", "https://github.com/someone/shapekit"),
    ("ssh://git@gitlab.com/group/shapekit", "https://gitlab.com/group/shapekit"),
    ("/work/main", None),
    ("https://example.org/some/repo.git", None),
])
def test_the_site_links_its_repository_when_the_checkout_has_one(tmp_path, monkeypatch,
                                                                 remote, url):
    """Oracle: a real git checkout with that ``origin``; the material theme shows the repository,
    view-source and edit links exactly when ``repo_url`` and ``edit_uri`` are set."""
    from mkdocs.config import load_config

    site = load_hook("site")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", remote], check=True)
    (tmp_path / "mkdocs.yml").write_text("site_name: t\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    monkeypatch.delenv("SHAPEKIT_REPO_URL", raising=False)
    config = load_config(str(tmp_path / "mkdocs.yml"))
    site.repo_links(config)
    assert config.repo_url == url
    assert config.edit_uri == ("edit/main/docs/" if url else None)
