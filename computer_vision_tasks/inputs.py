"""What an image run reads (:mod:`annealing_kd.common.cli.inputs`). No heavy imports."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from annealing_kd.common.cli import inputs
from annealing_kd.common.run_folder import fingerprint

# the folder under --dataset-dir that each torchvision dataset reads
DATA_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
                "mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}


def _hf_folder(args: argparse.Namespace) -> str | None:
    """``hf:<folder>``: a local ``save_to_disk`` folder (None for a Hub name)."""
    name = args.dataset[3:] if args.dataset.startswith("hf:") else ""
    return name if name and Path(name).exists() else None


def _read(args: argparse.Namespace) -> dict[str, Any]:
    """Setting -> the dataset's files on disk (a torchvision dataset: its folder under
    --dataset-dir)."""
    if args.dataset in DATA_FOLDERS:
        return {"dataset_dir": Path(args.dataset_dir) / DATA_FOLDERS[args.dataset]}
    if args.dataset == "imagefolder":
        return {"dataset_dir": args.dataset_dir}
    return {"dataset": _hf_folder(args)} if _hf_folder(args) else {}


def input_paths(args: argparse.Namespace) -> dict[str, str]:
    """Setting -> path of every input on disk, and of the logits cache (written by the run)."""
    data = {k: args.dataset_dir if k == "dataset_dir" else v for k, v in _read(args).items()}
    return data | inputs.given(args, ("teacher_checkpoint", "logits_cache_dir"))


def fingerprints(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The dataset's files (or its hub name) and the teacher checkpoint (always hashed)."""
    hub = {"dataset": args.dataset[3:]} if args.dataset.startswith("hf:") and not _hf_folder(args) \
        else {}
    out = inputs.fingerprints(_read(args), hub, {})
    if args.teacher_checkpoint:
        out["teacher_checkpoint"] = fingerprint(args.teacher_checkpoint, hash_all=True)
    return out
