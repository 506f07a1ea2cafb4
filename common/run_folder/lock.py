"""One writer per output folder: an exclusive ``fcntl.flock`` on ``<folder>/.annealing-kd.lock``,
held by the main process for the whole run. The operating system releases it when the process
ends, however it ends (a SIGKILL too), so ``--resume`` after a kill finds the folder free.

The lock file holds the holder's PID and host, for the message that refuses a second writer. The
file itself is never removed while a run may use it (removing a lock file lets two processes
lock two different files of one name). A process may lock a folder it already holds again: the
same lock is shared (``--do_train --do_eval`` writes into its own run folder).
"""

from __future__ import annotations

import fcntl
import os
import platform
import time
from pathlib import Path

from annealing_kd.common.errors import UsageError

LOCK = ".annealing-kd.lock"
_held: dict[Path, int] = {}  # resolved folder -> open lock file descriptor
_created: set[Path] = set()  # folders whose lock file this process created


def _key(folder: str | os.PathLike) -> Path:
    return Path(folder).resolve()


def acquire(folder: str | os.PathLike) -> None:
    """Lock ``folder`` (it must exist) for this process, or refuse naming the holder."""
    key = _key(folder)
    if key in _held:
        return
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
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd) or "another process"
        os.close(fd)
        raise UsageError(f"{folder} is in use by another run ({holder}); wait for it to finish, "
                         "or choose another output directory") from None
    except OSError as exc:  # a file system without locks
        os.close(fd)
        raise UsageError(f"cannot lock {folder} ({exc.strerror}); choose an output directory on "
                         "a local file system") from None
    info = f"pid {os.getpid()} on host {platform.node()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
    os.ftruncate(fd, 0)
    os.pwrite(fd, (info + "\n").encode(), 0)
    _held[key] = fd
    if new:
        _created.add(key)


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 400, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def holder(folder: str | os.PathLike) -> str | None:
    """Who holds ``folder``'s lock ("pid N on host H, since ..."), or None when it is free or held
    by this process."""
    key = _key(folder)
    if key in _held or not (key / LOCK).is_file():
        return None
    try:
        fd = os.open(key / LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    except BlockingIOError:
        return _read(fd) or "another process"
    except OSError:
        return None
    finally:
        os.close(fd)


def holds(folder: str | os.PathLike) -> bool:
    return _key(folder) in _held


def release(folder: str | os.PathLike, refused: bool = False) -> None:
    """Unlock ``folder``; ``refused``: the caller refused the folder, so a lock file this call's
    ``acquire`` created there is removed too (a refused folder keeps nothing of ours). Removing
    it while still holding it is safe: whoever opened it meanwhile fails to lock and refuses."""
    key = _key(folder)
    fd = _held.pop(key, None)
    if fd is not None:
        if refused and key in _created:
            (key / LOCK).unlink(missing_ok=True)
        os.close(fd)  # closing the last descriptor releases the flock
    _created.discard(key)


def held() -> set[Path]:
    """The folders this process holds."""
    return set(_held)


def release_all(keep: set[Path] = frozenset()) -> None:
    """Release the locks of this process but ``keep`` (the end of a CLI call; the OS does it at
    exit)."""
    for key in list(_held):
        if key not in keep:
            release(key)
