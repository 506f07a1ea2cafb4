"""Annealing-KD on CIFAR-10/100 (and MNIST-like data) with CIFAR ResNets."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python computer_vision_tasks/annealing_kd_train.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import UsageError, run_cli  # noqa: E402


def _main(argv: Sequence[str] | None) -> int:
    raise UsageError("the CIFAR pipeline is not implemented yet")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
