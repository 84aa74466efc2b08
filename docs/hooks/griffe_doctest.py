"""Griffe extension for the API pages: docstrings written for doctest and Sphinx, shown as markdown.

- shapekit's docstrings carry doctest examples without markdown fences (they run as tests).
  Rendered as markdown, their ``>>>`` lines would turn into nested quotes; each example (a run of
  non-blank lines starting with ``>>>``) is wrapped in a ```` ```pycon ```` fence.
- Sphinx roles (``:func:`pad_names```, ``:class:`~shapekit.ShapeError```) become code, linked to
  the name's API entry when it is a public name; a paragraph's closing ``::`` becomes ``:``.
- An example's ``from shapekit.lecture._models import build_model`` reads ``from shapekit.lecture
  import build_model`` when every name it imports is public there (it is the same object).

Loaded by mkdocs.yml (``extensions: - docs/hooks/griffe_doctest.py:DoctestFences``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^([ \t]*)>>>")
_DIRECTIVE = re.compile(r"\s*# doctest: [+-][A-Z_, +-]+$")  # "# doctest: +ELLIPSIS": for doctest
_PRIVATE_EXC = re.compile(r"^shapekit\.checking\._errors\.(ShapeError|PitfallWarning|DataError)\b")
_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|mod|data|exc|obj|const):`([^`]+)`")
_PRIVATE_IMPORT = re.compile(r"^(\s*(?:>>>|\.\.\.) from )shapekit\.(?:\w+\.)*_\w+( import )(.+)$",
                             re.M)


def _public() -> dict[str, str]:
    """Public short names -> their qualified names (``shapekit.X``, ``shapekit.nn.X``,
    ``shapekit.lecture.X``); a name public in several places keeps the shortest."""
    import importlib

    names: dict[str, str] = {}
    for surface in ("shapekit", "shapekit.nn", "shapekit.lecture", "shapekit.lecture.runs",
                    "shapekit.pytest"):
        for n in importlib.import_module(surface).__all__:
            names.setdefault(n, f"{surface}.{n}")
    return names


def render_roles(text: str, public: dict[str, str]) -> str:
    """``:func:`~shapekit.trace``` -> ``[`trace`][shapekit.trace]`` for a public name, else
    `` `shapekit._x.y` `` as code; a line's closing ``::`` (a Sphinx literal block) -> ``:``, and
    a closing `` ::`` is dropped, as Sphinx does."""

    def role(match: re.Match) -> str:
        target = match.group(1).strip()
        if "<" in target and target.endswith(">"):  # :func:`text <target>`
            shown, target = target[:-1].split("<", 1)
            shown = shown.strip()
        else:
            shown = target.split(".")[-1] if target.startswith("~") else target
        target = target.lstrip("~.")
        # a bare name, or a shapekit module's (private or not): the public object of that name
        short = target.rsplit(".", 1)[-1] if target.startswith("shapekit.") else target
        qualified = public.get(short)
        if qualified:
            return f"[`{shown.lstrip('~')}`][{qualified}]"
        return f"`{shown.lstrip('~')}`"

    text = _ROLE.sub(role, text)
    text = re.sub(r"[ \t]+::$", "", text, flags=re.M)  # "text. ::" reads "text." (Sphinx)
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.M)  # "text::" reads "text:"


def public_imports(text: str, public: dict[str, str]) -> str:
    """``from shapekit.lecture._x import a, b`` in an example -> ``from shapekit.lecture import a,
    b`` when both are public names of one surface."""

    def fix(match: re.Match) -> str:
        names = [n.strip() for n in match.group(3).split(",")]
        surfaces = {public.get(n, "").rpartition(".")[0] for n in names}
        if len(surfaces) == 1 and "" not in surfaces:
            return f"{match.group(1)}{surfaces.pop()}{match.group(2)}{match.group(3)}"
        return match.group(0)

    return _PRIVATE_IMPORT.sub(fix, text)


def fence_doctests(text: str) -> str:
    """Wrap every doctest example of ``text`` in a pycon fence (at the example's indentation).

    ``"Add.\\n\\n>>> 1 + 1\\n2\\n\\nDone."`` becomes the same text with a ```` ```pycon ````
    line before ``>>> 1 + 1`` and a ```` ``` ```` line after ``2``; ``<BLANKLINE>`` becomes a
    blank line, ``# doctest:`` directives are dropped, and a traceback's
    ``shapekit.checking._errors.ShapeError`` reads ``shapekit.ShapeError`` (the same class).
    """
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start = _EXAMPLE.match(lines[i])
        if not start:
            out.append(lines[i])
            i += 1
            continue
        indent = start.group(1)
        out.append(f"{indent}```{{ .pycon .wrap }}")  # long messages wrap (docs/stylesheets)
        while i < len(lines) and lines[i].strip():
            line = lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip()
            line = _DIRECTIVE.sub("", line)
            # the public name of shapekit's exceptions, as a user imports them
            line = _PRIVATE_EXC.sub(r"shapekit.\1", line)
            out.append(indent + ("" if line.strip() == "<BLANKLINE>" else line))
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Every docstring griffe loads: roles rendered, imports public, examples fenced."""

    def __init__(self) -> None:
        super().__init__()
        self.public = _public()

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = render_roles(obj.docstring.value, self.public)
        if ">>>" in text:
            text = fence_doctests(public_imports(text, self.public))
        obj.docstring.value = text
