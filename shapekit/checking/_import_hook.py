"""``--shapekit-packages``: wrap the jaxtyping-annotated functions of packages with ``@shaped``.

Two ways in, one wrapping step (:meth:`Instrumenter.instrument`):

- a module imported after the plugin starts goes through :class:`Finder`, a ``sys.meta_path`` entry
  that lets the usual finders locate it and wraps its loader, so the module's functions are wrapped
  as soon as its body has run, before anyone can ``from pkg.mod import f``;
- a module imported earlier (by a ``-p`` plugin, a ``conftest.py`` loaded before this plugin, ...)
  is instrumented in place, and any module of the packages that re-exported one of its functions
  gets the wrapper too.

Unlike an AST rewrite this sees the functions as Python built them, so decorators,
``functools.wraps`` and string annotations (``from __future__ import annotations``) work as they do
in plain runs.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
import sys
import types
import typing
from typing import Any

__all__ = ["PACKAGE_NAME", "Finder", "Instrumenter", "package_list"]

PACKAGE_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")  # mypkg, mypkg.models


def package_list(option: str, value: str, example: str) -> tuple[str, ...]:
    """The packages a ``--option=mypkg,otherpkg`` value names, duplicates dropped; ``ValueError``
    with the message (expected, got, fix) when it names none or something that is not an import
    name.

    >>> package_list("--shapekit-packages", "mypkg, mypkg.models,mypkg", "mypkg")
    ('mypkg', 'mypkg.models')
    """
    packages = tuple(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
    bad = [p for p in packages if not PACKAGE_NAME.match(p)]
    if not packages or bad:
        raise ValueError(
            f"{option}={value!r}: expected a comma-separated list of importable package names, "
            f"got {', '.join(map(repr, bad)) or 'none'}; fix: {option}=mypkg or {option}={example}"
        )
    return packages


class Instrumenter:
    """Wraps functions and methods whose annotations hold jaxtyping array types in ``packages``:
    plain, static and class methods, and the getters (setters, deleters) of ``property`` and
    ``functools.cached_property``, as jaxtyping's import hook does."""

    def __init__(self, packages: tuple[str, ...]) -> None:
        self.packages = packages
        self.finder = Finder(self)
        # (owner, attribute, original) for every replacement, to undo them when the session ends.
        self._replaced: list[tuple[Any, str, Any]] = []
        self._wrappers: dict[int, Any] = {}  # id(original function) -> its wrapper

    @property
    def count(self) -> int:
        """How many functions and methods are checked."""
        return len(self._wrappers)

    def covers(self, module_name: str) -> bool:
        return any(module_name == p or module_name.startswith(p + ".") for p in self.packages)

    def start(self) -> None:
        """Instrument what is already imported, then catch every later import."""
        loaded = [m for name, m in list(sys.modules.items()) if self.covers(name) and m is not None]
        for module in loaded:
            self.instrument(module)
        for module in loaded:  # `from .core import f` in a package's __init__ ran before we came
            for name, value in list(vars(module).items()):
                wrapper = self._wrappers.get(id(value))
                if wrapper is not None and wrapper is not value:
                    self._replace(module, name, value, wrapper)
        sys.meta_path.insert(0, self.finder)

    def stop(self) -> None:
        """Remove the import hook and put the original functions back."""
        if self.finder in sys.meta_path:
            sys.meta_path.remove(self.finder)
        for owner, name, original in reversed(self._replaced):
            setattr(owner, name, original)
        self._replaced.clear()
        self._wrappers.clear()

    def missing(self) -> list[str]:
        """The named packages Python cannot find (misspelt, or not on ``sys.path``)."""
        return [p for p in self.packages if p not in sys.modules and not _findable(p)]

    def instrument(self, module: types.ModuleType) -> None:
        """Wrap the annotated functions, and methods of classes, that ``module`` defines."""
        for name, value in list(vars(module).items()):
            if isinstance(value, type):
                self._instrument_class(value, module.__name__, set())
            elif self._wants(value, module.__name__):
                self._replace(module, name, value, self._wrap(value))

    def _instrument_class(self, cls: type, module_name: str, seen: set[int]) -> None:
        if cls.__module__ != module_name or id(cls) in seen:
            return
        seen.add(id(cls))
        for name, value in list(vars(cls).items()):
            if isinstance(value, type):
                self._instrument_class(value, module_name, seen)
            elif isinstance(value, (staticmethod, classmethod)):
                if self._wants(value.__func__, module_name):
                    self._replace(cls, name, value, type(value)(self._wrap(value.__func__)))
            elif isinstance(value, property):
                parts = (value.fget, value.fset, value.fdel)
                if any(self._wants(f, module_name) for f in parts):
                    wrapped = [self._wrap(f) if self._wants(f, module_name) else f for f in parts]
                    self._replace(cls, name, value, property(*wrapped, value.__doc__))
            elif isinstance(value, functools.cached_property):
                if self._wants(value.func, module_name):
                    cached = functools.cached_property(self._wrap(value.func))
                    cached.attrname, cached.__doc__ = value.attrname, value.__doc__
                    self._replace(cls, name, value, cached)
            elif self._wants(value, module_name):
                self._replace(cls, name, value, self._wrap(value))

    def _wants(self, fn: Any, module_name: str) -> bool:
        if not inspect.isfunction(fn) or fn.__module__ != module_name:
            return False  # imported from elsewhere: wrapped (or not) in its own module
        if getattr(fn, "__shapekit_shaped__", False):
            return False
        # @shaped's wrapper is a plain function; it would hide that these return generators or
        # coroutines from code that asks (pytest-asyncio, contextlib), so they are left alone.
        if inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn):
            return False
        if inspect.isasyncgenfunction(fn):
            return False
        return _has_array_hint(fn)

    def _wrap(self, fn: Any) -> Any:
        """One wrapper per function, however many names it goes by."""
        from ._shaped import shaped

        if id(fn) not in self._wrappers:
            self._wrappers[id(fn)] = shaped(fn)
        return self._wrappers[id(fn)]

    def _replace(self, owner: Any, name: str, original: Any, new: Any) -> None:
        setattr(owner, name, new)
        self._replaced.append((owner, name, original))


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _has_array_hint(fn: Any) -> bool:
    """True when any annotation of ``fn`` is, or contains, a jaxtyping array type."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return False  # names imported only under TYPE_CHECKING: beartype could not check them
    return any(_contains_array(hint) for hint in hints.values())


def _contains_array(hint: Any) -> bool:
    from ._shaped import is_array_hint

    return is_array_hint(hint) or any(_contains_array(arg) for arg in typing.get_args(hint))


class Finder:
    """A ``sys.meta_path`` entry for the packages: the usual finders find, we wrap the loader."""

    def __init__(self, instrumenter: Instrumenter) -> None:
        self._instrumenter = instrumenter

    def _skips(self, finder: Any) -> bool:
        """Finders not to ask: this one (a subclass may skip more)."""
        return finder is self

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not self._instrumenter.covers(fullname):
            return None
        for finder in sys.meta_path:
            if self._skips(finder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = Loader(spec.loader, self._instrumenter)
        return spec


class Loader:
    """The module's own loader, plus instrumenting once the module body has run."""

    def __init__(self, loader: Any, instrumenter: Instrumenter) -> None:
        self._loader = loader
        self._instrumenter = instrumenter

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        self._instrumenter.instrument(module)

    def __getattr__(self, name: str) -> Any:  # get_source, is_package, resource readers, ...
        return getattr(self._loader, name)
