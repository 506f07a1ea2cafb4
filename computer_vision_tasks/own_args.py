"""Settings of ``--dataset imagefolder`` / ``hf:<name>`` and the models' ``--pretrained`` (no heavy
imports: ``--help`` stays fast). The data itself: ``computer_vision_tasks.own_data``."""

from __future__ import annotations

import argparse

from ..common.cli.args import integer, real
from ..common.cli.settings import Setting
from ..common.errors import UsageError

AUGMENTS = ["auto", "crop-flip", "random-resized-crop"]
MAX_IMAGE_SIZE = 8192
CROP_FLIP_MAX_SIZE = 64  # auto: crop-flip up to this size, random-resized-crop above


def is_own(dataset: str) -> bool:
    return dataset == "imagefolder" or dataset.startswith("hf:")


GROUP = {"your own data (--dataset imagefolder --dataset-dir DIR, or --dataset hf:<name>)": [
    Setting("image_size", "resize every image to this square size (default: the images' own size "
            "when all training images are square and of one size). torchvision:/timm: models get "
            "the images at this size as they are (a model that cannot run at it is refused at "
            "start)", None, integer),
    Setting("augment", "crop-flip: CIFAR recipe (random crop, padding 4, flip) on images resized "
            "to --image-size; random-resized-crop: ImageNet recipe (RandomResizedCrop + flip; "
            f"eval: resize to 8/7 and centre crop); auto: crop-flip up to {CROP_FLIP_MAX_SIZE} "
            "px, random-resized-crop above", "auto", choices=AUGMENTS),
    Setting("memory_limit_gb", "crop-flip images are decoded once and held in memory (and on the "
            "GPU with the GPU-resident loader) when they take less than this as uint8; otherwise, "
            "and always with random-resized-crop, DataLoader workers decode them from disk per "
            "batch", 4.0, real, resume=False),
    Setting("image_column", "hf: the image column (default: 'image', 'img' or the only Image "
            "feature)"),
    Setting("label_column", "hf: the label column (default: 'label', 'labels' or the only "
            "ClassLabel feature)"),
    Setting("pretrained", "the torchvision:/timm: models (teacher without --teacher-checkpoint, "
            "assistant, student) start from ImageNet weights, the classifier head new and sized "
            "to the dataset; CIFAR models from scratch. torchvision weights come from the torch "
            "hub cache and need the network once", switch=True)]}


def check_args(args: argparse.Namespace) -> None:
    if args.image_size is not None and not 8 <= args.image_size <= MAX_IMAGE_SIZE:
        raise UsageError(f"--image-size must be in [8, {MAX_IMAGE_SIZE}], got {args.image_size}")
    if args.memory_limit_gb < 0:
        raise UsageError(f"--memory-limit-gb must be >= 0, got {args.memory_limit_gb}")
    if not is_own(args.dataset):
        flags = [f for f, v in (("--image-size", args.image_size),
                                ("--image-column", args.image_column),
                                ("--label-column", args.label_column)) if v is not None]
        if flags or args.augment != "auto":
            raise UsageError(f"{', '.join(flags) or '--augment'} only applies to "
                             f"--dataset imagefolder or hf:<name>, not {args.dataset}")
