"""Seeding of python, numpy, torch and the data order."""

from __future__ import annotations

import os
import random
import zlib
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def role_seed(seed: int, role: str) -> int:
    """The seed of a role's initial weights: the run's for the student (the same start in every
    method: paired comparisons), a fixed offset of it for the teacher and the assistant."""
    return seed if role == "student" else seed * 1009 + zlib.crc32(role.encode()) % 1000


class EpochShuffleSampler(Sampler[int]):
    """A shuffle that depends only on (seed, epoch): the same order after a resume, and the same
    on every process, so ``accelerate`` can shard it for DDP."""

    def __init__(self, length: int, seed: int = 0, shuffle: bool = True) -> None:
        self.length, self.seed, self.shuffle, self.epoch = length, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.length))
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=g).tolist())

    def __len__(self) -> int:
        return self.length
