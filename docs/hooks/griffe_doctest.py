"""Griffe extension for the API pages: show docstrings' ``>>>`` examples as Python console blocks.

shapekit's docstrings carry doctest examples without markdown fences (they run as tests). Rendered
as markdown, their ``>>>`` lines would turn into nested quotes; this wraps each example (a run of
non-blank lines starting with ``>>>``) in a ```` ```pycon ```` fence. Loaded by mkdocs.yml
(``extensions: - docs/hooks/griffe_doctest.py:DoctestFences``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^([ \t]*)>>>")


def fence_doctests(text: str) -> str:
    """Wrap every doctest example of ``text`` in a pycon fence (at the example's indentation).

    ``"Add.\\n\\n>>> 1 + 1\\n2\\n\\nDone."`` becomes the same text with a ```` ```pycon ````
    line before ``>>> 1 + 1`` and a ```` ``` ```` line after ``2``; ``<BLANKLINE>`` becomes a
    blank line.
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
        out.append(f"{indent}```pycon")
        while i < len(lines) and lines[i].strip():
            line = lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip()
            out.append(indent + ("" if line.strip() == "<BLANKLINE>" else line))
            i += 1
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fence the doctest examples of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and ">>>" in obj.docstring.value:
            obj.docstring.value = fence_doctests(obj.docstring.value)
