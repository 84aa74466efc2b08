"""trace() on models written the lecture's way (plain classes, no nn.Module), ops=True, and the
summary columns: depth, trainable/frozen, tied weights, FLOPs, memory, kernel, dtype, device.

Oracles: running the layers by hand, ``sum(p.numel())`` over unique parameters, torch's own
``FlopCounterMode`` on the same forward, and the CPU allocator's peak during a real
forward/backward as torch's profiler reports it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile

import pytest
import torch
import torch.nn.functional as F
from _lecture import one_thread  # noqa: F401 (autouse fixture)
from _lecture_classes import (
    BatchNorm1d,
    Embedding,
    FlattenConsecutive,
    Linear,
    Sequential,
    Tanh,
    wavenet,
)
from test_trace import GPT

from shapekit import ShapeError, explain
from shapekit.debug._trace import COLUMNS, trace

B = 4


def idx(batch: int = B, block: int = 8) -> torch.Tensor:
    return torch.randint(0, 27, (batch, block), generator=torch.Generator().manual_seed(0))


# --- the lecture's own classes ------------------------------------------------------------------


def test_lecture_wavenet_rows_follow_the_layers_run_by_hand():
    torch.manual_seed(42)
    model = wavenet()
    x = idx()
    t = trace(model, x)
    assert not t.failed
    assert [(r.path, r.type, r.depth) for r in t.rows] == [("", "Sequential", 0)] + [
        (f"layers[{i}]", type(layer).__name__, 1) for i, layer in enumerate(model.layers)]
    h = x
    for row, layer in zip(t.rows[1:], model.layers, strict=True):
        assert row.input_shapes == (tuple(h.shape),)
        h = layer(h)
        assert row.output_shapes == (tuple(h.shape),)
        assert row.params == sum(p.numel() for p in layer.parameters())
    assert t.rows[0].output_shape == (B, 27) and torch.equal(t.output, h)
    assert t.total_params == t.trainable_params == 76_579
    assert sum(r.params for r in t.rows) == 76_579  # the container's own count is 0, not a repeat
    assert "total params: 76,579 | input (4, 8) -> output (4, 27)" in str(t)


def test_lecture_trace_leaves_the_layers_as_they_were():
    model = wavenet()
    bn = model.layers[3]
    model(idx())  # a real forward: .out set everywhere, running statistics moved
    outs = [layer.out for layer in model.layers]
    mean, var = bn.running_mean, bn.running_var
    mean_values = mean.clone()
    trace(model, idx(batch=2))
    assert [layer.out for layer in model.layers] == outs  # the same tensors, not the trace's
    assert bn.running_mean is mean and bn.running_var is var
    assert torch.equal(bn.running_mean, mean_values)
    assert not hasattr(vars(Linear)["__call__"], "__wrapped__")  # the class's own __call__ back


def test_other_instances_of_a_traced_class_are_not_recorded():
    other = Linear(3, 2)

    class Model:  # calls a layer that is not part of it
        def __init__(self):
            self.layers = [Linear(3, 3)]

        def __call__(self, x):
            return other(self.layers[0](x))

        def parameters(self):
            return self.layers[0].parameters()

    t = trace(Model(), torch.ones(2, 3))
    assert [(r.path, r.output_shape) for r in t.rows] == [("", (2, 2)), ("layers[0]", (2, 3))]


def test_nested_lecture_containers_and_attribute_layers():
    inner = Sequential([Linear(4, 4), Tanh()])
    model = Sequential([Linear(3, 4), inner, BatchNorm1d(4)])
    t = trace(model, torch.randn(5, 3))
    assert [(r.path, r.name, r.depth) for r in t.rows] == [
        ("", "", 0), ("layers[0]", "layers.0", 1), ("layers[1]", "layers.1", 1),
        ("layers[1].layers[0]", "layers.1.layers.0", 2),
        ("layers[1].layers[1]", "layers.1.layers.1", 2), ("layers[2]", "layers.2", 1),
    ]
    assert [r.params for r in t.rows] == [0, 16, 0, 20, 0, 8]

    class MLP:  # layers as attributes, torch modules mixed in
        def __init__(self):
            self.emb = Embedding(27, 10)
            self.head = torch.nn.Linear(30, 27)

        def __call__(self, ix):
            return self.head(self.emb(ix).view(ix.shape[0], -1))

        def parameters(self):
            return self.emb.parameters() + list(self.head.parameters())

    t = trace(MLP(), idx(block=3))
    assert [(r.path, r.type, r.output_shape, r.params) for r in t.rows] == [
        ("", "MLP", (B, 27), 0), ("emb", "Embedding", (B, 3, 10), 270),
        ("head", "Linear", (B, 27), 30 * 27 + 27),
    ]


def test_failing_lecture_forward_keeps_the_rows_and_explains_the_error():
    torch.manual_seed(0)
    model = Sequential([Embedding(27, 20), FlattenConsecutive(2), Linear(48, 128)])
    x = idx()
    t = trace(model, x)
    with pytest.raises(ShapeError) as oracle, explain():
        model(x)
    assert t.failed and isinstance(t.error, RuntimeError)
    assert [(r.path, r.returned, r.failed) for r in t.rows] == [
        ("", False, False), ("layers[0]", True, False), ("layers[1]", True, False),
        ("layers[2]", False, True),
    ]
    failing = t.failed_row
    assert failing.input_shapes == ((B, 4, 40),)
    assert failing.error == (
        "RuntimeError: mat1 and mat2 shapes cannot be multiplied (16x40 and 48x128)")
    assert failing.diagnosis == str(oracle.value) == str(t.explanation)
    text = str(t)
    assert f"error: ShapeError: {str(oracle.value).splitlines()[0]}" in text
    assert "  torch said: RuntimeError: mat1 and mat2 shapes cannot be multiplied" in text
    assert "fix: build self.weight with 40 rows (40, 128)" in text


def test_ops_rows_show_the_functions_inside_a_lecture_forward():
    model = Sequential([Embedding(27, 24), FlattenConsecutive(2), Linear(48, 16), Tanh()])
    t = trace(model, idx(), ops=True)
    assert [(r.kind, r.type, r.depth, r.output_shape) for r in t.rows] == [
        ("layer", "Sequential", 0, (B, 4, 16)),
        ("layer", "Embedding", 1, (B, 8, 24)), ("op", "x[...]", 2, (B, 8, 24)),
        ("layer", "FlattenConsecutive", 1, (B, 4, 48)), ("op", "view", 2, (B, 4, 48)),
        ("layer", "Linear", 1, (B, 4, 16)), ("op", "matmul", 2, (B, 4, 16)),
        ("op", "add_", 2, (B, 4, 16)),
        ("layer", "Tanh", 1, (B, 4, 16)), ("op", "tanh", 2, (B, 4, 16)),
    ]
    matmul = t.rows[6]
    assert matmul.input_shapes == ((B, 4, 48), (48, 16)) and matmul.name == "layers.2"
    assert sum(r.params for r in t.rows) == t.total_params


def test_ops_rows_in_a_module_forward_and_the_failing_op():
    t = trace(GPT(), torch.zeros(2, 8, dtype=torch.long), ops=True)
    attn = [r for r in t.rows if r.kind == "op" and r.name == "blocks.0.attn"]
    types = [r.type for r in attn]
    assert types[:2] == ["split", "view"] and "softmax" in types and "matmul" in types
    att = next(r for r in attn if r.type == "softmax")
    assert att.output_shape == (2, 4, 8, 8)
    assert not any(r.kind == "op" and r.name.endswith("c_attn") for r in t.rows)  # torch's own

    class Head(torch.nn.Module):
        def forward(self, x):
            return F.softmax(x.view(x.shape[0], 5, -1), dim=-1)  # 12 is not a multiple of 5

    t = trace(Head(), torch.ones(2, 12), ops=True)
    assert [(r.type, r.failed, r.returned) for r in t.rows] == [
        ("Head", False, False), ("view", True, False)]


# --- columns ------------------------------------------------------------------------------------


def test_depth_folds_children_into_the_row_above():
    model = GPT()
    full = trace(model, torch.zeros(2, 8, dtype=torch.long))
    t = trace(model, torch.zeros(2, 8, dtype=torch.long), depth=1)
    assert [r.path for r in t.rows] == ["", "wte", "wpe", "blocks.0", "ln_f", "lm_head"]
    block = model.blocks[0]
    assert t.rows[3].params == sum(p.numel() for p in block.parameters())
    assert sum(r.params for r in t.rows) == sum(r.params for r in full.rows) == t.total_params
    assert [r.path for r in trace(model, torch.zeros(2, 8, dtype=torch.long), depth=0).rows] == [""]


def tied_gpt() -> GPT:
    torch.manual_seed(0)
    model = GPT(vocab=65, n_embd=32)
    model.lm_head.weight = model.wte.weight  # weight tying, as in GPT-2
    return model


def test_tied_weights_counted_once_and_marked():
    model = tied_gpt()
    t = trace(model, torch.zeros(2, 8, dtype=torch.long))
    unique = {id(p): p.numel() for p in model.parameters()}
    assert t.total_params == sum(unique.values())
    rows = {r.path: r for r in t.rows}
    assert rows["wte"].params == 65 * 32 and rows["wte"].shared == 0
    assert rows["lm_head"].params == 65 * 32 and rows["lm_head"].shared == 65 * 32
    assert rows["lm_head"].shared_with == "wte"
    assert sum(r.params - r.shared for r in t.rows) == t.total_params
    assert "2,080 (tied: wte)" in str(t)
    shares = trace(model, torch.zeros(2, 8, dtype=torch.long), columns=["params", "share"])
    assert math.isclose(sum(r.share for r in shares.rows), 1.0)
    assert shares.rows[-1].share == 0.0 and rows["wte"].share == 65 * 32 / t.total_params
    assert f"2,080  {65 * 32 / t.total_params:.1%}" in str(shares)


def test_module_called_twice_counts_its_parameters_once():
    class Twice(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = torch.nn.Linear(6, 6)

        def forward(self, x):
            return self.shared(torch.tanh(self.shared(x)))

    t = trace(Twice(), torch.ones(5, 6))
    assert [(r.params, r.shared) for r in t.rows] == [(0, 0), (42, 0), (42, 42)]
    assert "42 (counted above)" in str(t)


def test_trainable_and_frozen():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    model[0].requires_grad_(False)
    t = trace(model, torch.ones(3, 4), columns=["output", "params", "trainable"])
    assert t.trainable_params == 18 and t.total_params == 58
    assert [r.trainable for r in t.rows] == [0, 0, 18]
    assert "trainable params: 18 | frozen params: 40" in str(t)


def test_flops_match_torchs_counter():
    from torch.utils.flop_counter import FlopCounterMode

    model = GPT()
    x = torch.zeros(2, 16, dtype=torch.long)
    t = trace(model, x, columns=["output", "flops", "macs"])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    assert t.flops == counter.get_total_flops() > 0
    rows = {r.path: r for r in t.rows}
    assert rows["lm_head"].flops == 2 * 2 * 16 * 32 * 65  # 2 * (B*T) * in * out
    assert rows[""].flops == t.flops
    assert rows["blocks.0.attn"].flops == (rows["blocks.0.attn.c_attn"].flops
                                          + rows["blocks.0.attn.c_proj"].flops
                                          + 2 * 2 * (2 * 4 * 16 * 16 * 8))  # q @ k.T and att @ v
    lecture = trace(wavenet(), idx(), columns=["flops"])
    assert lecture.rows[3].flops == 2 * B * 4 * 48 * 128
    assert "multiply-adds: 505,344" in str(trace(wavenet(), idx(), columns=["macs"]))


def measured_peak(step) -> int:
    """Peak bytes the CPU allocator held during ``step()`` beyond what it held before, as torch's
    profiler records it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    path = tempfile.mktemp(suffix=".json")
    prof.export_chrome_trace(path)
    with open(path) as file:
        events = json.load(file)["traceEvents"]
    os.remove(path)
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    start = totals[0] - next(e["args"]["Bytes"] for e in events if e.get("name") == "[memory]")
    return max(totals) - start


@pytest.mark.parametrize("name", ["mlp", "lecture", "gpt"])
def test_forward_backward_estimate_against_measured_peak(name):
    """The estimate is within 30% of the measured peak of a real forward/backward (measured:
    0.93x, 0.74x and 1.13x)."""
    torch.manual_seed(0)
    if name == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(),
                                    torch.nn.Linear(1024, 256))
        x = torch.randn(512, 256)
    elif name == "lecture":
        model, x = wavenet(), idx(batch=256)
    else:
        model, x = GPT(n_embd=64, block_size=64), torch.zeros(64, 64, dtype=torch.long)
    t = trace(model, x, columns=["output", "memory"])
    estimate = t.memory.forward_backward

    def step():
        model(x).sum().backward() if name != "gpt" else model(x)[0].sum().backward()

    for p in model.parameters():
        p.grad = None
    peak = measured_peak(step)
    assert 0.7 * peak <= estimate <= 1.3 * peak, (estimate, peak)
    assert t.memory.params == sum(p.numel() * 4 for p in {id(p): p for p in
                                                          model.parameters()}.values())


def test_kernel_dtype_device_columns():
    model = torch.nn.Sequential(torch.nn.Conv1d(3, 8, 5), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 12, 2)).to(torch.float64)
    t = trace(model, torch.ones(2, 3, 16, dtype=torch.float64),
              columns=["output", "kernel", "dtype", "device"])
    assert [(r.kernel, r.dtypes, r.devices) for r in t.rows] == [
        (None, ("float64",), ("cpu",)), ((5,), ("float64",), ("cpu",)),
        (None, ("float64",), ("cpu",)), ((2, 96), ("float64",), ("cpu",)),
    ]
    assert "     0 Conv1d   (2, 8, 12)  (5,)     float64  cpu" in str(t)


def test_input_size_and_dtypes_build_the_inputs():
    model = GPT()
    given = trace(model, torch.zeros(3, 8, dtype=torch.long))
    built = trace(model, input_size=(3, 8), dtypes=[torch.long])
    assert [(r.path, r.output_shapes) for r in built.rows] == [
        (r.path, r.output_shapes) for r in given.rows]
    pair = trace(torch.nn.Bilinear(3, 4, 2), input_size=[(5, 3), (5, 4)])
    assert pair.rows[0].input_shapes == ((5, 3), (5, 4)) and pair.rows[0].dtypes == ("float32",)
    with pytest.raises(ValueError, match=r"one dtype per input size \(2\), got 1 dtypes; fix:"):
        trace(torch.nn.Bilinear(3, 4, 2), input_size=[(5, 3), (5, 4)], dtypes=[torch.float32])
    with pytest.raises(TypeError, match="either inputs or input_size=, got both; fix:"):
        trace(model, torch.zeros(3, 8), input_size=(3, 8))


def test_unknown_column_is_a_clear_error():
    with pytest.raises(ValueError, match=r"expected columns from input, .*got 'flop'; fix: e\.g\."):
        trace(torch.nn.Tanh(), torch.ones(2), columns=["flop"])
    assert set(COLUMNS) >= {"flops", "macs", "memory", "kernel", "dtype", "device", "trainable"}


def test_traces_in_two_threads_leave_the_classes_as_they_were():
    import threading

    results = {}

    def run(name: str) -> None:
        results[name] = trace(wavenet(), idx())

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [len(results[n].rows) for n in ("a", "b")] == [15, 15]
    assert all(not results[n].failed for n in ("a", "b"))
    assert not hasattr(vars(Linear)["__call__"], "__wrapped__")
    assert "__call__" in vars(Tanh) and not hasattr(Tanh.__call__, "__wrapped__")
