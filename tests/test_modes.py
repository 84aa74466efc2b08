"""Check modes: "always", "once" and "off" compute the same and differ only in what they check."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch
from jaxtyping import Float
from torch import Tensor

import shapekit
from shapekit import nn, shaped

MODES = ["always", "once", "off"]


@shaped
def pairwise(x: Float[Tensor, "n d"], y: Float[Tensor, "m d"]) -> Float[Tensor, "n m"]:
    return x @ y.T


@shaped
def drops_a_row_at_five(x: Float[Tensor, "b d"]) -> Float[Tensor, "b d"]:
    return x[:4] if x.shape[0] == 5 else x  # a bug that only shows at one batch size


def small_model() -> nn.Sequential:
    return nn.Sequential([
        nn.Embedding(27, 6),
        nn.FlattenConsecutive(2), nn.Linear(12, 16, bias=False), nn.BatchNorm1d(16), nn.Tanh(),
        nn.FlattenConsecutive(2), nn.Linear(32, 16, bias=False), nn.BatchNorm1d(16), nn.Tanh(),
        nn.Linear(16, 27),
    ])


def run_model(mode: str) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = small_model()
    idx = torch.randint(0, 27, (8, 4))
    with shapekit.checks(mode):
        for _ in range(3):  # repeated calls: "once" takes its fast path from the second on
            logits = model(idx)
            model.zero_grad()
            torch.nn.functional.cross_entropy(logits, idx[:, 0]).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return logits, grads, model.state_dict()


def test_every_mode_computes_the_same():
    reference = run_model("always")
    for mode in ("once", "off"):
        logits, grads, state = run_model(mode)
        assert torch.equal(logits, reference[0])
        assert grads.keys() == reference[1].keys()
        assert all(torch.equal(grads[k], reference[1][k]) for k in grads)
        assert all(torch.equal(state[k], reference[2][k]) for k in state)


def test_once_catches_a_new_wrong_shape_after_a_good_one():
    layer = nn.Linear(48, 10)
    with shapekit.checks("once"):
        assert layer(torch.randn(32, 48)).shape == (32, 10)
        assert layer(torch.randn(32, 48)).shape == (32, 10)  # trusted now
        for _ in range(2):  # a failure is never trusted
            with pytest.raises(shapekit.ShapeError, match=re.escape("build Linear(40, ...)")):
                layer(torch.randn(32, 40))
        assert pairwise(torch.ones(4, 3), torch.ones(5, 3)).shape == (4, 5)
        with pytest.raises(shapekit.ShapeError, match="give y size 3 along axis 1"):
            pairwise(torch.ones(4, 3), torch.ones(5, 2))


def test_once_checks_each_new_shape_signature():
    """Batch size 5 is a new signature, so "once" checks it and finds the dropped row."""
    with shapekit.checks("once"):
        assert drops_a_row_at_five(torch.ones(3, 2)).shape == (3, 2)
        with pytest.raises(shapekit.ShapeError, match=re.escape(
            "drops_a_row_at_five() expected the output: (5 = b, 2 = d), got (4, 2)"
        )):
            drops_a_row_at_five(torch.ones(5, 2))
        # A new dtype is a new signature too.
        with pytest.raises(shapekit.ShapeError, match="float dtype needed"):
            drops_a_row_at_five(torch.ones(3, 2, dtype=torch.long))


def test_once_tells_a_new_layer_from_a_dead_one_with_the_same_id():
    """A freshly built layer often reuses the memory, hence the id(), of one just freed; "once"
    must not trust it with the old layer's verdict (a layer of another width needs a new check)."""
    x = torch.randn(32, 48)
    with shapekit.checks("once"):
        for i in range(40):  # ids are reused from the second or third layer on
            layer = nn.Linear(48 if i % 2 == 0 else 40, 10)
            if i % 2 == 0:
                assert layer(x).shape == (32, 10)
            else:
                with pytest.raises(shapekit.ShapeError, match=re.escape("got (32, 48)")):
                    layer(x)
            del layer


def test_switching_modes_forgets_what_once_trusted():
    with shapekit.checks("once"):
        drops_a_row_at_five(torch.ones(3, 2))
        with shapekit.checks("off"):
            assert drops_a_row_at_five(torch.ones(5, 2)).shape == (4, 2)  # unchecked
        with pytest.raises(shapekit.ShapeError):
            drops_a_row_at_five(torch.ones(5, 2))


def test_off_turns_annotation_checks_off():
    with shapekit.checks("off"):
        # The mistake passes through unnoticed ...
        assert drops_a_row_at_five(torch.ones(5, 2)).shape == (4, 2)
        # ... or surfaces as torch's own error, not a ShapeError.
        with pytest.raises(RuntimeError, match="cannot be multiplied") as info:
            pairwise(torch.ones(4, 3), torch.ones(5, 2))
        assert not isinstance(info.value, shapekit.ShapeError)
        with pytest.raises(RuntimeError, match="cannot be multiplied") as info:
            nn.Linear(48, 10)(torch.randn(32, 40))
        assert not isinstance(info.value, shapekit.ShapeError)


def test_off_keeps_the_layers_own_guards():
    """Guards the annotations cannot express still run: they cost little and torch would fail
    deep inside (or give NaN) without them."""
    with shapekit.checks("off"):
        with pytest.raises(shapekit.ShapeError, match="more than one value per channel"):
            nn.BatchNorm1d(4)(torch.randn(1, 4))
        with pytest.raises(shapekit.ShapeError, match="time=8 is not a multiple of 3"):
            nn.FlattenConsecutive(3)(torch.randn(2, 8, 4))
        with pytest.raises(shapekit.ShapeError, match="the dtype of the layer's parameters"):
            nn.Linear(4, 2)(torch.randn(3, 4, dtype=torch.float64))
        with pytest.raises(shapekit.ShapeError, match=re.escape("build Embedding(31, ...)")):
            nn.Embedding(27, 2)(torch.tensor([[30]]))


def test_negative_indices_are_looked_for_on_every_call_unless_off():
    """Index values change from call to call: "once" trusts a shape, never the values."""
    emb = nn.Embedding(27, 2)
    good, bad = torch.tensor([[3, 1]]), torch.tensor([[3, -1]])  # the same shape signature
    for mode in ("always", "once"):
        with shapekit.checks(mode):
            emb(good)
            with pytest.raises(shapekit.ShapeError, match="indices must be >= 0"):
                emb(bad)
    with shapekit.checks("off"):  # plain torch's behaviour: -1 is the last row
        assert torch.equal(emb(bad)[0, 1], emb.weight[26])


@pytest.mark.parametrize("mode", MODES)
def test_checks_restores_the_mode_even_on_exceptions(mode):
    before = shapekit.get_checks()
    with pytest.raises(KeyError), shapekit.checks(mode):
        assert shapekit.get_checks() == mode
        raise KeyError("boom")
    assert shapekit.get_checks() == before


def test_set_checks_returns_the_previous_mode():
    before = shapekit.get_checks()
    try:
        assert shapekit.set_checks("off") == before
        assert shapekit.get_checks() == "off"
        assert shapekit.set_checks("always") == "off"
    finally:
        shapekit.set_checks(before)


def test_bad_mode_lists_the_valid_ones():
    before = shapekit.get_checks()
    with pytest.raises(ValueError, match="^" + re.escape(
        "set_checks(mode)='bogus' is not a check mode; use one of 'always', 'once', 'off'"
    ) + "$"):
        shapekit.set_checks("bogus")
    with pytest.raises(ValueError, match="is not a check mode"), shapekit.checks("ALWAYS"):
        pass
    assert shapekit.get_checks() == before


def import_with_env(value: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHAPEKIT_CHECKS": value}
    code = "import shapekit; print(shapekit.get_checks())"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_environment_variable_sets_the_mode():
    result = import_with_env("off")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "off"


def test_bad_environment_variable_lists_the_valid_modes():
    result = import_with_env("bogus")
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        "ValueError: SHAPEKIT_CHECKS='bogus' is not a check mode; "
        "use one of 'always', 'once', 'off'"
    )


# --- threads and contexts: checks() blocks are per thread, as torch.no_grad() is -----------------


def _in_thread(fn):
    """Run ``fn`` in a new thread; re-raise what it raised."""
    import threading

    errors: list[BaseException] = []

    def target():
        try:
            fn()
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, errors


def test_overlapping_blocks_in_two_threads_each_restore_their_own_mode():
    """A enters "off", B enters "always", A leaves while B is inside, then B leaves: not nested,
    and each thread saw its own mode throughout, and the process ends in its own mode."""
    import threading

    start = shapekit.get_checks()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, list[str]] = {"a": [], "b": []}

    def thread_a():
        with shapekit.checks("off"):
            a_in.set()
            b_in.wait(5)
            seen["a"].append(shapekit.get_checks())
        a_out.set()
        seen["a"].append(shapekit.get_checks())

    def thread_b():
        a_in.wait(5)
        with shapekit.checks("always"):
            b_in.set()
            a_out.wait(5)
            seen["b"].append(shapekit.get_checks())
        seen["b"].append(shapekit.get_checks())

    threads = [_in_thread(thread_a), _in_thread(thread_b)]
    for thread, errors in threads:
        thread.join(10)
        assert not errors
    assert seen == {"a": ["off", start], "b": ["always", start]}
    assert shapekit.get_checks() == start


def test_an_off_block_in_one_thread_leaves_another_threads_checks_on():
    import threading

    inside, done = threading.Event(), threading.Event()

    def switch_off():
        with shapekit.checks("off"):
            inside.set()
            done.wait(5)

    thread, errors = _in_thread(switch_off)
    inside.wait(5)
    try:
        with pytest.raises(shapekit.ShapeError):  # this thread still checks
            pairwise(torch.ones(4, 3), torch.ones(5, 2))
    finally:
        done.set()
        thread.join(10)
    assert not errors


def test_set_checks_is_process_wide_and_new_threads_start_with_it():
    previous = shapekit.set_checks("always")
    try:
        seen: list[str] = []
        thread, errors = _in_thread(lambda: seen.append(shapekit.get_checks()))
        thread.join(10)
        assert seen == ["always"] and not errors
        with shapekit.checks("off"):  # a block still wins in its own thread
            assert shapekit.get_checks() == "off"
    finally:
        shapekit.set_checks(previous)


def test_many_threads_checking_a_shared_model_at_once_agree_with_one_thread():
    """"once" memory shared by threads: every thread gets the verdict a full check gives."""
    from concurrent.futures import ThreadPoolExecutor

    model = small_model().eval()

    def call(i: int) -> str:
        batch = 3 + i % 4
        idx = torch.randint(0, 27, (batch, 4))
        if i % 5 == 0:
            idx = idx[:, :3]  # time 3: FlattenConsecutive(2) must refuse it
        try:
            model(idx)
            return "ok"
        except shapekit.ShapeError:
            return "error"

    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(call, range(60)))
    assert got == ["error" if i % 5 == 0 else "ok" for i in range(60)]
