"""Image datasets: CIFAR-10/100, MNIST, Fashion-MNIST (torchvision) and synthetic ``fake`` data.

Training augmentation: random crop with padding 4 and a horizontal flip (no flip for MNIST: a
flipped digit is another symbol). ``--val-size`` training images are held out (not augmented) for
checkpoint selection; 0 selects on the test set, as the paper did.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..common.errors import UsageError
from ..common.training.seeding import EpochShuffleSampler

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # apt dataset-fashion-mnist
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte"]
MAX_VAL_SIZE = 5000


@dataclass(frozen=True)
class Spec:
    num_classes: int
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = True


DATASETS = {
    "cifar10": Spec(10, 3, 32, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": Spec(100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": Spec(10, 1, 28, (0.1307,), (0.3081,), flip=False),
    "fashion-mnist": Spec(10, 1, 28, (0.2860,), (0.3530,)),
    "fake": Spec(10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
}
FAKE_TRAIN, FAKE_TEST = 2560, 128


def get_spec(name: str) -> Spec:
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def transforms_for(spec: Spec, train: bool, augment: str = "crop-flip"):
    """``crop-flip`` (CIFAR's recipe) or ``random-resized-crop`` (ImageNet's: evaluated on a
    resize to 8/7 and a centre crop), then ToTensor and Normalize."""
    from torchvision import transforms as T

    if augment == "crop-flip":
        steps = [T.RandomCrop(spec.size, padding=4)] if train else []
        steps += [T.RandomHorizontalFlip()] if train and spec.flip else []
    elif train:
        steps = [T.RandomResizedCrop(spec.size, antialias=True), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(round(spec.size * 8 / 7), antialias=True), T.CenterCrop(spec.size)]
    return T.Compose([*steps, T.ToTensor(), T.Normalize(spec.mean, spec.std)])


class ArrayImages(Dataset):
    """uint8 images (N, H, W, C) and labels, served as PIL images like torchvision's."""

    def __init__(self, data: np.ndarray, targets: np.ndarray, transform=None) -> None:
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int):
        from PIL import Image

        img = self.data[i]
        img = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        return (self.transform(img) if self.transform else img), int(self.targets[i])


def fake_arrays(n: int, spec: Spec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable synthetic images: a fixed random template per class plus noise."""
    shape = (spec.size, spec.size, spec.channels)
    templates = np.random.default_rng(0).integers(0, 256, (spec.num_classes, *shape))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, spec.num_classes, n)
    noise = rng.integers(0, 256, (n, *shape))
    return (0.6 * templates[labels] + 0.4 * noise).astype(np.uint8), labels


def _missing(name: str, root: Path, layout: str, exc: Exception) -> UsageError:
    return UsageError(f"{name} not found in {root} and it could not be downloaded "
                      f"({type(exc).__name__}: {exc}); put {layout} under --dataset-dir "
                      f"{root} (or run once online)")


def _present_only(cls):
    """``cls`` without torchvision's md5 check, which refuses anything but the official archive
    (e.g. other images in the CIFAR python layout); a file of another layout still fails."""
    return type(cls.__name__, (cls,), {
        "train_list": [(f, None) for f, _ in cls.train_list],
        "test_list": [(f, None) for f, _ in cls.test_list],
        "meta": {**cls.meta, "md5": None}})


def _cifar(name: str, root: Path, train: bool, transform):
    from torchvision import datasets

    cls, folder, files = ((datasets.CIFAR10, "cifar-10-batches-py",
                           "data_batch_1..5, test_batch, batches.meta") if name == "cifar10" else
                          (datasets.CIFAR100, "cifar-100-python", "train, test, meta"))
    layout = f"{folder}/ ({files}: the python version of the dataset)"
    present = (root / folder).exists()
    try:
        return (_present_only(cls) if present else cls)(str(root), train=train,
                                                         transform=transform, download=not present)
    except Exception as exc:  # URLError offline; missing or unreadable files
        if present:
            raise UsageError(f"cannot read {name} from {root / folder} ({type(exc).__name__}: "
                             f"{exc}): missing or corrupted files; it must hold {layout}") from None
        raise _missing(name, root, layout, exc) from None


def _mnist_like(name: str, root: Path, train: bool, transform):
    """torchvision's MNIST/FashionMNIST from ``<root>/<Class>/raw``; idx-gz files lying flat in
    ``root`` (or, for Fashion-MNIST, in the Debian package's folder) are unpacked there first."""
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    sources = [root] + ([DEBIAN_FASHION_MNIST] if name == "fashion-mnist" else [])
    src = next((s for s in sources if all((s / f"{f}.gz").is_file() for f in IDX_FILES)), None)
    if src is not None and not all((raw / f).is_file() for f in IDX_FILES):
        try:
            raw.mkdir(parents=True, exist_ok=True)
            for f in IDX_FILES:  # unpack beside, then rename: runs in parallel see
                if not (raw / f).is_file():  # a whole file or none
                    tmp = raw / f".{f}.{os.getpid()}.tmp"
                    with gzip.open(src / f"{f}.gz") as fin, open(tmp, "wb") as fout:
                        shutil.copyfileobj(fin, fout)
                    os.replace(tmp, raw / f)
        except OSError as exc:
            raise UsageError(f"cannot unpack {src}/*.gz into {raw} ({exc}); pass a "
                             "writable --dataset-dir") from None
    try:
        return cls(str(root), train=train, transform=transform, download=not raw.exists())
    except Exception as exc:
        layout = (f"{cls.__name__}/raw/ (the four idx files) or the four *-idx?-ubyte.gz files "
                  "directly")
        raise _missing(name, root, layout, exc) from None


def load_split(name: str, root: str | os.PathLike, train: bool, transform) -> Dataset:
    """The train or test split of a dataset, with ``transform``."""
    spec, root = get_spec(name), Path(root)
    if name == "fake":
        data, labels = fake_arrays(FAKE_TRAIN if train else FAKE_TEST, spec, 1 if train else 2)
        return ArrayImages(data, labels, transform)
    if name.startswith("cifar"):
        return _cifar(name, root, train, transform)
    return _mnist_like(name, root, train, transform)


def default_val_size(n_train: int, train_subset: int | None) -> int:
    """5,000 images (10% of CIFAR's training set), at most a tenth of the images used."""
    return min(MAX_VAL_SIZE, (train_subset or n_train) // 10)


@dataclass
class Splits:
    train: Dataset  # augmented
    val: Dataset | None  # held out of the training set, not augmented
    test: Dataset | None  # None: own data without a test split


def make_splits(name: str, root: str | os.PathLike, val_size: int | None,
                train_subset: int | None, seed: int) -> Splits:
    """Train (less ``val_size`` held-out images; ``train_subset``: only that many), val, test."""
    spec = get_spec(name)
    train_aug, train_plain, test = (load_split(name, root, train, transforms_for(spec, aug))
                                    for train, aug in ((True, True), (True, False), (False, False)))
    val_idx, train_idx = split_indices(len(train_aug), val_size, train_subset, seed, name)
    return Splits(Subset(train_aug, train_idx), Subset(train_plain, val_idx) if val_idx else None,
                  test)


def split_indices(n: int, val_size: int | None, train_subset: int | None, seed: int,
                  name: str) -> tuple[list[int], list[int]]:
    """Held-out and training indices of ``n`` training images; they depend only on ``seed``."""
    if val_size is None:
        val_size = default_val_size(n, train_subset)
    if val_size < 0 or val_size >= n:
        raise UsageError(f"--val-size {val_size} must be in [0, {n - 1}] for {name} "
                         f"({n} training images)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if train_subset is not None:
        if not 1 <= train_subset <= len(train_idx):
            raise UsageError(f"--train-subset {train_subset} must be in [1, {len(train_idx)}] "
                             f"({n} training images, {val_size} held out for validation)")
        train_idx = train_idx[:train_subset]
    return val_idx, train_idx


class Indexed(Dataset):
    """``(image, label, index)`` of a dataset: batches carry their examples' positions."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        x, y = self.ds[i]
        return x, y, i


def train_loader(ds: Dataset, batch_size: int, seed: int, num_workers: int) -> DataLoader:
    """Shuffled by (seed, epoch) only; the augmentation draws come from torch's global generator,
    seeded by the Trainer at each epoch: the stream is a function of (seed, epoch, workers)."""
    return DataLoader(Indexed(ds), batch_size=batch_size, sampler=EpochShuffleSampler(len(ds), seed),
                      num_workers=num_workers, pin_memory=torch.cuda.is_available())


def eval_loader(ds: Dataset, batch_size: int, num_workers: int) -> DataLoader:
    return DataLoader(Indexed(ds), batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available())


def uint8_arrays(ds: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw uint8 images (N,C,H,W) and labels of a split (a torchvision or
    :class:`ArrayImages` dataset, or a ``Subset`` of one)."""
    from .tensor_loader import from_hwc

    base, idx = (ds.dataset, list(ds.indices)) if isinstance(ds, Subset) else (ds, None)
    images, labels = from_hwc(base.data), torch.as_tensor(np.asarray(base.targets))
    return (images, labels) if idx is None else (images[idx], labels[idx])


def tensor_loader(ds: Dataset, spec: Spec, batch_size: int, train: bool, seed: int, device,
                  channels_last: bool):
    """A ``TensorLoader`` over a split held in memory, with :func:`transforms_for`'s crop-flip."""
    from .tensor_loader import TensorLoader

    images, labels = uint8_arrays(ds)
    return TensorLoader(images, labels, batch_size, spec.mean, spec.std, train=train, seed=seed,
                        device=device, channels_last=channels_last, flip=spec.flip)
