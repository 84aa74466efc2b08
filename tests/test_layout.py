"""The package layout: one subpackage per capability, each with one public surface, and no
subpackage reaching into another's private modules (docs/architecture.md).

The oracle is the import statements themselves, read with ``ast`` from every module's source.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import shapekit

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shapekit"
SUBPACKAGES = ("checking", "nn", "debug", "lecture", "annotate", "cli", "pytest")
# top-level private modules every subpackage may use: the one home of private torch/jaxtyping/
# beartype API, and the lazy-surface helper
SHARED = {"shapekit._torch_compat", "shapekit._lazy"}
LECTURE_NAMES = {"VOCAB", "Names", "Splits", "build_dataset", "decode", "encode", "itos", "stoi",
                 "load_names", "make_splits", "read_names_file", "split_words", "ROWS",
                 "ModelSpec", "build_model", "train", "evaluate", "TrainResult", "sample",
                 "ConvWaveNet", "to_conv", "pad_names", "windows_loop"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str | None = None) -> list[tuple[int, str]]:
    """``(line, absolute module)`` for every import in ``path`` (the module ``name``, by default
    the one its place in the checkout gives), relative ones resolved; for ``from X import y`` both
    ``X`` and ``X.y`` are listed (``y`` may be a submodule)."""
    name = name or module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def owner(module: str) -> str | None:
    """The subpackage a shapekit module belongs to (``shapekit.debug._trace`` -> ``debug``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "shapekit" and parts[1] in SUBPACKAGES \
        else None


def private_target(module: str) -> bool:
    """``shapekit.debug._trace`` (or a name in it); not ``shapekit.__version__``, not the shared
    top-level modules."""
    if module in SHARED or module.rpartition(".")[0] in SHARED:
        return False
    return any(part.startswith("_") and not part.endswith("__") for part in module.split(".")[1:])


def test_every_module_lives_in_a_subpackage():
    loose = sorted(p.name for p in PACKAGE.glob("*.py")
                   if p.name not in ("__init__.py", "__main__.py")
                   and f"shapekit.{p.stem}" not in SHARED)
    assert loose == [], f"modules outside the subpackages: {loose}; move each to the " \
        "subpackage of its capability (docs/architecture.md)"
    for sub in SUBPACKAGES:
        assert (PACKAGE / sub / "__init__.py").is_file(), sub


def test_no_subpackage_imports_another_ones_private_modules():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = owner(module_name(path))
        for line, module in imported_modules(path):
            there = owner(module)
            if module.startswith("shapekit.") and private_target(module) and there != here:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offences == [], "import from the subpackage's surface instead:\n" + "\n".join(offences)


# which subpackage imports which (the table in docs/architecture.md)
ALLOWED = {
    "checking": set(),
    "nn": {"checking"},
    "debug": {"checking", "nn"},
    "lecture": {"checking", "nn"},
    "annotate": {"checking"},
    "pytest": {"checking", "debug", "annotate"},
    "cli": {"checking", "nn", "debug", "lecture", "annotate"},
}


def test_subpackages_depend_only_as_the_architecture_page_says():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = owner(module_name(path))
        if here is None:
            continue
        for line, module in imported_modules(path):
            there = owner(module)
            if there not in (None, here) and there not in ALLOWED[here]:
                offences.append(f"{path.relative_to(ROOT)}:{line}: {here} imports {there}")
    assert offences == [], "\n".join(offences)
    page = (ROOT / "docs" / "architecture.md").read_text()
    for here, theirs in ALLOWED.items():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{here}` |"))
        assert {s for s in SUBPACKAGES if f"`{s}`" in row.split("|")[2]} == theirs, row


def test_the_checks_rule_catches_a_reach_in(tmp_path):
    """The rule above on a planted offence (it must be able to fail)."""
    fake = tmp_path / "_probe.py"
    fake.write_text("from ..lecture._data import VOCAB\nfrom ..checking import ShapeError\n")
    offences = [m for _, m in imported_modules(fake, "shapekit.debug._probe")
                if private_target(m) and owner(m) not in (None, "debug")]
    assert offences == ["shapekit.lecture._data", "shapekit.lecture._data.VOCAB"]


@pytest.mark.parametrize("surface", ["shapekit", *(f"shapekit.{s}" for s in SUBPACKAGES),
                                     "shapekit.lecture.runs"])
def test_every_surface_name_resolves(surface):
    module = importlib.import_module(surface)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == [], f"{surface}.__all__ names {missing}, which do not import"
    assert set(module.__all__) <= set(dir(module))


def test_the_tool_and_the_lecture_are_two_surfaces():
    assert not LECTURE_NAMES & set(shapekit.__all__)
    assert set(shapekit.lecture.__all__) >= LECTURE_NAMES
    with pytest.raises(AttributeError, match="no attribute 'build_model'"):
        shapekit.build_model  # noqa: B018
    assert {"shaped", "trace", "explain", "detect", "nn", "ShapeError"} <= set(shapekit.__all__)


def test_import_shapekit_and_each_light_surface_stay_free_of_torch():
    code = ("import sys, shapekit, shapekit.checking, shapekit.cli, shapekit.pytest.plugin; "
            "from shapekit.checking import dims, set_checks, ShapeError, shape_text; "
            "from shapekit.pytest import Shapes; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_lessons_and_docs_examples_use_public_modules_only():
    offences = []
    for path in sorted((ROOT / "lessons").glob("*.py")):
        for line, module in imported_modules(path):
            if module.startswith("shapekit") and private_target(module):
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert offences == [], "\n".join(offences)
