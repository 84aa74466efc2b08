"""Infer jaxtyping annotations from real runs and write them into the code.

Three steps, as ``shapekit annotate`` runs them: :func:`observe` records the shapes and dtypes
that flow through a package's functions (``pytest --shapekit-infer=mypkg`` does it for a test
suite), :func:`infer` turns them into the most specific annotations every call satisfies, and
:func:`annotate` writes them into the source (a unified diff, or the files rewritten).

>>> import sys, tempfile, textwrap, pathlib, torch, shapekit
>>> from shapekit.annotate import annotate
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "geometry.py").write_text(textwrap.dedent('''
...     import torch
...
...     def centre(points):
...         return points - points.mean(0)
... '''))
>>> sys.path.insert(0, str(folder))
>>> with shapekit.observe(packages=["geometry"]) as obs:
...     import geometry
...     for n in (4, 7):
...         _ = geometry.centre(torch.ones(n, 3))
>>> print(annotate(obs, root=folder), end="")
--- a/geometry.py
+++ b/geometry.py
@@ -1,5 +1,7 @@
<BLANKLINE>
 import torch
+from jaxtyping import Float
+from torch import Tensor
<BLANKLINE>
-def centre(points):
+def centre(points: Float[Tensor, "batch 3"]) -> Float[Tensor, "batch 3"]:
     return points - points.mean(0)
>>> sys.path.remove(str(folder)); del sys.modules["geometry"]
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ._infer import Dimension, FunctionAnnotations, infer
from ._observe import DEFAULT_PATH, Call, FunctionRecord, Observations, observe

if TYPE_CHECKING:
    from ._apply import FileChange

__all__ = [
    "DEFAULT_PATH",
    "Call",
    "Dimension",
    "FileChange",
    "FunctionAnnotations",
    "FunctionRecord",
    "Observations",
    "annotate",
    "infer",
    "observe",
    "report",
]


def __getattr__(name: str):
    if name == "FileChange":  # defined beside libcst, which is imported only when needed
        from ._apply import FileChange

        return FileChange
    raise AttributeError(f"module 'shapekit.annotate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"FileChange"})


def plan_changes(found: dict) -> list[FileChange]:
    """One :class:`FileChange` per source file that :func:`infer`'s annotations change (libcst
    loads here, on first use)."""
    from ._apply import plan_changes as plan

    return plan(found)


def start_pytest_recording(config: object, packages: str) -> None:
    """For shapekit's pytest plugin (``--shapekit-infer=PKG``): start recording before any
    conftest is imported; the recording is saved when the session ends."""
    from ._pytest import start

    start(config, packages)


def check_pytest_recording(config: object) -> None:
    """For shapekit's pytest plugin: a usage error when ``--shapekit-infer`` came too late (the
    plugin loaded by a conftest, after the packages were imported)."""
    from ._pytest import check_started

    check_started(config)


def select(observations: Observations, packages: Iterable[str] | None) -> Observations:
    """Only the observed functions of ``packages`` (and their subpackages); all for None."""
    if packages is None:
        return observations
    wanted = tuple(packages)
    chosen = Observations(wanted)
    chosen.functions = {
        k: r for k, r in observations.functions.items()
        if any(r.module == p or r.module.startswith(p + ".") for p in wanted)
    }
    return chosen


def annotate(
    observations: Observations | str | os.PathLike,
    packages: Iterable[str] | None = None,
    *,
    write: bool = False,
    root: str | os.PathLike | None = None,
) -> str:
    """The unified diff that writes the inferred annotations into the source; with
    ``write=True`` the files are rewritten too. Paths in the diff are relative to ``root``
    (the working directory by default).

    ``observations`` is what :func:`observe` returned, or the path of a saved file
    (``.shapekit/observations.json``); ``packages`` limits the change to those packages
    (``["mypkg"]`` writes into ``mypkg`` and its subpackages only). See the module docstring for
    a diff: a ``(4, 3)`` and a ``(7, 3)`` call give ``Float[Tensor, "batch 3"]``.
    """
    if not isinstance(observations, Observations):
        observations = Observations.load(observations)
    from ._apply import plan_changes  # libcst loads only when something is written

    changes = plan_changes(infer(select(observations, packages)))
    base = None if root is None else Path(root)
    text = "".join(change.diff(base) for change in changes)
    if write:
        for change in changes:
            change.write()
    return text


def report(observations: Observations, packages: Iterable[str] | None = None) -> str:
    """Each inferred annotation with its evidence: calls seen, sizes seen, and why each dim is
    written as it is (``batch  x axis 0, return axis 0: 4, 7 (varied between calls)``)."""
    found = infer(select(observations, packages))
    return "\n\n".join(item.report() for item in found.values())
