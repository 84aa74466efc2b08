"""mkdocs hook: pages whose code runs at build time, so no page can drift from its code.

- Every ``lessons/NN_topic.py`` becomes ``lessons/NN_topic.md``: markdown cells as prose, code cells
  as ``python`` blocks followed by the output they printed when the build ran the script (cell by
  cell, in one subprocess: ``docs/hooks/cell_runner.py``), and the figures they drew. The "Lessons"
  entry of the nav gets one page per lesson. Beside each page: the script itself and the lesson
  as a notebook (``docs/hooks/notebooks.py``, jupytext), both linked from the top of the page.
- A ```` ```text ```` block of any page whose lines read as prose (not a table) wraps.
- In any page, a fenced block opened with ```` ```python run ```` is run the same way (all of a
  page's blocks in one namespace, from the checkout's root) and followed by its output. A page
  that starts with ``<!-- requires: shapekit.trace -->`` shows its blocks without running them,
  with a notice, when that name does not exist yet.

A lesson or block that raises fails the build. Results are cached only in memory (``mkdocs serve``
rebuilds), keyed on the hash of the script and of every ``.py`` file of shapekit and lessons.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import importlib
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cell_runner import split_cells
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from notebooks import LECTURE, notebook_bytes

log = logging.getLogger("mkdocs.hooks.lessons")

RUNNER = Path(__file__).resolve().parent / "cell_runner.py"
_LESSON = re.compile(r"^\d\d_[a-z0-9_]+\.py$")
_RUN_BLOCK = re.compile(r"^```python run[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_REQUIRES = re.compile(r"<!--\s*requires:\s*([\w.]+)\s*-->")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TEXT_BLOCK = re.compile(r"^```text[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)

_cache: dict[str, tuple[list[dict], dict[str, bytes]]] = {}
_page_runs: dict[str, list[dict]] = {}
_scripts: list[Path] = []  # this build's lessons, listed once so nav, pages and index agree
_site_url: list[str] = []  # the published site's address (mkdocs.yml site_url)

# Pictures the site draws (docs/hooks/figures.py) shown again after the lessons they illustrate:
# a word in the lesson's file name -> (figure, caption).
PICTURES = {
    "batchnorm": ("batchnorm_axes.svg", "Which values BatchNorm averages for one channel, in "
                  "(B, C), (B, C, L) and (B, L, C), found with autograd from the real layers."),
    "hierarchical": ("wavenet.svg", "The model of this lesson as a tree of dilated causal "
                     "convolutions, drawn from its layers."),
    "convolution": ("dilated_convolution.svg", "The same weights as dilated causal convolutions "
                    "over every position of one padded name, drawn from the Conv1d levels "
                    "`to_conv` builds: each node is computed once; the highlighted tree is what "
                    "one call of the window model computes."),
}


def root(config: MkDocsConfig) -> Path:
    """The checkout: the folder of mkdocs.yml."""
    return Path(config.config_file_path).resolve().parent


def lesson_scripts(config: MkDocsConfig) -> list[Path]:
    folder = root(config) / "lessons"
    return sorted(p for p in folder.iterdir() if _LESSON.match(p.name)) if folder.is_dir() else []


def lesson_title(script: Path) -> tuple[str, str]:
    """The lesson's (nav label, page title), from the first line of its docstring:
    ``"Picking one example: Xtr[7] drops ..."`` gives ``"Picking one example"`` and the whole line.
    Without a docstring, the first heading of its markdown cells, else its file name."""
    cells = split_cells(script.read_text(encoding="utf-8"))
    doc = _docstring(cells[0]["source"]) if cells and cells[0]["kind"] == "preamble" else ""
    if doc:
        full = doc.splitlines()[0].strip().rstrip(".")
        return full.split(": ", 1)[0], full
    for cell in cells:
        if cell["kind"] == "markdown":
            for line in cell["source"].splitlines():
                if line.startswith("# "):
                    return line[2:].strip(), line[2:].strip()
    return script.stem, script.stem


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Expand the nav's ``Lessons: lessons/index.md`` into the index and one page per lesson."""
    _scripts[:] = lesson_scripts(config)
    _site_url[:] = [config.site_url or ""]
    pages: list = ["lessons/index.md"]
    for script in _scripts:
        label = f"{script.stem[:2]} · {lesson_title(script)[0]}"
        pages.append({label: f"lessons/{script.stem}.md"})
    for item in config.nav or []:
        if isinstance(item, dict) and "Lessons" in item:
            item["Lessons"] = pages
    return config


def _source_hash(config: MkDocsConfig, *texts: str) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
    for folder in ("shapekit", "lessons"):
        for path in sorted((root(config) / folder).rglob("*.py")):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_cells(
    config: MkDocsConfig, what: str, args: list[str]
) -> tuple[list[dict], dict[str, bytes]]:
    """Run the cell runner with ``args`` (+ an output folder); the cells and the figures' bytes.

    Raises ``PluginError`` with the failing cell's traceback and output when something fails.
    """
    with tempfile.TemporaryDirectory(prefix="shapekit-docs-") as out:
        env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1", "NO_COLOR": "1",
               "TERM": "dumb", "COLUMNS": "100"}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(RUNNER), *args, out], cwd=root(config), env=env,
                              capture_output=True, text=True)
        cells_file = Path(out) / "cells.json"
        if not cells_file.exists():
            raise PluginError(f"{what}: the cell runner failed (exit {proc.returncode}):\n"
                              f"{proc.stdout}{proc.stderr}")
        cells = json.loads(cells_file.read_text(encoding="utf-8"))
        failed = [c for c in cells if "error" in c]
        if proc.returncode or failed:
            cell = failed[0] if failed else {}
            raise PluginError(
                f"{what} failed in its cell at line {cell.get('line', '?')}, so its page cannot "
                "show real output; fix: make the code run (run it alone to see the same error)\n"
                f"{cell.get('output', '')}{cell.get('error', proc.stderr)}"
            )
        figures = {name: (Path(out) / name).read_bytes()
                   for cell in cells for name in cell.get("figures", [])}
        log.info("ran %s in %.1fs", what, time.perf_counter() - start)
        return cells, figures


def run_lesson(config: MkDocsConfig, script: Path) -> tuple[list[dict], dict[str, bytes]]:
    key = _source_hash(config, str(script))
    if key not in _cache:
        relative = script.relative_to(root(config))
        _cache[key] = run_cells(config, f"lesson {relative}", [str(relative)])
    return _cache[key]


def run_page_blocks(config: MkDocsConfig, src_uri: str, markdown: str) -> list[dict]:
    """Run the page's ```` ```python run ```` blocks as the cells of one script."""
    cells = []
    for block in _RUN_BLOCK.finditer(markdown):
        line = markdown.count("\n", 0, block.start(1)) + 1
        cells.append({"kind": "code", "source": block.group(1).rstrip("\n"), "line": line,
                      "script": f"docs/{src_uri}"})
    key = _source_hash(config, json.dumps(cells))
    if key not in _cache:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(cells, handle)
        try:
            _cache[key] = run_cells(config, f"the examples of docs/{src_uri}",
                                    ["--cells", handle.name])
        finally:
            os.unlink(handle.name)
    cells, figures = _cache[key]
    for cell in cells:
        cell["figure_bytes"] = {name: figures[name] for name in cell.get("figures", [])}
    return cells


def missing_requirement(markdown: str) -> str | None:
    """The ``<!-- requires: module.name -->`` of a page when that name does not exist, else None."""
    match = _REQUIRES.search(markdown)
    if not match:
        return None
    module, _, name = match.group(1).rpartition(".")
    try:
        return None if hasattr(importlib.import_module(module), name) else match.group(1)
    except ImportError:
        return match.group(1)


def fence(text: str, info: str) -> str:
    """``text`` in a code fence longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{info}\n{text}\n{ticks}"


def is_table(text: str) -> bool:
    """Output that keeps its columns (3 lines or more with runs of spaces between words)."""
    return sum(bool(re.search(r"\S {2,}\S", line)) for line in text.splitlines()) >= 3


def wrap_text_blocks(markdown: str) -> str:
    """```` ```text ```` blocks that read as prose (messages) wrap like a terminal; a table keeps
    its columns (and scrolls, with the cue of extra.css, when it is wider than the page)."""
    return _TEXT_BLOCK.sub(
        lambda m: m.group(0) if is_table(m.group(1))
        else "```{ .text .wrap }\n" + m.group(0).split("\n", 1)[1], markdown)


def render_output(cell: dict, figure_link) -> str:
    """A code cell's output block and figures, or "" when it printed nothing."""
    parts = []
    output = _ANSI.sub("", cell.get("output", "")).rstrip()
    if output:
        # Prose-like output (messages) wraps like a terminal; a table keeps its columns.
        wrap = "" if is_table(output) else " .wrap"
        parts.append(fence(output, f'{{ .text{wrap} title="output" }}'))
    parts += [f"![figure {i} of this cell]({figure_link(name)})"
              for i, name in enumerate(cell.get("figures", []), 1)]
    return "\n\n".join(parts)


def render_lesson(script: Path, cells: list[dict], seconds: float) -> str:
    """The lesson's page: title, its docstring, then every cell with its output."""
    parts: list[str] = [f"# {lesson_title(script)[1]}"]
    preamble = next((c for c in cells if c["kind"] == "preamble"), None)
    doc = _docstring(preamble["source"]) if preamble else ""
    # Its first line is the page title; strip only blank lines (an indented command is code).
    intro = "\n".join(doc.splitlines()[1:]).strip("\n")
    run_line = (f"Everything printed on this page was printed by `python lessons/{script.name}` "
                f"when this site was built ({seconds:.1f} s on the build machine).")
    body = f"{intro}\n\n{run_line}" if intro else run_line
    parts.append(f'!!! abstract "lessons/{script.name}"\n\n' + _indent(body))
    if used_fallback(cells):
        log.warning("lesson %s ran on the fallback names: its page says so; build with "
                    "SHAPEKIT_NAMES=/path/to/names.txt for the lecture's data", script.name)
        parts.append('!!! warning "Built on the fallback names, not the lecture\'s data"\n\n'
                     + _indent(FALLBACK_WARNING.format(name=script.name)))
    stem = script.stem
    parts.append(
        f'[:material-notebook: Open as a notebook]({stem}.ipynb){{ download="{stem}.ipynb" }} · '
        f'[:material-file-code: The script]({stem}.py){{ download="{script.name}" }} · '
        f"[:material-play-circle: The lecture: makemore part 5]({LECTURE})\n"
        "{ .shapekit-lesson-links }")
    if preamble and not doc and preamble["source"].strip():
        parts.append(fence(preamble["source"], "python"))
    for cell in cells:
        if cell["kind"] == "markdown" and cell["source"].strip():
            parts.append(_link_lessons(_demote_headings(cell["source"])))
        elif cell["kind"] == "code":
            parts.append(fence(cell["source"], "python"))
            output = render_output(cell, lambda name: f"{script.stem}/{name}")
            if output:
                parts.append(output)
    for word, (figure, caption) in PICTURES.items():
        if word in script.stem:
            parts.append(f"## In one picture\n\n{caption}\n\n![{caption}](../figures/{figure})")
    return "\n\n".join(parts) + "\n"


FALLBACK_WARNING = (
    "The machine that built this page had no copy of makemore's `names.txt` and no network, so "
    "this lesson ran on the first names shipped by the `names` package instead: its losses, "
    "samples and figures differ from the lecture's. Run `python lessons/{name}` with "
    "`SHAPEKIT_NAMES=/path/to/names.txt` (or online) for the lecture's numbers."
)


def used_fallback(cells: list[dict]) -> bool:
    """Whether a lesson's run used the offline fallback names (some cell printed the notice)."""
    from shapekit.lecture import FALLBACK_NOTICE

    return any(FALLBACK_NOTICE in cell.get("output", "") for cell in cells)


def _docstring(source: str) -> str:
    """The text of a preamble that is only a docstring, else ""."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    if len(tree.body) == 1 and isinstance(getattr(tree.body[0], "value", None), ast.Constant):
        value = tree.body[0].value.value
        return value.strip() if isinstance(value, str) else ""
    return ""


def _demote_headings(markdown: str) -> str:
    """One level down (``#`` -> ``##``): the page's only top heading is the lesson's title.
    Lines inside fenced code blocks are left alone."""
    lines, in_fence = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        lines.append("#" + line if not in_fence and re.match(r"#{1,5} ", line) else line)
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join(("    " + line) if line.strip() else "" for line in text.splitlines())


def _link_lessons(markdown: str) -> str:
    """Markdown links to ``NN_topic.py`` scripts point at their pages instead, and links to the
    published site's pitfall pages (as a lesson's notebook keeps them) at this build's pages."""
    markdown = re.sub(r"\]\((?:\.\./)?(?:lessons/)?(\d\d_[a-z0-9_]+)\.py\)", r"](\1.md)", markdown)
    if _site_url and _site_url[0]:
        url = re.escape(_site_url[0])
        markdown = re.sub(rf"\]\({url}pitfalls/([a-z0-9-]+)/?\)", r"](../pitfalls/\1.md)", markdown)
        markdown = re.sub(rf"^(\[[^\]]+\]): {url}pitfalls/([a-z0-9-]+)/?$",
                          r"\1: ../pitfalls/\2.md", markdown, flags=re.M)
    return markdown


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Run every lesson and every page's run blocks, one at a time; add the lesson pages.

    One at a time on purpose: two torch processes side by side on a small machine each start a
    thread per core, and the oversubscribed threads made the training lessons 30x slower.
    """
    for script in _scripts:
        cells, figures = run_lesson(config, script)
        seconds = sum(c.get("seconds", 0) for c in cells)
        page = render_lesson(script, cells, seconds)
        files.append(File.generated(config, f"lessons/{script.stem}.md", content=page))
        files.append(File.generated(config, f"lessons/{script.stem}.ipynb",
                                    content=notebook_bytes(script)))
        files.append(File.generated(config, f"lessons/{script.stem}.py",
                                    content=script.read_bytes()))
        for name, data in figures.items():
            files.append(File.generated(config, f"lessons/{script.stem}/{name}", content=data))
    for file in files.documentation_pages():
        if file.abs_src_path and not file.generated_by:
            text = Path(file.abs_src_path).read_text(encoding="utf-8")
            if _RUN_BLOCK.search(text) and not missing_requirement(text):
                _page_runs[file.src_uri] = run_page_blocks(config, file.src_uri, text)
    return files


def lesson_list() -> str:
    """A table of the lessons: each one's link and what it shows (its title after the colon)."""
    rows = ["| lesson | what it shows |", "|---|---|"]
    for script in _scripts:
        label, title = lesson_title(script)
        rows.append(f"| [{script.stem[:2]} · {label}]({script.stem}.md) | "
                    f"{title.split(': ', 1)[-1]} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Put each run block's output after it (or a notice when the page's requirement is missing)."""
    if "<!-- build:lesson-list -->" in markdown:
        markdown = markdown.replace("<!-- build:lesson-list -->", lesson_list())
    markdown = wrap_text_blocks(markdown)
    if not _RUN_BLOCK.search(markdown):
        return markdown
    missing = missing_requirement(markdown)
    if missing:
        log.info("%s: %s does not exist yet; its examples are shown without output",
                 page.file.src_uri, missing)
        notice = (f'!!! warning "Output pending"\n\n    `{missing}` is not in this build of '
                  "shapekit yet, so the examples below were not run.\n\n")
        return notice + _RUN_BLOCK.sub(lambda m: fence(m.group(1).rstrip("\n"), "python"), markdown)
    cells = iter(_page_runs[page.file.src_uri])

    def replace(match: re.Match) -> str:
        cell = next(cells)
        output = render_output(cell, lambda name: _data_uri(cell, name))
        return fence(match.group(1).rstrip("\n"), "python") + ("\n\n" + output if output else "")

    return _RUN_BLOCK.sub(replace, markdown)


def _data_uri(cell: dict, name: str) -> str:
    """Figures of a page's examples are inlined (pages are rendered after files are collected)."""
    kind = "svg+xml" if name.endswith(".svg") else "png"
    return f"data:image/{kind};base64," + base64.b64encode(cell["figure_bytes"][name]).decode()
