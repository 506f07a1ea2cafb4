"""A frozen teacher's logits, for any PyTorch model: eval mode, no autograd, optional autocast.

Both functions go through ``training.trainer.frozen_logits`` (the one frozen-logits function) and
give plain float32 tensors. A batch reaches the teacher as ``forward(teacher, batch)``, else: a
tensor ``x`` or a tuple/list ``(x, y, ...)`` as ``teacher(x)``; a dict as ``teacher(**batch)``
without its label keys. An output with ``.logits`` gives those, a tuple its first element.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from .trainer import frozen_logits

Forward = Callable[[nn.Module, Any], Any]
LABEL_KEYS = ("labels", "label")


def default_forward(model: nn.Module, batch: Any) -> Any:
    """The model's output on a tensor, a tuple/list (its first item) or a dict of inputs."""
    if isinstance(batch, Mapping):
        return model(**{k: v for k, v in batch.items() if k not in LABEL_KEYS})
    return model(batch[0] if isinstance(batch, (tuple, list)) else batch)


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model's output: ``.logits``, a tuple's first element, or the tensor."""
    if hasattr(output, "logits"):
        return output.logits
    return output[0] if isinstance(output, (tuple, list)) else output


def amp(device_type: str, dtype: torch.dtype | None):
    """``torch.autocast`` to ``dtype``, or a context that changes nothing (None)."""
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)


def teacher_logits(teacher: nn.Module, batch: Any, *, forward: Forward | None = None,
                   autocast: torch.dtype | None = None) -> torch.Tensor:
    """The frozen ``teacher``'s float32 logits on one batch (its tensors moved to the teacher's
    device), under ``torch.inference_mode`` (and ``torch.autocast`` to ``autocast`` if given)."""
    from accelerate.utils import send_to_device

    first = next(teacher.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    run = forward or default_forward
    targets = frozen_logits(teacher, lambda m, b: logits_of(run(m, send_to_device(b, device))))
    with amp(device.type, autocast):
        return targets(batch)


def all_teacher_logits(teacher: nn.Module, loader: Iterable[Any], *, forward: Forward | None = None,
                       autocast: torch.dtype | None = None) -> torch.Tensor:
    """The frozen ``teacher``'s logits on every batch of ``loader``, in order, concatenated on
    the CPU: (number of examples, classes)."""
    outs = [teacher_logits(teacher, b, forward=forward, autocast=autocast).cpu() for b in loader]
    if not outs:
        raise ValueError("the loader gave no batch")
    return torch.cat(outs)
