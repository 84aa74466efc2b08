"""One writer per run directory: an advisory lock file, ``DIR/.shapekit.lock``, holding the pid.

    with run_lock(Path("runs/quick"), command="shapekit train"):
        ...   # only this process writes config.json, model.safetensors, metrics.json here

The lock is ``fcntl.flock`` on the file, so the kernel releases it when the holder dies in any
way (SIGKILL included): a lock file left by a dead process is simply taken over. A second writer
while the holder lives gets a ``DataError`` naming the holder's pid. The file is removed on
release, while still locked, and a taker checks that the file it locked is still the one at the
path, so a writer never holds a lock on a file that was just unlinked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..checking import DataError

__all__ = ["LOCK", "run_lock"]

LOCK = ".shapekit.lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; a run directory is then not protected
    fcntl = None


@contextlib.contextmanager
def run_lock(run_dir: Path, *, command: str) -> Iterator[None]:
    """Hold the write lock of ``run_dir`` (created if missing) for the ``with`` block.

    ``DataError`` if another live process holds it, or if the directory cannot be created or
    written. ``command`` is named in the message (``shapekit train``).
    """
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(run_dir, e) from None
    if fcntl is None:
        yield
        return
    path = run_dir / LOCK
    fd = _acquire(path, run_dir, command)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still locked: nobody can take the lock on a file being removed
        os.close(fd)  # closing releases the lock


def _acquire(path: Path, run_dir: Path, command: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _unwritable(run_dir, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise DataError(
                f"{run_dir}: another process (pid {holder}) is writing this run; expected one "
                f"writer per run directory (lock {path}); fix: wait for pid {holder} to finish "
                "(or stop it), or pass another --out"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {command}\n".encode())
            return fd
        os.close(fd)  # the holder removed that file as we locked it: lock the new one


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    except OSError:
        text = []
    return text[0] if text and text[0].isdigit() else "unknown"


def _unwritable(run_dir: Path, e: OSError) -> DataError:
    return DataError(
        f"{run_dir}: cannot be written ({e.strerror}); expected a directory this user can create "
        "files in; fix: pass an --out in a writable place, e.g. --out runs/NAME"
    )
