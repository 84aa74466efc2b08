"""Lazy public surfaces: a package names what it exports and the private module that defines each
name; the module is imported on first use. ``import shapekit`` stays free of torch this way, so
the pytest plugin and ``shapekit --help`` start fast.

>>> import json
>>> getattr_, dir_ = lazy_names("json", {"JSONEncoder": ".encoder", "decoder": ".decoder"})
>>> getattr_("JSONEncoder") is json.JSONEncoder, getattr_("decoder").__name__
(True, 'json.decoder')
>>> "JSONEncoder" in dir_()
True
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_names(
    package: str, table: dict[str, str], modules: dict[str, str] | None = None,
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``table`` maps each public name to the module
    (relative to ``package``) that defines it; a name that maps to ``".name"`` is that submodule
    itself, as is every name in ``modules`` (``{"dims": "._dims"}``: a private module offered to
    shapekit's other subpackages under a plain name). The value is cached in the package's
    namespace after the first lookup.
    """

    table = {**table, **(modules or {})}
    whole = {name for name, module in table.items() if module == f".{name}"} | set(modules or ())

    def __getattr__(name: str) -> object:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        loaded = importlib.import_module(module, package)
        value = loaded if name in whole else getattr(loaded, name)
        namespace = sys.modules.get(package)
        if namespace is not None:
            setattr(namespace, name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        namespace = sys.modules.get(package)
        own = set(vars(namespace)) if namespace is not None else set()
        return sorted(own | set(table))

    return __getattr__, __dir__
