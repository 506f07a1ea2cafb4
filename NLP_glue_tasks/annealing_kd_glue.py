"""Annealing-KD on GLUE with Hugging Face transformers."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python NLP_glue_tasks/annealing_kd_glue.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.errors import UsageError, run_cli  # noqa: E402


def _main(argv: Sequence[str] | None) -> int:
    raise UsageError("the GLUE pipeline is not implemented yet")


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
