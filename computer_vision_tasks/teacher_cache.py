"""The image CLI's teacher-logit cache (``--logits-cache-dir``): what its keys are made of.

A training stream's key: the frozen model's weights (sha256 of its state dict), the split's
content (images and labels, or for images decoded from disk their files), the loader path and
its augmentation recipe (in-memory loader: batch size, padding, flip, normalisation; DataLoader:
batch size, ``--num-workers`` and the transforms, and with 0 workers the trained model, whose
dropout would share the global generator with the augmentation), the seed, the precision
(fp32 or the autocast dtype), the device type and memory format the teacher runs in, and
torch's version. Each epoch is one file of that stream. Evaluation splits (what ``describe``
reports) are one file each. The cache never changes a result: a cached target is the same bits
as the live one, so ``--resume`` may add or drop the cache.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from annealing_kd.common.logit_cache.epoch_logits import EpochLogits
from annealing_kd.common.logit_cache.store import LogitCache, precision_of, tensors_digest

# Bump when the loaders draw their batches differently: older cache files then miss.
STREAM_VERSION = 1


def split_digest(ds) -> str:
    """sha256 of a split: its images (in memory) or image files (decoded per item), its labels
    and which items of the underlying dataset it holds."""
    base, idx = (ds.dataset, np.asarray(ds.indices)) if isinstance(ds, Subset) else (ds, None)
    h = hashlib.sha256(type(base).__name__.encode())
    if hasattr(base, "data"):  # torchvision datasets, ArrayImages
        images = np.asarray(base.data)
        h.update(np.ascontiguousarray(images if idx is None else images[idx]).tobytes())
    else:  # own data decoded per item (own_data.DecodedImages)
        h.update(base.identity().encode())
    h.update(split_labels(ds).numpy().tobytes())
    if idx is not None:
        h.update(idx.astype(np.int64).tobytes())
    return h.hexdigest()


def split_labels(ds) -> torch.Tensor:
    """The int64 labels of a split, in its order, without decoding any image."""
    base, idx = (ds.dataset, list(ds.indices)) if isinstance(ds, Subset) else (ds, None)
    labels = torch.as_tensor(np.asarray(base.targets), dtype=torch.long)
    return labels if idx is None else labels[idx]


def loader_recipe(loader, ds, student: str) -> dict[str, Any]:
    """What decides the batches of a loader besides the data, seed and epoch."""
    from annealing_kd.computer_vision_tasks.tensor_loader import TensorLoader

    if isinstance(loader, TensorLoader):
        return {"loader": "tensor", "batch_size": loader.batch_size, "train": loader.train,
                "padding": loader.padding, "flip": loader.flip, "drop_last": loader.drop_last,
                "mean": loader.mean.flatten().tolist(), "std": loader.std.flatten().tolist(),
                "stream": STREAM_VERSION}
    base = ds.dataset if isinstance(ds, Subset) else ds
    recipe = {"loader": "dataloader", "batch_size": loader.batch_size,
              "num_workers": loader.num_workers, "transform": repr(getattr(base, "transform", None)),
              "stream": STREAM_VERSION}
    if loader.num_workers == 0:  # the draws share the global generator with the trained model
        recipe["trained_model"] = student
    return recipe


class ImageCache:
    """The cache of one image run: cached training targets and evaluation logits."""

    def __init__(self, root: str, max_gb: float | None, acc, channels_last: bool) -> None:
        self.acc = acc
        self.cache = LogitCache(root, max_gb, acc.print)
        self.precision = precision_of(acc)
        self.compute = {"device": acc.device.type, "torch": torch.__version__.split("+")[0],
                        "memory_format": "channels_last" if channels_last else "contiguous"}
        self.digests: dict[str, str] = {}  # role -> its weights' sha256 (frozen: never changes)
        self.data: dict[int, str] = {}  # id(split) -> its content's sha256 (the run's splits)

    @property
    def stats(self) -> dict[str, Any]:
        return self.cache.stats

    def teacher(self, role: str, model) -> dict[str, Any]:
        """The frozen model's part of a key: its weights and how it is run."""
        if role not in self.digests:
            self.digests[role] = tensors_digest(model.state_dict())
        return {"teacher": self.digests[role], **self.compute}

    def split(self, ds) -> str:
        if id(ds) not in self.data:
            self.data[id(ds)] = split_digest(ds)
        return self.data[id(ds)]

    def targets(self, role: str, model, live, loader, ds, seed: int, classes: int,
                student: str, epochs: int) -> EpochLogits:
        """``Batches.teacher_logits`` for training ``student`` against ``model`` on ``loader``
        for ``epochs`` epochs."""
        parts = {"what": "train", **self.teacher(role, model), "data": self.split(ds),
                 "recipe": loader_recipe(loader, ds, student), "seed": seed}
        source = EpochLogits(self.cache, parts, live, lambda b: b[2], len(ds), classes,
                             self.precision, name=f"{role} train")
        self.acc.print(f"logit cache {source.folder}: {len(ds):,} x {classes} {self.precision} "
                       f"logits = {size(source.epoch_bytes)} per epoch, "
                       f"{size(epochs * source.epoch_bytes)} for {epochs} epochs")
        return source

    def eval_logits(self, role: str, split: str, model, loader, ds, compute,
                    own: bool = False) -> torch.Tensor:
        """The logits of ``model`` on an evaluation split, cached (``compute()`` on a miss);
        ``own``: the model this run trained, kept for a run that takes it as its teacher."""
        parts = {"what": "eval", **self.teacher(role, model), "data": self.split(ds),
                 "recipe": loader_recipe(loader, ds, ""), "precision": self.precision}
        folder = self.cache.folder(parts)
        stream = self.cache.stream(f"{role} {split}", folder.name, own)
        return self.cache.get(folder / f"{split}.logits", f"{folder.name}/{split}",
                              self.precision, compute, stream)

    def summary(self) -> str:
        """One line: what this run read, wrote and computed, and the teacher's seconds."""
        streams = self.cache.stats["streams"]
        total = {k: sum(x[k] for x in streams.values())
                 for k in ("files_read", "files_written", "files_live", "bytes_read",
                           "bytes_written", "read_seconds")}
        own = sum(x["live_seconds"] for x in streams.values() if x.get("own"))
        teacher = sum(x["live_seconds"] for x in streams.values() if not x.get("own"))
        return (f"logit cache {self.cache.root}: {total['files_read']} files read "
                f"({size(total['bytes_read'])}, {total['read_seconds']:.1f}s), "
                f"{total['files_written']} written ({size(total['bytes_written'])}), "
                f"{total['files_live']} computed live past the size limit; teacher "
                f"{teacher:.1f}s" + (f", the trained model's own test logits {own:.1f}s" if own
                                     else "") + f"; the folder holds {size(self.cache.size_bytes())}")


def size(nbytes: float) -> str:
    """Bytes for people: 512 B, 1.5 KB, 20.0 MB, 4.00 GB."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}" if unit == "GB" else f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"
