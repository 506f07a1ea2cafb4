"""One writer per folder: an exclusive ``flock`` on the folder itself and on
``<folder>/.annealing-kd.lock``, released by the OS however the process ends. The file names its
holder (PID, host) and is never followed if a link; the folder's lock holds even when the file is
deleted or replaced under its holder."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import platform
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError

LOCK = ".annealing-kd.lock"
_held: dict[Path, tuple[int, int]] = {}  # resolved folder -> (folder fd, lock file fd)
_NAMED = os.O_CLOEXEC | os.O_NOFOLLOW  # the lock file is never opened through a link
# a file system that cannot flock a folder (NFS maps flock to byte-range locks, which need a
# file open for writing): the lock file alone holds the folder there (docs/cluster.md)
NO_FOLDER_LOCK = (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)


def _try(fd: int) -> bool:
    """Lock ``fd`` exclusively if free (OSError: a file system without locks)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _named(key: Path) -> str | None:
    """Who holds the lock file (as it says), or None (missing, a link, free: unlocked again)."""
    with contextlib.suppress(OSError):
        fd = os.open(key / LOCK, os.O_RDONLY | _NAMED)
        try:
            if _try(fd):
                return None
            return os.pread(fd, 400, 0).decode(errors="replace").strip() or "another process"
        finally:
            os.close(fd)
    return None


def _who(key: Path, dirfd: int) -> str | None:
    """Who holds ``key`` (``dirfd``: the folder, locked on return when free), or None. A short
    manifest update by another process also locks the folder: waited for a moment."""
    for _ in range(40):
        try:
            if _try(dirfd):
                return None
        except OSError as exc:
            if exc.errno not in NO_FOLDER_LOCK:
                raise
            return _named(key)  # no folder locks on this file system: the lock file's holder
        if who := _named(key):
            return who
        time.sleep(0.05)
    return "another process; its lock file was removed or replaced"


def _open_folder(key: Path, folder: str | os.PathLike) -> int:
    try:
        return os.open(key, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"cannot lock {folder} ({exc.strerror}); choose a writable output "
                         "directory") from None


def acquire(folder: str | os.PathLike) -> bool:
    """Lock ``folder`` for this process (again: a no-op), or refuse naming the holder; whether
    this call created the lock file."""
    key = Path(folder).resolve()
    if key in _held:
        return False
    dirfd, fd, new = _open_folder(key, folder), -1, False
    try:
        who = _who(key, dirfd)
        if not who:
            try:  # O_EXCL: whether this call created the file is known atomically
                fd, new = os.open(key / LOCK, os.O_RDWR | _NAMED | os.O_CREAT | os.O_EXCL,
                                  0o666), True
            except FileExistsError:
                fd = os.open(key / LOCK, os.O_RDWR | _NAMED)
            if not _try(fd):  # held by a version that locked only the file
                who = _named(key) or "another process"
    except OSError as exc:
        for f in (fd, dirfd):
            if f >= 0:
                os.close(f)
        if exc.errno == errno.ELOOP:
            raise UsageError(f"cannot lock {folder}: {key / LOCK} is a link (the lock file of "
                             "annealing-kd never is); remove it or choose another output "
                             "directory") from None
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            raise UsageError(f"cannot lock {folder} ({exc.strerror}); choose an output "
                             "directory on a local file system") from None
        raise UsageError(f"cannot lock {folder} ({exc.strerror}); choose a writable output "
                         "directory") from None
    if who:
        for f in (fd, dirfd):
            if f >= 0:
                os.close(f)
        raise UsageError(f"{folder} is in use by another run ({who}); wait for it to finish, "
                         "or choose another output directory")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {platform.node()}, since "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    _held[key] = dirfd, fd
    return new


def holder(folder: str | os.PathLike) -> str | None:
    """Who holds ``folder``'s lock ("pid N on host H, since ..."); None: free, or ours."""
    key = Path(folder).resolve()
    if key in _held or not key.is_dir():
        return None
    with contextlib.suppress(OSError):
        dirfd = os.open(key, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return _who(key, dirfd) or _named(key)  # free: closing the folder unlocks it
        finally:
            os.close(dirfd)
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
    """Unlock ``folder`` (closing the last descriptors releases the flocks)."""
    for fd in _held.pop(Path(folder).resolve(), ()):
        os.close(fd)


def release_all(keep: set[Path] = frozenset()) -> None:
    """Release this process's locks but ``keep`` (the end of a CLI call; the OS does it at exit)."""
    for key in set(_held) - set(keep):
        release(key)
