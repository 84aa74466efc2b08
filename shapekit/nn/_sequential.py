"""Sequential: layers applied in order; a failing layer is reported with its place in the model."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from ..checking import ShapeError, shape_text


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
        for i, layer in enumerate(self.layers):
            try:
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
