"""Tests for shapekit.lecture._data: where the names come from, bad files, the vocabulary and
the datasets.

No test reaches the internet: the autouse fixture points SHAPEKIT_NAMES_URL at a closed local port
and the download tests serve small synthetic files from an http.server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import random
import threading
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from shapekit.checking._errors import DataError
from shapekit.lecture import _data
from shapekit.lecture._data import (
    NAMES_SHA256,
    NAMES_URL,
    VOCAB,
    Names,
    Splits,
    build_dataset,
    decode,
    encode,
    itos,
    load_names,
    make_splits,
    read_names_file,
    split_words,
    stoi,
)

# captured at import, before the autouse fixture clears SHAPEKIT_NAMES for the other tests
REAL_NAMES = Path(
    os.environ.get("SHAPEKIT_NAMES")
    or Path(__file__).resolve().parents[2] / "shared/data/names.txt"
)
SMALL = b"emma\nolivia\nava\n"
SMALL_WORDS = ["emma", "olivia", "ava"]
DEAD_URL = "http://127.0.0.1:9/names.txt"  # the discard port: nothing listens, connect is refused


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache and HOME, no SHAPEKIT_* settings, and a download URL that cannot connect."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHAPEKIT_NAMES_URL", DEAD_URL)
    monkeypatch.delenv("SHAPEKIT_NAMES", raising=False)
    monkeypatch.delenv("SHAPEKIT_OFFLINE", raising=False)


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "xdg" / "shapekit"


@pytest.fixture
def small_hash(monkeypatch) -> str:
    """Make the synthetic SMALL file the one whose hash load_names expects."""
    monkeypatch.setattr(_data, "NAMES_SHA256", sha(SMALL))
    return sha(SMALL)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.routes[path] = (status, body, declared Content-Length, seconds to stall)."""

    def do_GET(self):
        status, body, length, stall = self.server.routes.get(self.path, (404, b"", None, 0))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may have given up (the timeout test)
            if stall < 0:  # trickle: one byte every -stall seconds, each well within the timeout
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(-stall)
                return
            time.sleep(stall)
            self.wfile.write(body)  # then the handler returns and the connection closes (HTTP/1.0)

    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def server(monkeypatch):
    """A local HTTP server; ``serve(body, ...)`` adds a route, points SHAPEKIT_NAMES_URL at it."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads, srv.block_on_close, srv.routes = True, False, {}
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()

    def serve(body, *, status=200, length=None, stall=0.0):
        path = f"/{len(srv.routes)}/names.txt"
        srv.routes[path] = (status, body, length, stall)
        monkeypatch.setenv("SHAPEKIT_NAMES_URL", f"http://127.0.0.1:{srv.server_port}{path}")

    yield serve
    srv.shutdown()
    srv.server_close()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def assert_cache_empty(cache_dir: Path) -> None:
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


# --- resolution order -------------------------------------------------------------------------


def test_constants():
    assert NAMES_URL == "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
    assert NAMES_SHA256 == "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"


def test_explicit_path_wins_over_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAPEKIT_NAMES", str(write(tmp_path / "other.txt", b"zed\n")))
    names = load_names(write(tmp_path / "names.txt", SMALL))
    assert names == Names(SMALL_WORDS, "path", sha(SMALL))
    assert repr(names) == f"Names(words=[3 names], source='path', sha256='{sha(SMALL)}')"


def test_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAPEKIT_NAMES", str(write(tmp_path / "names.txt", SMALL)))
    assert load_names() == Names(SMALL_WORDS, "env", sha(SMALL))


def test_env_missing_file_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAPEKIT_NAMES", str(tmp_path / "nope.txt"))
    with pytest.raises(DataError, match=r"SHAPEKIT_NAMES=.*nope.txt: no such file; expected .*"
                       r"fix: point SHAPEKIT_NAMES at an existing file"):
        load_names()


def test_env_bad_file_says_where_the_path_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAPEKIT_NAMES", str(write(tmp_path / "names.txt", b"Emma\n")))
    with pytest.raises(DataError, match=r"\(from SHAPEKIT_NAMES\) line 1: 'Emma' has upper-case"):
        load_names()


def test_valid_cache_is_used_without_network(cache_dir, small_hash):
    write(cache_dir / "names.txt", SMALL)
    assert load_names() == Names(SMALL_WORDS, "cache", small_hash)


def test_cache_defaults_to_home_dot_cache(tmp_path, monkeypatch, small_hash):
    monkeypatch.delenv("XDG_CACHE_HOME")
    write(tmp_path / "home" / ".cache" / "shapekit" / "names.txt", SMALL)
    assert load_names().source == "cache"


def test_corrupt_cache_is_deleted_and_fetched_again(cache_dir, server, small_hash, capsys):
    write(cache_dir / "names.txt", b"emma\noliv")  # e.g. an older, truncated copy
    server(SMALL)
    assert load_names() == Names(SMALL_WORDS, "download", small_hash)
    assert (cache_dir / "names.txt").read_bytes() == SMALL
    assert "deleting it and fetching it again" in capsys.readouterr().err


def test_corrupt_cache_is_never_used_offline(cache_dir, small_hash):
    write(cache_dir / "names.txt", b"zed\n")
    names = load_names(offline=True, quiet=True)
    assert names.source == "fallback"
    assert_cache_empty(cache_dir)


# --- download ---------------------------------------------------------------------------------


def test_download_writes_verified_cache(cache_dir, server, small_hash, capsys):
    server(SMALL)
    assert load_names() == Names(SMALL_WORDS, "download", small_hash)
    assert list(cache_dir.iterdir()) == [cache_dir / "names.txt"]  # no temp file left beside it
    assert (cache_dir / "names.txt").read_bytes() == SMALL
    assert "downloading names.txt from http://127.0.0.1:" in capsys.readouterr().err
    assert load_names(quiet=True).source == "cache"  # the second call needs no network


def test_download_wrong_checksum_falls_back_and_leaves_nothing(cache_dir, server, capsys):
    server(SMALL)  # NAMES_SHA256 is still the real file's
    names = load_names()
    assert names.source == "fallback"
    assert_cache_empty(cache_dir)
    assert f"expected SHA-256 {NAMES_SHA256}, got {sha(SMALL)}" in capsys.readouterr().err


def test_download_dropped_mid_body_leaves_nothing(cache_dir, server, small_hash, capsys):
    server(SMALL[:7], length=len(SMALL))  # promises 16 bytes, sends 7, closes
    assert load_names().source == "fallback"
    assert_cache_empty(cache_dir)
    assert "connection dropped after 7 of 16 bytes" in capsys.readouterr().err


def test_download_http_error_falls_back(cache_dir, server, small_hash, capsys):
    server(b"not here", status=404)
    assert load_names().source == "fallback"
    assert_cache_empty(cache_dir)
    assert "HTTP Error 404" in capsys.readouterr().err


def test_download_timeout_falls_back(cache_dir, server, small_hash, monkeypatch, capsys):
    monkeypatch.setattr(_data, "DOWNLOAD_TIMEOUT", 0.2)
    server(SMALL, stall=1.0)  # headers at once, then silence mid-body
    assert load_names().source == "fallback"
    assert_cache_empty(cache_dir)
    assert "timed out" in capsys.readouterr().err


def test_download_connection_refused_falls_back(cache_dir, capsys):
    assert load_names().source == "fallback"  # the autouse fixture's closed port
    assert_cache_empty(cache_dir)
    assert f"download from {DEAD_URL} failed" in capsys.readouterr().err


# --- offline fallback -------------------------------------------------------------------------


def test_offline_fallback_notice(capsys):
    names = load_names(offline=True)
    assert names.source == "fallback"
    assert names.words == sorted(set(names.words)) and len(names.words) > 5000
    assert {"mary", "james"} <= set(names.words)
    assert all(w.isascii() and w.isalpha() and w.islower() for w in names.words)
    assert names.sha256 == sha("\n".join(names.words).encode())
    err = capsys.readouterr().err
    assert err.startswith("shapekit: offline (offline=True or SHAPEKIT_OFFLINE=1); using the ")
    assert "first names shipped by the `names` package" in err
    assert "results will differ from the lecture's table" in err
    assert "downloading" not in err  # offline means no attempt at all


def test_offline_env_and_quiet(monkeypatch, capsys):
    monkeypatch.setenv("SHAPEKIT_OFFLINE", "1")
    assert load_names(quiet=True).source == "fallback"
    assert capsys.readouterr().err == ""


def test_offline_env_is_validated(monkeypatch):
    monkeypatch.setenv("SHAPEKIT_OFFLINE", "yes")
    with pytest.raises(DataError, match=r"SHAPEKIT_OFFLINE='yes': expected '1' .* or '0' / unset"):
        load_names()


def test_offline_uses_a_valid_cache(cache_dir, small_hash):
    write(cache_dir / "names.txt", SMALL)
    assert load_names(offline=True).source == "cache"


# --- bad files --------------------------------------------------------------------------------


def test_directory(tmp_path):
    with pytest.raises(DataError, match=r"names file .*: is a directory; expected a text file .*"
                       r"fix: pass the file inside it, e.g. .*names.txt"):
        read_names_file(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"names file .*nope.txt: no such file; expected .*fix: "):
        read_names_file(tmp_path / "nope.txt")


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match=r"names file .*: is empty \(0 bytes\); expected one "
                       r"lower-case name per line; fix: "):
        read_names_file(write(tmp_path / "names.txt", b""))


def test_only_blank_lines(tmp_path):
    with pytest.raises(DataError, match=r": no names \(3 lines, all blank\); expected .*; fix: "):
        read_names_file(write(tmp_path / "names.txt", b"\n\n\n"), normalize=False)


def test_normalize_can_leave_no_names(tmp_path):
    path = write(tmp_path / "names.txt", b"jo-ann\n\n")
    with pytest.raises(DataError, match=r"all blank, or dropped by normalize=True\)"):
        read_names_file(path, normalize=True)


def test_not_utf8(tmp_path):
    path = write(tmp_path / "names.txt", "emma\nzoë\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"names file .* line 2: byte 0xeb is not UTF-8; expected "
                       r"UTF-8 text; fix: re-encode the file, e.g. iconv"):
        read_names_file(path)


@pytest.mark.parametrize(
    "data",
    [
        b"emma\r\nolivia\r\nava\r\n",
        b"emma\nolivia\nava",
        b"emma\nolivia\nava\n\n \n\n",
        b"\xef\xbb\xbf" + SMALL,
    ],
    ids=["crlf", "no-final-newline", "blank-lines-at-end", "utf8-bom"],
)
def test_accepted_silently(tmp_path, data):
    assert read_names_file(write(tmp_path / "names.txt", data)) == SMALL_WORDS


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"emma\nolivia\nEmma\n",
         r"names file .* line 3: 'Emma' has upper-case letters; expected lower-case a-z only; "
         r"fix: lower-case the file \(tr A-Z a-z\) or pass normalize=True$"),
        (b"emma\n\nava\n",
         r"line 2: is blank; expected one name per line; fix: delete blank lines or pass "
         r"normalize=True$"),
        (b"emma\n ava\n",
         r"line 2: ' ava' has surrounding whitespace; expected lower-case a-z only; fix: strip"),
        (b"emma\nava\t\n", r"line 2: 'ava\\t' has surrounding whitespace"),
        (b"emma\njo-ann\n",
         r"line 2: 'jo-ann' has '-' \(U\+002D\) at column 3; expected lower-case a-z only; "
         r"fix: remove or respell that name, or pass normalize=True to drop such names$"),
        ("zoë\n".encode(), r"line 1: 'zoë' has 'ë' \(U\+00EB\) at column 3"),
        (b"Jo.Ann\n", r"line 1: 'Jo.Ann' has '.' \(U\+002E\) at column 3"),
        (b"emma\rolivia\n", r"line 1: 'emma\\rolivia' has '\\r' \(U\+000D\) at column 5"),
    ],
    ids=["upper", "blank-middle", "leading-space", "trailing-tab", "hyphen", "accent", "dot", "cr"],
)
def test_rejected_with_line_and_fix(tmp_path, data, match):
    with pytest.raises(DataError, match=match):
        read_names_file(write(tmp_path / "names.txt", data))


def test_normalize(tmp_path):
    data = "Emma\r\n\n  olivia \nJo-Ann\nzoë\nAVA\n\n".encode()
    assert read_names_file(write(tmp_path / "n.txt", data), normalize=True) == [
        "emma", "olivia", "ava"
    ]


def test_load_names_passes_normalize(tmp_path):
    path = write(tmp_path / "names.txt", b"Emma\nOlivia\nAva\n")
    assert load_names(path, normalize=True).words == SMALL_WORDS
    with pytest.raises(DataError, match="upper-case"):
        load_names(path)


# --- vocabulary -------------------------------------------------------------------------------


def test_vocab():
    assert len(VOCAB) == 27 and VOCAB[0] == "."
    assert stoi["."] == 0 and stoi["a"] == 1 and stoi["z"] == 26
    assert itos == {i: s for s, i in stoi.items()} and len(itos) == 27


@given(st.text(alphabet=VOCAB))
def test_encode_decode_roundtrip(word):
    assert decode(encode(word)) == word
    assert decode(torch.tensor(encode(word), dtype=torch.long)) == word


def test_encode_decode_errors():
    with pytest.raises(DataError, match=r"encode\('Emma'\): 'E' is not in the vocabulary; "
                       r"expected '\.' or a-z only; fix: "):
        encode("Emma")
    with pytest.raises(DataError, match=r"decode: id 27 is outside the vocabulary; expected 0..26"):
        decode([1, 27])


# --- datasets ---------------------------------------------------------------------------------


def test_build_dataset_by_hand():
    X, Y = build_dataset(["ab"], block_size=3)
    assert X.dtype == Y.dtype == torch.int64
    assert X.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2]]
    assert Y.tolist() == [1, 2, 0]


def test_build_dataset_empty():
    X, Y = build_dataset([], block_size=8)
    assert X.shape == (0, 8) and Y.shape == (0,)


@given(st.lists(st.text(alphabet=VOCAB[1:], max_size=10), max_size=5), st.integers(1, 6))
def test_build_dataset_shapes_and_targets(words, block_size):
    X, Y = build_dataset(words, block_size)
    n = sum(len(w) + 1 for w in words)
    assert X.shape == (n, block_size) and Y.shape == (n,)
    # the targets spell the words out, each ended by '.'
    assert decode(Y) == "".join(w + "." for w in words)


@pytest.mark.parametrize("bad", [0, -1, 2.0, "8", True, None])
def test_build_dataset_bad_block_size(bad):
    with pytest.raises(ValueError, match=r"build_dataset expected block_size: an int >= 1 .*, got "
                       r".*; fix: pass e.g. block_size=8"):
        build_dataset(["ab"], block_size=bad)


def test_split_words_is_the_lecture_split():
    words = [f"w{i}" for i in range(101)]
    copy = list(words)
    train, dev, test = split_words(words)
    assert words == copy  # the caller's list is not shuffled in place
    # the lecture, verbatim
    random.seed(42)
    random.shuffle(copy)
    n1, n2 = int(0.8 * len(copy)), int(0.9 * len(copy))
    assert (train, dev, test) == (copy[:n1], copy[n1:n2], copy[n2:])
    assert (len(train), len(dev), len(test)) == (80, 10, 11)
    assert split_words(words, seed=1) != (train, dev, test)


def test_make_splits_small():
    splits = make_splits(["ab", "cd", "ef", "gh", "ij", "kl", "mn", "op", "qr", "st"], 4)
    assert isinstance(splits, Splits)
    assert repr(splits) == ("Splits(Xtr=(24, 4), Ytr=(24,), Xdev=(3, 4), Ydev=(3,), "
                            "Xte=(3, 4), Yte=(3,))")


@pytest.mark.skipif(
    not REAL_NAMES.is_file(),
    reason=f"names.txt not found at {REAL_NAMES}; set SHAPEKIT_NAMES to makemore's names.txt",
)
def test_lecture_counts_on_names_txt():
    names = load_names(REAL_NAMES)
    assert names.sha256 == NAMES_SHA256 and len(names.words) == 32_033
    s = make_splits(names.words, block_size=8)
    assert s.Xtr.shape == (182_625, 8) and s.Ytr.shape == (182_625,)
    assert s.Xdev.shape == (22_655, 8) and s.Ydev.shape == (22_655,)
    assert s.Xte.shape == (22_866, 8) and s.Yte.shape == (22_866,)
    assert s.Xtr.dtype == s.Ytr.dtype == torch.int64


# --- a cache that cannot be read or written, the download deadline, leftovers -----------------


def test_unwritable_cache_keeps_the_verified_download(tmp_path, monkeypatch, server, small_hash,
                                                      capsys):
    blocker = write(tmp_path / "not-a-dir", b"")  # the cache's parent is a file: mkdir fails
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    server(SMALL)
    assert load_names() == Names(SMALL_WORDS, "download", small_hash)
    err = capsys.readouterr().err
    assert f"shapekit: cannot write the cache {blocker / 'shapekit/names.txt'} (" in err
    assert "using the verified download for this run only" in err
    assert "fix: make" in err and "export XDG_CACHE_HOME=" in err
    assert "failed" not in err and "fallback" not in err and "`names` package" not in err


def test_unreadable_cache_is_ignored_not_a_traceback(cache_dir, monkeypatch, capsys):
    path = write(cache_dir / "names.txt", b"emma\n")
    real = Path.read_bytes

    def denied(self):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert load_names(offline=True).source == "fallback"
    err = capsys.readouterr().err
    assert f"cannot read the cache {path} (Permission denied); ignoring it" in err


def test_corrupt_cache_that_cannot_be_deleted_falls_back(cache_dir, monkeypatch, capsys):
    write(cache_dir / "names.txt", b"zed\n")
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", str(self))))
    assert load_names(offline=True).source == "fallback"
    assert "(Permission denied); ignoring it" in capsys.readouterr().err


def test_download_has_a_total_deadline(cache_dir, server, small_hash, monkeypatch, capsys):
    monkeypatch.setenv("SHAPEKIT_DOWNLOAD_DEADLINE", "0.3")
    server(SMALL, stall=-0.1)  # 16 bytes at 10 per second: each read is quick, the whole is not
    start = time.monotonic()
    assert load_names().source == "fallback"
    assert time.monotonic() - start < 1.2
    assert_cache_empty(cache_dir)
    assert ("not done after the 0.3 s deadline" in capsys.readouterr().err)


def test_download_deadline_env_is_validated(monkeypatch):
    monkeypatch.setenv("SHAPEKIT_DOWNLOAD_DEADLINE", "soon")
    with pytest.raises(DataError, match=r"SHAPEKIT_DOWNLOAD_DEADLINE='soon': expected a number of "
                       r"seconds > 0 .*; fix: export SHAPEKIT_DOWNLOAD_DEADLINE=60"):
        load_names()


def test_partial_files_of_dead_downloads_are_removed(cache_dir, server, small_hash):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = [write(cache_dir / f".names-{dead}-abc.part", b"em"),
             write(cache_dir / ".names-k2j3.part", b"em")]  # the old naming, without a pid
    live = write(cache_dir / f".names-{os.getpid()}-xyz.part", b"em")  # a download under way
    server(SMALL)
    assert load_names(quiet=True).source == "download"
    assert not any(p.exists() for p in stale) and live.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_cached_file_mode_follows_the_umask(cache_dir, server, small_hash, umask):
    server(SMALL)
    old = os.umask(umask)
    try:
        load_names(quiet=True)
    finally:
        os.umask(old)
    assert (cache_dir / "names.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_min_split_words_is_the_fewest_that_split():
    def splits(n):
        return all(map(len, split_words([str(i) for i in range(n)])))

    assert not splits(_data.MIN_SPLIT_WORDS - 1)
    assert all(splits(n) for n in range(_data.MIN_SPLIT_WORDS, 300))


def test_too_few_names_to_split_is_refused():
    with pytest.raises(DataError, match=r"^--data x.txt: has 3 name\(s\), too few for the "
                       r"lecture's 80/10/10 split \(train 2, dev 0, test 1\); expected at least 6 "
                       r"names; fix: pass --data with a longer file"):
        _data.check_splittable(["a", "b", "c"], "--data x.txt")
    _data.check_splittable(["a"] * 6, "--data x.txt")


@pytest.mark.parametrize("content", [b"", b"Emma\n", b"emma\n\nava\n", b" emma\n", b"em-ma\n",
                                     b"\n\n"])
def test_command_line_fixes_name_no_python_call(tmp_path, content):
    path = write(tmp_path / "names.txt", content)
    with pytest.raises(DataError) as info:
        load_names(path)
    message = _data.for_command_line(str(info.value))
    assert "normalize=True" not in message and "load_names()" not in message, message
    assert "fix: " in message and not message.rstrip().endswith((",", "or")), message
