"""What a text run reads: the paths kept apart from its output folder, and their fingerprints
that ``--resume`` compares (:mod:`annealing_kd.common.run_folder.fingerprint`). No heavy imports."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from annealing_kd.common.run_folder.fingerprint import fingerprint

# inputs that must lie outside the output folder (and it outside them)
INPUT_KEYS = ["data_dir", "teacher_model_name_or_path", "student_model_name_or_path",
              "assistant_model_name_or_path", "config_name", "tokenizer_name", "cache_dir",
              "logits_cache_dir", "train_file", "validation_file", "test_file"]
MODEL_KEYS = ["teacher_model_name_or_path", "student_model_name_or_path",
              "assistant_model_name_or_path", "config_name", "tokenizer_name"]


def input_paths(args: argparse.Namespace) -> dict[str, str]:
    """Setting -> path of every input given."""
    return {k: getattr(args, k) for k in INPUT_KEYS if getattr(args, k, None)}


def fingerprints(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The fingerprint of each input of training: the data (files, or the hub dataset's name) and
    every model (a local folder is hashed whole; a hub id is recorded by name)."""
    out: dict[str, dict[str, Any]] = {}
    if args.data_dir:
        out["data_dir"] = fingerprint(args.data_dir)
    for flag in ("train_file", "validation_file"):
        if getattr(args, flag, None):
            out[flag] = fingerprint(getattr(args, flag))
    if getattr(args, "dataset_name", None):
        out["dataset_name"] = {"hub": f"{args.dataset_name}/{args.dataset_config_name or ''}"}
    elif not args.data_dir and not any(out) and args.task_name:
        out["task_name"] = {"hub": f"nyu-mll/glue/{args.task_name.lower()}"}
    for flag in MODEL_KEYS:
        value = getattr(args, flag, None)
        if value:
            local = Path(value).exists()
            out[flag] = fingerprint(value, hash_all=True) if local else {"hub": value}
    return out
