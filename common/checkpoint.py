"""Checkpoints: safetensors weights and a weights_only-loadable training state, written atomically,
and the epoch commit: one epoch's files become visible together or not at all.

A phase folder holds ``epoch-NNNN/{best,last}.safetensors, state.pt`` of its committed epoch and
the pointer file ``committed`` that names it; replacing the pointer (one ``os.replace``) commits
an epoch. ``best.safetensors`` and ``last.safetensors`` beside them are hard links (or copies) of
the committed epoch's files, for readers; a resume re-derives them from the pointer. Every file
appears by one ``os.replace`` (the kill tests stop the process at each one: tests/faults.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from common.errors import UsageError, setting

POINTER = "committed"


class WriteFailed(UsageError):
    """A file could not be written (disk full, read-only file system, ...)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"could not write {path} ({reason}); free space or choose another output "
                         "directory")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the file into place: a crash mid-write leaves the
    previous file intact. The file gets the user's umask; a failed write is :class:`WriteFailed`."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        write(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as RuntimeError
        _unlink(tmp)
        raise WriteFailed(path, _reason(exc)) from None
    except BaseException as exc:
        _unlink(tmp)
        if type(exc).__name__ == "SafetensorError":  # safetensors' own I/O error
            raise WriteFailed(path, _reason(exc)) from None
        raise


def _unlink(tmp: str | None) -> None:
    if tmp and os.path.exists(tmp):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def save_weights(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Save model weights as safetensors (contiguous, CPU, shared storage broken)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))


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
                 state: dict[str, Any]) -> None:
    """Commit one epoch of a phase: write ``weights`` (file name -> state dict; ``None`` keeps the
    committed epoch's file of that name) and ``state`` into ``epoch-NNNN/``, then switch the
    pointer. A stop at any instant leaves either the previous epoch or this one committed."""
    pdir = Path(pdir)
    edir = pdir / f"epoch-{epoch:04d}"
    previous = committed_dir(pdir)
    try:
        if edir.exists() and edir != previous:
            shutil.rmtree(edir)  # an interrupted commit of this epoch
        edir.mkdir(parents=True, exist_ok=True)
        written: dict[int, Path] = {}
        for name, tensors in weights.items():
            if tensors is not None and id(tensors) in written:
                _link(written[id(tensors)], edir / name)  # the same weights under two names
            elif tensors is not None:
                save_weights(tensors, edir / name)
                written[id(tensors)] = edir / name
            elif previous is None or not (previous / name).is_file():
                raise ValueError(f"commit_epoch: no committed {name} to keep")
            elif not (edir / name).exists():
                _link(previous / name, edir / name)
        save_state(state, edir / "state.pt")
        atomic_write(pdir / POINTER, lambda tmp: Path(tmp).write_text(edir.name + "\n"))
    except OSError as exc:
        raise WriteFailed(edir, _reason(exc)) from None
    _tidy(pdir, edir)


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


def load_committed(pdir: str | os.PathLike, tidy: bool = True) -> tuple[dict[str, Any], Path] | None:
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
            _tidy(pdir, None)
        return None
    if tidy:
        _tidy(pdir, edir)
    return load_state(edir / "state.pt"), edir


def _tidy(pdir: Path, edir: Path | None) -> None:
    """Publish ``edir``'s weight files beside the pointer; remove other epochs and stale tmp files."""
    try:
        for f in pdir.glob(".*.tmp"):
            f.unlink()
        if edir is not None:
            for f in sorted(edir.glob("*.safetensors")):
                dst = pdir / f.name
                if dst.exists() and os.path.samefile(f, dst):
                    continue  # already published (renaming a link onto itself does nothing)
                tmp = pdir / f".{f.name}.{os.getpid()}.tmp"
                _link(f, tmp)
                os.replace(tmp, dst)
        for d in pdir.glob("epoch-*"):
            if d != edir:
                shutil.rmtree(d)
    except OSError as exc:
        raise WriteFailed(pdir, _reason(exc)) from None

