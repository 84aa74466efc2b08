"""What :func:`shapekit.trace` changes on a model while its forward runs, and puts back after.

Hooks go on ``nn.Module``s; plain layers (the lecture's classes) and ``torch.jit.script`` modules,
which refuse hooks, get a recording ``__call__`` on their class, which records only the instances
being traced. With ``device="meta"`` every weight, buffer and input is swapped for a meta tensor.
What the forward changes (module buffers, a plain layer's ``.out`` and reassigned running
statistics) is restored. Each change registers its undo on an ``ExitStack``, so an error anywhere
still leaves the model as it was.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from typing import Any

import torch

from ._trace_record import Recorder, forward_function

__all__ = ["instrument", "restore_state_on_exit", "to_meta"]

# Two traces that wrapped the same class at once would restore each other's wrapper, so traces
# that wrap classes run one at a time (module hooks are per instance and need no lock).
_CLASS_PATCHES = threading.RLock()


def restore_state_on_exit(recorder: Recorder, params: list[torch.Tensor],
                           undo: contextlib.ExitStack) -> None:
    """Put back what a forward changes: module buffers (BatchNorm running statistics, even a
    buffer the forward replaced) and a plain layer's attributes (``self.out``, the lecture's
    reassigned ``running_mean``)."""
    is_param = {id(p) for p in params}
    buffers, attributes = [], []
    for node in recorder.nodes.values():
        obj = node.obj
        if isinstance(obj, torch.nn.Module):
            buffers += [(obj, name, b, b.detach().clone())
                        for name, b in obj._buffers.items() if b is not None]
        elif isinstance(getattr(obj, "__dict__", None), dict):
            state = dict(obj.__dict__)
            values = {k: v.detach().clone() for k, v in state.items()
                      if isinstance(v, torch.Tensor) and id(v) not in is_param}
            attributes.append((obj, state, values))

    @undo.callback
    def restore() -> None:
        with torch.no_grad():
            for module, name, buffer, values in buffers:
                module._buffers[name] = buffer
                if buffer.shape == values.shape:
                    buffer.copy_(values)
            for obj, state, values in attributes:
                obj.__dict__.clear()
                obj.__dict__.update(state)
                for key, value in values.items():
                    if state[key].shape == value.shape:
                        state[key].copy_(value)


def instrument(recorder: Recorder, undo: contextlib.ExitStack) -> None:
    """Hooks on modules; a recording ``__call__`` on the classes of plain layers and scripts."""
    plain = [node for node in recorder.nodes.values() if not node.hooked]
    classes = list(dict.fromkeys(type(node.obj) for node in plain))
    if classes:
        _CLASS_PATCHES.acquire()
        undo.callback(_CLASS_PATCHES.release)
    originals = {cls: cls.__call__ for cls in classes}  # all resolved before any is replaced
    for cls in classes:
        had, previous = "__call__" in cls.__dict__, cls.__dict__.get("__call__")
        try:
            cls.__call__ = _recording_call(originals[cls], recorder)
        except (TypeError, AttributeError):  # a class that cannot be patched: no row for it
            continue
        if had:
            undo.callback(setattr, cls, "__call__", previous)
        else:
            undo.callback(delattr, cls, "__call__")
    for node in recorder.nodes.values():
        if not node.hooked:
            continue
        module, function = node.obj, forward_function(node.obj)

        def before(m: Any, args: tuple, kwargs: dict, function: Any = function) -> None:
            recorder.before(m, args, kwargs, function)

        def after(m: Any, args: tuple, kwargs: dict, result: Any, function: Any = function) -> None:
            recorder.after(m, result, function)

        undo.callback(module.register_forward_pre_hook(before, with_kwargs=True).remove)
        # always_call: the hook also runs when forward raises, which is how the failing call is
        # found (torch runs it inside its except block, so sys.exc_info() is the error).
        undo.callback(module.register_forward_hook(after, with_kwargs=True,
                                                   always_call=True).remove)


def _recording_call(original: Callable[..., Any], recorder: Recorder) -> Callable[..., Any]:
    @functools.wraps(original)
    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        node = recorder.nodes.get(id(self))
        if node is None or node.obj is not self or node.hooked:
            return original(self, *args, **kwargs)
        recorder.before(self, args, kwargs, original)
        try:
            result = original(self, *args, **kwargs)
        except BaseException:
            recorder.after(self, None, original)
            raise
        recorder.after(self, result, original)
        return result

    return __call__


def to_meta(recorder: Recorder, inputs: tuple, kwargs: dict,
             undo: contextlib.ExitStack) -> tuple[tuple, dict, list[torch.Tensor]]:
    """Swap every weight, buffer and input for a meta tensor of the same shape (tied weights stay
    tied); the real ones are put back when the trace ends."""
    made: dict[int, torch.Tensor] = {}

    def meta(t: torch.Tensor) -> torch.Tensor:
        if t.device.type == "meta":
            return t
        if id(t) not in made:
            with torch.no_grad():
                copy = t.to("meta")
            if isinstance(t, torch.nn.Parameter):
                copy = torch.nn.Parameter(copy, requires_grad=t.requires_grad)
            elif t.requires_grad:
                copy.requires_grad_(True)
            made[id(t)] = copy
        return made[id(t)]

    for node in recorder.nodes.values():
        obj = node.obj
        if isinstance(obj, torch.jit.ScriptModule):
            continue
        if isinstance(obj, torch.nn.Module):
            for table in (obj._parameters, obj._buffers):
                for name, value in list(table.items()):
                    if value is not None and value.device.type != "meta":
                        table[name] = meta(value)
                        undo.callback(table.__setitem__, name, value)
        elif isinstance(getattr(obj, "__dict__", None), dict):  # restored with the attributes
            for name, value in list(obj.__dict__.items()):
                if isinstance(value, torch.Tensor):
                    obj.__dict__[name] = meta(value)
                elif isinstance(value, list) and value and all(
                        isinstance(v, torch.Tensor) for v in value):
                    obj.__dict__[name] = [meta(v) for v in value]

    def convert(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return meta(value)
        if isinstance(value, (tuple, list)):
            return type(value)(convert(v) for v in value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    weights = list(made.values())
    return convert(inputs), convert(kwargs), weights
