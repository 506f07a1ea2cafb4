"""Image data: on-disk CIFAR and idx-gz layouts read by torchvision, splits, normalisation, errors."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from annealing_kd.common.errors import UsageError
from annealing_kd.computer_vision_tasks import data

# ---- generated on-disk datasets (helpers also used by test_cifar_pipeline.py) ------------------


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 40, seed: int = 0) -> Path:
    """The python-version ``cifar-10-batches-py`` folder, from generated learnable images.
    The first test image is a constant grey 128."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 3072))

    def batch(n: int, name: str) -> None:
        labels = rng.integers(0, 10, n)
        imgs = (0.6 * templates[labels] + 0.4 * rng.integers(0, 256, (n, 3072))).astype(np.uint8)
        if name == "test_batch":
            imgs[0] = 128
        entry = {"batch_label": name, "labels": labels.tolist(), "data": imgs,
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry))

    for i in range(1, 6):
        batch(per_batch, f"data_batch_{i}")
    batch(n_test, "test_batch")
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck"], "num_cases_per_batch": per_batch,
            "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


def accept_generated_cifar10(monkeypatch, folder: Path) -> None:
    """torchvision checks the md5 of the real files: give it the generated files' md5 instead."""
    from torchvision.datasets import CIFAR10

    md5 = lambda name: hashlib.md5((folder / name).read_bytes()).hexdigest()  # noqa: E731
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5(f"data_batch_{i}")]
                                                for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5("test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5("batches.meta")})


def write_idx_gz(folder: Path, n_train: int = 60, n_test: int = 20) -> dict[str, np.ndarray]:
    """The four MNIST-format ``*-idx?-ubyte.gz`` files (as in Debian's dataset-fashion-mnist)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">iiii", 2051, n, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">ii", 2049, n) + labels.tobytes())
        arrays[prefix] = (images, labels)
    return arrays


# ---- tests --------------------------------------------------------------------------------------


def test_generated_cifar10_through_torchvision(tmp_path, monkeypatch):
    folder = write_cifar10(tmp_path)
    accept_generated_cifar10(monkeypatch, folder)
    splits = data.make_splits("cifar10", tmp_path, val_size=10, train_subset=None, seed=0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (90, 10, 40)
    x, y = splits.test[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10
    # CIFAR-10's own statistics (the original used CIFAR-100's): (128/255 - mean) / std
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    for c in range(3):
        torch.testing.assert_close(x[c], torch.full((32, 32), (128 / 255 - mean[c]) / std[c]))
    # the test split reads test_batch, in order
    entry = pickle.loads((folder / "test_batch").read_bytes())
    assert [splits.test[i][1] for i in range(5)] == entry["labels"][:5]


def test_each_dataset_has_its_own_normalisation():
    assert data.DATASETS["cifar10"].mean != data.DATASETS["cifar100"].mean
    assert data.DATASETS["cifar10"].std != data.DATASETS["cifar100"].std
    assert data.DATASETS["fashion-mnist"].channels == 1 and data.DATASETS["mnist"].size == 28


def test_splits_are_disjoint_seeded_and_val_is_not_augmented():
    a = data.make_splits("fake", ".", val_size=100, train_subset=200, seed=3)
    b = data.make_splits("fake", ".", val_size=100, train_subset=200, seed=3)
    c = data.make_splits("fake", ".", val_size=100, train_subset=200, seed=4)
    assert len(a.train) == 200 and len(a.val) == 100 and len(a.test) == data.FAKE_TEST
    assert not set(a.train.indices) & set(a.val.indices)
    assert a.val.indices == b.val.indices and a.train.indices == b.train.indices
    assert a.val.indices != c.val.indices
    torch.testing.assert_close(a.val[0][0], a.val[0][0])  # no random augmentation
    torch.manual_seed(0)
    views = torch.stack([a.train[0][0] for _ in range(8)])
    assert not all(torch.equal(views[0], v) for v in views[1:])  # random crop / flip


def test_default_val_size():
    assert data.default_val_size(50_000, None) == 5000  # CIFAR
    assert data.default_val_size(60_000, None) == 5000  # (Fashion-)MNIST
    assert data.default_val_size(2560, None) == 256
    assert data.default_val_size(50_000, 640) == 64  # quick runs keep evaluation cheap
    s = data.make_splits("fake", ".", val_size=None, train_subset=None, seed=0)
    assert len(s.val) == 256 and len(s.train) == data.FAKE_TRAIN - 256
    assert data.make_splits("fake", ".", val_size=0, train_subset=None, seed=0).val is None


@pytest.mark.parametrize("val_size,subset,match", [
    (-1, None, "--val-size -1"), (2560, None, "--val-size 2560"), (2500, 61, "--train-subset 61"),
    (0, 0, "--train-subset 0")])
def test_bad_split_sizes(val_size, subset, match):
    with pytest.raises(UsageError, match=match):
        data.make_splits("fake", ".", val_size=val_size, train_subset=subset, seed=0)


def test_fashion_mnist_from_flat_idx_gz_folder(tmp_path):
    arrays = write_idx_gz(tmp_path / "flat")
    s = data.make_splits("fashion-mnist", tmp_path / "flat", val_size=0, train_subset=None, seed=0)
    assert (len(s.train), len(s.test)) == (60, 20)
    assert (tmp_path / "flat" / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    x, y = s.test[3]
    images, labels = arrays["t10k"]
    assert x.shape == (1, 28, 28) and y == labels[3]
    torch.testing.assert_close(x[0], (torch.from_numpy(images[3]).float() / 255 - 0.2860) / 0.3530)


def test_fashion_mnist_falls_back_to_the_debian_folder(tmp_path, monkeypatch):
    write_idx_gz(tmp_path / "debian")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    s = data.make_splits("fashion-mnist", tmp_path / "data", val_size=6, train_subset=None, seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (54, 6, 20)
    with pytest.raises(UsageError, match="mnist not found"):  # no fallback for MNIST
        _offline(monkeypatch)
        data.make_splits("mnist", tmp_path / "data", val_size=0, train_subset=None, seed=0)


def _offline(monkeypatch) -> None:
    from urllib.error import URLError

    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.mnist as mnist

    def fail(*args, **kwargs):
        raise URLError("offline")

    monkeypatch.setattr(cifar, "download_and_extract_archive", fail)
    monkeypatch.setattr(mnist, "download_and_extract_archive", fail)


@pytest.mark.parametrize("name,layout", [("cifar10", "cifar-10-batches-py"),
                                         ("cifar100", "cifar-100-python")])
def test_missing_cifar_offline_names_folder_and_layout(tmp_path, monkeypatch, name, layout):
    _offline(monkeypatch)
    with pytest.raises(UsageError, match=f"{name} not found in {tmp_path}.*{layout}"):
        data.load_split(name, tmp_path, True, None)


def test_other_images_in_the_cifar_layout_are_read(tmp_path):
    write_cifar10(tmp_path)  # real md5 sums do not match the generated files: read anyway
    test = data.load_split("cifar10", tmp_path, False, None)
    assert len(test) == 40 and (test.data[0] == 128).all()


def test_corrupt_cifar_folder_is_a_usage_error(tmp_path):
    folder = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="corrupted"):
        data.load_split("cifar10", tmp_path, False, None)
    (folder / "test_batch").unlink()
    with pytest.raises(UsageError, match="missing or corrupted"):
        data.load_split("cifar10", tmp_path, False, None)
