"""The makemore data: names.txt, the 27-symbol vocabulary, and the lecture's (X, Y) datasets.

    python -c "import shapekit._data as d; print(d.make_splits(d.load_names().words))"

``load_names`` takes the first of these that works:

1. an explicit ``path``, else the file named by ``$SHAPEKIT_NAMES``;
2. the cache, ``$XDG_CACHE_HOME/shapekit/names.txt`` (default ``~/.cache/shapekit/names.txt``), used
   only if its SHA-256 is ``NAMES_SHA256``; a corrupt copy is deleted and fetched again;
3. a download of makemore's names.txt from ``NAMES_URL`` (or ``$SHAPEKIT_NAMES_URL``), checked
   against ``NAMES_SHA256`` and moved into the cache only once complete;
4. offline (the download failed, ``offline=True`` or ``SHAPEKIT_OFFLINE=1``): the first names
   that the ``names`` package ships, with a notice on stderr: the lecture's losses won't reproduce.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import os
import random
import re
import sys
import tempfile
import urllib.request
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from shapekit._errors import DataError

__all__ = [
    "NAMES_SHA256",
    "NAMES_URL",
    "VOCAB",
    "Names",
    "Splits",
    "build_dataset",
    "decode",
    "encode",
    "itos",
    "load_names",
    "make_splits",
    "read_names_file",
    "split_words",
    "stoi",
]

NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
DOWNLOAD_TIMEOUT = 10.0  # seconds; a machine without network should fall back quickly, not hang

VOCAB = ".abcdefghijklmnopqrstuvwxyz"  # '.' (0) marks both the start and the end of a name
stoi: dict[str, int] = {s: i for i, s in enumerate(VOCAB)}
itos: dict[int, str] = {i: s for s, i in stoi.items()}

_WORD = re.compile(r"[a-z]+")
_NORMALIZE = "pass normalize=True"


@dataclass(frozen=True)
class Names:
    """The names, and which data they are, so a run can record exactly what it trained on.

    ``source`` is one of ``"path"``, ``"env"``, ``"cache"``, ``"download"``, ``"fallback"``;
    ``sha256`` is the hex digest of the file's bytes (for the fallback, of ``"\\n".join(words)``).
    """

    words: list[str]
    source: str
    sha256: str

    def __repr__(self) -> str:  # 32,033 names are too many to print
        n = f"{len(self.words):,}"
        return f"Names(words=[{n} names], source={self.source!r}, sha256={self.sha256!r})"


@dataclass(frozen=True)
class Splits:
    """The lecture's train / dev / test tensors: X ``(N, block_size)`` and Y ``(N,)``, int64."""

    Xtr: Tensor
    Ytr: Tensor
    Xdev: Tensor
    Ydev: Tensor
    Xte: Tensor
    Yte: Tensor

    def __repr__(self) -> str:  # shapes, not a screenful of numbers
        shapes = ", ".join(f"{k}={tuple(v.shape)}" for k, v in vars(self).items())
        return f"Splits({shapes})"


def load_names(
    path: str | os.PathLike | None = None,
    *,
    normalize: bool = False,
    offline: bool = False,
    quiet: bool = False,
) -> Names:
    """Load the names, from the first source that works (see the module docstring).

    ``normalize`` is passed to ``read_names_file``; ``offline`` skips the download; ``quiet``
    silences the notices on stderr. A file that is given but broken raises ``DataError``; it is
    never replaced by another source. ::

        names = load_names()               # Names(words=[32,033 names], source='cache', ...)
        X, Y = build_dataset(names.words)  # X: (228146, 8), Y: (228146,)
    """
    offline = _offline_from_env() or offline
    if path is not None:
        return _load_file(path, "path", normalize)
    env = os.environ.get("SHAPEKIT_NAMES")
    if env:
        if not os.path.exists(env):
            raise DataError(
                f"SHAPEKIT_NAMES={env}: no such file; expected the path of a names file (one"
                " lower-case name per line); fix: point SHAPEKIT_NAMES at an existing file, or"
                " unset it to use the cached or downloaded names.txt"
            )
        return _load_file(env, "env", normalize)

    cached = _cache_path()
    if cached.is_file():
        data = cached.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest == NAMES_SHA256:
            return Names(_parse(data, f"names file {cached}", normalize), "cache", digest)
        # never train on a file that isn't the lecture's: a half-written or edited cache goes
        _notice(quiet, f"shapekit: {cached} has SHA-256 {digest}, expected {NAMES_SHA256};"
                " deleting it and fetching it again")
        cached.unlink()

    reason = "offline (offline=True or SHAPEKIT_OFFLINE=1)"
    if not offline:
        url = os.environ.get("SHAPEKIT_NAMES_URL") or NAMES_URL
        _notice(quiet, f"shapekit: downloading names.txt from {url} to {cached}")
        try:
            _download(url, cached)
        except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: URL, hash
            reason = f"download from {url} failed ({e})"
        else:
            return _load_file(cached, "download", normalize)
    return _fallback(reason, quiet)


def read_names_file(path: str | os.PathLike, *, normalize: bool = False) -> list[str]:
    """Read one name per line, and refuse anything the lecture's code would silently mis-train on.

    Always accepted: CRLF line endings (the ``\\r`` is stripped), a UTF-8 byte-order mark, and blank
    lines at the very end of the file. Anything else that is not a lower-case a-z word (a blank line
    in the middle, surrounding whitespace, upper case, any other character) raises ``DataError``
    naming the first bad line, unless ``normalize=True``: then whitespace is stripped, blank lines
    are skipped, upper case is lower-cased and words with other characters are dropped. ::

        words = read_names_file("names.txt")   # ['emma', 'olivia', 'ava', ...], 32,033 words
    """
    return _parse(_read_bytes(path, f"names file {path}"), f"names file {path}", normalize)


def encode(word: str) -> list[int]:
    """Map characters to ids with ``stoi``.

    >>> encode("emma.")
    [5, 13, 13, 1, 0]
    """
    try:
        return [stoi[ch] for ch in word]
    except KeyError as e:
        raise DataError(
            f"encode({word!r}): {e.args[0]!r} is not in the vocabulary; expected '.' or a-z only;"
            f" fix: clean the words first, e.g. read_names_file(path, normalize=True)"
        ) from None


def decode(ids: Iterable[int]) -> str:
    """Map ids back to characters with ``itos``; accepts a list or a 1-d tensor of ids.

    >>> decode([5, 13, 13, 1, 0])
    'emma.'
    """
    chars = []
    for i in ids:
        i = int(i)
        if i not in itos:
            raise DataError(
                f"decode: id {i} is outside the vocabulary; expected 0..{len(VOCAB) - 1};"
                " fix: decode the argmax or a sample over the 27 logits, not a raw index"
            )
        chars.append(itos[i])
    return "".join(chars)


def build_dataset(words: Iterable[str], block_size: int = 8) -> tuple[Tensor, Tensor]:
    """The lecture's dataset: every ``block_size`` characters of context predict the next one.

    >>> X, Y = build_dataset(["ab"], block_size=3)  # "..." -> a, "..a" -> b, ".ab" -> .
    >>> X.shape, Y.shape  # X: (N, block_size), Y: (N,), N = sum(len(w) + 1)
    (torch.Size([3, 3]), torch.Size([3]))
    >>> X.tolist(), Y.tolist()
    ([[0, 0, 0], [0, 0, 1], [0, 1, 2]], [1, 2, 0])
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(
            f"build_dataset expected block_size: an int >= 1 (characters of context), got"
            f" {block_size!r}; fix: pass e.g. block_size=8 as in the lecture"
        )
    # The lecture appends each context list to X; a flat int64 array holds the same numbers in a
    # fraction of the memory (a list of 228,000 small lists costs ~30 MB on the way to a tensor).
    X, Y = array("q"), []
    for w in words:
        context = [0] * block_size  # start with a full context of '.'
        for ix in encode(w + "."):
            X.extend(context)
            Y.append(ix)
            context = context[1:] + [ix]  # crop and append, as in the lecture  # noqa: RUF005
    flat = torch.frombuffer(X, dtype=torch.long).clone() if X else torch.zeros(0, dtype=torch.long)
    return flat.view(-1, block_size), torch.tensor(Y, dtype=torch.long)  # (N, block_size), (N,)


def split_words(words: Sequence[str], seed: int = 42) -> tuple[list[str], list[str], list[str]]:
    """Shuffle a copy and split it 80/10/10 into train, dev and test, exactly as the lecture does.

    Like the lecture this seeds Python's global ``random`` (that is what makes the splits, and so
    the losses, match the lecture's); ``words`` itself is left alone.

    >>> train, dev, test = split_words([str(i) for i in range(10)])
    >>> len(train), len(dev), len(test)
    (8, 1, 1)
    """
    words = list(words)
    random.seed(seed)
    random.shuffle(words)
    n1 = int(0.8 * len(words))
    n2 = int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


def make_splits(words: Sequence[str], block_size: int = 8, seed: int = 42) -> Splits:
    """``split_words`` then ``build_dataset`` on each part; on names.txt::

        Splits(Xtr=(182625, 8), Ytr=(182625,), Xdev=(22655, 8), Ydev=(22655,), Xte=(22866, 8), ...)
    """
    train, dev, test = split_words(words, seed)
    return Splits(
        *build_dataset(train, block_size),
        *build_dataset(dev, block_size),
        *build_dataset(test, block_size),
    )


def _parse(data: bytes, where: str, normalize: bool) -> list[str]:
    if not data:
        raise DataError(
            f"{where}: is empty (0 bytes); expected one lower-case name per line; fix: use"
            " makemore's names.txt, or call load_names() without a path to fetch it"
        )
    try:
        text = data.decode("utf-8-sig")  # a BOM from a Windows editor is harmless: drop it
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(
            f"{where} line {line}: byte 0x{data[e.start]:02x} is not UTF-8; expected UTF-8 text;"
            " fix: re-encode the file, e.g. iconv -f latin1 -t utf-8 in.txt > out.txt"
        ) from None
    n_lines = text.count("\n") + (not text.endswith("\n"))
    lines = [line.removesuffix("\r") for line in text.split("\n")]  # CRLF is fine
    while lines and not lines[-1].strip():  # so are the final newline and blank lines at the end
        lines.pop()
    words = []
    for n, line in enumerate(lines, 1):
        if _WORD.fullmatch(line):
            words.append(line)
        elif normalize:
            word = line.strip().lower()
            if _WORD.fullmatch(word):
                words.append(word)
        else:
            raise DataError(f"{where} line {n}: {_problem(line)}")
    if not words:
        dropped = ", or dropped by normalize=True" if normalize else ""
        raise DataError(
            f"{where}: no names ({n_lines} lines, all blank{dropped}); expected one lower-case"
            " a-z name per line; fix: use makemore's names.txt, or call load_names() without a path"
        )
    return words


def _problem(line: str) -> str:
    """Why a line is not a lower-case a-z word: what was expected, what was got, and the fix."""
    if not line.strip():
        return f"is blank; expected one name per line; fix: delete blank lines or {_NORMALIZE}"
    if line != line.strip():
        return (
            f"{line!r} has surrounding whitespace; expected lower-case a-z only; fix: strip the"
            f" lines (sed 's/^[[:space:]]*//;s/[[:space:]]*$//') or {_NORMALIZE}"
        )
    for col, ch in enumerate(line, 1):
        if not ("a" <= ch <= "z" or "A" <= ch <= "Z"):
            return (
                f"{line!r} has {ch!r} (U+{ord(ch):04X}) at column {col}; expected lower-case a-z"
                f" only; fix: remove or respell that name, or {_NORMALIZE} to drop such names"
            )
    return (
        f"{line!r} has upper-case letters; expected lower-case a-z only; fix: lower-case the file"
        f" (tr A-Z a-z) or {_NORMALIZE}"
    )


def _read_bytes(path: str | os.PathLike, where: str) -> bytes:
    p = Path(path)
    if p.is_dir():
        raise DataError(
            f"{where}: is a directory; expected a text file with one name per line; fix: pass the"
            f" file inside it, e.g. {p / 'names.txt'}"
        )
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"{where}: no such file; expected an existing text file with one name per line; fix:"
            " check the path, or call load_names() without one to use the cache or download"
        ) from None
    except OSError as e:
        raise DataError(
            f"{where}: cannot be read ({e.strerror}); expected a readable text file; fix: check"
            " its permissions"
        ) from None


def _load_file(path: str | os.PathLike, source: str, normalize: bool) -> Names:
    where = f"names file {path}" + (" (from SHAPEKIT_NAMES)" if source == "env" else "")
    data = _read_bytes(path, where)
    return Names(_parse(data, where, normalize), source, hashlib.sha256(data).hexdigest())


def _cache_path() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"  # XDG: ignore relative
    return root / "shapekit" / "names.txt"


def _download(url: str, dest: Path) -> None:
    """Fetch ``url`` to ``dest``: temp file beside it, fsync, verify, ``os.replace``.

    Any failure removes the temp file, so the cache holds the whole verified file or nothing.
    """
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as resp:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".names-", suffix=".part")
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as f:
                while chunk := resp.read(1 << 16):
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())  # the bytes are on disk before the name points at them
            length = resp.headers.get("Content-Length")
            if length is not None and size != int(length):  # http.client ends a cut body quietly
                raise DataError(f"connection dropped after {size:,} of {int(length):,} bytes")
            if digest.hexdigest() != NAMES_SHA256:
                raise DataError(f"expected SHA-256 {NAMES_SHA256}, got {digest.hexdigest()}")
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _fallback(reason: str, quiet: bool) -> Names:
    try:
        package = importlib.resources.files("names")
    except ModuleNotFoundError:
        raise DataError(
            f"no names: {reason}, and the `names` package is not installed; expected makemore's"
            " names.txt; fix: set SHAPEKIT_NAMES=/path/to/names.txt, or pip install names"
        ) from None
    words = set()
    for fname in ("dist.female.first", "dist.male.first"):  # "MARY   2.629  2.629   1" per line
        text = (package / fname).read_text(encoding="ascii")
        words.update(line.split()[0].lower() for line in text.splitlines() if line.strip())
    words = sorted(w for w in words if _WORD.fullmatch(w))  # sorted: the same list on every machine
    _notice(
        quiet,
        f"shapekit: {reason}; using the {len(words):,} first names shipped by the `names` package"
        " instead of makemore's names.txt (32,033 names), so results will differ from the"
        " lecture's table. For the real data, set SHAPEKIT_NAMES=/path/to/names.txt or go online.",
    )
    return Names(words, "fallback", hashlib.sha256("\n".join(words).encode()).hexdigest())


def _offline_from_env() -> bool:
    value = os.environ.get("SHAPEKIT_OFFLINE", "")
    if value not in ("", "0", "1"):
        raise DataError(
            f"SHAPEKIT_OFFLINE={value!r}: expected '1' (never download) or '0' / unset (download"
            " if there is no cached copy); fix: export SHAPEKIT_OFFLINE=1"
        )
    return value == "1"


def _notice(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr)
