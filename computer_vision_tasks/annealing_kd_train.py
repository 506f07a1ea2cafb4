"""Annealing-KD on CIFAR-10/100 (and MNIST-like data, your own images): trains (or loads) the
teacher, then the student by ``--method`` (scratch, kd, takd, annealing:
``annealing_kd.common.methods``). The final student is the best epoch over its phases on the
selection split, saved as ``<out>/student/best.safetensors``; the run is
``annealing_kd.computer_vision_tasks.pipeline`` (``ImagePipeline``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python computer_vision_tasks/annealing_kd_train.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.common.cli.settings import print_config  # noqa: E402
from annealing_kd.computer_vision_tasks.cli import CLI, flag_of, parse_args  # noqa: E402


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    if print_config(args, CLI):
        return 0
    from annealing_kd.computer_vision_tasks.pipeline import ImagePipeline  # torch: after --help

    ImagePipeline(args).train()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv, flag_of)


if __name__ == "__main__":
    sys.exit(main())
