"""trace(..., device="meta"): models larger than memory, a real model traced without allocating,
the one-line reason when a forward cannot run on meta, and torch.jit.script submodules as rows."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _lecture import one_thread  # noqa: F401 (autouse fixture)
from _lecture_classes import wavenet
from _llama import Config, Llama

from shapekit.debug._trace import trace

TESTS = Path(__file__).resolve().parent


def test_llama_7b_config_traced_on_meta_in_a_small_process():
    """The 7B config (25 GiB of float32 weights, more than this machine's memory) is built under
    torch.device("meta") and traced; the child process's peak RSS stays under 1 GiB.

    The peak is the child's own (VmHWM, of the memory it mapped after exec): Linux carries
    ru_maxrss across exec, so that would report pytest's own peak when pytest is the larger."""
    script = textwrap.dedent("""
        import resource, sys, torch
        torch.set_num_threads(1)
        from _llama import Config, Llama
        from shapekit import trace
        config = Config.llama_7b()
        with torch.device("meta"):
            model = Llama(config)
        t = trace(model, input_size=(1, 2048), dtypes=[torch.long], device="meta",
                  columns=["output", "params", "flops", "memory"])
        assert not t.failed, t.error
        shape = "x".join(map(str, t.rows[-1].output_shape))
        try:
            with open("/proc/self/status") as status:
                peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        except OSError:  # no /proc (not Linux): the rusage peak
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(t.total_params, config.params(), len(t.rows), shape, t.flops,
              t.memory.params, peak)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=TESTS, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    total, expected, rows, shape, flops, param_bytes, rss_kib = run.stdout.split(maxsplit=6)
    assert int(total) == int(expected) == 6_738_415_616
    assert int(rows) == 1 + 1 + 32 * 12 + 1 + 1  # model, embed, 32 blocks of 12 modules, norm, head
    assert shape == "1x2048x32000"
    assert int(param_bytes) == 6_738_415_616 * 4
    # 2 * tokens * (every weight matrix but the embedding table), plus attention's two matmuls
    c = Config.llama_7b()
    matmul_params = 6_738_415_616 - c.vocab * c.d_model - (2 * c.n_layer + 1) * c.d_model
    attention = c.n_layer * 2 * 2 * 2048 * 2048 * c.d_model
    assert int(flops) == 2 * 2048 * matmul_params + attention
    assert int(rss_kib) < 1024 * 1024  # under 1 GiB


def test_small_llama_on_meta_matches_the_real_trace():
    torch.manual_seed(0)
    model = Llama(Config())
    real = trace(model, input_size=(2, 16), dtypes=[torch.long])
    meta = trace(model, input_size=(2, 16), dtypes=[torch.long], device="meta")
    assert [(r.path, r.output_shapes, r.params) for r in meta.rows] == [
        (r.path, r.output_shapes, r.params) for r in real.rows]
    assert meta.total_params == real.total_params == Config().params()
    assert {r.devices for r in meta.rows} == {("meta",)} and meta.device == "meta"
    assert "device: meta (shapes only: no weights or activations were allocated)" in str(meta)


def test_a_real_model_traced_on_meta_keeps_its_weights():
    torch.manual_seed(0)
    model = Llama(Config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weight = model.lm_head.weight
    t = trace(model, torch.zeros(2, 8, dtype=torch.long), device="meta")
    assert not t.failed and t.output.device.type == "meta"
    assert model.lm_head.weight is weight and weight.device.type == "cpu"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    lecture = wavenet()
    weight = lecture.layers[2].weight
    t = trace(lecture, torch.zeros(4, 8, dtype=torch.long), device="meta")
    assert not t.failed and t.rows[-1].devices == ("meta",) and t.total_params == 76_579
    assert lecture.layers[2].weight is weight and weight.device.type == "cpu"


def test_forward_that_reads_values_says_why_it_cannot_run_on_meta():
    class Gate(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum().item() > 0 else x  # reads a value

    t = trace(Gate(), torch.ones(2, 3), device="meta")
    assert t.failed
    lines = str(t).splitlines()
    hint = [line for line in lines if "on the meta device tensors have shapes but no" in line]
    assert len(hint) == 1
    assert "fix: trace a smaller config of the model without device='meta'" in hint[0]


class Scaled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(4, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * 2


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_script_submodule_is_one_row():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.jit.script(Scaled()),
                                torch.nn.ReLU())
    t = trace(model, torch.ones(2, 3))
    assert not t.failed
    assert [(r.path, r.type, r.output_shape, r.params) for r in t.rows] == [
        ("", "Sequential", (2, 8), 0), ("0", "Linear", (2, 4), 16),
        ("1", "Scaled", (2, 8), 40), ("2", "ReLU", (2, 8), 0),
    ]
    assert t.total_params == 56
    failing = trace(model, torch.ones(2, 5))
    assert failing.failed and failing.failed_row.path == "0"
    scripted = trace(torch.jit.script(Scaled()), torch.ones(2, 4))
    assert [(r.type, r.output_shape, r.params) for r in scripted.rows] == [("Scaled", (2, 8), 40)]
    assert scripted.model == "Scaled"
