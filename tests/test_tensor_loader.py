"""The in-memory tensor loader, against torchvision's transforms and the DataLoader path."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import chi2_contingency, chisquare
from torchvision import transforms
from torchvision.transforms import functional as TF

from annealing_kd.computer_vision_tasks.tensor_loader import (
    TensorLoader,
    augment,
    from_hwc,
    normalize,
)

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def _images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)


def _position_image() -> torch.Tensor:
    """A 32x32 image whose pixels say where they are: channel 0 = row + 1, channel 1 = col + 1
    (zero padding stays 0)."""
    r = torch.arange(1, 33, dtype=torch.uint8)
    img = torch.zeros(3, 32, 32, dtype=torch.uint8)
    img[0] = r[:, None]
    img[1] = r[None, :]
    return img


def _decode(out: torch.Tensor) -> tuple[int, int, bool]:
    """(dy, dx, flipped) of a crop of :func:`_position_image` padded by 4 (centre is inside)."""
    flipped = int(out[1, 16, 17]) - int(out[1, 16, 16]) == -1
    dy = int(out[0, 16, 16]) - 1 + 4 - 16
    col = int(out[1, 16, 16]) - 1
    dx = col - 11 if flipped else col + 4 - 16
    return dy, dx, flipped


def test_fixed_offsets_match_torchvision_pad_crop_flip():
    x = _images(6)
    dy = torch.tensor([0, 8, 3, 4, 8, 0])
    dx = torch.tensor([0, 8, 5, 4, 0, 8])
    flips = torch.tensor([False, True, True, False, False, True])
    out = augment(x, offsets=(dy, dx), flips=flips)
    for k in range(len(x)):
        ref = TF.crop(TF.pad(x[k], [4]), int(dy[k]), int(dx[k]), 32, 32)
        if flips[k]:
            ref = TF.hflip(ref)
        assert torch.equal(out[k], ref)


def test_decoder_reads_torchvision_crops():
    img = _position_image()
    for dy, dx, flip in [(0, 0, False), (8, 8, True), (2, 7, True), (5, 1, False)]:
        ref = TF.crop(TF.pad(img, [4]), dy, dx, 32, 32)
        ref = TF.hflip(ref) if flip else ref
        assert _decode(ref) == (dy, dx, flip)


def test_crop_offsets_and_flip_rate_match_torchvision_statistics():
    img = _position_image()
    n_ours, n_tv = 81 * 200, 4000
    g = torch.Generator().manual_seed(123)
    ours = augment(img.expand(n_ours, -1, -1, -1), g)
    ours = [_decode(o) for o in ours]
    torch.manual_seed(7)
    tv = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])
    theirs = [_decode(tv(img)) for _ in range(n_tv)]

    def cells(samples):
        counts = torch.zeros(81)
        for dy, dx, _ in samples:
            assert 0 <= dy <= 8 and 0 <= dx <= 8
            counts[dy * 9 + dx] += 1
        return counts

    c_ours, c_tv = cells(ours), cells(theirs)
    assert (c_ours > 0).all()  # every one of the 9x9 positions occurs
    assert chisquare(c_ours.numpy()).pvalue > 1e-3  # uniform over 9x9
    assert chisquare(c_tv.numpy()).pvalue > 1e-3  # torchvision's is too (decoder check)
    assert chi2_contingency(torch.stack([c_ours, c_tv]).numpy()).pvalue > 1e-3  # same law
    for samples, n in ((ours, n_ours), (theirs, n_tv)):
        rate = sum(f for *_, f in samples) / n
        assert abs(rate - 0.5) < 4 * (0.25 / n) ** 0.5, rate


def test_eval_batches_equal_torchvision_totensor_normalize():
    hwc = _images(10).permute(0, 2, 3, 1).numpy()  # what torchvision's CIFAR .data holds
    loader = TensorLoader(from_hwc(hwc), list(range(10)), 4, MEAN, STD, train=False)
    xs, ys, _ = zip(*loader, strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    ref = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    expected = torch.stack([ref(im) for im in hwc])
    assert torch.equal(y, torch.arange(10))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.allclose(x, expected, atol=1e-6, rtol=0)
    assert torch.equal(normalize(from_hwc(hwc), loader.mean, loader.std), x)


def test_every_image_once_per_epoch_and_labels_stay_with_images():
    images = _images(37)
    # no crop, no flip: each training image must come out exactly as its own un-augmented self
    loader = TensorLoader(images, torch.arange(37), 8, MEAN, STD, train=True, seed=3, padding=0,
                       flip=False)
    assert len(loader) == 5
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)  # the Trainer's hook
        xs, ys, idxs = zip(*loader, strict=True)
        y = torch.cat(ys)
        assert torch.equal(torch.cat(idxs), y)  # labels are the indices here
        assert sorted(y.tolist()) == list(range(37))
        assert y.tolist() != list(range(37))  # shuffled
        assert torch.equal(torch.cat(xs), normalize(images[y], loader.mean, loader.std))
    dropped = TensorLoader(images, torch.arange(37), 8, MEAN, STD, train=True, drop_last=True)
    assert len(dropped) == 4 and sum(len(y) for _, y, _ in dropped) == 32


def test_same_seed_and_epoch_give_the_same_batches():
    images = _images(50)

    def run(seed, epoch):
        loader = TensorLoader(images, torch.arange(50), 16, MEAN, STD, train=True, seed=seed)
        loader.set_epoch(epoch)
        return list(loader)

    a, b = run(1, 2), run(1, 2)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)
               for (xa, ya, ia), (xb, yb, ib) in zip(a, b, strict=True))
    assert not torch.equal(torch.cat([y for _, y, _ in a]), torch.cat([y for _, y, _ in run(1, 3)]))
    assert not torch.equal(torch.cat([y for _, y, _ in a]), torch.cat([y for _, y, _ in run(2, 2)]))


def test_channels_last_and_bad_input():
    loader = TensorLoader(_images(4), [0, 1, 2, 3], 4, MEAN, STD, train=True, channels_last=True)
    x, *_ = next(iter(loader))
    assert x.is_contiguous(memory_format=torch.channels_last) and x.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="uint8"):
        TensorLoader(_images(4).float(), [0, 1, 2, 3], 4, MEAN, STD, train=True)
    with pytest.raises(ValueError, match="labels"):
        TensorLoader(_images(4), [0, 1], 4, MEAN, STD, train=True)
    with pytest.raises(ValueError, match="mean/std"):
        TensorLoader(_images(4), [0, 1, 2, 3], 4, (0.5,), (0.5,), train=True)


def test_trainer_runs_a_phase_on_the_loader(tmp_path):
    """The core Trainer accepts the loader as it is (accelerate leaves it alone) and calls
    set_epoch on it every epoch."""
    from torch import nn

    from annealing_kd.common.run_folder import RunDir
    from annealing_kd.common.training.trainer import BatchReader, Phase, Trainer, make_accelerator

    images, labels = _images(24), torch.arange(24) % 10
    train = TensorLoader(images, labels, 8, MEAN, STD, train=True, seed=0)
    seen = []
    set_epoch = train.set_epoch
    train.set_epoch = lambda e: (seen.append(e), set_epoch(e))
    acc = make_accelerator("cpu")
    model = acc.prepare(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)))
    trainer = Trainer(acc, RunDir(tmp_path / "run"), config={}, env={},
                      evaluate=lambda m: {"acc": 0.0}, selection_metric="acc", selected_on="none")
    phase = Phase("p", "task", 2, lambda m: torch.optim.SGD(m.parameters(), lr=0.01))
    batches = BatchReader(student_logits=lambda m, b: m(b[0]), labels=lambda b: b[1])
    trainer.fit(model, phase, train, batches)
    assert seen == [0, 1]
    assert [r["epoch"] for r in trainer.records] == [1, 2]


def test_cli_wiring_tensor_loader_matches_the_dataloader_on_a_split():
    """data.tensor_loader (what the CIFAR CLI uses on one GPU) serves the same held-out images,
    normalised the same way, as the torchvision DataLoader path, and every training image once."""
    from annealing_kd.computer_vision_tasks import data

    spec = data.get_spec("fake")
    splits = data.make_splits("fake", "unused", val_size=40, train_subset=100, seed=3)
    ref = torch.cat([x for x, *_ in data.eval_loader(splits.val, 16, 0)])
    ref_y = torch.cat([y for _, y, _ in data.eval_loader(splits.val, 16, 0)])
    ours = list(data.tensor_loader(splits.val, spec, 16, False, 3, "cpu", False))
    assert torch.allclose(torch.cat([x for x, *_ in ours]), ref, atol=1e-6)
    assert torch.equal(torch.cat([y for _, y, _ in ours]), ref_y)
    train = data.tensor_loader(splits.train, spec, 32, True, 3, "cpu", True)
    labels = torch.cat([y for _, y, _ in train])
    _, all_labels = data.uint8_arrays(splits.train)
    assert len(labels) == 100 and torch.equal(labels.sort().values, all_labels.sort().values)


def test_the_stream_is_the_dataloader_order_and_the_same_on_any_device():
    """The permutation is EpochShuffleSampler's; all draws are on a CPU generator, so a loader
    on another device (here: a CPU copy built separately) yields the same batches."""
    from annealing_kd.common.training.seeding import EpochShuffleSampler

    images = _images(40)
    a = TensorLoader(images, torch.arange(40), 16, MEAN, STD, train=True, seed=5)
    a.set_epoch(3)
    sampler = EpochShuffleSampler(40, 5)
    sampler.set_epoch(3)
    assert torch.cat([i for *_, i in a]).tolist() == list(sampler)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        b = TensorLoader(images.clone(), torch.arange(40), 16, MEAN, STD, train=True, seed=5,
                         device=dev)
        b.set_epoch(3)
        for (xa, ya, ia), (xb, yb, ib) in zip(a, b, strict=True):
            assert torch.equal(xa, xb.cpu()) and torch.equal(ya, yb.cpu()) and torch.equal(ia, ib.cpu())
