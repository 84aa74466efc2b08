"""Tests for shapekit.lecture._train and shapekit.lecture._run: the lecture's loop, step for
step, and resuming.

The oracle is tests/lecture_reference.py, the lecture's own code in plain torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from _lecture import (  # one_thread: autouse fixture
    names_path,
    one_thread,  # noqa: F401
    reference,
)
from safetensors.torch import load_file

from shapekit.lecture._checkpoint import load_checkpoint, load_state_into, read_json
from shapekit.lecture._data import Names, load_names, make_splits
from shapekit.lecture._models import build_model, resolve_row
from shapekit.lecture._run import EVAL_CHUNK, make_config, run_training
from shapekit.lecture._train import default_decay_at, evaluate, lr_at, train

STEPS = 300


@pytest.fixture(scope="module")
def names() -> Names:
    return load_names(names_path())


@pytest.fixture(scope="module")
def few_names(names) -> Names:
    """The first 2,000 names: enough for runs whose point is equality, not a good model."""
    return Names(names.words[:2000], names.source, names.sha256)


@pytest.fixture(scope="module")
def splits(names):
    return make_splits(names.words, 8)


def test_lr_schedule_boundary_is_the_lectures():
    assert default_decay_at(200_000) == 150_000
    rates = [lr_at(i, lr=0.1, lr_final=0.01, decay_at=150_000) for i in (0, 149_999, 150_000)]
    assert rates == [0.1, 0.1, 0.01]


def test_losses_equal_the_plain_torch_lecture_loop_step_by_step(splits):
    ref = reference()
    ref_lossi: list[float] = []
    ref_model = ref.lecture_loop(splits.Xtr, splits.Ytr, STEPS, lossi=ref_lossi)
    torch.manual_seed(42)
    model = build_model("wavenet")
    result = train(model, splits, steps=STEPS, progress=False)
    assert result.steps_done == STEPS and not result.interrupted
    assert result.lossi == ref_lossi  # the same batches, the same math, bit for bit
    ref_val = ref.split_loss(ref_model, splits.Xdev, splits.Ydev)  # the dev split in one forward
    assert evaluate(model, splits.Xdev, splits.Ydev) == ref_val
    assert evaluate(model, splits.Xdev, splits.Ydev, chunk=4096) == pytest.approx(ref_val, abs=1e-6)
    Xb, Yb = splits.Xtr[:5000], splits.Ytr[:5000]  # the running statistics, through eval mode
    assert evaluate(model, Xb, Yb) == ref.split_loss(ref_model, Xb, Yb)


def test_reference_data_pipeline_equals_make_splits(splits):
    (Xtr, Ytr), (Xdev, Ydev), (Xte, Yte) = reference().lecture_splits(names_path())
    ours = [splits.Xtr, splits.Ytr, splits.Xdev, splits.Ydev, splits.Xte, splits.Yte]
    for a, b in zip([Xtr, Ytr, Xdev, Ydev, Xte, Yte], ours, strict=True):
        assert torch.equal(a, b)


def test_evaluate_restores_the_mode():
    model = build_model("context8")
    X, Y = torch.randint(0, 27, (50, 8)), torch.randint(0, 27, (50,))
    evaluate(model, X, Y)
    assert model.training
    model.eval()
    evaluate(model, X, Y)
    assert not model.training


def test_on_step_keyboard_interrupt_stops_after_a_complete_step(splits):
    torch.manual_seed(42)
    model = build_model("wavenet")

    def stop_at_10(i: int, loss: float) -> None:
        if i == 9:
            raise KeyboardInterrupt

    result = train(model, splits, steps=STEPS, progress=False, on_step=stop_at_10)
    assert result.interrupted and result.steps_done == 10 and len(result.lossi) == 10


def test_sigint_is_deferred_to_the_end_of_the_step(splits):
    # a suite launched with SIGINT ignored (`cmd &`, some CI) would have no Ctrl-C: give it one
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        torch.manual_seed(42)
        model = build_model("context8")

        def ctrl_c(i: int, loss: float) -> None:
            if i == 4:
                os.kill(os.getpid(), signal.SIGINT)  # the handler sets a flag; the loop stops after

        result = train(model, splits, steps=STEPS, progress=False, on_step=ctrl_c)
        assert result.interrupted and result.steps_done == 5
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    finally:
        signal.signal(signal.SIGINT, inherited)


def _config(names: Names, steps: int) -> dict:
    return make_config(resolve_row("wavenet"), names, data_path=None, steps=steps, save_every=0)


def test_interrupted_then_resumed_run_equals_an_uninterrupted_one(tmp_path, few_names):
    names = few_names
    steps = 120  # decay at 90, so the resumed part crosses the schedule boundary
    whole = run_training(tmp_path / "whole", _config(names, steps), names, progress=False)

    def interrupt(i: int, loss: float) -> None:
        if i == 49:
            raise KeyboardInterrupt

    cut = run_training(tmp_path / "cut", _config(names, steps), names, progress=False,
                       on_step=interrupt)
    assert cut.interrupted and cut.metrics["steps_done"] == 50 and not cut.metrics["finished"]
    ckpt = load_checkpoint(tmp_path / "cut")  # a usable checkpoint at the last complete step
    assert ckpt.step == 50 and len(ckpt.lossi) == 50
    torch.manual_seed(0)  # whatever the RNG did meanwhile, resume restores it
    torch.randn(1000)
    resumed = run_training(tmp_path / "cut", read_json(tmp_path / "cut/config.json", "config"),
                           names, resume=True, progress=False)
    assert not resumed.interrupted
    for key in ("train_loss", "val_loss", "steps_done", "params"):
        assert resumed.metrics[key] == whole.metrics[key]
    a = load_file(tmp_path / "whole/model.safetensors")
    b = load_file(tmp_path / "cut/model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_is_plain_safetensors_loadable_into_a_fresh_model(tmp_path, few_names):
    names = few_names
    outcome = run_training(tmp_path, _config(names, 20), names, progress=False)
    tensors = load_file(tmp_path / "model.safetensors")  # no pickle involved
    assert tensors["_train.lossi"].shape == (20,)
    assert tensors["_train.rng_state"].dtype == torch.uint8
    ckpt = load_checkpoint(tmp_path)
    model = build_model("wavenet")
    load_state_into(model, ckpt.state, tmp_path / "model.safetensors")
    splits = make_splits(names.words, 8)
    val = evaluate(model, splits.Xdev, splits.Ydev, chunk=EVAL_CHUNK)
    assert val == outcome.metrics["val_loss"]
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_training_steps_load_no_heavy_modules():
    """A training step must not pull in sympy (about 35 MB and a second of start-up: torch loads
    it when backward() is given an explicit gradient) or matplotlib (only the plot needs it)."""
    code = (
        "import sys, torch, einops\n"
        "einops.rearrange(torch.zeros(1, 1), 'a b -> b a')  # einops' own first-call imports\n"
        "base = {m.split('.')[0] for m in sys.modules}\n"
        "from shapekit.lecture import make_splits\n"
        "from shapekit.lecture._models import build_model\n"
        "from shapekit.lecture._train import train\n"
        "torch.manual_seed(42)\n"
        "train(build_model('wavenet'), make_splits(['emma', 'olivia', 'ava'] * 20), steps=3,\n"
        "      progress=False)\n"
        "print(sorted(({m.split('.')[0] for m in sys.modules} - base) & {'sympy', 'matplotlib'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_calls_the_model_through_its_hooks(few_names):
    torch.manual_seed(42)
    model = build_model("wavenet")
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(tuple(out.shape)))
    model[0].register_forward_pre_hook(lambda m, args: calls.append("embedding"))
    train(model, make_splits(few_names.words, 8), steps=3, batch_size=4, progress=False)
    assert calls == ["embedding", (4, 27)] * 3
