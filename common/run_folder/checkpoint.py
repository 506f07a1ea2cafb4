"""Checkpoints: safetensors weights and a weights_only-loadable training state, written atomically,
and the epoch commit: one epoch's files become visible together or not at all.

A phase folder holds ``epoch-NNNN/{best,last}.safetensors, state.pt`` of its committed epoch and
the pointer file ``committed`` that names it; replacing the pointer (one ``os.replace``) commits
an epoch. ``best.safetensors`` and ``last.safetensors`` beside them are hard links (or copies) of
the committed epoch's files, for readers; a resume re-derives them from the pointer. Every file
appears by one ``os.replace`` (the kill tests stop the process at each one: tests/faults.py).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from annealing_kd.common.errors import UsageError, setting

POINTER = "committed"


class WriteFailed(UsageError):
    """A file could not be written (disk full, read-only file system, ...)."""

    def __init__(self, path: Path, reason: str, errno_: int | None = None,
                 where: str = "output directory") -> None:
        self.path, self.reason, self.errno = path, reason, errno_
        super().__init__(f"could not write {path} ({reason}); {advice(errno_, where)}")


def advice(errno_: int | None, where: str = "output directory") -> str:
    """What to do about a failed write, by its cause."""
    if errno_ in (errno.ENOSPC, errno.EDQUOT):
        return f"free space or choose another {where}"
    if errno_ in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write there (or a read-only file system): choose another {where}"
    if errno_ in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return f"a file stands where a folder is needed (or the reverse): choose another {where}"
    return f"check the disk or choose another {where}"


def replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``os.replace``: every file of a run appears through this one call (the kill tests count
    them, tests/faults.py)."""
    os.replace(src, dst)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


TMP_SUFFIX = ".akd.tmp"  # our temporaries: .<name>.<random>.akd.tmp (files and staging folders)


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is one of our temporaries (a leftover after a stop)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX) and len(name) > len(TMP_SUFFIX) + 1


def fsync_path(path: str | os.PathLike) -> None:
    """fsync a file or a folder (a folder's entries: names created, renamed, removed)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Stage:
    """Files that become visible together, in order: each is written to a hidden temporary
    beside its final name and fsync'ed; :meth:`commit` records them all in ``manifest`` (when
    given: before any of them is visible), then renames them into place in the order they were
    staged, fsync'ing a folder before a rename into another folder and every folder at the end.
    A stop at any instant leaves each final name with its old or its new content, and at most
    some temporaries (``.<name>.<random>.akd.tmp``). A failed write is :class:`WriteFailed`."""

    def __init__(self, manifest=None) -> None:
        self.manifest = manifest
        self.staged: list[tuple[Path, Path]] = []  # (temporary, final)
        self._new_dirs: set[Path] = set()  # folders that hold a newly created folder

    def _tmp(self, path: Path, folder: bool = False, within: Path | None = None) -> Path:
        missing = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._new_dirs.update(p.parent for p in missing)
        if folder:
            return Path(tempfile.mkdtemp(dir=within or path.parent, prefix=f".{path.name}.",
                                         suffix=TMP_SUFFIX))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        return Path(tmp)

    def _guard(self, path: Path, action: Callable[[], None]) -> None:
        try:
            action()
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
            self.abort()
            raise WriteFailed(path, _reason(exc), getattr(exc, "errno", None)) from None
        except BaseException as exc:
            self.abort()
            if type(exc).__name__ == "SafetensorError":  # safetensors' own I/O error
                raise WriteFailed(path, _reason(exc)) from None
            raise

    def write(self, path: str | os.PathLike, write: Callable[[str], None]) -> None:
        """Stage ``path``: ``write(tmp_path)`` writes its content."""
        path = Path(path)

        def do() -> None:
            tmp = self._tmp(path)
            self.staged.append((tmp, path))
            write(str(tmp))
            fsync_path(tmp)

        self._guard(path, do)

    def link(self, src: str | os.PathLike, path: str | os.PathLike) -> None:
        """Stage ``path`` as a hard link (or a copy) of ``src`` (a file, or a staged final name)."""
        path, src = Path(path), Path(src)
        src = next((t for t, f in self.staged if f == src), src)
        if path.exists() and os.path.samefile(src, path):
            return  # already that file (renaming a link onto itself would do nothing)

        def do() -> None:
            tmp = self._tmp(path)
            self.staged.append((tmp, path))
            tmp.unlink()
            _link(src, tmp)
            fsync_path(tmp)

        self._guard(path, do)

    def folder(self, path: str | os.PathLike, fill: Callable[[Path], None],
               within: str | os.PathLike | None = None) -> list[Path]:
        """Stage every file that ``fill(tmp_folder)`` writes as ``path/<its relative path>``;
        returns their final paths. The temporary folder lies beside ``path`` (or in ``within``,
        on the same file system)."""
        path = Path(path)
        finals: list[Path] = []

        def do() -> None:
            tmp = self._tmp(path, folder=True, within=Path(within) if within else None)
            self.staged.append((tmp, path))  # the staging folder itself: removed by commit
            fill(tmp)
            for f in sorted(p for p in tmp.rglob("*") if p.is_file() or p.is_symlink()):
                if f.is_symlink() or not f.is_file():
                    raise OSError(f"{f.name} is not a regular file")
                fsync_path(f)
                finals.append(path / f.relative_to(tmp))
                self.staged.append((f, finals[-1]))

        self._guard(path, do)
        return finals

    def commit(self) -> None:
        """Record, then move every staged file into place (see the class docstring)."""
        if self.staged:
            self._guard(self.staged[-1][1], self._commit)

    def _commit(self) -> None:
        files = [(t, f) for t, f in self.staged if not t.is_dir()]
        if self.manifest is not None:
            for tmp, path in files:
                self.manifest.record(path, tmp)
            self.manifest.save()
        for d in sorted(self._new_dirs):
            fsync_path(d)
        dirty: set[Path] = set()
        for tmp, path in files:
            if dirty and path.parent not in dirty:
                for d in sorted(dirty):
                    fsync_path(d)
                dirty.clear()
            path.parent.mkdir(parents=True, exist_ok=True)
            replace(tmp, path)
            _unlink(str(tmp))  # still there only if it was a link of ``path`` already
            dirty.add(path.parent)
        for d in sorted(dirty):
            fsync_path(d)
        for tmp, _ in self.staged:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
        self.staged = []

    def abort(self) -> None:
        """Remove the temporaries (a failed write)."""
        for tmp, _ in reversed(self.staged):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                _unlink(str(tmp))
        self.staged = []


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], manifest=None) -> None:
    """Call ``write(tmp_path)`` then move the file into place (recorded in ``manifest`` first,
    when given): a crash mid-write leaves the previous file intact. The file gets the user's
    umask; a failed write is :class:`WriteFailed`."""
    stage = Stage(manifest)
    stage.write(path, write)
    stage.commit()


def _unlink(tmp: str | None) -> None:
    if tmp and os.path.lexists(tmp):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


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


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Save a training state (tensors, numbers, strings, lists, dicts) atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Load a training state with ``weights_only=True``: nothing arbitrary is unpickled."""
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
def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link of ``src`` (a copy where links are not supported)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def commit_epoch(pdir: str | os.PathLike, epoch: int,
                 weights: Mapping[str, Mapping[str, torch.Tensor] | None],
                 state: dict[str, Any], manifest=None) -> None:
    """Commit one epoch of a phase: write ``weights`` (file name -> state dict; ``None`` keeps the
    committed epoch's file of that name) and ``state`` into ``epoch-NNNN/``, switch the pointer,
    publish the weights beside it, all recorded in ``manifest`` first (one :class:`Stage`). The
    epoch's files and folder are fsync'ed before the pointer's rename, the pointer's folder after
    it. A stop at any instant leaves either the previous epoch or this one committed."""
    pdir = Path(pdir)
    edir = pdir / f"epoch-{epoch:04d}"
    previous = committed_dir(pdir)
    if edir.exists() and edir != previous:
        remove_ours(edir, manifest)  # an interrupted commit of this epoch
    stage = Stage(manifest)
    written: dict[int, Path] = {}
    for name, tensors in weights.items():
        if tensors is not None and id(tensors) in written:
            stage.link(written[id(tensors)], edir / name)  # the same weights under two names
        elif tensors is not None:
            stage.write(edir / name, weights_writer(tensors))
            written[id(tensors)] = edir / name
        elif previous is None or not (previous / name).is_file():
            raise ValueError(f"commit_epoch: no committed {name} to keep")
        else:
            stage.link(previous / name, edir / name)
    stage.write(edir / "state.pt", lambda tmp: torch.save(state, tmp))
    stage.write(pdir / POINTER, lambda tmp: Path(tmp).write_text(edir.name + "\n"))
    _publish(stage, pdir, edir, list(weights))
    stage.commit()
    _remove_other_epochs(pdir, edir, manifest)


def _publish(stage: Stage, pdir: Path, edir: Path, names: list[str]) -> None:
    """Stage ``pdir/<name>`` as links of the committed epoch's files."""
    for name in names:
        stage.link(edir / name, pdir / name)  # nothing to do when it already is that file


def committed_dir(pdir: str | os.PathLike) -> Path | None:
    """The committed epoch folder of a phase, or ``None`` when no epoch was committed."""
    pointer = Path(pdir) / POINTER
    if not pointer.is_file():
        return None
    edir = Path(pdir) / pointer.read_text().strip()
    if not (edir / "state.pt").is_file():
        raise UsageError(f"checkpoint pointer {pointer} names {edir.name}, which is missing; the "
                         f"run folder was changed by hand: start again with {setting('overwrite_output_dir')}")
    return edir


def load_committed(pdir: str | os.PathLike, tidy: bool = True,
                   manifest=None) -> tuple[dict[str, Any], Path] | None:
    """The training state and folder of a phase's committed epoch (``None``: nothing committed).
    With ``tidy`` (one process only) removes what an interrupted commit left and re-links
    ``best``/``last`` beside the pointer."""
    pdir = Path(pdir)
    edir = committed_dir(pdir)
    if edir is None:
        if (pdir / "state.pt").is_file():
            raise UsageError(f"{pdir} was written by an older version without epoch commits; "
                             f"start again with {setting('overwrite_output_dir')}")
        if tidy and pdir.is_dir():
            _remove_other_epochs(pdir, None, manifest)
        return None
    if tidy:
        try:
            stage = Stage(manifest)
            _publish(stage, pdir, edir, sorted(f.name for f in edir.glob("*.safetensors")))
            stage.commit()
        except OSError as exc:
            raise WriteFailed(pdir, _reason(exc), exc.errno) from None
        _remove_other_epochs(pdir, edir, manifest)
    return load_state(edir / "state.pt"), edir


def _remove_other_epochs(pdir: Path, edir: Path | None, manifest) -> None:
    """Remove our temporaries in ``pdir`` and every epoch folder but ``edir`` (what we wrote)."""
    try:
        for f in pdir.iterdir():
            if is_temporary(f.name):
                shutil.rmtree(f) if f.is_dir() and not f.is_symlink() else f.unlink()
            elif f.name.startswith("epoch-") and f != edir and f.is_dir():
                remove_ours(f, manifest)
    except OSError as exc:
        raise WriteFailed(pdir, _reason(exc), exc.errno) from None


def remove_ours(folder: Path, manifest) -> None:
    """Remove the files of ``folder`` that ``manifest`` records (all of them without a manifest)
    and our temporaries, then the folders left empty; anything else stays."""
    if manifest is None:
        shutil.rmtree(folder)
        return
    for sub, dirs, files in os.walk(folder, topdown=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(sub, d))]:
            f = Path(sub) / name
            if is_temporary(name) or manifest.records(f):
                f.unlink()
                manifest.forget(f)
        for name in dirs:
            d = Path(sub) / name
            if is_temporary(name) and not d.is_symlink():
                shutil.rmtree(d)
            elif d.is_dir() and not d.is_symlink() and not any(d.iterdir()):
                d.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()
