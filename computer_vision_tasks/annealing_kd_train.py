"""Annealing-KD on CIFAR-10/100 (and MNIST-like data) with CIFAR ResNets.

One command trains (or loads) the teacher and trains the student by ``--method``:

    scratch    student with cross-entropy (alias finetune)         phase "student"
    kd         Hinton KD from the teacher                           phase "student"
    takd       teacher -> assistant by KD, assistant -> student by KD  phases "assistant", "student"
    annealing  phase 1: MSE(z_s, Phi(T) z_t); phase 2 from the best  phases "phase1", "phase2"
               phase-1 checkpoint with cross-entropy (no teacher)

The final student is the best epoch over its phases on the selection split (held-out training
images, or the test set with ``--val-size 0``), saved as ``<out>/student/best.safetensors``.
The methods are ``annealing_kd.common.methods``; the run itself is ``annealing_kd.computer_vision_tasks.pipeline``
(``ImagePipeline``: torchvision datasets, image folders and Hugging Face image datasets).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python computer_vision_tasks/annealing_kd_train.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.computer_vision_tasks.cli import flag_of, parse_args  # noqa: E402


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    from annealing_kd.computer_vision_tasks.pipeline import (
        ImagePipeline,  # torch and friends: after --help
    )

    ImagePipeline(args).train()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, flag_of)


if __name__ == "__main__":
    sys.exit(main())
