"""The in-memory image loader: the uint8 split lives on the training device (CPU or GPU) and is
augmented per batch with tensor ops there.

Training batches equal torchvision's ``RandomCrop(size, padding=4)`` + ``RandomHorizontalFlip()``
+ ``ToTensor()`` + ``Normalize`` bit for bit for the same offsets and flips. Every draw of epoch
``e`` (the permutation, then each batch's offsets and flips) comes from one CPU generator seeded
by ``(seed, e)`` only: the same batches on CPU and GPU, after a resume, for every method and
phase. One process only: under DDP use the ordinary DataLoader path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TensorLoader:
    """Batches ``(float images (B,C,H,W), int64 labels, int64 indices in the split)`` from uint8
    (N,C,H,W) images. ``train``: shuffle and augment, else fixed order and normalisation only."""

    def __init__(self, images_uint8: torch.Tensor, labels: torch.Tensor | Sequence[int],
                 batch_size: int, mean: Sequence[float], std: Sequence[float], train: bool,
                 seed: int = 0, device: str | torch.device | None = None,
                 channels_last: bool = False, drop_last: bool = False, padding: int = 4,
                 flip: bool = True) -> None:
        if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
            raise ValueError(f"images must be uint8 (N,C,H,W), got {images_uint8.dtype} "
                             f"{tuple(images_uint8.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = torch.device(device) if device is not None else images_uint8.device
        self.images = images_uint8.to(device).contiguous()
        self.labels = torch.as_tensor(labels, dtype=torch.long).to(device)
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        c = self.images.size(1)
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean/std need {c} values (one per channel)")
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, c, 1, 1)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.channels_last, self.drop_last = channels_last, drop_last
        self.padding, self.flip = padding, flip
        self.device, self.epoch = device, 0

    @property
    def sampler(self) -> TensorLoader:  # for the Trainer's ``set_epoch``
        return self

    @property
    def dataset(self) -> torch.Tensor:
        return self.images

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.images)
        order = torch.randperm(n, generator=g) if self.train else torch.arange(n)
        for idx in order.split(self.batch_size)[:len(self)]:
            idx = idx.to(self.device, non_blocking=True)
            x = self.images[idx]
            if self.train:  # drawn on the CPU from g, then moved to the images' device
                x = augment(x, g, self.padding, self.flip)
            x = normalize(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx], idx


def draw_augmentation(b: int, generator: torch.Generator, padding: int = 4, flip: bool = True
                      ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Crop offsets ``(dy, dx)`` in ``[0, 2*padding]`` and flips (bool) for ``b`` images, drawn
    from ``generator`` (on its device) in this order."""
    dev = generator.device
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    flips = (torch.rand(b, generator=generator, device=dev) < 0.5) if flip else \
        torch.zeros(b, dtype=torch.bool, device=dev)
    return (dy, dx), flips


def augment(x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4,
            flip: bool = True, offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
            flips: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop (zero padding ``padding``, same size) and horizontal flip of a uint8 batch;
    ``offsets`` and ``flips`` are both given or both drawn from ``generator``."""
    b, c, h, w = x.shape
    if offsets is None or flips is None:
        offsets, flips = draw_augmentation(b, generator or torch.Generator(device=x.device),
                                           padding, flip)
    dy, dx, flips = (t.to(x.device) for t in (*offsets, flips))
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    ar_h, ar_w = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    rows = dy[:, None] + ar_h  # (B,H)
    cols = dx[:, None] + torch.where(flips[:, None], w - 1 - ar_w, ar_w)  # (B,W)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, padded.size(3)))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0,1] -> ``(x - mean) / std``, as ToTensor + Normalize."""
    return (x.float().div(255) - mean) / std


def from_hwc(images: torch.Tensor | object) -> torch.Tensor:
    """(N,H,W,C) or (N,H,W) uint8 (torchvision's ``dataset.data``) -> (N,C,H,W) uint8 tensor."""
    t = torch.as_tensor(images)
    return (t.unsqueeze(1) if t.dim() == 3 else t.permute(0, 3, 1, 2)).contiguous()
