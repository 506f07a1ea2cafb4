"""Atomic writes (:class:`FileTransaction`), safetensors weights, a weights_only training state
and the epoch commit. Every file appears by one :func:`replace` (tests/faults.py kills at each)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError, setting

if TYPE_CHECKING:
    import torch

POINTER = "committed"
TMP_SUFFIX = ".akd.tmp"  # our temporaries: .<name>.<random>.akd.tmp (files and staging folders)
_ADVICE = (((errno.ENOSPC, errno.EDQUOT), "free space or"),
           ((errno.EACCES, errno.EPERM, errno.EROFS),
            "no permission to write there (or a read-only file system):"),
           ((errno.ENOTDIR, errno.EEXIST, errno.EISDIR),
            "a file stands where a folder is needed (or the reverse):"))


class WriteFailed(UsageError):
    """A file could not be written; the message says what to do by the cause (``errno_``)."""

    def __init__(self, path: Path, reason: str, errno_: int | None = None,
                 where: str = "output directory") -> None:
        self.path, self.reason, self.errno = path, reason, errno_
        fix = next((fix for codes, fix in _ADVICE if errno_ in codes), "check the disk or")
        super().__init__(f"could not write {path} ({reason}); {fix} choose another {where}")

    @classmethod
    def of(cls, path: Path, exc: BaseException) -> WriteFailed:
        """The failure ``exc`` (its strerror, or its first line) writing ``path``."""
        text = str(exc).strip().splitlines()
        reason = getattr(exc, "strerror", None) or (text[0] if text else type(exc).__name__)[:200]
        return cls(path, reason, getattr(exc, "errno", None))


def _disk_full(path: Path, exc: RuntimeError) -> bool:
    """Whether torch.save's RuntimeError is a full disk: it says so, or its writer stopped
    ("unexpected pos" at inline_container) on a disk with less than 1 MiB free."""
    text = str(exc)
    if os.strerror(errno.ENOSPC) in text:
        return True
    if "inline_container" not in text and "unexpected pos" not in text:
        return False
    with contextlib.suppress(OSError):
        return shutil.disk_usage(path.parent).free < 1 << 20
    return False


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``os.replace``: every file of a run appears through this call (tests/faults.py counts)."""
    os.replace(src, dst)


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a folder (a folder's entries: names created, renamed, removed)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is one of our temporaries (a leftover after a stop)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX) and len(name) > len(TMP_SUFFIX) + 1


def remove_entry(p: Path, links: bool = False) -> None:
    """Remove a file, a link (never what it points to), or a folder with all it holds; a link
    inside the folder refuses (OSError, nothing removed) unless ``links`` (our own staging)."""
    if not p.is_dir() or p.is_symlink():
        p.unlink()
        return
    for sub, dirs, files in os.walk(p) if not links else ():
        if link := next((n for n in (*dirs, *files) if os.path.islink(os.path.join(sub, n))), None):
            raise OSError(errno.ELOOP, "a link is inside it", os.path.join(sub, link))
    shutil.rmtree(p)


def remove_temporaries(folder: Path) -> None:
    """Remove our temporaries below ``folder``; one holding a link (or not removable) refuses."""
    for sub, dirs, files in os.walk(folder):
        for name in [*files, *dirs]:
            if is_temporary(name):
                try:
                    remove_entry(Path(sub) / name)
                except OSError as exc:
                    raise UsageError(f"cannot remove {Path(sub) / name} ({exc.strerror}: "
                                     f"{exc.filename}); remove it by hand") from None
        dirs[:] = [d for d in dirs if not is_temporary(d)]


class FileTransaction:
    """Files written to hidden temporaries beside their names and fsync'ed; :meth:`commit`
    records them in ``manifest`` (if any), then renames them into place in order, fsync'ing each
    folder once its renames are done. A stop leaves each name old or new (and temporaries)."""

    def __init__(self, manifest=None) -> None:
        self.manifest = manifest
        self.staged: list[tuple[Path, Path]] = []  # (temporary, final)
        self._new_dirs: set[Path] = set()  # folders that hold a newly created folder

    @contextlib.contextmanager
    def guard(self, path: Path) -> Iterator[None]:
        """Any failure in the block aborts; a failed write is :class:`WriteFailed`."""
        try:
            yield
        except BaseException as exc:
            full = isinstance(exc, RuntimeError) and _disk_full(path, exc)  # before the abort
            self.abort()
            if full:
                raise WriteFailed(path, os.strerror(errno.ENOSPC), errno.ENOSPC) from None
            # torch.save reports a failed write as RuntimeError; safetensors has its own type
            if isinstance(exc, (OSError, RuntimeError)) or type(exc).__name__ == "SafetensorError":
                raise WriteFailed.of(path, exc) from None
            raise

    def _tmp(self, path: Path) -> str:
        """A new temporary name for ``path``, its folders made (the writer creates the file:
        the umask holds, unlike mkstemp's 0600)."""
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._new_dirs.update(p.parent for p in missing)
        return f".{path.name}.{secrets.token_hex(6)}{TMP_SUFFIX}"

    def write(self, path: str | os.PathLike, write: Callable[[str], None]) -> FileTransaction:
        """Add ``path``: ``write(tmp_path)`` writes its content."""
        path = Path(path)
        with self.guard(path):
            tmp = path.parent / self._tmp(path)
            self.staged.append((tmp, path))
            write(str(tmp))
            fsync_path(tmp)
        return self

    def link(self, src: str | os.PathLike, path: str | os.PathLike) -> None:
        """Add ``path`` as a hard link (or a copy) of ``src`` (a file, or an added final name)."""
        path, src = Path(path), Path(src)
        src = next((t for t, f in self.staged if f == src), src)
        with self.guard(path):
            if path.exists() and os.path.samefile(src, path):
                return  # already that file (renaming a link onto itself would do nothing)

        def link(tmp: str) -> None:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)

        self.write(path, link)

    def folder(self, path: str | os.PathLike, fill: Callable[[Path], None],
               within: str | os.PathLike | None = None) -> list[Path]:
        """Add every file ``fill(tmp_folder)`` writes (in ``within``, default beside ``path``)
        under ``path``; their final paths."""
        path = Path(path)
        finals: list[Path] = []
        with self.guard(path):
            tmp = Path(within or path.parent) / self._tmp(path)
            self.staged.append((tmp, path))  # the staging folder itself: removed by commit
            tmp.mkdir()
            fill(tmp)
            for f in sorted(p for p in tmp.rglob("*") if p.is_file() or p.is_symlink()):
                if f.is_symlink():
                    raise OSError(f"{f.name} is not a regular file")
                fsync_path(f)
                finals.append(path / f.relative_to(tmp))
                self.staged.append((f, finals[-1]))
        return finals

    def commit(self) -> None:
        if not self.staged:
            return
        files = [(t, f) for t, f in self.staged if not t.is_dir()]
        with self.guard(self.staged[-1][1]):
            if self.manifest is not None:
                for tmp, path in files:
                    self.manifest.record(path, tmp)
                self.manifest.save()
            for d in sorted(self._new_dirs):
                fsync_path(d)
            last = None  # the folder of the last rename, not yet fsync'ed
            for tmp, path in files:
                if last not in (None, path.parent):
                    fsync_path(last)
                path.parent.mkdir(parents=True, exist_ok=True)
                replace(tmp, path)
                with contextlib.suppress(OSError):  # still there only if it was a link of ``path``
                    os.unlink(tmp)
                last = path.parent
            if last is not None:
                fsync_path(last)
            self.abort()  # the staging folders

    def abort(self) -> None:
        """Remove the temporaries (a failed write; after a commit, the staging folders)."""
        for tmp, _ in reversed(self.staged):
            with contextlib.suppress(OSError):
                remove_entry(tmp, links=True)
        self.staged = []


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], manifest=None) -> None:
    """Write one file (``write(tmp_path)``) in a :class:`FileTransaction`."""
    FileTransaction(manifest).write(path, write).commit()


def weights_writer(state_dict: Mapping[str, torch.Tensor]) -> Callable[[str], None]:
    """``write(path)`` of model weights as safetensors (contiguous, CPU, shared storage broken)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    return lambda tmp: save_file(tensors, tmp)


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike,
                 manifest=None) -> None:
    """Save model weights as safetensors, atomically (recorded in ``manifest`` when given)."""
    atomic_write(path, weights_writer(state_dict), manifest)


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load safetensors weights; a missing or corrupt file is a :class:`UsageError`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist; check the path")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise UsageError(f"checkpoint {path} is corrupt or not safetensors ({exc}); "
                         "delete it or point to another checkpoint") from None


def _state_writer(state: dict[str, Any]) -> Callable[[str], None]:
    import torch

    return lambda tmp: torch.save(state, tmp)


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Save a training state (tensors, numbers, strings, lists, dicts) atomically."""
    atomic_write(path, _state_writer(state))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state with ``weights_only=True``: nothing arbitrary is unpickled."""
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UsageError(f"training state {path} does not exist; start without "
                         f"{setting('resume')}") from None
    except Exception as exc:
        raise UsageError(f"training state {path} is corrupt ({type(exc).__name__}); "
                         f"start again with {setting('overwrite_output_dir')}") from None


# ---- the epoch commit ----------------------------------------------------------------------------
def commit_epoch(pdir: str | os.PathLike, epoch: int,
                 weights: Mapping[str, Mapping[str, torch.Tensor] | None],
                 state: dict[str, Any], manifest=None) -> None:
    """Commit ``weights`` (name -> state dict; None keeps the committed file) and ``state`` as
    ``epoch-NNNN/``, the pointer, then the published weights: a stop leaves this or the last."""
    pdir = Path(pdir)
    edir = pdir / f"epoch-{epoch:04d}"
    previous = _committed_dir(pdir)
    _remove_other_epochs(pdir, previous, manifest)  # what an interrupted commit left
    transaction = FileTransaction(manifest)
    written: dict[int, Path] = {}
    for name, tensors in weights.items():
        if tensors is None and (previous is None or not (previous / name).is_file()):
            raise ValueError(f"commit_epoch: no committed {name} to keep")
        src = previous / name if tensors is None else written.get(id(tensors))
        if src is not None:  # the committed file, or the same weights under another name
            transaction.link(src, edir / name)
        else:
            transaction.write(edir / name, weights_writer(tensors))
            written[id(tensors)] = edir / name
    transaction.write(edir / "state.pt", _state_writer(state))
    transaction.write(pdir / POINTER, lambda tmp: Path(tmp).write_text(edir.name + "\n"))
    for name in weights:  # published beside the pointer (nothing to do when already that file)
        transaction.link(edir / name, pdir / name)
    transaction.commit()
    _remove_other_epochs(pdir, edir, manifest)


def _committed_dir(pdir: Path) -> Path | None:
    """The committed epoch folder of a phase, or ``None`` when no epoch was committed."""
    pointer = pdir / POINTER
    if not pointer.is_file():
        return None
    edir = pdir / pointer.read_text().strip()
    if not (edir / "state.pt").is_file():
        raise UsageError(f"checkpoint pointer {pointer} names {edir.name}, which is missing; the "
                         "run folder was changed by hand: start again with "
                         f"{setting('overwrite_output_dir')}")
    return edir


def load_committed(pdir: str | os.PathLike, tidy: bool = True,
                   manifest=None) -> tuple[dict[str, Any], Path] | None:
    """The state and folder of a phase's committed epoch (or None); ``tidy`` (one process only)
    removes what an interrupted commit left and re-links ``best``/``last``."""
    pdir = Path(pdir)
    edir = _committed_dir(pdir)
    if edir is None and (pdir / "state.pt").is_file():
        raise UsageError(f"{pdir} was written by an older version without epoch commits; "
                         f"start again with {setting('overwrite_output_dir')}")
    if tidy:
        transaction = FileTransaction(manifest)
        for f in sorted(edir.glob("*.safetensors")) if edir else ():
            transaction.link(f, pdir / f.name)
        transaction.commit()
        _remove_other_epochs(pdir, edir, manifest)
    return None if edir is None else (load_state(edir / "state.pt"), edir)


def _remove_other_epochs(pdir: Path, edir: Path | None, manifest) -> None:
    """Remove our temporaries in ``pdir`` and every epoch folder but ``edir`` (of its files,
    what ``manifest`` records and our temporaries)."""
    try:
        for f in pdir.iterdir() if pdir.is_dir() else ():
            if is_temporary(f.name):
                remove_entry(f)
            elif f.name.startswith("epoch-") and f.is_symlink():
                raise UsageError(f"{f} is a link that annealing-kd did not write (it never "
                                 "follows one); remove it by hand")
            elif f.name.startswith("epoch-") and f != edir and f.is_dir():
                for g in f.iterdir():
                    if manifest is None or is_temporary(g.name) or manifest.records(g):
                        remove_entry(g)
                        if manifest is not None:
                            manifest.forget(g)
                with contextlib.suppress(OSError):
                    f.rmdir()
    except OSError as exc:
        raise WriteFailed.of(pdir, exc) from None
