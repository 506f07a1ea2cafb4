"""The in-memory image loader: the whole uint8 split lives on the training device (CPU or GPU),
augmentation is done per batch with tensor ops there.

Training batches get the standard CIFAR augmentation, bit for bit what torchvision's
``RandomCrop(size, padding=4)`` + ``RandomHorizontalFlip()`` + ``ToTensor()`` + ``Normalize``
would produce for the same offsets and flips (zero padding of the uint8 image, crop, flip,
``/255``, ``(x - mean) / std``).

**The stream.** Every random draw of epoch ``e`` (the permutation, then each batch's crop offsets
and flips) comes from one CPU generator seeded by ``(seed, e)`` only, so the batches of an epoch
are a function of (data, augmentation recipe, seed, epoch): the same on CPU and GPU, after a
resume, and for every method and phase that reads the split (KD's epoch e is Annealing-KD phase
1's epoch e). The permutation is the one :class:`annealing_kd.common.training.seeding.EpochShuffleSampler` draws.
Batches are ``(images, labels, indices)``: ``indices`` are the positions in the split, the key
under which per-example teacher logits can be stored.

One process only: under DDP use the ordinary DataLoader path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class TensorLoader:
    """Batches of ``(float images (B,C,H,W), int64 labels (B,), int64 indices (B,))``.

    ``images_uint8``: (N,C,H,W) uint8 (torchvision's (N,H,W,C) ``.data`` goes through
    :func:`from_hwc` first). ``train``: shuffle and augment; otherwise the order is fixed and
    images are only normalised. ``sampler`` is the loader itself, so that the Trainer's
    ``loader.sampler.set_epoch`` reaches :meth:`set_epoch`.
    """

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
    def sampler(self) -> TensorLoader:
        return self

    @property
    def dataset(self) -> torch.Tensor:
        return self.images

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def generator(self) -> torch.Generator:
        """The CPU generator of this epoch's draws."""
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def order(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """The (CPU) indices of this epoch, in order (a permutation when training)."""
        n = len(self.images)
        if not self.train:
            return torch.arange(n)
        return torch.randperm(n, generator=generator or self.generator())

    def __iter__(self) -> Iterator[Batch]:
        g = self.generator()  # the permutation first, then each batch's crops and flips
        order = self.order(g)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            draws = draw_augmentation(len(idx), g, self.padding, self.flip) if self.train else None
            idx = idx.to(self.device, non_blocking=True)
            x = self.images[idx]
            if draws is not None:
                offsets, flips = draws
                x = augment(x, padding=self.padding, flips=flips.to(self.device),
                            offsets=(offsets[0].to(self.device), offsets[1].to(self.device)))
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
    offsets and flips are drawn from ``generator`` (:func:`draw_augmentation`) unless given."""
    b, c, h, w = x.shape
    if offsets is None or flips is None:
        drawn = draw_augmentation(b, generator or torch.Generator(device=x.device), padding, flip)
        offsets = offsets if offsets is not None else drawn[0]
        flips = flips if flips is not None else drawn[1]
    dy, dx = offsets
    dev = x.device
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    rows = dy[:, None] + ar_h  # (B,H)
    cols = dx[:, None] + torch.where(flips[:, None], w - 1 - ar_w, ar_w)  # (B,W)
    # gather rows then columns: (B,C,H,Wp) -> (B,C,H,W)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, padded.size(3)))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0,1] -> ``(x - mean) / std``, as ToTensor + Normalize."""
    return (x.float().div(255) - mean) / std


def from_hwc(images: torch.Tensor | object) -> torch.Tensor:
    """(N,H,W,C) or (N,H,W) uint8 (torchvision's ``dataset.data``) -> (N,C,H,W) uint8 tensor."""
    t = torch.as_tensor(images)
    if t.dim() == 3:
        return t.unsqueeze(1).contiguous()
    return t.permute(0, 3, 1, 2).contiguous()
