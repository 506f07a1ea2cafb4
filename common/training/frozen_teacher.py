"""A frozen teacher's logits, for any PyTorch model: eval mode, no autograd, optional autocast.

``teacher_logits(teacher, batch)`` for one batch, ``all_teacher_logits(teacher, loader)`` for a
whole DataLoader (in its order). Both freeze the teacher (eval mode, no parameter wants a
gradient; it stays so) and return plain float32 tensors, usable as loss targets.

A batch reaches the teacher as ``forward(teacher, batch)`` when ``forward`` is given, else:
a tensor ``x`` as ``teacher(x)``; a tuple or list ``(x, y, ...)`` as ``teacher(x)``; a dict as
``teacher(**batch)`` without its ``labels``/``label`` keys. An output with ``.logits`` (Hugging
Face) gives those, a tuple its first element.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from annealing_kd.common.training.trainer import freeze

Forward = Callable[[nn.Module, Any], Any]
LABEL_KEYS = ("labels", "label")


def default_forward(model: nn.Module, batch: Any) -> Any:
    """The model's output on ``batch`` (a tensor, a tuple/list whose first item is the input, or
    a dict of keyword inputs, its label keys left out)."""
    if isinstance(batch, Mapping):
        return model(**{k: v for k, v in batch.items() if k not in LABEL_KEYS})
    if isinstance(batch, (tuple, list)):
        return model(batch[0])
    return model(batch)


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output: ``.logits``, a tuple's first element, or the tensor."""
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it (nested in dicts, tuples, lists) on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _device_of(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def teacher_logits(teacher: nn.Module, batch: Any, *, forward: Forward | None = None,
                   autocast: torch.dtype | None = None) -> torch.Tensor:
    """The frozen ``teacher``'s logits on one batch (moved to the teacher's device), float32,
    computed under ``torch.inference_mode`` (and ``torch.autocast`` to ``autocast`` if given)."""
    freeze(teacher)
    device = _device_of(teacher)
    amp = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    with torch.inference_mode(), amp:
        out = logits_of((forward or default_forward)(teacher, to_device(batch, device))).float()
    return out.clone()  # out of inference mode: a normal tensor, usable as a loss target


def all_teacher_logits(teacher: nn.Module, loader: Iterable[Any], *, forward: Forward | None = None,
                       autocast: torch.dtype | None = None) -> torch.Tensor:
    """The frozen ``teacher``'s logits on every batch of ``loader``, in order, concatenated on
    the CPU: (number of examples, classes). Iterate the loader without shuffling to index them
    by example."""
    outs = [teacher_logits(teacher, b, forward=forward, autocast=autocast).cpu() for b in loader]
    if not outs:
        raise ValueError("the loader gave no batch")
    return torch.cat(outs)
