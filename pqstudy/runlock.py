"""Advisory file locks (``fcntl.flock``) that keep two processes off one run.

A lock is a small file that holds the pid of its holder. The kernel releases a ``flock`` when its holder closes the
file or dies (SIGKILL included), so a lock never outlives the process that took it and no stale lock needs
cleaning up; the file itself stays (removing it would race with a process that is opening it).
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


class RunLocked(RuntimeError):
    """Another process holds the lock; the message names the lock file and the holder's pid."""


def holder(path: str | os.PathLike) -> str:
    """The pid written in a lock file, or ``"unknown"``."""
    try:
        return Path(path).read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def try_lock(path: str | os.PathLike) -> int | None:
    """Take the lock at ``path`` without waiting: an open file descriptor (pass it to ``unlock``), or None when
    another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock(fd: int) -> None:
    """Release a lock taken by ``try_lock`` (closing the descriptor releases it)."""
    os.close(fd)


@contextmanager
def locked(path: str | os.PathLike, what: str):
    """Hold the lock at ``path`` for the ``with`` block; ``RunLocked`` (naming ``what``) when another process has it."""
    fd = try_lock(path)
    if fd is None:
        raise RunLocked(f"{what} is in use by another process (pid {holder(path)}, holding {path}); wait for it to "
                        "finish, or use another directory")
    try:
        yield
    finally:
        unlock(fd)
