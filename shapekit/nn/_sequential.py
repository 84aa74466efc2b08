"""Sequential: layers applied in order; a failing layer is reported with its place in the model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

from .._errors import ShapeError
from .._modes import _State
from .._shaped import shape_text


def _global_hook_registries() -> tuple | None:
    """The module-level hook registries that ``nn.Module.__call__`` consults (hooks registered with
    ``torch.nn.modules.module.register_module_forward_hook`` and friends), or None when this torch
    keeps them elsewhere: then every layer is called through ``__call__``."""
    from torch.nn.modules import module

    names = ("_global_backward_pre_hooks", "_global_backward_hooks", "_global_forward_hooks",
             "_global_forward_pre_hooks")
    registries = tuple(getattr(module, name, None) for name in names)
    return None if any(r is None for r in registries) else registries


_GLOBAL_HOOKS = _global_hook_registries()
_MODULE_CALL = torch.nn.Module.__call__  # torch.fx swaps it out while it traces
_NOTED_CLASSES: set[type] = set()  # classes looked at, as Sequentials are built or called
# Of those, the classes whose call is nn.Module's own (not overridden).
_PLAIN_CLASSES: set[type] = set()
# Of those, the classes whose forward is @shaped -> the function it wraps (run when checks are off).
_UNCHECKED_FORWARD: dict[type, Callable[..., torch.Tensor]] = {}


def _note_class(cls: type) -> None:
    _NOTED_CLASSES.add(cls)
    if (
        cls.__call__ is _MODULE_CALL
        and cls._wrapped_call_impl is torch.nn.Module._wrapped_call_impl
        and cls._call_impl is torch.nn.Module._call_impl
    ):
        _PLAIN_CLASSES.add(cls)
        if getattr(cls.forward, "__shapekit_shaped__", False):
            _UNCHECKED_FORWARD[cls] = cls.forward.__wrapped__


def direct_call(module: torch.nn.Module) -> Callable[..., torch.Tensor]:
    """What calling ``module`` comes down to right now: its ``forward`` when ``nn.Module.__call__``
    would find nothing to do around it (no hooks of its own or global ones, no tracing, not
    compiled, ``__call__`` not overridden), else ``module`` itself. Ask again before each call:
    hooks can come and go.

    >>> layer = torch.nn.Linear(3, 2)
    >>> direct_call(layer) == layer.forward
    True
    >>> _ = layer.register_forward_hook(lambda *args: None)
    >>> direct_call(layer) is layer
    True
    """
    cls = type(module)
    if cls not in _NOTED_CLASSES:
        _note_class(cls)
    if (
        cls in _PLAIN_CLASSES
        and _calls_are_plain()
        and not (
            module._forward_hooks
            or module._forward_pre_hooks
            or module._backward_hooks
            or module._backward_pre_hooks
            or module._compiled_call_impl is not None
        )
    ):
        return module.forward
    return module


def _calls_are_plain() -> bool:
    """Whether nn.Module.__call__ would go straight to ``forward`` for a layer without hooks of
    its own: no global hooks, no JIT or fx tracing. Checked once per Sequential call."""
    return (
        _GLOBAL_HOOKS is not None
        and not any(_GLOBAL_HOOKS)
        and torch.nn.Module.__call__ is _MODULE_CALL
        and not torch._C._get_tracing_state()
    )


class Sequential(torch.nn.Module):
    """Apply ``layers`` in order. Indexable and iterable; children are named ``"0"``, ``"1"``, ...
    like torch's, and ``.layers`` is the list, as in the lecture.

    When a layer raises :class:`ShapeError`, the message names it by its place (``layers[2]``) and
    says where its input came from (``layers[1] FlattenConsecutive output``).

    >>> import torch
    >>> from shapekit.nn import Embedding, FlattenConsecutive, Linear
    >>> model = Sequential([Embedding(27, 24), FlattenConsecutive(2), Linear(48, 128)])
    >>> model(torch.zeros(32, 8, dtype=torch.long)).shape
    torch.Size([32, 4, 128])
    >>> model[1]
    FlattenConsecutive(n=2)
    """

    def __init__(self, layers: Iterable[torch.nn.Module]) -> None:
        super().__init__()
        if isinstance(layers, torch.nn.Module) or not isinstance(layers, Iterable):
            raise TypeError(
                f"Sequential takes a list of layers, got {type(layers).__name__}; "
                "fix: Sequential([layer1, layer2, ...])"
            )
        for i, layer in enumerate(layers):
            if not isinstance(layer, torch.nn.Module):
                raise TypeError(
                    f"Sequential layers[{i}] is a {type(layer).__name__}, expected a "
                    "torch.nn.Module; fix: build it from shapekit.nn or torch.nn layers"
                )
            self.add_module(str(i), layer)
            _note_class(type(layer))

    @property
    def layers(self) -> list[torch.nn.Module]:
        return list(self._modules.values())  # type: ignore[arg-type]

    def __getitem__(self, index: int | slice) -> torch.nn.Module:
        layers = self.layers
        if isinstance(index, slice):
            return Sequential(layers[index])
        return layers[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[torch.nn.Module]:
        return iter(self._modules.values())  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = x
        # A layer without hooks is called through its forward directly, as nn.Module.__call__
        # itself would after finding no hooks: the same call, without the machinery that looks
        # for them, which costs a few percent of a training step of the lecture's small model.
        # With checks off, a @shaped forward would only pass the call on: call what it wraps.
        plain, off = _calls_are_plain(), _State.mode == "off"
        for i, layer in enumerate(self._modules.values()):
            try:
                if plain and not (  # torch's own test for skipping its hooks, written out inline
                    layer._forward_hooks
                    or layer._forward_pre_hooks
                    or layer._backward_hooks
                    or layer._backward_pre_hooks
                    or layer._compiled_call_impl is not None
                ) and type(layer) in _PLAIN_CLASSES:
                    unchecked = _UNCHECKED_FORWARD.get(type(layer)) if off else None
                    if unchecked is not None and "forward" not in layer.__dict__:
                        x = unchecked(layer, x)
                    else:
                        x = layer.forward(x)
                else:
                    x = layer(x)
            except ShapeError as err:
                self._locate(err, i, inputs)
                raise
        return x

    def _locate(self, err: ShapeError, i: int, inputs: torch.Tensor) -> None:
        """Add the failing layer's place, where its input came from, and the layer before it."""
        layers = self.layers
        if err.kind == "batch-missing" and isinstance(inputs, torch.Tensor):
            # The missing axis is the model input's: word the fix in terms of what the user passed.
            err.fix = (
                f"the model input {shape_text(inputs.shape)} has no batch axis, so every layer "
                "after it is one axis short; pick one example with Xtr[[7]] or Xtr[7:8] (a batch "
                "of one), not Xtr[7]"
            )
        nested = bool(err.path)  # a Sequential inside this one located the error first
        err.path = f"layers[{i}]" + (f".{err.path}" if nested else "")
        here = f"layers[{i - 1}] {type(layers[i - 1]).__name__} output" if i else "model input"
        if not err.source or (nested and err.source == "model input"):
            err.source = here  # the nested model's input is what this one fed it
        elif nested and err.source.startswith("layers["):
            err.source = f"layers[{i}].{err.source}"
        if not err.previous:
            knobs = (getattr(layer, "shape_knob", None) for layer in reversed(layers[:i]))
            err.previous = next((k for k in knobs if k), "")
