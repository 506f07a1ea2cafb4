"""Your own images: ``--dataset imagefolder --dataset-dir DIR`` or ``--dataset hf:<name>``.

``DIR/train/<class>/<image>`` (any format PIL reads; classes: the sorted folder names of train),
optionally ``DIR/val`` and/or ``DIR/test``. ``hf:<name>``: ``datasets.load_dataset(name)`` (or
``load_from_disk`` of a ``save_to_disk`` folder), splits train, validation/val and test.
Selection: the val split, else ``--val-size`` images held out of train; test: the test split.

Images are RGB (grey when all training images are), resized to ``--image-size`` squared and
normalised by the per-channel mean and std of (at most ``STATS_MAX_IMAGES``) training images.
Crop-flip data within ``--memory-limit-gb`` as uint8 is decoded once and held in memory (for the
tensor loader); otherwise the DataLoader workers decode images per batch.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..common.cli import inputs
from ..common.errors import UsageError
from . import data
from .own_args import CROP_FLIP_MAX_SIZE

STATS_MAX_IMAGES = 10_000
GREY_MODES = {"1", "L", "I", "I;16", "F"}


class ImageDecodeError(UsageError):
    """An image that cannot be decoded; re-raised from a DataLoader worker, torch makes the
    worker's traceback the message: keep only our line."""

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


class Source:
    """The images of one split: ``load(i)`` (a PIL image), ``name(i)`` (for errors) and
    ``identity()`` (what the images are, for the teacher-logit cache's key)."""

    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def open(self, i: int, decode: bool = True):
        """The PIL image ``i`` (``decode=False``: its header only); unreadable: a UsageError."""
        try:
            img = self.load(i)
            if decode:
                img.load()
            return img
        except UsageError:
            raise
        except Exception as exc:
            raise ImageDecodeError(
                f"cannot decode image {self.name(i)} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())[:120]}); fix or remove the file") from None


class FileSource(Source):
    def __init__(self, paths: list[str], labels: list[int]) -> None:
        self.paths, self.labels = paths, np.asarray(labels, dtype=np.int64)
        inputs.note(paths)  # read per batch: the run's data all the same

    def name(self, i: int) -> str:
        return self.paths[i]

    def load(self, i: int):
        from PIL import Image

        return Image.open(self.paths[i])

    def identity(self) -> str:
        """sha256 of every file's path, size and modification time."""
        h = hashlib.sha256()
        for path in self.paths:
            st = os.stat(path)
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        return h.hexdigest()


class HFSource(Source):
    def __init__(self, ds, column: str, labels: np.ndarray, split: str, dataset: str) -> None:
        self.ds, self.column, self.labels = ds, column, labels
        self.split, self.dataset = split, dataset
        inputs.note(f["filename"] for f in ds.cache_files)  # memory-mapped Arrow files

    def name(self, i: int) -> str:
        return f"{self.dataset} {self.split}[{i}]"

    def load(self, i: int):
        return self.ds[i][self.column]

    def identity(self) -> str:
        return f"hf:{self.dataset}:{self.split}:{getattr(self.ds, '_fingerprint', '')}"


def image_folder(root: str | Path) -> tuple[dict[str, Source], list[str]]:
    """The splits (train, and val and test where they exist) and class names of DIR."""
    from .folder_scan import scan

    root = Path(root)
    if not (root / "train").is_dir():
        raise UsageError(f"{root / 'train'} does not exist; --dataset imagefolder needs "
                         "--dataset-dir DIR with DIR/train/<class>/<images> "
                         "(and DIR/val or DIR/test)")
    paths, labels, classes = scan(root, "train", None)
    splits: dict[str, Source] = {"train": FileSource(paths, labels)}
    splits.update({split: FileSource(*scan(root, split, classes)[:2]) for split in ("val", "test")
                   if (root / split).is_dir()})
    return splits, classes


def _pick_column(features: dict, given: str | None, flag: str, defaults: tuple[str, ...],
                 kind: str, dataset: str) -> str:
    if given is not None:
        if given not in features:
            raise UsageError(f"{flag} {given!r} is not a column of {dataset}; columns: "
                             f"{', '.join(features)}")
        return given
    present = [n for n in defaults if n in features]
    typed = [n for n, f in features.items() if type(f).__name__ == kind]
    if present or len(typed) == 1:
        return (present or typed)[0]
    raise UsageError(f"cannot tell the {flag[2:].replace('-', ' ')} of {dataset} (columns: "
                     f"{', '.join(features)}); pass {flag}")


def hf_dataset(spec: str, image_column: str | None,
               label_column: str | None) -> tuple[dict[str, Source], list[str]]:
    """``hf:<name>``: a Hub dataset (or a ``save_to_disk`` folder) as train/val/test sources."""
    name = spec[3:]
    if not name:
        raise UsageError("--dataset hf: needs a dataset name, e.g. --dataset hf:uoft-cs/cifar10")
    import datasets

    from ..common.cli.quiet import quiet_libraries

    try:
        with quiet_libraries("datasets"):  # an error is our one line
            saved = (Path(name) / "dataset_dict.json").is_file()
            dd = (datasets.load_from_disk if saved else datasets.load_dataset)(name)
    except Exception as exc:  # offline and not cached, unknown name, ...
        raise UsageError(f"cannot load Hugging Face dataset {name!r} ({type(exc).__name__}: "
                         f"{' '.join(str(exc).split())[:160]}); check the name, or run once online "
                         "to fill the datasets cache") from None
    if "train" not in dd:
        raise UsageError(f"{name} has no 'train' split (splits: {', '.join(dd)})")
    features = dd["train"].features
    image = _pick_column(features, image_column, "--image-column", ("image", "img"), "Image", name)
    label = _pick_column(features, label_column, "--label-column", ("label", "labels"),
                         "ClassLabel", name)
    feature, values = features[label], set(dd["train"][label])
    is_class_label = type(feature).__name__ == "ClassLabel"
    numeric = all(isinstance(v, int) for v in values)
    classes = (list(feature.names) if is_class_label else
               [str(v) for v in sorted(values, key=lambda v: v if numeric else str(v))])
    if len(values) < 2:
        raise UsageError(f"{name} train has a single class in {label!r}; a classifier needs at "
                         "least two classes")
    splits: dict[str, Source] = {}
    for ours, theirs in (("train", "train"), ("val", "validation"), ("val", "val"),
                         ("test", "test")):
        if theirs in dd and ours not in splits:
            raw = list(dd[theirs][label])
            if is_class_label:
                labels = np.asarray(raw, dtype=np.int64)
                if ours != "train" and (labels < 0).any():
                    continue  # a hidden-label split (-1), as many Hub test sets: not used
            else:
                unknown = sorted({str(v) for v in raw} - set(classes))
                if unknown:
                    raise UsageError(f"label {unknown[0]!r} of {name} {theirs} is not a label of "
                                     "train; every val/test label needs training images")
                labels = np.asarray([classes.index(str(v)) for v in raw], dtype=np.int64)
            splits[ours] = HFSource(dd[theirs].select_columns([image]), image, labels, theirs, name)
    return splits, classes


def resized(source: Source, i: int, size: int | None, channels: int):
    """Image ``i`` in the model's mode, resized to ``size`` squared (bilinear; None: as it is)."""
    from PIL import Image

    img = source.open(i).convert("L" if channels == 1 else "RGB")
    return img.resize((size, size), Image.BILINEAR) if size else img


def as_array(img) -> np.ndarray:
    a = np.asarray(img, dtype=np.uint8)
    return a[..., None] if a.ndim == 2 else a


class DecodedImages(Dataset):
    """Images decoded per item (in DataLoader workers), when they are not held in memory."""

    def __init__(self, source: Source, channels: int, size: int | None, transform) -> None:
        self.source, self.channels, self.size, self.transform = source, channels, size, transform
        self.targets = source.labels

    def identity(self) -> str:
        return f"{self.source.identity()}|{self.channels}|{self.size}"

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int):
        img = resized(self.source, i, self.size, self.channels)
        return self.transform(img), int(self.targets[i])


def decode_all(source: Source, size: int, channels: int) -> np.ndarray:
    """Every image of a split as one uint8 array (N, size, size, channels)."""
    out = np.empty((len(source), size, size, channels), dtype=np.uint8)
    for i in range(len(source)):
        out[i] = as_array(resized(source, i, size, channels))
    return out


def channel_stats(images) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std in [0, 1] over all pixels of uint8 (H, W, C) images
    (a constant channel gets std 1)."""
    total = total_sq = count = 0
    for img in images:
        x = np.asarray(img, dtype=np.float64).reshape(-1, img.shape[-1]) / 255
        total, total_sq, count = total + x.sum(0), total_sq + (x * x).sum(0), count + len(x)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0))
    return tuple(float(m) for m in mean), tuple(float(s) if s > 1e-6 else 1.0 for s in std)


@dataclass
class OwnData:
    spec: data.Spec
    splits: data.Splits
    in_memory: bool
    info: dict  # for results.json


def _selection(args: argparse.Namespace, sources: dict[str, Source]) -> tuple[list[int], list[int]]:
    """Held-out and training indices of train; the flags are checked against the splits."""
    has_val, has_test = "val" in sources, "test" in sources
    if has_val and args.val_size:
        raise UsageError(f"--val-size {args.val_size}: the data has its own val split; drop "
                         "--val-size (or remove the val folder to hold images out of train)")
    if not has_val and not has_test and args.val_size == 0:
        raise UsageError("--val-size 0 needs a test split to select on; the data has only train: "
                         "pass --val-size N > 0 (or add a val or test folder)")
    n = len(sources["train"])
    val_idx, train_idx = data.split_indices(n, 0 if has_val else args.val_size,
                                            args.train_subset, args.seed, args.dataset)
    if not (val_idx or has_val or has_test):
        raise UsageError(f"{n} training images are too few to hold out a tenth for selection; "
                         "pass --val-size N > 0 (or add a val or test folder)")
    return val_idx, train_idx


def _size_and_channels(args: argparse.Namespace, sources: dict[str, Source]) -> tuple[int, int]:
    """--image-size (by default the one square size of the training images) and the channels;
    reads every header: a non-image is named here."""
    sizes, grey = set(), True
    for split, source in sources.items():
        for i in range(len(source)):
            img = source.open(i, decode=False)
            if split == "train":
                sizes.add(img.size)
                grey = grey and img.mode in GREY_MODES
    size = args.image_size
    if size is None:
        if len(sizes) != 1 or len({*next(iter(sizes))}) != 1:
            w, h = sorted(sizes)[-1]
            raise UsageError(f"the training images are not all square and of one size (e.g. "
                             f"{w}x{h}); pass --image-size S to resize them to SxS")
        size = next(iter(sizes))[0]
    return size, 1 if grey else 3


def load(args: argparse.Namespace) -> OwnData:
    """Splits, spec (classes, channels, size, normalisation) and loader choice for own data."""
    if args.dataset == "imagefolder":
        sources, classes = image_folder(args.dataset_dir)
    else:
        sources, classes = hf_dataset(args.dataset, args.image_column, args.label_column)
    train, has_val, has_test = sources["train"], "val" in sources, "test" in sources
    val_idx, train_idx = _selection(args, sources)
    size, channels = _size_and_channels(args, sources)
    augment = args.augment if args.augment != "auto" else (
        "crop-flip" if size <= CROP_FLIP_MAX_SIZE else "random-resized-crop")
    nbytes = size * size * channels * sum(len(s) for s in sources.values())
    in_memory = augment == "crop-flip" and nbytes <= args.memory_limit_gb * 2**30

    stats_idx = train_idx
    if len(stats_idx) > STATS_MAX_IMAGES:
        g = torch.Generator().manual_seed(args.seed)
        stats_idx = [train_idx[i] for i in torch.randperm(len(train_idx), generator=g)[
            :STATS_MAX_IMAGES].tolist()]
    arrays = {k: decode_all(s, size, channels) for k, s in sources.items()} if in_memory else {}
    mean, std = channel_stats(arrays["train"][i] if in_memory else
                              as_array(resized(train, i, size, channels)) for i in stats_idx)
    spec = data.Spec(len(classes), channels, size, mean, std)

    def dataset(split: str, train_aug: bool) -> Dataset:
        tf = data.transforms_for(spec, train_aug, augment)
        if in_memory:
            return data.ArrayImages(arrays[split], sources[split].labels, tf)
        return DecodedImages(sources[split], channels, size if augment == "crop-flip" else None, tf)

    splits = data.Splits(
        train=Subset(dataset("train", True), train_idx),
        val=(dataset("val", False) if has_val else
             Subset(dataset("train", False), val_idx) if val_idx else None),
        test=dataset("test", False) if has_test else None)
    info = {"classes": classes, "image_size": size, "channels": channels, "augment": augment,
            "normalization": {"mean": list(mean), "std": list(std), "images": len(stats_idx)},
            "images_in_memory": in_memory,
            "splits": {"val": "val" if has_val else "held out of train" if val_idx else None,
                       "test": "test" if has_test else None}}
    return OwnData(spec, splits, in_memory, info)
