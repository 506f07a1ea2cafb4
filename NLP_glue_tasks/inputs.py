"""What a text run reads (:mod:`annealing_kd.common.cli.inputs`). No heavy imports."""

from __future__ import annotations

import argparse
from typing import Any

from annealing_kd.common.cli import inputs

MODEL_KEYS = ["teacher_model_name_or_path", "student_model_name_or_path",
              "assistant_model_name_or_path", "config_name", "tokenizer_name"]
# inputs that must lie outside the output folder (and it outside them)
INPUT_KEYS = ["data_dir", *MODEL_KEYS, "cache_dir", "logits_cache_dir", "train_file",
              "validation_file", "test_file"]


def input_paths(args: argparse.Namespace) -> dict[str, str]:
    return inputs.given(args, INPUT_KEYS)


def fingerprints(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The data (files, or the hub dataset's name) and every model."""
    read = inputs.given(args, ("data_dir", "train_file", "validation_file"))
    hub = {}
    if getattr(args, "dataset_name", None):
        hub["dataset_name"] = f"{args.dataset_name}/{args.dataset_config_name or ''}"
    elif not read and args.task_name:
        hub["task_name"] = f"nyu-mll/glue/{args.task_name.lower()}"
    return inputs.fingerprints(read, hub, inputs.given(args, MODEL_KEYS))
