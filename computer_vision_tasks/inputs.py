"""What an image run reads: the paths kept apart from its output folder, and their fingerprints
that ``--resume`` compares (:mod:`annealing_kd.common.run_folder.fingerprint`). No heavy imports."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from annealing_kd.common.run_folder.fingerprint import fingerprint

# the folder under --dataset-dir that each torchvision dataset reads
DATA_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
                "mnist": "MNIST/raw", "fashion-mnist": "FashionMNIST/raw"}


def _hf_folder(args: argparse.Namespace) -> str | None:
    """``hf:<folder>``: a local ``save_to_disk`` folder (None for a Hub name)."""
    name = args.dataset[3:] if args.dataset.startswith("hf:") else ""
    return name if name and Path(name).exists() else None


def input_paths(args: argparse.Namespace) -> dict[str, str]:
    """Setting -> path of every input on disk (kept apart from the output folder)."""
    paths = {}
    if args.dataset in DATA_FOLDERS or args.dataset == "imagefolder":
        paths["dataset_dir"] = args.dataset_dir
    if _hf_folder(args):
        paths["dataset"] = _hf_folder(args)
    if args.teacher_checkpoint:
        paths["teacher_checkpoint"] = args.teacher_checkpoint
    if getattr(args, "logits_cache_dir", None):
        paths["logits_cache_dir"] = args.logits_cache_dir  # written by the run: not inside it
    return paths


def fingerprints(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The fingerprint of each input: the dataset's files (the folder the loader reads), the
    teacher checkpoint (always hashed)."""
    out: dict[str, dict[str, Any]] = {}
    if args.dataset in DATA_FOLDERS:
        out["dataset_dir"] = fingerprint(Path(args.dataset_dir) / DATA_FOLDERS[args.dataset])
    elif args.dataset == "imagefolder":
        out["dataset_dir"] = fingerprint(args.dataset_dir)
    elif args.dataset.startswith("hf:"):
        local = _hf_folder(args)
        out["dataset"] = fingerprint(local) if local else {"hub": args.dataset[3:]}
    if args.teacher_checkpoint:
        out["teacher_checkpoint"] = fingerprint(args.teacher_checkpoint, hash_all=True)
    return out
