"""The inference rules of ``shapekit.annotate`` on recorded calls, observing real calls, and
rewriting source.

The oracle for the rules is the checker itself: annotations written into a module and wrapped
with ``@shapekit.shaped`` must accept every observed call and reject a wrong one.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import shapekit
from shapekit.annotate import Call, FunctionRecord, Observations, annotate, infer, observe


def t(*shape: int, dtype: str = "float32"):
    return ("t", tuple(shape), dtype)


def record(params, calls, method=False, existing=None) -> FunctionRecord:
    """A function's record from ``(args, result)`` or ``(args, result, attrs[, init])`` calls."""
    rec = FunctionRecord("pkg.mod", "f", "mod.py", 1, list(params), method, existing or {})
    for c in calls:
        args, result, attrs, init = (*c, {}, {})[:4]
        rec.calls.append(Call(1, args, result, attrs, init))
    return rec


def inferred(rec: FunctionRecord):
    return infer([rec])[rec.key]


def test_a_size_shared_across_parameters_and_calls_gets_one_name():
    rec = record(["x", "mask"], [
        ({"x": t(2, 5, 8), "mask": t(2, 5, dtype="bool")}, t(2, 8)),
        ({"x": t(3, 7, 8), "mask": t(3, 7, dtype="bool")}, t(3, 8)),
    ])
    found = inferred(rec)
    assert found.params == {"x": 'Float[Tensor, "batch time 8"]',
                            "mask": 'Bool[Tensor, "batch time"]'}
    assert found.returns == 'Float[Tensor, "batch 8"]'
    batch = next(d for d in found.dims if d.token == "batch")
    assert batch.where == ["x axis 0", "mask axis 0", "return axis 0"]
    assert batch.sizes == [2, 3] and batch.rule == "varied between calls"


def test_rank_that_varies_becomes_a_variadic():
    rec = record(["x"], [({"x": t(4, 6)}, t(4, 6)), ({"x": t(2, 5, 6)}, t(2, 5, 6)),
                         ({"x": t(3, 2, 7, 6)}, t(3, 2, 7, 6))])
    assert inferred(rec).params["x"] == 'Float[Tensor, "batch *time 6"]'


def test_an_attribute_explains_a_size_but_not_a_batch_that_never_varied():
    rec = record(["self", "x"], [
        ({"x": t(4, 3, 16)}, t(4, 3, 16), {"n_embd": 16, "n_head": 4}),
        ({"x": t(4, 3, 16)}, t(4, 3, 16), {"n_embd": 16, "n_head": 4}),
    ], method=True)
    # 16 = self.n_embd; 4 = self.n_head too, but in the batch's place and never varied: literal
    assert inferred(rec).params["x"] == 'Float[Tensor, "4 3 {self.n_embd}"]'
    varied = record(["self", "x"], [
        ({"x": t(4, 16)}, t(4, 16), {"width": 16}),
        ({"x": t(2, 32)}, t(2, 32), {"width": 32}),  # another instance
    ], method=True)
    assert inferred(varied).params["x"] == 'Float[Tensor, "batch {self.width}"]'
    dim = next(d for d in inferred(varied).dims if d.token == "{self.width}")
    assert dim.rule == "= self.width in every call" and dim.sizes == [16, 32]


def test_an_init_argument_names_a_size_that_no_attribute_holds():
    rec = record(["self", "x"], [({"x": t(8, 48)}, t(8, 128), {}, {"fan_in": 48, "fan_out": 128}),
                                 ({"x": t(8, 256)}, t(8, 128), {}, {"fan_in": 256,
                                                                    "fan_out": 128})],
                 method=True)
    found = inferred(rec)
    assert found.params["x"] == 'Float[Tensor, "8 fan_in"]'
    assert found.returns == 'Float[Tensor, "8 fan_out"]'


@pytest.mark.parametrize(("dtypes", "category"), [
    (["float16", "float32"], "Float"), (["int32", "int64", "uint8"], "Int"), (["bool"], "Bool"),
    (["float32", "int64"], "Shaped"), (["bfloat16"], "Float"),
])
def test_the_dtype_is_the_narrowest_category_seen(dtypes, category):
    rec = record(["x"], [({"x": t(i + 2, dtype=d)}, None) for i, d in enumerate(dtypes * 2)])
    assert inferred(rec).params["x"] == f'{category}[Tensor, " x"]'


def test_optional_tuples_lists_and_dicts():
    rec = record(["xs", "extra", "batch"], [
        ({"xs": ("list", (t(2, 3), t(2, 3))), "extra": None,
          "batch": ("dict", (("ids", t(2, 5, dtype="int64")), ("pos", t(2, 5, dtype="int64"))))},
         ("tuple", (t(2, 3), ("i", 3)))),
        ({"xs": ("list", (t(4, 3),)), "extra": t(4),
          "batch": ("dict", (("ids", t(4, 6, dtype="int64")),))},
         ("tuple", (t(4, 3), ("i", 1)))),
    ])
    found = inferred(rec)
    assert found.params == {
        "xs": 'list[Float[Tensor, "batch 3"]]',
        "extra": 'Float[Tensor, " batch"] | None',
        "batch": 'dict[str, Int[Tensor, "batch time"]]',
    }
    assert found.returns == 'tuple[Float[Tensor, "batch 3"], int]'


def test_elements_that_differ_within_one_call_are_not_bound():
    rec = record(["xs"], [({"xs": ("list", (t(2, 3), t(5, 3)))}, None),
                          ({"xs": ("list", (t(4, 3),))}, None)])
    assert inferred(rec).params["xs"] == 'list[Float[Tensor, "_batch 3"]]'


def test_names_never_collide():
    rec = record(["a", "b"], [({"a": t(4, 3), "b": t(6, 3)}, t(4, 6)),
                              ({"a": t(2, 3), "b": t(5, 3)}, t(2, 5))])
    found = inferred(rec)
    assert found.params == {"a": 'Float[Tensor, "batch 3"]', "b": 'Float[Tensor, "b_batch 3"]'}
    assert found.returns == 'Float[Tensor, "batch b_batch"]'


def test_existing_annotations_are_checked_and_left_alone():
    existing = {"x": {"dims": "batch 3", "dtypes": None, "name": "Float", "optional": False},
                "return": {"dims": "batch", "dtypes": ["float32"], "name": "Float",
                           "optional": False}}
    rec = record(["x"], [({"x": t(4, 3)}, t(4)), ({"x": t(2, 5)}, t(2)),
                         ({"x": t(2, 3)}, t(2, dtype="int64"))], existing=existing)
    found = inferred(rec)
    assert not found.annotated
    assert found.disagreements == [
        'x is annotated Float[Tensor, "batch 3"], but a call (1x) got (2, 5): axis 1 is 5, '
        "expected 3; fix: correct the annotation or the caller",
        'return is annotated Float[Tensor, "batch"], but a call (1x) got dtype int64; fix: '
        "correct the annotation or the caller",
    ]
    assert "already annotated: left as it is" in found.report()


# ---- observing real calls, and the checker as the oracle ---------------------------------------

GPT = '''
"""A tiny GPT block, unannotated."""
import torch
from torch import nn  # the layers


class Attention(nn.Module):
    def __init__(self, n_embd, n_head):
        super().__init__()
        self.n_embd, self.n_head = n_embd, n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)

    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / (k.shape[-1] ** 0.5)  # (B, nh, T, T)
        if mask is not None:
            att = att.masked_fill(~mask[:, None, None, :], float("-inf"))
        y = att.softmax(-1) @ v
        return y.transpose(1, 2).reshape(B, T, C), att


def logits_and_loss(logits, targets):
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    return {"loss": loss, "logits": logits}
'''


@pytest.fixture
def gpt_module(tmp_path, monkeypatch):
    (tmp_path / "tinygpt.py").write_text(GPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "tinygpt.py"
    sys.modules.pop("tinygpt", None)


def _calls(module):
    torch.manual_seed(0)
    attn = module.Attention(16, 4)
    out = []
    for batch, time in ((2, 5), (3, 7)):
        x = torch.randn(batch, time, 16)
        mask = torch.rand(batch, time) > 0.2
        mask[:, 0] = True
        out.append(attn(x, mask))
        out.append(attn(x))
        out.append(module.logits_and_loss(torch.randn(batch, time, 27),
                                          torch.randint(0, 27, (batch, time))))
    return attn, out


def test_observe_then_annotate_then_every_call_passes_the_checker(gpt_module, tmp_path):
    with observe(packages=["tinygpt"]) as obs:
        import tinygpt

        _calls(tinygpt)
    assert obs.functions["tinygpt:Attention.forward"].total == 4
    found = infer(obs)
    forward = found["tinygpt:Attention.forward"]
    assert forward.params == {
        "x": 'Float[Tensor, "batch time {self.n_embd}"]',
        "mask": 'Bool[Tensor, "batch time"] | None',
    }
    assert forward.returns == ('tuple[Float[Tensor, "batch time {self.n_embd}"], '
                               'Float[Tensor, "batch {self.n_head} time time"]]')
    assert found["tinygpt:logits_and_loss"].params == {
        "logits": 'Float[Tensor, "batch time 27"]', "targets": 'Int[Tensor, "batch time"]'}
    assert found["tinygpt:logits_and_loss"].returns == 'dict[str, Float[Tensor, "..."]]'

    diff = annotate(obs, write=True, root=tmp_path)
    imports = ("+from jaxtyping import Bool, Float, Int\n"
               "+from torch import Tensor, nn  # the layers\n")
    assert imports in diff
    text = gpt_module.read_text()
    assert "# (B, nh, T, T)" in text and "# the layers" in text  # comments kept
    assert ('    ) -> tuple[\n        Float[Tensor, "batch time {self.n_embd}"],\n'
            '        Float[Tensor, "batch {self.n_head} time time"],\n    ]:\n') in text
    assert annotate(obs, root=tmp_path) == ""  # idempotent

    sys.modules.pop("tinygpt")
    tinygpt = importlib.import_module("tinygpt")
    tinygpt.Attention.forward = shapekit.shaped(tinygpt.Attention.forward)
    with shapekit.checks("always"):
        attn, _ = _calls(tinygpt)  # every observed call passes
        with pytest.raises(shapekit.ShapeError, match=r"expected x: \(batch, time, 16 = n_embd\)"):
            attn(torch.randn(2, 5, 12))


def test_dict_values_of_different_ranks_get_a_variadic():
    rec = record(["x"], [({"x": t(2)}, ("dict", (("loss", t()), ("logits", t(2, 5, 27))))),
                         ({"x": t(3)}, ("dict", (("loss", t()), ("logits", t(3, 7, 27)))))])
    assert inferred(rec).returns == 'dict[str, Float[Tensor, "..."]]'


def test_observations_survive_a_round_trip(tmp_path):
    rec = record(["self", "x", "pair"], [
        ({"x": t(2, 3), "pair": ("tuple", (t(1), None, ("i", 4), ("o",)))}, ("list", (t(2),)),
         {"n": 3}, {"fan_in": 3})], method=True)
    obs = Observations(["pkg"])
    obs.functions[rec.key] = rec
    loaded = Observations.load(obs.save(tmp_path / "o.json"))
    assert loaded.packages == ("pkg",)
    assert loaded.functions == {rec.key: rec}


def test_observing_stops_and_puts_the_functions_back(gpt_module):
    import tinygpt

    original = tinygpt.Attention.forward
    with observe(packages="tinygpt"):
        assert tinygpt.Attention.forward is not original
        assert tinygpt.Attention.forward.__wrapped__ is original
    assert tinygpt.Attention.forward is original


# ---- rewriting source -------------------------------------------------------------------------

MODULE = '''\
"""Doc."""
from __future__ import annotations

import torch
from jaxtyping import Float

from . import sibling  # kept


def scale(x: torch.Tensor,   # odd spacing, kept
          k=2):
    return x * k


def done(x: Float[torch.Tensor, "n"]) -> Float[torch.Tensor, "n"]:
    return x
'''


def test_rewriting_keeps_the_rest_and_merges_imports(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(MODULE)
    recs = [FunctionRecord("m", "scale", str(path), 10, ["x", "k"], False, {},
                           [Call(1, {"x": t(2, dtype="int64"), "k": ("i", 2)}, t(2, dtype="int64")),
                            Call(1, {"x": t(5), "k": ("i", 2)}, t(5))]),
            FunctionRecord("m", "done", str(path), 15, ["x"], False, {},
                           [Call(1, {"x": t(2)}, t(2))])]
    obs = Observations(["m"])
    obs.functions = {r.key: r for r in recs}
    diff = annotate(obs, write=True, root=tmp_path)
    annotated = 'def scale(x: Shaped[Tensor, " x"],   # odd spacing, kept\n          k=2) -> '
    assert path.read_text() == MODULE.replace(
        "from jaxtyping import Float\n", "from jaxtyping import Float, Shaped\nfrom torch import "
        "Tensor\n").replace("def scale(x: torch.Tensor,   # odd spacing, kept\n          k=2):",
                            annotated + 'Shaped[Tensor, " x"]:')
    assert diff.startswith("--- a/m.py\n+++ b/m.py\n")
    assert annotate(obs, write=True, root=tmp_path) == ""


def test_a_module_without_imports_gets_them_after_its_docstring(tmp_path):
    path = tmp_path / "bare.py"
    path.write_text('"""Doc."""\n\n\ndef f(x):\n    return x\n')
    obs = Observations(["bare"])
    rec = FunctionRecord("bare", "f", str(path), 4, ["x"], False, {},
                         [Call(1, {"x": t(3, dtype="bool")}, t(3, dtype="bool"))])
    obs.functions[rec.key] = rec
    annotate(obs, write=True)
    assert path.read_text() == ('"""Doc."""\nfrom jaxtyping import Bool\nfrom torch import Tensor\n'
                                '\n\ndef f(x: Bool[Tensor, "3"]) -> Bool[Tensor, "3"]:\n'
                                "    return x\n")
    compile(path.read_text(), str(path), "exec")


def test_the_top_level_name_is_lazy():
    assert shapekit.observe is observe
    assert "observe" in shapekit.__all__
    assert Path(shapekit.annotate.__file__).parent.name == "annotate"


def test_an_existing_annotation_is_read_from_the_function_and_checked(tmp_path, monkeypatch):
    (tmp_path / "annotated.py").write_text(textwrap.dedent('''
        from jaxtyping import Float
        from torch import Tensor


        def centre(points: Float[Tensor, "n 3"]) -> Float[Tensor, "n 3"]:
            return points - points.mean(0)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with observe(packages=["annotated"]) as obs:
        import annotated

        annotated.centre(torch.ones(4, 3))
        annotated.centre(torch.ones(2, 4))  # nothing checks here: the annotation is wrong
    sys.modules.pop("annotated")
    found = infer(obs)["annotated:centre"]
    assert obs.functions["annotated:centre"].existing["points"] == {
        "dims": "n 3", "dtypes": found.record.existing["points"]["dtypes"], "name": "Float",
        "optional": False}
    assert found.disagreements == [
        'points is annotated Float[Tensor, "n 3"], but a call (1x) got (2, 4): axis 1 is 4, '
        "expected 3; fix: correct the annotation or the caller",
        'return is annotated Float[Tensor, "n 3"], but a call (1x) got (2, 4): axis 1 is 4, '
        "expected 3; fix: correct the annotation or the caller",
    ]
    assert annotate(obs, root=tmp_path) == ""  # reported, never rewritten


PROPERTY = '''\
class Cloud:
    def __init__(self, points):
        self._points = points

    @property
    def points(self):
        return self._points

    @points.setter
    def points(self, value):
        self._points = value
'''


def test_a_property_getter_and_setter_are_told_apart(tmp_path, monkeypatch):
    (tmp_path / "cloud.py").write_text(PROPERTY)
    monkeypatch.syspath_prepend(str(tmp_path))
    with observe(packages=["cloud"]) as obs:
        import cloud

        for n in (3, 5):
            c = cloud.Cloud(torch.ones(n, 3))
            assert c.points.shape == (n, 3)
            c.points = torch.zeros(n, 3, dtype=torch.int64)
    sys.modules.pop("cloud")
    assert sorted(obs.functions) == ["cloud:Cloud.__init__", "cloud:Cloud.points",
                                     "cloud:Cloud.points@9"]
    annotate(obs, write=True)
    text = (tmp_path / "cloud.py").read_text()
    assert '    def points(self) -> Float[Tensor, "batch 3"]:\n' in text
    assert '    def points(self, value: Int[Tensor, "batch 3"]):\n' in text


CONFIGURED = '''\
from dataclasses import dataclass

import torch


@dataclass
class Config:
    n_embd: int = 16
    vocab: int = 11


class Head(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.proj = torch.nn.Linear(config.n_embd, config.vocab)

    def forward(self, x):
        return self.proj(x)
'''


def test_a_size_a_config_attribute_holds(tmp_path, monkeypatch):
    (tmp_path / "configured.py").write_text(CONFIGURED)
    monkeypatch.syspath_prepend(str(tmp_path))
    with observe(packages=["configured"]) as obs:
        import configured

        head = configured.Head(configured.Config())
        for batch in (2, 3):
            head(torch.randn(batch, 16))
    sys.modules.pop("configured")
    found = infer(obs)["configured:Head.forward"]
    assert found.params == {"x": 'Float[Tensor, "batch {self.config.n_embd}"]'}
    assert found.returns == 'Float[Tensor, "batch {self.config.vocab}"]'
    annotate(obs, write=True)
    namespace: dict = {}
    exec(compile((tmp_path / "configured.py").read_text(), "configured.py", "exec"), namespace)
    namespace["Head"].forward = shapekit.shaped(namespace["Head"].forward)
    head = namespace["Head"](namespace["Config"]())
    assert head(torch.randn(5, 16)).shape == (5, 11)
    with pytest.raises(shapekit.ShapeError, match=r"expected x: \(batch, 16 = n_embd\)"):
        head(torch.randn(5, 12))
