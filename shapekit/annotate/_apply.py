"""Write inferred annotations into source files with libcst, keeping formatting and comments.

Only annotations change: a parameter or return with no annotation, or one that names a tensor
without a shape (``torch.Tensor``, ``Tensor | None``, ``list[Tensor]``), gets the inferred one. A
function that already has a jaxtyping annotation is left alone, so a second run changes nothing.
The imports the new annotations need (``from jaxtyping import Float``, ``from torch import
Tensor``) join the module's own, after its last top-level import.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst
from libcst.metadata import PositionProvider

from ._infer import FunctionAnnotations

__all__ = ["FileChange", "plan_changes"]

_JAXTYPING = re.compile(r"\b(Float|Int|Bool|Shaped|Num|Real|Inexact|UInt|Complex|Integer|"
                        r"Float\d+|Int\d+|UInt\d+|Key)\s*\[")
_TENSOR = re.compile(r"\bTensor\b")
_LINE = 99  # the longest signature line written; a longer one gets one parameter per line


@dataclass
class FileChange:
    """One source file: its text before and after, and the functions annotated in it."""

    path: Path
    before: str
    after: str
    functions: list[str] = field(default_factory=list)

    def diff(self, root: Path | None = None) -> str:
        """The change as a unified diff, with paths relative to ``root`` (``a/`` and ``b/``)."""
        name = _relative(self.path, root)
        return "".join(difflib.unified_diff(
            self.before.splitlines(keepends=True), self.after.splitlines(keepends=True),
            fromfile=f"a/{name}", tofile=f"b/{name}"))

    def write(self) -> None:
        """Rewrite the file (atomically: a partly written file never replaces it)."""
        tmp = self.path.with_name(self.path.name + ".shapekit-tmp")
        tmp.write_text(self.after, encoding="utf-8")
        os.replace(tmp, self.path)


def _relative(path: Path, root: Path | None) -> str:
    root = Path.cwd() if root is None else root
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def plan_changes(found: dict[str, FunctionAnnotations]) -> list[FileChange]:
    """The source changes that write ``found`` into its files, one per file that changes."""
    by_file: dict[str, list[FunctionAnnotations]] = {}
    for item in found.values():
        if item.annotated:
            by_file.setdefault(item.record.file, []).append(item)
    changes = []
    for file, items in sorted(by_file.items()):
        path = Path(file)
        before = path.read_text(encoding="utf-8")
        wrapper = cst.MetadataWrapper(cst.parse_module(before))
        writer = _Writer(items, _duplicates(wrapper.module))
        after_module = wrapper.visit(writer)
        if writer.names:
            after_module = _add_imports(after_module, writer.names)
        after = after_module.code
        if after != before:
            changes.append(FileChange(path, before, after, writer.done))
    return changes


def _duplicates(module: cst.Module) -> set[str]:
    """Qualified names that more than one ``def`` in the module has (a property's getter and
    setter, ``typing.overload``): those are told apart by line."""
    seen: dict[str, int] = {}

    class Count(cst.CSTVisitor):
        def __init__(self) -> None:
            self.scope: list[str] = []

        def visit_ClassDef(self, node: cst.ClassDef) -> None:
            self.scope.append(node.name.value)

        def leave_ClassDef(self, node: cst.ClassDef) -> None:
            self.scope.pop()

        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            name = ".".join([*self.scope, node.name.value])
            seen[name] = seen.get(name, 0) + 1
            self.scope += [node.name.value, "<locals>"]

        def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
            del self.scope[-2:]

    module.visit(Count())
    return {name for name, count in seen.items() if count > 1}


class _Writer(cst.CSTTransformer):
    """Sets the annotations of the target functions, found by qualified name (and by the line of
    the ``def`` or its first decorator, where two share a name)."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, targets: list[FunctionAnnotations], duplicates: set[str]) -> None:
        self.targets: dict[str, list[FunctionAnnotations]] = {}
        for target in targets:
            self.targets.setdefault(target.record.qualname, []).append(target)
        self.duplicates = duplicates
        self.scope: list[str] = []
        self.names: set[str] = set()  # jaxtyping names and Tensor, used by what was written
        self.done: list[str] = []
        self.depth = 0  # blocks the current definition is nested in
        self._empty = cst.Module(body=[])

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.scope.append(node.name.value)
        self.depth += 1

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self.scope.pop()
        self.depth -= 1
        return updated

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scope += [node.name.value, "<locals>"]  # as Python's __qualname__ spells nesting
        self.depth += 1

    def leave_FunctionDef(self, original: cst.FunctionDef,
                          updated: cst.FunctionDef) -> cst.FunctionDef:
        qualname = ".".join(self.scope[:-1])
        del self.scope[-2:]
        self.depth -= 1
        targets = self.targets.get(qualname, [])
        if qualname in self.duplicates:
            first = original.decorators[0] if original.decorators else original
            line = self.get_metadata(PositionProvider, first).start.line
            targets = [t for t in targets if t.record.line == line]
        if len(targets) != 1 or self._has_jaxtyping(updated):
            return updated
        target = targets[0]
        params = updated.params
        new_params = {}
        for group in ("posonly_params", "params", "kwonly_params"):
            new_params[group] = [self._param(p, target) for p in getattr(params, group)]
        updated = updated.with_changes(params=params.with_changes(**new_params))
        if target.returns and self._replaceable(updated.returns):
            updated = updated.with_changes(returns=cst.Annotation(
                cst.parse_expression(target.returns)))
            self._used(target.returns)
        if updated is not original:
            self.done.append(target.record.key)
            if self._header_width(updated) > _LINE:
                updated = _one_param_per_line(updated)
            if self._header_width(updated) > _LINE:
                updated = _one_element_per_line(updated)
        return updated

    def _header_width(self, node: cst.FunctionDef) -> int:
        stub = node.with_changes(body=cst.IndentedBlock([cst.SimpleStatementLine([cst.Pass()])]),
                                 leading_lines=[], decorators=[])
        lines = self._code(stub).splitlines()
        header = lines[: next(i for i, line in enumerate(lines) if line.rstrip().endswith(":"))
                       + 1]
        return 4 * self.depth + max(len(line) for line in header)

    def _param(self, param: cst.Param, target: FunctionAnnotations) -> cst.Param:
        text = target.params.get(param.name.value)
        if text is None or not self._replaceable(param.annotation):
            return param
        self._used(text)
        param = param.with_changes(annotation=cst.Annotation(cst.parse_expression(text)))
        if param.default is not None:  # `mask: T | None = None`, spaced as PEP 8 has it
            space = cst.SimpleWhitespace(" ")
            param = param.with_changes(
                equal=cst.AssignEqual(whitespace_before=space, whitespace_after=space))
        return param

    def _used(self, text: str) -> None:
        self.names |= {m.group(1) for m in _JAXTYPING.finditer(text)} | {"Tensor"}

    def _code(self, node: cst.CSTNode) -> str:
        return self._empty.code_for_node(node)

    def _replaceable(self, annotation: cst.Annotation | None) -> bool:
        """No annotation, or one naming a tensor without its shape."""
        if annotation is None:
            return True
        text = self._code(annotation.annotation)
        return bool(_TENSOR.search(text)) and not _JAXTYPING.search(text)

    def _has_jaxtyping(self, node: cst.FunctionDef) -> bool:
        annotations = [p.annotation for p in _all_params(node.params)] + [node.returns]
        return any(a is not None and _JAXTYPING.search(self._code(a.annotation))
                   for a in annotations)


def _one_param_per_line(node: cst.FunctionDef) -> cst.FunctionDef:
    """A signature too long for one line, written one parameter per line (a trailing comma,
    ``)`` back at the ``def``'s indentation), as black and ruff format it."""
    def newline(extra: str) -> cst.ParenthesizedWhitespace:
        return cst.ParenthesizedWhitespace(first_line=cst.TrailingWhitespace(), empty_lines=[],
                                           indent=True, last_line=cst.SimpleWhitespace(extra))

    params = node.params
    groups = ("posonly_params", "params", "kwonly_params")
    everything = [(g, i) for g in groups for i in range(len(getattr(params, g)))]
    if isinstance(params.star_arg, cst.Param):
        everything.insert(len(params.posonly_params) + len(params.params), ("star_arg", -1))
    if params.star_kwarg is not None or not everything:
        return node  # left on one line rather than guess at `**kwargs` layouts
    if isinstance(params.star_arg, cst.ParamStar) or (
            params.posonly_ind is not cst.MaybeSentinel.DEFAULT):
        return node
    changes: dict[str, Any] = {g: list(getattr(params, g)) for g in groups}
    for n, (group, i) in enumerate(everything):
        last = n == len(everything) - 1
        comma = cst.Comma(whitespace_after=newline("" if last else "    "))
        if group == "star_arg":
            changes["star_arg"] = params.star_arg.with_changes(comma=comma)
        else:
            changes[group][i] = changes[group][i].with_changes(comma=comma)
    return node.with_changes(params=params.with_changes(**changes),
                             whitespace_before_params=newline("    "))


def _newline(extra: str) -> cst.ParenthesizedWhitespace:
    return cst.ParenthesizedWhitespace(first_line=cst.TrailingWhitespace(), empty_lines=[],
                                       indent=True, last_line=cst.SimpleWhitespace(extra))


def _one_element_per_line(node: cst.FunctionDef) -> cst.FunctionDef:
    """A return annotation still too long, ``tuple[A, B]`` written one element per line."""
    returns = node.returns
    if returns is None or not isinstance(returns.annotation, cst.Subscript):
        return node
    subscript = returns.annotation
    elements = list(subscript.slice)
    for i, element in enumerate(elements):
        last = i == len(elements) - 1
        elements[i] = element.with_changes(comma=cst.Comma(
            whitespace_after=_newline("" if last else "    ")))
    bracket = cst.LeftSquareBracket(whitespace_after=_newline("    "))
    wrapped = subscript.with_changes(slice=elements, lbracket=bracket)
    return node.with_changes(returns=returns.with_changes(annotation=wrapped))


def _all_params(params: cst.Parameters) -> list[cst.Param]:
    found = [*params.posonly_params, *params.params, *params.kwonly_params]
    if isinstance(params.star_arg, cst.Param):
        found.append(params.star_arg)
    if params.star_kwarg is not None:
        found.append(params.star_kwarg)
    return found


def _add_imports(module: cst.Module, names: set[str]) -> cst.Module:
    """Add ``from jaxtyping import Float, ...`` and ``from torch import Tensor`` where isort would
    put them: into an existing ``from jaxtyping import`` / ``from torch import`` line, else among
    the module's absolute ``from`` imports, in order."""
    wanted = {"jaxtyping": sorted(names - {"Tensor"})}
    if "Tensor" in names and not _binds_tensor(module):
        wanted["torch"] = ["Tensor"]
    body = list(module.body)
    for source, new_names in wanted.items():
        imports = _top_imports(module, body)
        existing = next((i for i, small in imports
                         if isinstance(small, cst.ImportFrom) and _from(module, small) == source
                         and not isinstance(small.names, cst.ImportStar)), None)
        if existing is not None:
            body[existing] = _extended(body[existing], new_names)
            continue
        line = cst.parse_statement(f"from {source} import {', '.join(new_names)}\n")
        body.insert(_position(module, body, source), line)
    return module.with_changes(body=body)


def _from(module: cst.Module, small: cst.ImportFrom) -> str:
    """The module a ``from`` import reads (``""`` for a relative one)."""
    if small.relative or small.module is None:
        return ""
    return module.code_for_node(small.module)


def _top_imports(module: cst.Module, body: list) -> list[tuple[int, cst.CSTNode]]:
    """The imports at the top of the module (after the docstring, before the first other
    statement), with their index in ``body``."""
    found = []
    for i, stmt in enumerate(body):
        if _is_docstring(stmt) and i == 0:
            continue
        if not isinstance(stmt, cst.SimpleStatementLine) or not isinstance(
                stmt.body[0], (cst.Import, cst.ImportFrom)):
            break
        found.append((i, stmt.body[0]))
    return found


def _extended(stmt: cst.SimpleStatementLine, new_names: list[str]) -> cst.SimpleStatementLine:
    small = stmt.body[0]
    have = [a.evaluated_name for a in small.names]
    everything = sorted(set(have) | set(new_names))
    if everything == sorted(have):
        return stmt
    aliases = {a.evaluated_name: a.with_changes(comma=cst.MaybeSentinel.DEFAULT)
               for a in small.names}
    items = [aliases.get(n, cst.ImportAlias(cst.Name(n))) for n in everything]
    comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    items = [a.with_changes(comma=comma) for a in items[:-1]] + items[-1:]
    return stmt.with_changes(body=[small.with_changes(names=items, lpar=None, rpar=None)])


def _position(module: cst.Module, body: list, source: str) -> int:
    """Where a new ``from source import ...`` goes: before the first absolute ``from`` import
    of the same block that sorts after it, else after the last absolute import."""
    imports = _top_imports(module, body)
    absolute = [(i, small) for i, small in imports
                if not (isinstance(small, cst.ImportFrom) and not _from(module, small))]
    for i, small in absolute:
        if (isinstance(small, cst.ImportFrom) and _from(module, small) > source
                and not body[i].leading_lines):
            return i
    if absolute:
        return absolute[-1][0] + 1
    if imports:
        return imports[0][0]
    return _after_docstring(body)


def _binds_tensor(module: cst.Module) -> bool:
    """Whether the module already has a top-level name ``Tensor`` (``from torch import Tensor``
    inside a try, an alias, ...)."""
    return bool(re.search(r"^\s*(from\s+torch\s+import\s+.*\bTensor\b|Tensor\s*=)", module.code,
                          re.MULTILINE))


def _is_docstring(stmt: cst.CSTNode) -> bool:
    return (isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Expr)
            and isinstance(stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString)))


def _after_docstring(body: list) -> int:
    return 1 if body and _is_docstring(body[0]) else 0
