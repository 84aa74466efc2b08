"""mkdocs hook: the parts of the site made from other files of the checkout at build time.

- Nav: the "Pitfalls" section lists the ``docs/pitfalls/*.md`` pages present (index first); the
  "Debugging guide" gets the pytest plugin page. Either gets a generated placeholder page when its
  files are not written yet, so the build stays strict.
- Pictures drawn now from real structures (``docs/hooks/figures.py``), as SVG:
  ``figures/wavenet.svg``, ``figures/batchnorm_axes.svg`` and ``figures/dilated_convolution.svg``.
- Markers replaced in the markdown of any page:
  ``<!-- build:readme quick-start -->`` the README's "Quick start" section, verbatim;
  ``<!-- build:trace-table -->`` the shape trace of the lecture's model, as a table;
  ``<!-- build:results -->`` whatever ``docs/results/`` holds (table, loss curves, per-row figures);
  ``<!-- build:performance -->`` ``benchmarks/README.md``, or how to run the benchmark scripts;
  ``<!-- build:api TOPIC -->`` the API reference of one topic (``API_TOPICS``), from docstrings;
  ``<!-- build:api-index -->`` the list of topics, and any public name no topic lists yet.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import subprocess
from pathlib import Path

import figures
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.site")

PLUGIN_PAGE = "guide/pytest-plugin.md"
REGENERATE = ("shapekit reproduce", "shapekit reproduce --publish docs/results")  # train, publish
_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def docs_dir(config: MkDocsConfig) -> Path:
    return Path(config.docs_dir)


def first_heading(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return path.stem.replace("-", " ").replace("_", " ")


def pitfall_pages(config: MkDocsConfig) -> list:
    """``pitfalls/index.md`` (theirs, or a placeholder) and one entry per rule page present."""
    folder = docs_dir(config) / "pitfalls"
    rules = sorted(p for p in folder.glob("*.md") if p.name != "index.md")
    return ["pitfalls/index.md", *({first_heading(p): f"pitfalls/{p.name}"} for p in rules)]


def repository(remote: str) -> str | None:
    """The web address of a git remote on GitHub, GitLab or Codeberg, else None.

    >>> repository("git@github.com:someone/shapekit.git")
    'https://github.com/someone/shapekit'
    >>> repository("https://gitlab.com/someone/shapekit"), repository("/work/main")
    ('https://gitlab.com/someone/shapekit', None)
    """
    match = re.fullmatch(r"(?:git@|ssh://git@|https://)(github\.com|gitlab\.com|codeberg\.org)"
                         r"[:/]([\w.-]+/[\w.-]+?)(?:\.git)?/?", remote.strip())
    return f"https://{match[1]}/{match[2]}" if match else None


def repo_links(config: MkDocsConfig) -> None:
    """Repository, "view source" and "edit this page" links for the published site: from
    ``$SHAPEKIT_REPO_URL``, else the checkout's ``origin`` remote when it is on a code host. A
    local clone builds without them (there is nowhere to link)."""
    url = os.environ.get("SHAPEKIT_REPO_URL")
    if not url:
        try:
            remote = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root(config),
                                    capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            remote = ""
        url = repository(remote) if remote else None
    if url and not config.repo_url:
        config.repo_url = url.rstrip("/")
        config.edit_uri = "edit/main/docs/"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    repo_links(config)
    for item in config.nav or []:
        if isinstance(item, dict) and "Pitfalls" in item:
            item["Pitfalls"] = pitfall_pages(config)
        if isinstance(item, dict) and "Debugging guide" in item:
            entries = item["Debugging guide"]
            listed = str(entries)
            if PLUGIN_PAGE not in listed:
                entries.append({"The pytest plugin": PLUGIN_PAGE})
            # Guide pages added later by others appear too (strict builds reject pages off the nav).
            for page in sorted((docs_dir(config) / "guide").glob("*.md")):
                if f"guide/{page.name}" not in listed and f"guide/{page.name}" != PLUGIN_PAGE:
                    entries.append({first_heading(page): f"guide/{page.name}"})
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    if files.get_file_from_path("pitfalls/index.md") is None:
        log.info("docs/pitfalls/index.md is not written yet; using a placeholder")
        files.append(File.generated(config, "pitfalls/index.md", content=PITFALLS_PLACEHOLDER))
    if files.get_file_from_path(PLUGIN_PAGE) is None:
        log.info("docs/%s is not written yet; using a placeholder", PLUGIN_PAGE)
        files.append(File.generated(config, PLUGIN_PAGE, content=PLUGIN_PLACEHOLDER))
    for name, data in figures.all_figures().items():
        files.append(File.generated(config, f"figures/{name}", content=data))
    bench = root(config) / "benchmarks"
    for image in _local_images(bench / "README.md"):
        files.append(File.generated(config, f"performance/{image}",
                                    abs_src_path=str((bench / image).resolve())))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    markers = {
        "<!-- build:readme quick-start -->": lambda: readme_section(config, "Quick start"),
        "<!-- build:trace-table -->": trace_table,
        "<!-- build:results -->": lambda: results(config),
        "<!-- build:performance -->": lambda: performance(config),
        "<!-- build:api-index -->": api_index,
    }
    for marker, make in markers.items():
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return re.sub(r"<!-- build:api ([a-z]+) -->", lambda m: api_topic(m.group(1)), markdown)


# The API reference, one page per topic (docs/api/<topic>.md): (title, what it is, public names).
# A name is documented where its topic lists it; a public name no topic lists shows on the index.
API_TOPICS = {
    "nn": ("Checked layers", "The lecture's layers, from scratch, with runtime shape checks.",
           ["shapekit.nn", *(f"shapekit.nn.{n}" for n in (
               "Embedding", "Linear", "BatchNorm1d", "Tanh", "FlattenConsecutive", "Sequential"))]),
    "checking": ("Checking", "The error type, shape annotations for your own code, check modes.",
                 ["ShapeError", "PitfallWarning", "DataError", "shaped", "set_checks",
                  "get_checks", "checks"]),
    "trace": ("Trace", "A per-layer shape table of one forward pass.",
              ["trace", "Trace", "Row", "print_trace"]),
    "debug": ("Explain and detect", "Torch's shape errors explained; silent shape bugs found.",
              ["explain", "detect", "RULES", "DOCS_URL"]),
    "pytest": ("The pytest plugin", "`--shapekit` and `--shapekit-packages` in your test suite.",
               ["shapekit.pytest.plugin", "shapekit.pytest.Shapes"]),
    "annotate": ("Annotate", "Annotations inferred from observed runs, written into the code.",
                 ["shapekit.annotate", "observe", "shapekit.annotate.infer",
                  "shapekit.annotate.annotate", "shapekit.annotate.report",
                  "shapekit.annotate.Observations", "shapekit.annotate.FunctionAnnotations"]),
    "lecture": ("The lecture", "makemore part 5's data, models, training, sampling and its "
                "convolutional form.",
                [f"shapekit.lecture.{n}" for n in (
                    "VOCAB", "itos", "stoi", "encode", "decode", "load_names", "read_names_file",
                    "Names", "split_words", "build_dataset", "make_splits", "Splits", "ROWS",
                    "ModelSpec", "build_model", "BuggyBatchNorm1d", "train", "TrainResult",
                    "evaluate", "sample", "ConvWaveNet", "to_conv", "pad_names", "windows_loop",
                    "runs")]),
}


def _qualified(name: str) -> str:
    return name if name.startswith("shapekit.") else f"shapekit.{name}"


def api_topic(topic: str) -> str:
    """The mkdocstrings blocks of one topic's names, in the order listed."""
    import importlib
    import inspect

    if topic not in API_TOPICS:
        raise ValueError(f"<!-- build:api {topic} -->: no such topic; expected one of "
                         f"{', '.join(API_TOPICS)} (docs/hooks/site.py API_TOPICS)")
    names = API_TOPICS[topic][2]
    parts = []
    for name in names:
        path = _qualified(name)
        module, _, attr = path.rpartition(".")
        value = getattr(importlib.import_module(module), attr, None)
        if value is None:
            value = importlib.import_module(path)
        if inspect.ismodule(value):  # the module's docstring; its names get their own blocks
            parts.append(f"::: {path}\n    options:\n      members: false\n"
                         "      show_root_heading: false\n      show_root_toc_entry: false")
            continue
        data = not (inspect.isclass(value) or callable(value))
        options = "\n      show_if_no_docstring: true" if data else ""
        parts.append(f"::: {path}\n    options:\n      heading_level: 2{options}")
    return "\n\n".join(parts)


def public_names() -> list[str]:
    """Every public name: the ``__all__`` of ``shapekit``, ``shapekit.nn``, ``shapekit.lecture``
    and ``shapekit.pytest``, qualified (the subpackages themselves are not names to document)."""
    import importlib

    surfaces = ("shapekit", "shapekit.nn", "shapekit.lecture", "shapekit.pytest")
    return [f"{s}.{n}" for s in surfaces for n in importlib.import_module(s).__all__
            if f"{s}.{n}" not in (*surfaces, "shapekit.lecture.runs")]


def api_index() -> str:
    """A table of the topics, and a section for any public name that no topic lists."""
    rows = ["| page | what |", "|---|---|"]
    for topic, (title, what, _) in API_TOPICS.items():
        rows.append(f"| [{title}]({topic}.md) | {what} |")
    listed = {_qualified(n) for _, _, names in API_TOPICS.values() for n in names}
    others = [n for n in public_names() if n not in listed]
    if not others:
        return "\n".join(rows)
    blocks = [f"::: {n}\n    options:\n      heading_level: 3" for n in others]
    return "\n".join(rows) + "\n\n## Other public names\n\n" + "\n\n".join(blocks)


def readme_section(config: MkDocsConfig, title: str) -> str:
    """The body of the README's ``## title`` section, verbatim."""
    text = (root(config) / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not match:
        raise ValueError(f"README.md has no '## {title}' section; the home page copies it")
    return match.group(1).strip()


def trace_table() -> str:
    import torch

    model = figures.lecture_model("wavenet")
    return figures.shape_table(model, torch.zeros(32, 8, dtype=torch.long))


def results(config: MkDocsConfig) -> str:
    """The committed results of the long training run: what ``docs/results/`` holds now.

    Written for ``docs/results.md``: links are relative to the docs folder.
    """
    folder = docs_dir(config) / "results"
    prefix = "results/"
    parts: list[str] = []
    table = folder / "table.md"
    if table.exists():
        published = {p.name for p in folder.iterdir() if p.suffix != ".md"}
        text = re.sub(r"\A# .*\n", "", table.read_text(encoding="utf-8"))  # the page has a title
        parts.append(_relink(text, prefix, published))
    meta = folder / "table.json"
    if meta.exists():
        parts.append(f"The same figures as data: [table.json]({prefix}table.json).")
        parts.append(_run_details(meta) or "")
    curves = folder / "loss_curves.png"
    if curves.exists():
        parts.append("## Loss curves\n\n"
                     f"![Training and validation loss of every row]({prefix}loss_curves.png)")
    rows = sorted((p for p in folder.glob("*.png") if p.name != "loss_curves.png"), key=_row_order)
    if rows:
        parts.append("## Per row")
        for png in rows:
            name = png.stem.removesuffix("-loss")
            parts.append(f"### {name}\n\n"
                         f"![Training and validation loss of {name}]({prefix}{png.name})")
    if not parts:
        parts.append(
            '!!! info "Results pending"\n\n    The full training run has not published its results '
            "into `docs/results/` yet. Run the command below; the next build of this site shows "
            "them."
        )
    parts.append(
        "## Regenerate\n\nThe table and the figures above are committed files, written by the "
        "full training run (200,000 steps per row, a long run on a CPU; the table's minutes are "
        "the wall time each row took on the machine that ran it, not a benchmark). The first "
        "command trains the rows (finished rows are skipped), the second copies the table and "
        "the figures here:\n\n"
        "```bash\n" + "\n".join(REGENERATE) + "\n```"
    )
    return "\n\n".join(part for part in parts if part)


def _row_order(png: Path) -> tuple[int, str]:
    """Per-row figures (``<row>-loss.png``) in the order of the lecture's table."""
    from shapekit.lecture import ROWS

    name = png.stem.removesuffix("-loss")
    order = list(ROWS)
    return (order.index(name) if name in order else len(order), name)


def _run_details(meta: Path) -> str:
    """How the committed results were produced: the top-level scalars of table.json, a list."""
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"docs/results/table.json is not valid JSON ({err}); fix: rerun "
            f"{' && '.join(REGENERATE)}"
        ) from err
    if not isinstance(data, dict):
        return ""
    scalars = {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}
    return "\n".join(f"- **{k}**: {v}" for k, v in scalars.items())


def performance(config: MkDocsConfig) -> str:
    """``benchmarks/README.md`` (the latest figures), else how to run each benchmark script."""
    bench = root(config) / "benchmarks"
    readme = bench / "README.md"
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        text = re.sub(r"\A# .*\n", "", text)  # the page has its own title
        return _relink(text, "performance/", set(_local_images(readme)))
    lines = ['!!! info "Figures pending"\n\n    `benchmarks/README.md` with the latest figures is '
             "not written yet. Run the benchmarks to measure them on your machine:\n"]
    for script in sorted(bench.glob("[!_]*.py")):
        lines.append(f"- `python benchmarks/{script.name}`: {_first_doc_line(script)}")
    return "\n".join(lines)


def _first_doc_line(script: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    except SyntaxError:
        doc = ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _local_images(markdown_file: Path) -> list[str]:
    """Relative image paths in ``markdown_file`` that exist beside it."""
    if not markdown_file.exists():
        return []
    found = []
    for bang, _, target in _LINK.findall(markdown_file.read_text(encoding="utf-8")):
        if bang and "://" not in target and (markdown_file.parent / target).is_file():
            found.append(target)
    return found


def _relink(markdown: str, prefix: str, published: set[str]) -> str:
    """Point relative links of inlined markdown at ``prefix`` + target when the site has the file
    (``published``); any other relative link becomes plain text naming its target, so strict link
    checks pass."""

    def fix(match: re.Match) -> str:
        bang, text, target = match.groups()
        if "://" in target or target.startswith(("#", "mailto:")):
            return match.group(0)
        if target in published:
            return f"{bang}[{text}]({prefix}{target})"
        return text if target in text else f"{text} (`{target}`)"

    return _LINK.sub(fix, markdown)


PITFALLS_PLACEHOLDER = """# Pitfalls

!!! info "Catalogue pending"
    The pitfall catalogue, one page per detector rule, is written by `shapekit.detect`'s
    authors into `docs/pitfalls/`. It has no pages in this checkout yet.

Until then, the [lessons](../lessons/index.md) show the lecture's pitfalls one by one.
"""

PLUGIN_PLACEHOLDER = """# The pytest plugin

!!! info "Page pending"
    This page is written with the plugin (`docs/guide/pytest-plugin.md`) and is not in this
    checkout yet.

```bash
python -m pytest --shapekit --shapekit-packages=mypkg
```
"""
