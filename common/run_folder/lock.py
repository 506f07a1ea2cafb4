"""One writer per folder: an exclusive ``flock`` on ``<folder>/.annealing-kd.lock``, released by
the OS however the process ends. The file names its holder (PID, host) and is never removed while
a run may use it (two processes could lock two files of one name)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

from annealing_kd.common.errors import UsageError

LOCK = ".annealing-kd.lock"
_held: dict[Path, int] = {}  # resolved folder -> open lock file descriptor


def _lock(fd: int) -> str | None:
    """Lock ``fd``: None, or who holds it (as its file says); OSError: no locks there."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        with contextlib.suppress(OSError):
            return os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
        return "another process"


def acquire(folder: str | os.PathLike) -> bool:
    """Lock ``folder`` for this process (again: a no-op), or refuse naming the holder; whether
    this call created the lock file."""
    key = Path(folder).resolve()
    if key in _held:
        return False
    flags = os.O_RDWR | os.O_CLOEXEC
    try:
        try:  # O_EXCL: whether this call created the file is known atomically
            fd, new = os.open(key / LOCK, flags | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            fd, new = os.open(key / LOCK, flags), False
    except OSError as exc:
        raise UsageError(f"cannot lock {folder} ({exc.strerror}); choose a writable output "
                         "directory") from None
    try:
        who = _lock(fd)
    except OSError as exc:  # a file system without locks
        os.close(fd)
        raise UsageError(f"cannot lock {folder} ({exc.strerror}); choose an output directory on "
                         "a local file system") from None
    if who:
        os.close(fd)
        raise UsageError(f"{folder} is in use by another run ({who}); wait for it to finish, "
                         "or choose another output directory")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {platform.node()}, since "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    _held[key] = fd
    return new


def holder(folder: str | os.PathLike) -> str | None:
    """Who holds ``folder``'s lock ("pid N on host H, since ..."); None: free, or ours."""
    key = Path(folder).resolve()
    if key in _held or not (key / LOCK).is_file():
        return None
    with contextlib.suppress(OSError):
        fd = os.open(key / LOCK, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return _lock(fd)  # free: closing the file unlocks it
        finally:
            os.close(fd)
    return None


def holds(folder: str | os.PathLike) -> bool:
    return Path(folder).resolve() in _held


def held() -> set[Path]:
    return set(_held)


@contextlib.contextmanager
def claim(folder: Path, lock: bool = True) -> Iterator[None]:
    """Lock ``folder`` (if ``lock``) while it is checked; a refusal (any exception) unlocks it
    and removes the lock file if this call created it."""
    new = lock and not holds(folder)  # a lock held by our caller stays
    created = new and acquire(folder)
    try:
        yield
    except BaseException:
        if created:  # safe while held: whoever opened it meanwhile fails to lock
            (folder / LOCK).unlink(missing_ok=True)
        if new:
            release(folder)
        raise


def release(folder: str | os.PathLike) -> None:
    """Unlock ``folder`` (closing the last descriptor releases the flock)."""
    fd = _held.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)


def release_all(keep: set[Path] = frozenset()) -> None:
    """Release this process's locks but ``keep`` (the end of a CLI call; the OS does it at exit)."""
    for key in set(_held) - set(keep):
        release(key)
