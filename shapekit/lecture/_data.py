"""The makemore data: names.txt, the 27-symbol vocabulary, and the lecture's (X, Y) datasets.

    python -c "import shapekit.lecture._data as d; print(d.make_splits(d.load_names().words))"

``load_names`` takes the first of these that works:

1. an explicit ``path``, else the file named by ``$SHAPEKIT_NAMES``;
2. the cache, ``$XDG_CACHE_HOME/shapekit/names.txt`` (default ``~/.cache/shapekit/names.txt``), used
   only if its SHA-256 is ``NAMES_SHA256``; a corrupt copy is deleted and fetched again;
3. a download of makemore's names.txt from ``NAMES_URL`` (or ``$SHAPEKIT_NAMES_URL``), checked
   against ``NAMES_SHA256`` and moved into the cache only once complete; it must finish within
   ``DOWNLOAD_DEADLINE`` seconds (60; ``$SHAPEKIT_DOWNLOAD_DEADLINE`` overrides). If the cache
   cannot be written (a read-only home), the verified download is used anyway, with a notice;
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
import time
import urllib.request
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..checking import DataError
from . import FALLBACK_NOTICE

__all__ = [
    "NAMES_SHA256",
    "NAMES_URL",
    "VOCAB",
    "Names",
    "Splits",
    "build_dataset",
    "check_splittable",
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
DOWNLOAD_DEADLINE = 60.0  # seconds for the whole download ($SHAPEKIT_DOWNLOAD_DEADLINE overrides)
MAX_DOWNLOAD = 16 << 20  # bytes; names.txt is 228,145
MIN_SPLIT_WORDS = 6  # the fewest names whose 80/10/10 split leaves dev and test a name each

VOCAB = ".abcdefghijklmnopqrstuvwxyz"  # '.' (0) marks both the start and the end of a name
stoi: dict[str, int] = {s: i for i, s in enumerate(VOCAB)}
itos: dict[int, str] = {i: s for s, i in stoi.items()}

_WORD = re.compile(r"[a-z]+")
_NORMALIZE = "pass normalize=True"
_NO_PATH = "call load_names() without a path"
# Fixes that only a Python caller can follow, and what a `shapekit` command user does instead.
_CLI_FIXES = (
    (f", or {_NORMALIZE} to drop such names", ""),
    (f" or {_NORMALIZE}", ""),
    (f", or {_NO_PATH} to fetch it", ", or drop --data to use it"),
    (f", or {_NO_PATH}", ", or drop --data to use it"),
    (", or call load_names() without one to use the cache or download",
     ", or drop --data to use the cached or downloaded names.txt"),
)


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
    data = _read_cache(cached, quiet)
    if data is not None:
        return Names(_parse(data, f"names file {cached}", normalize), "cache", NAMES_SHA256)

    reason = "offline (offline=True or SHAPEKIT_OFFLINE=1)"
    if not offline:
        url = os.environ.get("SHAPEKIT_NAMES_URL") or NAMES_URL
        deadline = _download_deadline()  # a bad setting is the user's to fix, not a fallback
        _notice(quiet, f"shapekit: downloading names.txt from {url} to {cached}")
        try:
            data = _download(url, deadline)
        except (OSError, http.client.HTTPException, ValueError) as e:  # ValueError: URL, hash
            reason = f"download from {url} failed ({e})"
        else:
            _store(cached, data, quiet)
            return Names(_parse(data, f"download from {url}", normalize), "download", NAMES_SHA256)
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


def check_splittable(words: Sequence[str], where: str) -> None:
    """``DataError`` unless ``words`` split into non-empty train, dev and test parts (fewer names
    train on nothing, or report a val loss of nan)."""
    if len(words) < MIN_SPLIT_WORDS:
        train, dev, test = map(len, _split_sizes(len(words)))
        raise DataError(
            f"{where}: has {len(words)} name(s), too few for the lecture's 80/10/10 split (train"
            f" {train}, dev {dev}, test {test}); expected at least {MIN_SPLIT_WORDS} names;"
            " fix: pass --data with a longer file, or drop --data to use makemore's names.txt"
        )


def _split_sizes(n: int) -> tuple[range, range, range]:
    n1, n2 = int(0.8 * n), int(0.9 * n)  # as split_words
    return range(n1), range(n1, n2), range(n2, n)


def for_command_line(message: str) -> str:
    """``message`` with its Python-only fixes swapped for what a ``shapekit`` command user does.

    >>> for_command_line("names.txt: is empty; fix: use makemore's names.txt, or "
    ...                  "call load_names() without a path to fetch it")
    "names.txt: is empty; fix: use makemore's names.txt, or drop --data to use it"
    """
    for python, cli in _CLI_FIXES:
        message = message.replace(python, cli)
    return message


def _parse(data: bytes, where: str, normalize: bool) -> list[str]:
    if not data:
        raise DataError(
            f"{where}: is empty (0 bytes); expected one lower-case name per line; fix: use"
            f" makemore's names.txt, or {_NO_PATH} to fetch it"
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
            f" a-z name per line; fix: use makemore's names.txt, or {_NO_PATH}"
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


def _download(url: str, deadline: float) -> bytes:
    """The bytes at ``url``, checked against ``NAMES_SHA256``; at most ``deadline`` seconds in all.

    ``DOWNLOAD_TIMEOUT`` bounds each wait for the server and ``deadline`` the whole transfer, so a
    server that trickles a byte at a time cannot keep shapekit busy. Nothing is written here.
    """
    start = time.monotonic()
    with urllib.request.urlopen(url, timeout=min(DOWNLOAD_TIMEOUT, deadline)) as resp:
        chunks, size = [], 0
        while chunk := resp.read1(1 << 16):  # read1: whatever arrived, so the clock is checked
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_DOWNLOAD:
                raise DataError(f"more than {MAX_DOWNLOAD:,} bytes: not names.txt")
            if time.monotonic() - start > deadline:
                raise DataError(
                    f"not done after the {deadline:g} s deadline ({size:,} bytes so far); "
                    "raise it with SHAPEKIT_DOWNLOAD_DEADLINE=SECONDS"
                )
        length = resp.headers.get("Content-Length")
    data = b"".join(chunks)
    if length is not None and size != int(length):  # http.client ends a cut body quietly
        raise DataError(f"connection dropped after {size:,} of {int(length):,} bytes")
    digest = hashlib.sha256(data).hexdigest()
    if digest != NAMES_SHA256:
        raise DataError(f"expected SHA-256 {NAMES_SHA256}, got {digest}")
    return data


def _download_deadline() -> float:
    value = os.environ.get("SHAPEKIT_DOWNLOAD_DEADLINE", "")
    if not value:
        return DOWNLOAD_DEADLINE
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise DataError(
            f"SHAPEKIT_DOWNLOAD_DEADLINE={value!r}: expected a number of seconds > 0 for the whole"
            f" download of names.txt; fix: export SHAPEKIT_DOWNLOAD_DEADLINE={DOWNLOAD_DEADLINE:g}"
        )
    return seconds


def _read_cache(cached: Path, quiet: bool) -> bytes | None:
    """The cached names.txt if it is the lecture's, else ``None`` (a wrong copy is removed)."""
    try:
        if not cached.is_file():
            return None
        data = cached.read_bytes()
    except OSError as e:
        _notice(quiet, f"shapekit: cannot read the cache {cached} ({e.strerror}); ignoring it")
        return None
    digest = hashlib.sha256(data).hexdigest()
    if digest == NAMES_SHA256:
        return data
    # never train on a file that isn't the lecture's: a half-written or edited cache goes
    _notice(quiet, f"shapekit: {cached} has SHA-256 {digest}, expected {NAMES_SHA256};"
            " deleting it and fetching it again")
    try:
        cached.unlink()
    except OSError as e:
        _notice(quiet, f"shapekit: cannot delete {cached} ({e.strerror}); ignoring it")
    return None


def _store(cached: Path, data: bytes, quiet: bool) -> None:
    """Put the verified ``data`` in the cache atomically; if the cache cannot be written, say so
    and go on with ``data`` (the download is good, only the cache is not)."""
    tmp = None
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(cached.parent)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=f".names-{os.getpid()}-",
                                   suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the name points at them
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; a cache file is like any other file
        os.replace(tmp, cached)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        _notice(
            quiet,
            f"shapekit: cannot write the cache {cached} ({e.strerror}); using the verified"
            " download for this run only (the next run downloads it again); fix: make"
            f" {cached.parent} writable, or export XDG_CACHE_HOME=/a/writable/directory",
        )


def _remove_stale_parts(folder: Path) -> None:
    """Delete ``.names-PID-*.part`` files whose process is gone (a download killed mid-write)."""
    for part in folder.glob(".names-*.part"):
        pid = part.name.split("-")[1]
        if not pid.isdigit() or not _alive(int(pid)):
            part.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process (or a pid we cannot ask about): leave it
    return True


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
        f"shapekit: {reason}; using the {len(words):,} {FALLBACK_NOTICE}"
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
