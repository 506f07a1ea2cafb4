"""The image CLI's teacher-logit cache (``--logits-cache-dir``): what its keys are made of.

The frozen model's weights (sha256 of its state dict), the split's content, the precision, and
how the logits are made: the loader and its augmentation recipe (with 0 DataLoader workers also
the trained model, whose dropout shares the global generator), the seed, the device type, memory
format and torch's version. Each training epoch is one file of its stream, each evaluation split
one file. A cached target is the same bits as the live one: ``--resume`` may add or drop the cache.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from ..common.logit_cache import store
from ..common.logit_cache.epoch_logits import EpochLogits

# Bump when the loaders draw their batches differently: older cache files then miss.
STREAM_VERSION = 1


def _base(ds) -> tuple[Any, np.ndarray | None]:
    """A split's dataset and the split's indices in it (None: all of it, in order)."""
    if isinstance(ds, Subset):
        return ds.dataset, np.asarray(ds.indices, dtype=np.int64)
    return ds, None


def split_digest(ds) -> str:
    """sha256 of a split: its images (or image files), labels and items of its dataset."""
    base, idx = _base(ds)
    h = hashlib.sha256(type(base).__name__.encode())
    if hasattr(base, "data"):  # torchvision datasets, ArrayImages
        images = np.asarray(base.data)
        h.update(np.ascontiguousarray(images if idx is None else images[idx]).tobytes())
    else:  # own data decoded per item (own_data.DecodedImages)
        h.update(base.identity().encode())
    h.update(split_labels(ds).numpy().tobytes())
    if idx is not None:
        h.update(idx.tobytes())
    return h.hexdigest()


def split_labels(ds) -> torch.Tensor:
    """The int64 labels of a split, in its order, without decoding any image."""
    base, idx = _base(ds)
    labels = torch.as_tensor(np.asarray(base.targets), dtype=torch.long)
    return labels if idx is None else labels[torch.from_numpy(idx)]


def loader_recipe(loader, ds, student: str) -> dict[str, Any]:
    """What decides the batches of a loader besides the data, seed and epoch."""
    from .tensor_loader import TensorLoader

    if isinstance(loader, TensorLoader):
        return {"loader": "tensor", "batch_size": loader.batch_size, "train": loader.train,
                "padding": loader.padding, "flip": loader.flip, "drop_last": loader.drop_last,
                "mean": loader.mean.flatten().tolist(), "std": loader.std.flatten().tolist(),
                "stream": STREAM_VERSION}
    recipe = {"loader": "dataloader", "batch_size": loader.batch_size,
              "num_workers": loader.num_workers,
              "transform": repr(getattr(_base(ds)[0], "transform", None)), "stream": STREAM_VERSION}
    if loader.num_workers == 0:  # the draws share the global generator with the trained model
        recipe["trained_model"] = student
    return recipe


class ImageCache(store.LogitCache):
    """The cache of one image run: cached training targets and evaluation logits."""

    def __init__(self, root: str, max_gb: float | None, acc, channels_last: bool) -> None:
        super().__init__(root, max_gb, acc.print)
        self.precision = store.precision_of(acc)
        self.how = {"device": acc.device.type, "torch": torch.__version__.split("+")[0],
                    "memory_format": "channels_last" if channels_last else "contiguous"}
        # role -> its weights' sha256 (frozen: never changes); id(split) -> its content's sha256
        self.digests: dict[str | int, str] = {}

    def parts(self, what: str, role: str, model, ds, **how: Any) -> dict[str, Any]:
        """A key's facts (weights and split digests remembered: frozen models, the run's splits)."""
        if role not in self.digests:
            self.digests[role] = store.tensors_digest(model.state_dict())
        if id(ds) not in self.digests:
            self.digests[id(ds)] = split_digest(ds)
        return store.key_parts(what, self.digests[role], self.digests[id(ds)], self.precision,
                               **self.how, **how)

    def targets(self, role: str, model, live, loader, ds, seed: int, classes: int,
                student: str, epochs: int) -> EpochLogits:
        """``BatchReader.teacher_logits`` of ``model`` for ``epochs`` epochs of ``loader``."""
        parts = self.parts("train", role, model, ds, recipe=loader_recipe(loader, ds, student),
                           seed=seed)
        source = EpochLogits(self, parts, live, lambda b: b[2], len(ds), classes, self.precision,
                             name=f"{role} train")
        self.say(f"logit cache {source.folder}: {len(ds):,} x {classes} {self.precision} logits = "
                 f"{store.size(source.epoch_bytes)} per epoch, "
                 f"{store.size(epochs * source.epoch_bytes)} for {epochs} epochs")
        return source

    def eval_logits(self, role: str, split: str, model, loader, ds, compute,
                    own: bool = False) -> torch.Tensor:
        """``model``'s logits on an evaluation split (``own``: the model this run trained)."""
        folder = self.folder(self.parts("eval", role, model, ds,
                                        recipe=loader_recipe(loader, ds, "")))
        return self.get(folder / f"{split}.logits", f"{folder.name}/{split}", self.precision,
                        compute, self.stream(f"{role} {split}", folder.name, own))
