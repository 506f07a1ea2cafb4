"""A device-resident CIFAR loader: the whole uint8 dataset lives on the GPU, augmentation is
done per batch with tensor ops there, and the shuffle is a device-side permutation.

Training batches get the standard CIFAR augmentation, bit for bit what torchvision's
``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` + ``ToTensor()`` + ``Normalize``
would produce for the same offsets and flips (zero padding of the uint8 image, crop, flip,
``/255``, ``(x - mean) / std``). The order and the augmentation of epoch ``e`` depend only on
``(seed, e)``, so a resumed run sees the same batches. Works on CPU tensors too (tests).

One process only: under DDP use the ordinary DataLoader path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class GpuLoader:
    """Batches of ``(float images (B,C,H,W), int64 labels (B,))`` from a device-resident dataset.

    ``images_uint8``: (N,C,H,W) uint8 (an (N,H,W,C) array from torchvision's CIFAR ``.data``
    must be permuted first; :func:`from_hwc` does it). ``train``: shuffle and augment; otherwise
    the order is fixed and images are only normalised. ``sampler`` is the loader itself so that
    the core :class:`~common.trainer.Trainer` calls :meth:`set_epoch` on it.
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

    # The Trainer looks for ``loader.sampler.set_epoch``.
    @property
    def sampler(self) -> GpuLoader:
        return self

    @property
    def dataset(self) -> torch.Tensor:
        return self.images

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(self.seed * 100_003 + self.epoch)
        return g

    def order(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """The indices of this epoch, in order (a permutation when training)."""
        n = len(self.images)
        if not self.train:
            return torch.arange(n, device=self.device)
        g = generator if generator is not None else self._generator()
        return torch.randperm(n, generator=g, device=self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = self._generator()  # permutation first, then the crops and flips, from one stream
        order = self.order(g)
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            x = self.images[idx]
            if self.train:
                x = augment(x, g, self.padding, self.flip)
            x = normalize(x, self.mean, self.std)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.labels[idx]


def augment(x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4,
            flip: bool = True, offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
            flips: torch.Tensor | None = None) -> torch.Tensor:
    """Random crop (zero padding ``padding``, same size) and horizontal flip of a uint8 batch.

    Offsets ``(dy, dx)`` in ``[0, 2*padding]`` and flips (bool) are drawn per image unless given.
    """
    b, _, h, w = x.shape
    dev = x.device
    if offsets is None:
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=dev)
    else:
        dy, dx = offsets
    if flips is None:
        flips = (torch.rand(b, generator=generator, device=dev) < 0.5) if flip else \
            torch.zeros(b, dtype=torch.bool, device=dev)
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = dy[:, None] + ar_h  # (B,H)
    cols = dx[:, None] + torch.where(flips[:, None], w - 1 - ar_w, ar_w)  # (B,W)
    # gather rows then columns: (B,C,H,Wp) -> (B,C,H,W)
    c = x.size(1)
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
