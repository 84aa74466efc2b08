"""Tests for shapekit.trace: rows, dims, params, failing forwards, torch models, rendering, CLI.

The oracles: the lecture's shapes for the WaveNet model, running the layers one by one by hand,
``sum(p.numel())`` for parameter counts, and torch's own modules and exceptions.
"""

from __future__ import annotations

import dataclasses
import doctest
import io
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from shapekit import ShapeError, shaped
from shapekit import nn as sk
from shapekit.debug import _trace, _trace_format
from shapekit.debug._trace import Row, Trace, print_trace, trace
from shapekit.lecture._models import build_model

B = 4
HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
)


def idx(batch: int = B, block: int = 8) -> torch.Tensor:
    return torch.randint(0, 27, (batch, block), generator=torch.Generator().manual_seed(0))


def demo_bug_model() -> sk.Sequential:
    """The lecture's classic mistake: n_embd 20, while the first Linear still expects 2 * 24."""
    layers = build_model("wavenet").layers
    layers[0] = sk.Embedding(27, 20)
    return sk.Sequential(layers)


def assert_no_hooks(model: torch.nn.Module) -> None:
    for name, module in model.named_modules():
        for attr in HOOK_DICTS:
            assert not getattr(module, attr), f"{name or 'model'}.{attr} still holds a hook"


# --- the lecture's models -----------------------------------------------------------------------


def test_wavenet_rows_follow_the_lecture_shapes():
    torch.manual_seed(42)
    model = build_model("wavenet")
    x = idx()
    t = trace(model, x)
    assert not t.failed and t.error is None
    expected = [
        ("", "Sequential", (B, 27)),
        ("layers[0]", "Embedding", (B, 8, 24)),
        ("layers[1]", "FlattenConsecutive", (B, 4, 48)),
        ("layers[2]", "Linear", (B, 4, 128)),
        ("layers[3]", "BatchNorm1d", (B, 4, 128)),
        ("layers[4]", "Tanh", (B, 4, 128)),
        ("layers[5]", "FlattenConsecutive", (B, 2, 256)),
        ("layers[6]", "Linear", (B, 2, 128)),
        ("layers[7]", "BatchNorm1d", (B, 2, 128)),
        ("layers[8]", "Tanh", (B, 2, 128)),
        ("layers[9]", "FlattenConsecutive", (B, 256)),
        ("layers[10]", "Linear", (B, 128)),
        ("layers[11]", "BatchNorm1d", (B, 128)),
        ("layers[12]", "Tanh", (B, 128)),
        ("layers[13]", "Linear", (B, 27)),
    ]
    assert [(r.path, r.type, r.output_shape) for r in t.rows] == expected
    assert [r.name for r in t.rows] == [""] + [str(i) for i in range(14)]
    assert [r.depth for r in t.rows] == [0] + [1] * 14
    # Oracle: each layer's input is the previous layer's output, run by hand.
    h = x
    for row, layer in zip(t.rows[1:], model.layers, strict=True):
        assert row.input_shapes == (tuple(h.shape),)
        h = layer(h)
        assert row.output_shapes == (tuple(h.shape),)
    assert torch.equal(t.output, model(x))


def test_dims_bound_by_shapekit_layers():
    t = trace(build_model("wavenet"), idx())
    dims = {r.path: r.dims for r in t.rows}
    assert dims[""] == ""  # Sequential.forward is not annotated
    assert dims["layers[0]"] == f"batch={B} time=8"
    assert dims["layers[1]"] == f"batch={B} time=8 channels=24 time_out=4 channels_out=48"
    assert dims["layers[2]"] == f"batch={B} time=4"
    assert dims["layers[3]"] == f"batch={B} time=4"
    assert dims["layers[4]"] == f"shape={B},4,128"
    assert dims["layers[9]"] == f"batch={B} time=2 channels=128 channels_out=256"  # time_out=()
    assert dims["layers[13]"] == f"batch={B}"  # 2-D input: the empty *time is left out


def test_param_counts_match_the_modules():
    model = build_model("wavenet")
    t = trace(model, idx())
    for row in t.rows:
        own = model.get_submodule(row.name).parameters(recurse=False)
        assert row.params == sum(p.numel() for p in own)
    assert t.total_params == sum(p.numel() for p in model.parameters()) == 76_579
    assert sum(r.params for r in t.rows) == 76_579  # each module called once


def test_trace_keeps_mode_and_buffers_and_grad_setting():
    model = build_model("wavenet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    t = trace(model, idx())
    assert model.training and all(m.training for m in model.modules())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed"
    assert t.output.grad_fn is None  # no_grad by default
    assert trace(model, idx(), grad=True).output.grad_fn is not None
    model.eval()
    t = trace(model, idx(batch=1))  # one example is fine in eval mode
    assert not t.failed and t.rows[-1].output_shape == (1, 27)
    assert not model.training and not any(m.training for m in model.modules())


def test_buffer_replaced_during_forward_is_put_back():
    class Replacer(torch.nn.Module):  # like the lecture's buggy BatchNorm: assigns a new buffer
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("running", torch.zeros(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.running = x.mean(0, keepdim=True)  # (1, 3): the buffer changes shape
            return x

    layer = Replacer()
    original = layer.running
    trace(layer, torch.ones(5, 3))
    assert layer.running is original and torch.equal(original, torch.zeros(3))


# --- failing forwards ---------------------------------------------------------------------------


def test_failing_forward_shows_rows_up_to_the_failing_layer():
    model = demo_bug_model()
    t = trace(model, idx())  # does not raise
    assert t.failed and isinstance(t.error, ShapeError)
    assert [(r.path, r.output_shapes) for r in t.rows] == [
        ("", ()),
        ("layers[0]", ((B, 8, 20),)),
        ("layers[1]", ((B, 4, 40),)),
        ("layers[2]", ()),
    ]
    failing = t.rows[-1]
    assert t.failed_row is failing and failing.failed and not failing.returned
    assert failing.input_shapes == ((B, 4, 40),) and failing.input_keys == ("x",)
    assert failing.error == (
        f"ShapeError: layers[2] Linear expected x: (batch, *time, 48 = fan_in), got ({B}, 4, 40)"
    )
    assert failing.error == f"ShapeError: {str(t.error).splitlines()[0]}"
    assert failing.dims == f"batch={B} time=4"  # bound before the mismatch
    assert failing.params == 48 * 128
    root = t.rows[0]
    assert not root.returned and root.error is None  # it only passed the error on
    assert [r.failed for r in t.rows] == [False, False, False, True]
    assert_no_hooks(model)
    with pytest.raises(ShapeError, match="48 = fan_in"):  # the model itself is untouched
        model(idx())


def test_torch_error_inside_a_modules_own_code_blames_that_module():
    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 12)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x).view(x.shape[0], 5, -1)  # 12 is not a multiple of 5

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), Head(), torch.nn.ReLU())
    t = trace(model, torch.ones(2, 4))
    with pytest.raises(RuntimeError) as oracle:
        model(torch.ones(2, 4))
    assert type(t.error) is type(oracle.value) and str(t.error) == str(oracle.value)
    assert [(r.path, r.returned, r.failed) for r in t.rows] == [
        ("", False, False), ("0", True, False), ("1", False, True), ("1.proj", True, False),
    ]
    assert t.failed_row.error == f"RuntimeError: {str(oracle.value).splitlines()[0]}"
    assert t.rows[3].depth == 2 and t.rows[3].output_shapes == ((2, 12),)
    assert_no_hooks(model)


def test_hooks_removed_and_users_hooks_kept():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh())
    seen = []
    model[0].register_forward_hook(lambda m, a, out: seen.append(out.shape))
    trace(model, torch.ones(2, 3))
    trace(model, torch.ones(2, 5))  # fails
    assert seen == [torch.Size([2, 3])]
    assert len(model[0]._forward_hooks) == 1
    assert not model[0]._forward_pre_hooks and not model[1]._forward_hooks
    assert not model[0]._forward_hooks_always_called and not model[0]._forward_hooks_with_kwargs


def test_error_caught_inside_the_model_is_not_a_failure():
    class Fallback(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wide, self.narrow = torch.nn.Linear(5, 2), torch.nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            try:
                return self.wide(x)
            except RuntimeError:
                return self.narrow(x)  # called while the error is being handled

    t = trace(Fallback(), torch.ones(4, 3))
    assert not t.failed and t.output.shape == (4, 2)
    assert [(r.path, r.returned, r.failed) for r in t.rows] == [
        ("", True, False), ("wide", False, True), ("narrow", True, False),
    ]
    assert t.rows[2].output_shapes == ((4, 2),)


def test_bad_model_argument_is_a_clear_error():
    with pytest.raises(TypeError, match=r"expected a torch.nn.Module or a layer object with "
                       r"__call__ and \.parameters\(\) \(as the lecture writes them\) as model, "
                       r"got Tensor; fix:"):
        trace(torch.ones(3), torch.nn.Linear(3, 2))


# --- plain torch models -------------------------------------------------------------------------


def test_plain_torch_sequential():
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.ReLU(), torch.nn.Linear(20, 3))
    t = trace(model, torch.ones(7, 10))
    assert [(r.path, r.type, r.output_shape, r.params, r.dims) for r in t.rows] == [
        ("", "Sequential", (7, 3), 0, ""),
        ("0", "Linear", (7, 20), 220, ""),
        ("1", "ReLU", (7, 20), 0, ""),
        ("2", "Linear", (7, 3), 63, ""),
    ]
    assert t.total_params == 283


@dataclasses.dataclass
class Output:  # a HuggingFace-style output object
    logits: torch.Tensor
    loss: torch.Tensor | None


class CausalSelfAttention(torch.nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = torch.nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = torch.nn.Linear(n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, T)
        mask = torch.tril(torch.ones(T, T, dtype=torch.bool))
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.c_proj(y), att


class Block(torch.nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = torch.nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head)
        self.ln_2 = torch.nn.LayerNorm(n_embd)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(n_embd, 4 * n_embd), torch.nn.GELU(),
            torch.nn.Linear(4 * n_embd, n_embd),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(self.ln_1(x))
        x = x + y
        return x + self.mlp(self.ln_2(x))


class GPT(torch.nn.Module):
    def __init__(self, vocab: int = 65, block_size: int = 16, n_embd: int = 32, n_head: int = 4,
                 output: str = "tuple") -> None:
        super().__init__()
        self.output = output
        self.wte = torch.nn.Embedding(vocab, n_embd)
        self.wpe = torch.nn.Embedding(block_size, n_embd)
        self.blocks = torch.nn.ModuleList([Block(n_embd, n_head)])
        self.ln_f = torch.nn.LayerNorm(n_embd)
        self.lm_head = torch.nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        B, T = idx.shape
        x = self.wte(idx) + self.wpe(torch.arange(T))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.view(B * T))
        if self.output == "dict":
            return {"logits": logits, "loss": loss}
        if self.output == "dataclass":
            return Output(logits, loss)
        return logits, loss


def test_gpt_style_model_rows_in_call_order():
    torch.manual_seed(0)
    model = GPT()
    x, y = torch.randint(0, 65, (2, 16)), torch.randint(0, 65, (2, 16))
    t = trace(model, x, targets=y)
    assert not t.failed
    assert [(r.path, r.depth) for r in t.rows] == [
        ("", 0), ("wte", 1), ("wpe", 1), ("blocks.0", 1), ("blocks.0.ln_1", 2),
        ("blocks.0.attn", 2), ("blocks.0.attn.c_attn", 3), ("blocks.0.attn.c_proj", 3),
        ("blocks.0.ln_2", 2), ("blocks.0.mlp", 2), ("blocks.0.mlp.0", 3), ("blocks.0.mlp.1", 3),
        ("blocks.0.mlp.2", 3), ("ln_f", 1), ("lm_head", 1),
    ]
    rows = {r.path: r for r in t.rows}
    root = rows[""]
    assert root.input_keys == ("idx", "targets") and root.input_shapes == ((2, 16), (2, 16))
    assert root.output_keys == ("[0]", "[1]") and root.output_shapes == ((2, 16, 65), ())
    attn = rows["blocks.0.attn"]
    assert attn.output_shapes == ((2, 16, 32), (2, 4, 16, 16))
    assert rows["blocks.0.attn.c_attn"].output_shapes == ((2, 16, 96),)
    assert rows["wpe"].input_shapes == ((16,),)
    assert rows["blocks.0.mlp.0"].output_shape == (2, 16, 128)
    for row in t.rows:
        own = model.get_submodule(row.name).parameters(recurse=False)
        assert row.params == sum(p.numel() for p in own)
    assert t.total_params == sum(p.numel() for p in model.parameters())
    assert "[0]=(2, 16, 65) [1]=()" in str(t)
    assert "idx=(2, 16) targets=(2, 16)" in str(t)


@pytest.mark.parametrize("output", ["dict", "dataclass"])
def test_gpt_style_dict_and_dataclass_outputs(output):
    t = trace(GPT(output=output), torch.zeros(3, 8, dtype=torch.long))
    root = t.rows[0]
    assert root.input_keys == ("idx",) and root.input_shapes == ((3, 8),)
    assert root.output_keys == ("logits", "loss") and root.output_shapes == ((3, 8, 65), "None")
    assert "logits=(3, 8, 65) loss=None" in str(t)


def test_gpt_style_failure_inside_attention():
    model = GPT(n_embd=30, n_head=4)  # 30 is not a multiple of 4: the head view fails
    t = trace(model, torch.zeros(2, 8, dtype=torch.long))
    assert t.failed and isinstance(t.error, RuntimeError)
    assert t.failed_row.path == "blocks.0.attn" and t.failed_row.input_shapes == ((2, 8, 30),)
    assert t.rows[-1].path == "blocks.0.attn.c_attn" and t.rows[-1].returned
    assert [r.path for r in t.rows if not r.returned] == ["", "blocks.0", "blocks.0.attn"]
    assert_no_hooks(model)


def test_module_called_twice_gives_a_row_per_call():
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = torch.nn.Linear(6, 6)
            self.head = torch.nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.shared(torch.tanh(self.shared(x))))

    t = trace(Twice(), torch.ones(5, 6))
    assert [(r.path, r.output_shape) for r in t.rows] == [
        ("", (5, 2)), ("shared", (5, 6)), ("shared", (5, 6)), ("head", (5, 2)),
    ]


def test_nested_inputs_and_non_tensors_are_flattened_with_keys():
    class Takes(torch.nn.Module):
        def forward(self, batch: dict, pair: tuple, scale: float = 1.0) -> torch.Tensor:
            return batch["x"] * scale + pair[0].sum() + pair[1][0].sum()

    t = trace(Takes(), {"x": torch.ones(2, 3)}, (torch.ones(4), [torch.ones(1, 1)]), scale=2.0)
    row = t.rows[0]
    assert row.input_keys == ("batch.x", "pair[0]", "pair[1][0]", "scale")
    assert row.input_shapes == ((2, 3), (4,), (1, 1), "float")


def test_shapekit_sequential_nested_paths():
    inner = sk.Sequential([sk.Linear(4, 4), sk.Tanh()])
    model = sk.Sequential([sk.Linear(3, 4), inner])
    t = trace(model, torch.ones(2, 3))
    assert [(r.path, r.name, r.depth) for r in t.rows] == [
        ("", "", 0), ("layers[0]", "0", 1), ("layers[1]", "1", 1),
        ("layers[1].layers[0]", "1.0", 2), ("layers[1].layers[1]", "1.1", 2),
    ]


class Heads(torch.nn.Module):  # at module level: string annotations resolve in its globals
    def __init__(self, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head

    @shaped
    def forward(
        self, x: Float[Tensor, "batch time channels"]
    ) -> Float[Tensor, "batch {self.n_head} time head_size"]:
        B, T, C = x.shape
        return x.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)


def test_dims_of_a_users_own_annotated_module():
    t = trace(Heads(4), torch.ones(2, 5, 12))
    assert t.rows[0].dims == "batch=2 time=5 channels=12 head_size=3"
    assert t.rows[0].output_shape == (2, 4, 5, 3)


def test_activations_are_not_kept_alive():
    import weakref

    refs = []
    model = torch.nn.Sequential(torch.nn.Linear(3, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    model[0].register_forward_hook(lambda m, a, out: refs.append(weakref.ref(out)))
    t = trace(model, torch.ones(8, 3))
    assert t.rows[1].output_shapes == ((8, 64),)
    assert refs and refs[0]() is None  # only shapes were recorded


# --- rendering ----------------------------------------------------------------------------------


def small_failing() -> Trace:
    torch.manual_seed(0)
    model = sk.Sequential([sk.Embedding(27, 10), sk.FlattenConsecutive(3), sk.Linear(20, 8)])
    return trace(model, idx(batch=2, block=3))


def test_plain_text_table():
    assert str(small_failing()) == "\n".join([
        "   layer                           input       output             params  dims",
        "   Sequential                      (2, 3)      (raised)                -",
        "     layers[0] Embedding           (2, 3)      (2, 3, 10)            270  batch=2 time=3",
        "     layers[1] FlattenConsecutive  (2, 3, 10)  (2, 30)                 -"
        "  batch=2 time=3 channels=10 channels_out=30",
        ">>   layers[2] Linear              (2, 30)     raised ShapeError     168  batch=2",
        "",
        "total params: 438 | input (2, 3) -> failed in layers[2] Linear",
        "error: ShapeError: layers[2] Linear expected x: (batch, *time, 20 = fan_in), got (2, 30)",
        "  bound so far: batch=2 time=() (from layers[1] FlattenConsecutive output)",
        "  fix: the layer before produces 30 features; build Linear(30, ...) or change "
        "FlattenConsecutive(n)",
    ])


def test_plain_text_footer_of_a_successful_trace():
    text = str(trace(build_model("wavenet"), idx()))
    assert text.splitlines()[-1] == f"total params: 76,579 | input ({B}, 8) -> output ({B}, 27)"
    assert f"     layers[13] Linear             ({B}, 128)     ({B}, 27)" in text
    assert ">>" not in text


def test_markdown_table():
    assert small_failing().to_markdown() == "\n".join([
        "| layer | input | output | params | dims |",
        "|---|---|---|---:|---|",
        "| Sequential | (2, 3) | (raised) | - |  |",
        "| &nbsp;&nbsp;`layers[0]` Embedding | (2, 3) | (2, 3, 10) | 270 | batch=2 time=3 |",
        "| &nbsp;&nbsp;`layers[1]` FlattenConsecutive | (2, 3, 10) | (2, 30) | - |"
        " batch=2 time=3 channels=10 channels_out=30 |",
        "| &nbsp;&nbsp;**✗ `layers[2]` Linear** | (2, 30) | **raised ShapeError** | 168 |"
        " batch=2 |",
        "",
        "total params: 438 | input (2, 3) → failed in layers[2] Linear",
        "",
        "```text",
        "error: ShapeError: layers[2] Linear expected x: (batch, *time, 20 = fan_in), got (2, 30)",
        "  bound so far: batch=2 time=() (from layers[1] FlattenConsecutive output)",
        "  fix: the layer before produces 30 features; build Linear(30, ...) or change "
        "FlattenConsecutive(n)",
        "```",
        "",
    ])


def test_markdown_escapes_pipes():
    row = Row("a|b", "T", ((1,),), ((1,),), 0)
    assert "`a\\|b` T" in Trace([row], "T", 0).to_markdown()


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_print_picks_rich_in_a_terminal_and_plain_text_otherwise():
    t = small_failing()
    plain = io.StringIO()
    print_trace(t, plain)
    assert plain.getvalue() == str(t) + "\n"
    terminal = FakeTerminal()
    t.print(terminal)
    shown = terminal.getvalue()
    assert "✗" in shown and "layers[2] Linear" in shown and "raised ShapeError" in shown
    assert "fix: the layer before produces 30 features" in shown
    assert shown != str(t) + "\n"


def test_rich_renders_the_trace():
    from rich.console import Console
    from rich.table import Table

    renderables = list(small_failing().__rich_console__(Console(), None))
    assert isinstance(renderables[0], Table) and renderables[0].row_count == 4


@pytest.mark.parametrize("module", [_trace, _trace_format])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed


# --- the CLI ------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def shapekit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shapekit", "trace", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_traces_every_lecture_model():
    run = shapekit("--model", "all", "--batch", "2")
    assert run.returncode == 0, run.stderr
    out = run.stdout
    for title in ("original: 3-char context, 200 hidden (row 1, --model original, 12,097 params)",
                  "(row 3, --model hierarchical-bug, 22,397 params)",
                  "n_embd 24, n_hidden 128 (row 5, --model wavenet, 76,579 params)"):
        assert title in out
    assert "     layers[13] BuggyBatchNorm1d" not in out  # the bug row has 14 layers, 0..13
    assert "     layers[11] BuggyBatchNorm1d   (2, 68)      (2, 68)         136\n" in out
    assert out.count("-> output (2, 27)") == 5


def test_cli_demo_bug_and_markdown(capsys):
    from shapekit.cli._main import main

    assert main(["trace", "--demo-bug", "--batch", "2", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("### the lecture's classic mistake: Embedding(27, 20), then Linear(48")
    assert "| layer | input | output | params | dims |" in out
    assert "**✗ `layers[2]` Linear** | (2, 4, 40) | **raised ShapeError**" in out
    assert "fix: the layer before produces 40 features; build Linear(40, ...)" in out


def test_cli_help_and_bad_model(capsys):
    from shapekit.cli._main import main

    with pytest.raises(SystemExit, match=r"shapekit trace: unknown model 'nope'.*fix: e\.g\."):
        main(["trace", "--model", "nope"])
    with pytest.raises(SystemExit) as done:
        main(["trace", "--help"])
    assert done.value.code == 0
    helped = capsys.readouterr().out
    assert "--demo-bug" in helped and "hierarchical-bug" in helped and "examples:" in helped


def test_cli_trace_of_one_example_traces_in_eval_mode():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "shapekit", "trace", "--batch", "1",
                           "--format", "text"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "in eval mode (--batch 1)" in proc.stdout and "model.eval()" not in proc.stdout
    assert "(1, 27)" in proc.stdout and "failed" not in proc.stdout
