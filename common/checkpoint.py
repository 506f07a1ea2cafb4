"""Checkpoints: safetensors weights and a weights_only-loadable training state, written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from common.errors import UsageError


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then move the file into place: a crash mid-write leaves the
    previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
        raise UsageError(f"training state {path} does not exist; start without --resume") from None
    except Exception as exc:
        raise UsageError(f"training state {path} is corrupt ({type(exc).__name__}); "
                         "start again with --overwrite-output-dir") from None

