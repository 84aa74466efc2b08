"""Whose code is this frame? Finding the user's own file:line among shapekit's, torch's and the
stdlib's frames, and the source expression a frame is executing.

``explain()`` and ``detect()`` report the user's line, never a line inside torch:

>>> import torch
>>> is_user_file(torch.__file__), is_user_file("/home/me/train.py")
(False, True)
>>> location("/somewhere/else/train.py", 42)
'train.py:42'
"""

from __future__ import annotations

import ast
import functools
import itertools
import linecache
import os
import sys
import sysconfig
from types import CodeType, FrameType

__all__ = ["assigned_attribute", "expression", "is_user_file", "location", "user_frame", "where"]

_LIBRARIES = ("shapekit", "torch", "einops", "jaxtyping", "beartype", "typeguard", "functorch",
              "_pytest", "pluggy")
_OP_TEXT_LIMIT = 48  # longer expressions are shown by their function name or operator only


def _library_roots() -> tuple[str, ...]:
    roots = []
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            roots.append(os.path.dirname(os.path.realpath(path)) + os.sep)
    return tuple(roots)


def _stdlib_roots() -> tuple[tuple[str, ...], tuple[str, ...]]:
    paths = sysconfig.get_paths()
    stdlib = {os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib")}
    # site-packages lives inside the stdlib folder; third-party code there is not the stdlib.
    sites = {os.path.realpath(paths[k]) + os.sep for k in ("purelib", "platlib")}
    return tuple(stdlib), tuple(sites)


@functools.lru_cache(maxsize=4096)
def is_user_file(filename: str) -> bool:
    """True for the user's code: not shapekit, torch, einops (or the checkers shapekit uses), not
    the stdlib, not generated code such as beartype's wrappers.
    """
    if filename.startswith("<"):
        return filename.startswith(("<stdin", "<string", "<doctest", "<ipython-input", "<input"))
    path = os.path.realpath(filename)
    if path.startswith(_library_roots()):
        return False
    stdlib, sites = _stdlib_roots()
    return not path.startswith(stdlib) or path.startswith(sites)


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost frame at or outside ``frame`` that runs user code, or None."""
    while frame is not None and not is_user_file(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def location(filename: str, lineno: int | None) -> str:
    """``train.py:42``: the path relative to the working directory when inside it, else the name."""
    if filename.startswith("<"):
        return f"{filename}:{lineno}"
    path = os.path.abspath(filename)
    cwd = os.getcwd() + os.sep
    shown = path[len(cwd):] if path.startswith(cwd) else os.path.basename(path)
    return f"{shown}:{lineno}"


def where(frame: FrameType, lasti: int | None = None) -> str:
    """The file:line a frame is running (``lasti``: a traceback's instruction, else the frame's)."""
    lasti = frame.f_lasti if lasti is None else lasti
    lineno = _positions(frame.f_code, lasti)[0] or frame.f_lineno
    return location(frame.f_code.co_filename, lineno)


def _positions(code: CodeType, lasti: int) -> tuple[int | None, int | None, int | None, int | None]:
    if lasti < 0 or not hasattr(code, "co_positions"):  # Python 3.10 has no column positions
        return (None, None, None, None)
    return next(itertools.islice(code.co_positions(), lasti // 2, None), (None,) * 4)


def expression(frame: FrameType, lasti: int | None = None) -> tuple[str, ast.expr | None]:
    """The source text and AST of the expression ``frame`` is executing: the call, operator or
    subscript that is running (Python 3.11+ column positions); ``("", None)`` when unknown."""
    lasti = frame.f_lasti if lasti is None else lasti
    start, end, col, end_col = _positions(frame.f_code, lasti)
    if None in (start, end, col, end_col):
        return "", None
    lines = linecache.getlines(frame.f_code.co_filename, frame.f_globals)
    if not lines or end > len(lines):
        return "", None
    raw = [line.encode() for line in lines[start - 1:end]]
    raw[-1] = raw[-1][:end_col]
    raw[0] = raw[0][col:]
    text = b"".join(raw).decode(errors="replace").strip()
    try:
        node = ast.parse(f"(\n{text}\n)", mode="eval").body
    except SyntaxError:
        node = _augmented(text)
    return (text, node) if node is not None else ("", None)


def assigned_attribute(frame: FrameType) -> tuple[ast.Attribute, ast.expr] | None:
    """When the op ``frame`` is running is the whole right-hand side of ``obj.attr = <expr>`` and
    ``<expr>`` reads ``obj.attr`` too (a running statistic's update), the target and ``<expr>``;
    else None. Found from the frame's column positions in the file's syntax tree, cached.

    >>> sorted(target.attr for target, _ in _updates("self.m = 0.9 * self.m + x\\ny = x").values())
    ['m']
    """
    code, lasti = frame.f_code, frame.f_lasti
    key = (id(code), lasti)  # hashing a code object hashes its bytecode: key by identity
    hit = _ASSIGNMENTS.get(key)
    if hit is None or hit[0] is not code:
        if len(_ASSIGNMENTS) > 4096:
            _ASSIGNMENTS.clear()
        hit = _ASSIGNMENTS[key] = (code, _assignment_at(code, lasti))
    return hit[1]


_ASSIGNMENTS: dict[tuple[int, int], tuple[CodeType, tuple | None]] = {}


def _assignment_at(code: CodeType, lasti: int) -> tuple[ast.Attribute, ast.expr] | None:
    positions = _positions(code, lasti)
    if None in positions:
        return None
    lines = linecache.getlines(code.co_filename)
    return _updates("".join(lines)).get(positions) if lines else None


@functools.lru_cache(maxsize=64)
def _updates(source: str) -> dict[tuple, tuple[ast.Attribute, ast.expr]]:
    """``obj.attr = <expr reading obj.attr>`` in ``source``, keyed by ``<expr>``'s positions."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return {}
    found = {}
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        for target in targets:
            if not isinstance(target, ast.Attribute):
                continue
            text = ast.unparse(target)
            if any(isinstance(n, ast.Attribute) and ast.unparse(n) == text
                   for n in ast.walk(value)):
                key = (value.lineno, value.end_lineno, value.col_offset, value.end_col_offset)
                found[key] = (target, value)
    return found


def _augmented(text: str) -> ast.expr | None:
    """``P /= P.sum(1)`` runs as the operator ``P / P.sum(1)``: return that expression."""
    try:
        body = ast.parse(text).body
    except SyntaxError:
        return None
    if len(body) == 1 and isinstance(body[0], ast.AugAssign):
        stmt = body[0]
        target = ast.Name(stmt.target.id) if isinstance(stmt.target, ast.Name) else stmt.target
        return ast.BinOp(left=target, op=stmt.op, right=stmt.value)
    return None


def op_text(text: str, node: ast.expr | None) -> str:
    """How a message names the failing expression: ``h @ W2`` when short, else ``F.cross_entropy``
    (a call's function) or ``@`` (an operator).

    >>> import ast
    >>> op_text("x.view(B, C, T)", ast.parse("x.view(B, C, T)", mode="eval").body)
    'x.view(B, C, T)'
    """
    if text and "\n" not in text and len(text) <= _OP_TEXT_LIMIT:
        return text
    if isinstance(node, ast.Call):
        return ast.unparse(node.func)
    if isinstance(node, ast.BinOp):
        return _OPERATORS.get(type(node.op), "operator")
    return " ".join(text.split())[:_OP_TEXT_LIMIT]


_OPERATORS = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.MatMult: "@", ast.Pow: "**",
    ast.FloorDiv: "//", ast.Mod: "%",
}
