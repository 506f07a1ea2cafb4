"""Command line of the image CLI: the original flags (both ``-`` and ``_`` spellings) and ours, as
settings (:mod:`annealing_kd.common.cli.settings`). No heavy imports: ``--help`` stays fast."""

from __future__ import annotations

import argparse
from functools import partial

from ..common.cli import settings
from ..common.cli.args import Parser, check_folder, check_number, integer, real
from ..common.cli.settings import Setting
from ..common.errors import UsageError, setting
from ..common.methods import get_method, steps_of
from ..common.methods.objectives import check_steps
from . import own_args

CLI = "image"  # the spelling of the settings: dashes, with '_' twins

GROUPS = settings.declare(CLI, {
    "data and models (original flags)": [
        Setting("dataset", "cifar10, cifar100, mnist, fashion-mnist (a name in "
                "computer_vision_tasks/data.py DATASETS; fake: synthetic images for tests); or "
                "your own: imagefolder (with --dataset-dir) or hf:<name> (a Hugging Face image "
                "classification dataset)", "cifar100"),
        Setting("dataset_dir", "where the datasets are (or are downloaded to); imagefolder: DIR "
                "with train/<class>/<images> and optionally val/ and test/", "./data",
                resume=False),
        Setting("teacher", "resnet8/14/20/26/32/44/56/110, plane2/4/6/8/10, torchvision:<name> "
                "(e.g. torchvision:resnet18) or timm:<name> (needs pip install "
                "'annealing-kd[timm]')", "resnet110"),
        Setting("student", "student architecture", "resnet8", flags=["--student", "--model"]),
        Setting("assistant", "TAKD's teacher assistant (e.g. resnet20)"),
        Setting("teacher_checkpoint", "trained teacher: our .safetensors or the original's "
                "{'model_state_dict': ...} file", ""),
        "method"],
    "optimisation and hardware": [
        Setting("batch_size", "training batch size (per process)", 128, integer),
        Setting("momentum", "SGD momentum", 0.9, real),
        "weight_decay",
        Setting("cuda", "same as --device cuda", switch=True, resume=False, extra={CLI: dict(
            dest="device", action="store_const", const="cuda", default=argparse.SUPPRESS)}),
        Setting("device", "where to train", "auto", choices=["auto", "cpu", "cuda"], resume=False),
        Setting("use_cpu", "same as --device cpu (the text CLI's spelling)", switch=True,
                resume=False, extra={CLI: dict(dest="device", action="store_const", const="cpu",
                                               default=argparse.SUPPRESS)}),
        Setting("amp", "mixed precision", "none", choices=["none", "bf16", "fp16"], resume=False),
        *(Setting(f"amp_{kind}", f"same as --amp {kind} (the text CLI's spelling)", switch=True,
                  resume=False, flags=[f"--{kind}"], extra={CLI: dict(
                      dest="amp", action="store_const", const=kind, default=argparse.SUPPRESS)})
          for kind in ("bf16", "fp16")),
        Setting("channels_last", "channels-last memory format", switch=True, resume=False),
        Setting("num_workers", "data-loading worker processes", 4, integer, resume=False),
        Setting("no_tensor_loader", "use torchvision's DataLoader (PIL transforms, --num-workers "
                "processes) instead of the in-memory tensor loader (default for data held in "
                "memory, CPU or GPU: the split lives on the device, augmented there, its batches "
                "depend on (seed, epoch) only). Images decoded from disk and DDP always use the "
                "DataLoader", switch=True, flags=["--no-tensor-loader", "--no-gpu-loader"]),
        "deterministic",
        "logging_steps",
        Setting("recalibrate_bn", "recompute batch-norm running statistics on the training "
                "batches (torch.optim.swa_utils.update_bn) before each evaluation, and a given "
                "teacher's before its logits are used: for models whose statistics lag (low BN "
                "momentum, e.g. torchvision's mobilenet_v3_small); one forward pass over the "
                "training data", switch=True),
        Setting("val_size", "training images held out for checkpoint selection (default: 5000, at "
                "most a tenth of the images used); 0 selects on the test set as the paper did",
                None, integer),
        Setting("train_subset", "train on only N images (quick runs)", None, integer),
        "output_dir",
        "logits_cache_dir",
        Setting("logits_cache_max_gb", "past this size of --logits-cache-dir the teacher runs "
                "live (cached files are still read)", 50.0, real, resume=False)]})
OWN_DATA = settings.declare(CLI, own_args.GROUP)


def build_parser() -> Parser:
    return settings.parser(
        CLI, GROUPS, OWN_DATA, prog="annealing_kd_train.py",
        description="Annealing-KD on CIFAR-10/100 (and MNIST, Fashion-MNIST, your own images): "
        "trains or loads the teacher, then trains the student by --method. Every flag also "
        "accepts its '_' or '-' twin.")


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad settings before anything is loaded or trained."""
    own_args.check_args(args)
    from .data import DATASETS  # torch: only after --help

    if args.dataset not in DATASETS and not own_args.is_own(args.dataset):
        raise UsageError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}, "
                         "imagefolder or hf:<name>")
    method = get_method(args.method)
    if method.uses("assistant") and not args.assistant:
        raise UsageError(f"--method {args.method} needs a teacher assistant; pass e.g. "
                         "--assistant resnet20")
    settings.check(args, CLI)
    check_steps(args, steps_of(method, trains_teacher=not args.teacher_checkpoint))
    check_number("batch_size", args.batch_size, low=0, high=2**31, strict=True)
    for name, low, high in (("momentum", 0, None), ("weight_decay", 0, None),
                            ("logits_cache_max_gb", 0, None), ("num_workers", 0, 1024),
                            ("logging_steps", 1, None), ("val_size", 0, None),
                            ("train_subset", 1, None)):
        check_number(name, getattr(args, name), low=low, high=high)
    check_folder(setting("logits_cache_dir"), args.logits_cache_dir)
    if args.output_dir is None:
        args.output_dir = "runs/" + "-".join(
            str(v).replace(":", "_").replace("/", "_")
            for v in (args.dataset, args.method, args.teacher, args.student))


flag_of = partial(settings.flag_of, CLI)  # how this CLI writes a setting in messages
