"""Record the shapes and dtypes that flow through every function of some packages.

:func:`observe` wraps each plain function and method (``forward``, ``__call__``, ``__init__``,
static and class methods) that the named packages define, with shapekit's import hook: modules
imported later are wrapped as they load, modules already imported are wrapped in place. Each call
is summarised (a tensor by its shape and dtype, containers by their elements, an ``int`` by its
value, anything else by nothing but "other") and counted; identical calls cost one dict lookup.
Methods also note the ``int`` attributes of ``self`` and the ``int`` arguments its ``__init__`` got,
which is the evidence for ``{self.fan_in}`` dims and for names such as ``fan_in``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import types
import typing
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _deps

__all__ = ["DEFAULT_PATH", "Call", "FunctionRecord", "Observations", "observe"]

DEFAULT_PATH = Path(".shapekit") / "observations.json"
_FORMAT = 1
_MAX_ITEMS = 32  # elements summarised per list, tuple or dict; a longer one is "other"
_MAX_CALLS = 2000  # distinct call signatures kept per function
_DUNDERS = frozenset(("__init__", "__call__", "__getitem__"))  # the only dunders observed


@dataclass
class Call:
    """One distinct call: what went in and came out, how often it happened.

    A value is summarised as ``("t", shape, dtype)`` for a tensor, ``None``, ``("i", n)`` for an
    ``int``, ``("tuple" | "list", items)``, ``("dict", ((key, item), ...))`` or ``("o",)``.
    """

    count: int
    args: dict[str, Any]
    result: Any
    attrs: dict[str, int] = field(default_factory=dict)  # int attributes of self
    init: dict[str, int] = field(default_factory=dict)  # int arguments of self's __init__


@dataclass
class FunctionRecord:
    """Everything seen of one function: where it is, its parameters, and its distinct calls."""

    module: str
    qualname: str
    file: str
    line: int
    params: list[str]
    method: bool  # the first parameter is ``self``
    existing: dict[str, dict] = field(default_factory=dict)  # jaxtyping annotations found
    calls: list[Call] = field(default_factory=list)
    var_params: list[str] = field(default_factory=list)  # the names of *args and **kwargs

    @property
    def key(self) -> str:
        return f"{self.module}:{self.qualname}"

    @property
    def total(self) -> int:
        """How many calls were seen (``calls`` holds the distinct ones)."""
        return sum(c.count for c in self.calls)


class Observations:
    """What :func:`observe` saw, by function; saved as JSON for ``shapekit annotate``.

    >>> obs = Observations(("mypkg",))
    >>> obs.functions
    {}
    """

    def __init__(self, packages: Iterable[str]) -> None:
        self.packages = tuple(packages)
        self.functions: dict[str, FunctionRecord] = {}

    def __repr__(self) -> str:
        calls = sum(r.total for r in self.functions.values())
        return (f"<Observations of {', '.join(self.packages)}: {len(self.functions)} functions, "
                f"{calls} calls>")

    def save(self, path: str | os.PathLike = DEFAULT_PATH) -> Path:
        """Write the observations as JSON; returns the path. The folder is made if needed (a
        ``.shapekit`` folder with a ``.gitignore``, as ``.pytest_cache`` has, so git skips it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ignore = path.parent / ".gitignore"
        if path.parent.name == ".shapekit" and not ignore.exists():
            ignore.write_text("# written by shapekit: observations are not source\n*\n")
        data = {
            "format": _FORMAT,
            "packages": list(self.packages),
            "functions": [_record_json(r) for r in self.functions.values()],
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike = DEFAULT_PATH) -> Observations:
        """Read observations that :meth:`save` wrote."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a shapekit observations file (format {_FORMAT})")
        obs = cls(data["packages"])
        for raw in data["functions"]:
            record = FunctionRecord(
                raw["module"], raw["qualname"], raw["file"], raw["line"], raw["params"],
                raw["method"], raw.get("existing", {}),
                [Call(c["count"], {k: _decode(v) for k, v in c["args"].items()},
                      _decode(c["result"]), c.get("attrs", {}), c.get("init", {}))
                 for c in raw["calls"]],
                raw.get("var_params", []),
            )
            key = record.key
            obs.functions[key if key not in obs.functions else f"{key}@{record.line}"] = record
        return obs


def _record_json(record: FunctionRecord) -> dict:
    return {
        "module": record.module, "qualname": record.qualname, "file": record.file,
        "line": record.line, "params": record.params, "method": record.method,
        "existing": record.existing, "var_params": record.var_params,
        "calls": [{"count": c.count, "args": {k: _encode(v) for k, v in c.args.items()},
                   "result": _encode(c.result), "attrs": c.attrs, "init": c.init}
                  for c in record.calls],
    }


def _encode(value: Any) -> Any:
    if value is None:
        return None
    kind = value[0]
    if kind == "t":
        return {"shape": list(value[1]), "dtype": value[2]}
    if kind == "i":
        return {"int": value[1]}
    if kind in ("tuple", "list"):
        return {kind: [_encode(v) for v in value[1]]}
    if kind == "dict":
        return {"dict": [[k, _encode(v)] for k, v in value[1]]}
    return {"other": True}


def _decode(value: Any) -> Any:
    if value is None:
        return None
    if "shape" in value:
        return ("t", tuple(value["shape"]), value["dtype"])
    if "int" in value:
        return ("i", value["int"])
    for kind in ("tuple", "list"):
        if kind in value:
            return (kind, tuple(_decode(v) for v in value[kind]))
    if "dict" in value:
        return ("dict", tuple((k, _decode(v)) for k, v in value["dict"]))
    return ("o",)


@contextlib.contextmanager
def observe(packages: Iterable[str] | str) -> Iterator[Observations]:
    """Record the tensor shapes and dtypes of every call into functions of ``packages``.

    >>> import torch, shapekit
    >>> with shapekit.observe(packages=["shapekit.nn"]) as obs:
    ...     layer = shapekit.nn.Tanh()
    ...     _ = layer(torch.ones(4, 3))
    >>> call = obs.functions["shapekit.nn._tanh:Tanh.forward"].calls[0]
    >>> call.args["x"], call.result
    (('t', (4, 3), 'float32'), ('t', (4, 3), 'float32'))

    Save them with ``obs.save()`` for ``shapekit annotate``, or infer annotations at once with
    :func:`shapekit.annotate.infer`.
    """
    packages = (packages,) if isinstance(packages, str) else tuple(packages)
    observer = _Observer(packages)
    observer.start()
    try:
        yield observer.observations
    finally:
        observer.stop()


class _Observer(_deps.Instrumenter):
    """shapekit's import hook, wrapping every function (not only annotated ones) to record."""

    def __init__(self, packages: tuple[str, ...]) -> None:
        super().__init__(packages)
        self.finder = _Finder(self)
        self.observations = Observations(packages)
        self._recorders: list[_Recorder] = []
        self._init_args: dict[int, dict[str, int]] = {}  # id(instance) -> its __init__'s ints

    def stop(self) -> None:
        super().stop()
        for recorder in self._recorders:
            recorder.flush()

    def _wants(self, fn: Any, module_name: str) -> bool:
        if not inspect.isfunction(fn) or fn.__module__ != module_name:
            return False
        name = fn.__name__
        if name.startswith("__") and name.endswith("__") and name not in _DUNDERS:
            return False
        # A wrapper would hide that these return generators or coroutines.
        return not (inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn)
                    or inspect.isasyncgenfunction(fn))

    def _wrap(self, fn: Any) -> Any:
        if id(fn) not in self._wrappers:
            recorder = _Recorder(fn, self.observations, self._init_args)
            self._recorders.append(recorder)
            self._wrappers[id(fn)] = recorder.wrapper()
        return self._wrappers[id(fn)]


class _Finder(_deps.Finder):
    """The import hook's finder, asking past every shapekit finder: with ``--shapekit-packages``
    on too, that one asks this one, which must not ask it back."""

    def __init__(self, observer: _Observer) -> None:
        super().__init__(observer)
        self.observer = observer

    def _skips(self, finder: Any) -> bool:
        return isinstance(finder, _deps.Finder)


_DTYPE_NAMES: dict[Any, str] = {}  # torch.float32 -> "float32"


def _summary(value: Any, tensor: type, depth: int = 0) -> Any:
    """A hashable summary of ``value``: shapes and dtypes of tensors, the structure around them."""
    if isinstance(value, tensor):
        dtype = value.dtype
        name = _DTYPE_NAMES.get(dtype)
        if name is None:
            name = _DTYPE_NAMES.setdefault(dtype, str(dtype).removeprefix("torch."))
        return ("t", value.shape, name)  # torch.Size: a tuple, hashed and compared as one
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        return ("i", value)
    if depth < 3 and kind in (tuple, list) and len(value) <= _MAX_ITEMS:
        return (kind.__name__, tuple(_summary(v, tensor, depth + 1) for v in value))
    if depth < 3 and kind is dict and len(value) <= _MAX_ITEMS and all(
            type(k) is str for k in value):
        return ("dict", tuple((k, _summary(v, tensor, depth + 1)) for k, v in value.items()))
    return ("o",)


def _int_attrs(obj: Any) -> tuple[tuple[str, int], ...]:
    """``self``'s ``int`` attributes, and those of a config it holds (``config.n_embd``: a
    dataclass or a namespace), as ``{self.n_embd}`` and ``{self.config.n_embd}`` can read them."""
    try:
        items = vars(obj).items()
    except TypeError:  # __slots__
        return ()
    found = []
    for k, v in items:
        if type(v) is int:
            found.append((k, v))
        elif type(v) is types.SimpleNamespace or hasattr(type(v), "__dataclass_fields__"):
            found += [(f"{k}.{k2}", v2) for k2, v2 in vars(v).items() if type(v2) is int]
    return tuple(found)


class _Recorder:
    """The record of one function, and the wrapper that fills it."""

    def __init__(self, fn: Any, observations: Observations, init_args: dict) -> None:
        self.fn = fn
        self.observations = observations
        self.init_args = init_args
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.names = tuple(p.name for p in params if p.kind in positional)
        self.var_args = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), None)
        self.none_defaults = tuple(p.name for p in params if p.default is None)
        self.method = bool(self.names) and self.names[0] == "self"
        self.is_init = fn.__name__ == "__init__" and self.method
        self.calls: dict[tuple, list] = {}
        self.record = FunctionRecord(
            module=fn.__module__, qualname=fn.__qualname__, file=fn.__code__.co_filename,
            line=fn.__code__.co_firstlineno, params=[p.name for p in params],
            method=self.method, existing=_existing(fn),
            var_params=[p.name for p in params if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)],
        )

    def wrapper(self) -> Any:
        import torch

        fn, tensor, summary, calls = self.fn, torch.Tensor, _summary, self.calls
        names, var_args, method = self.names, self.var_args, self.method
        none_defaults, init_args, is_init = self.none_defaults, self.init_args, self.is_init

        @functools.wraps(fn)
        def observed(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = [(n, summary(v, tensor)) for n, v in zip(names, args, strict=False)]
                if var_args is not None and len(args) > len(names):
                    bound.append((var_args, summary(args[len(names):], tensor)))
                bound += [(n, summary(v, tensor)) for n, v in kwargs.items()]
                passed = {n for n, _ in bound}
                bound += [(n, None) for n in none_defaults if n not in passed]
                attrs = init = ()
                if method and args:
                    attrs = _int_attrs(args[0])
                    init = init_args.get(id(args[0]), ())
            except Exception:  # a value we cannot summarise: the call is not recorded
                return fn(*args, **kwargs)
            out = fn(*args, **kwargs)
            if is_init:
                _remember_init(args, bound, init_args)
            key = (tuple(bound), summary(out, tensor), attrs, init)
            entry = calls.get(key)
            if entry is not None:
                entry[0] += 1
            elif len(calls) < _MAX_CALLS:
                calls[key] = [1]
                self._register()
            return out

        return observed

    def _register(self) -> None:
        functions = self.observations.functions
        key = self.record.key
        if functions.get(key, self.record) is not self.record:  # a property's setter, say
            key = f"{key}@{self.record.line}"
        functions.setdefault(key, self.record)

    def flush(self) -> None:
        """Turn the counted calls into :class:`Call` records."""
        self.record.calls = [
            Call(entry[0], {k: _plain(v) for k, v in bound}, _plain(result), dict(attrs),
                 dict(init))
            for (bound, result, attrs, init), entry in self.calls.items()
        ]


def _plain(summary: Any) -> Any:
    """A summary with its shapes as plain tuples (recorded as ``torch.Size``, to save a copy)."""
    if summary is None:
        return None
    if summary[0] == "t":
        return ("t", tuple(summary[1]), summary[2])
    if summary[0] in ("tuple", "list"):
        return (summary[0], tuple(_plain(v) for v in summary[1]))
    if summary[0] == "dict":
        return ("dict", tuple((k, _plain(v)) for k, v in summary[1]))
    return summary


def _remember_init(args: tuple, bound: list, init_args: dict) -> None:
    """Keep the ``int`` arguments of ``__init__`` (``fan_in=48``), by instance, while it lives."""
    ints = tuple((n, s[1]) for n, s in bound[1:] if s is not None and s[0] == "i")
    if not ints:
        return
    instance = args[0]
    key = id(instance)
    init_args[key] = ints
    with contextlib.suppress(TypeError):  # not weakly referenceable: kept until the end
        weakref.finalize(instance, init_args.pop, key, None)


def _existing(fn: Any) -> dict[str, dict]:
    """The jaxtyping annotations ``fn`` already has: parameter -> dims and allowed dtypes."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return {}
    found = {}
    for name, hint in hints.items():
        optional = False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            parts = [h for h in typing.get_args(hint) if h is not type(None)]
            optional = len(parts) < len(typing.get_args(hint))
            hint = parts[0] if len(parts) == 1 else hint
        if _deps.is_array_hint(hint):
            dtypes = hint.dtypes if isinstance(hint.dtypes, (list, tuple)) else None
            found[name] = {"dims": hint.dim_str, "dtypes": None if dtypes is None else
                           list(dtypes), "name": hint.__name__.split("[")[0],
                           "optional": optional}
    return found
