"""Command line of the CIFAR pipeline: the original flags (both ``-`` and ``_`` spellings) and ours.

No heavy imports here: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from annealing_kd.common.cli import settings
from annealing_kd.common.cli.args import Parser, check_folder, check_number, integer, real, twins
from annealing_kd.common.errors import UsageError, setting
from annealing_kd.common.methods import get_method, method_names, steps_of
from annealing_kd.common.methods.objectives import check_steps
from annealing_kd.computer_vision_tasks import own_args

CLI = "image"  # the spelling of the shared settings (annealing_kd.common.cli.settings): dashes, with '_' twins


def _add(parser: argparse._ActionsContainer, *names: str, **kwargs) -> None:
    """Add a flag under each given name and its ``-``/``_`` twin."""
    parser.add_argument(*twins(*names), **kwargs)


def build_parser() -> Parser:
    p = Parser(
        prog="annealing_kd_train.py",
        description="Annealing-KD on CIFAR-10/100 (and MNIST, Fashion-MNIST, your own images): "
        "trains or loads the teacher, then trains the student by --method. Every flag also "
        "accepts its '_' or '-' twin.",
    )
    g = p.add_argument_group("data and models (original flags)")
    _add(g, "--dataset", default="cifar100",
         help="cifar10, cifar100, mnist, fashion-mnist (a name in computer_vision_tasks/data.py "
         "DATASETS; fake: synthetic images for tests); or your own: imagefolder (with "
         "--dataset-dir) or hf:<name> (a Hugging Face image classification dataset)")
    _add(g, "--dataset-dir", default="./data",
         help="where the datasets are (or are downloaded to); imagefolder: DIR with "
         "train/<class>/<images> and optionally val/ and test/")
    _add(g, "--teacher", default="resnet110",
         help="resnet8/14/20/26/32/44/56/110, plane2/4/6/8/10, torchvision:<name> (e.g. "
         "torchvision:resnet18) or timm:<name> (needs pip install 'annealing-kd[timm]')")
    _add(g, "--student", "--model", default="resnet8", help="student architecture")
    _add(g, "--assistant", default=None, help="TAKD's teacher assistant (e.g. resnet20)")
    _add(g, "--teacher-checkpoint", default="",
         help="trained teacher: our .safetensors or the original's {'model_state_dict': ...} file")
    _add(g, "--method", default="annealing", help=f"one of {', '.join(method_names())}")
    o = p.add_argument_group("optimisation and hardware")
    _add(o, "--batch-size", type=integer, default=128, help="training batch size (per process)")
    _add(o, "--momentum", type=real, default=0.9, help="SGD momentum")
    _add(o, "--weight-decay", type=real, default=1e-4, help="SGD weight decay")
    _add(o, "--cuda", dest="device", action="store_const", const="cuda",
         default=argparse.SUPPRESS, help="same as --device cuda")
    _add(o, "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train")
    _add(o, "--amp", default="none", choices=["none", "bf16", "fp16"], help="mixed precision")
    _add(o, "--channels-last", action="store_true", help="channels-last memory format")
    _add(o, "--num-workers", type=integer, default=4, help="data-loading worker processes")
    _add(o, "--no-tensor-loader", "--no-gpu-loader", action="store_true",
         help="use torchvision's DataLoader (PIL transforms, --num-workers processes) instead of "
         "the in-memory tensor loader (the default for data held in memory, on CPU and GPU: the "
         "split lives on the device and is augmented there; its batches depend on (seed, epoch) "
         "only). Images decoded from disk and DDP always use the DataLoader")
    _add(o, "--deterministic", action="store_true", help="ask torch for deterministic kernels")
    _add(o, "--logging-steps", type=integer, default=10,
         help="log the loss, lr, temperature and Phi every N optimizer steps (progress bar, "
         "--report-to)")
    _add(o, "--recalibrate-bn", action="store_true",
         help="recompute batch-norm running statistics on the training batches "
         "(torch.optim.swa_utils.update_bn) before each evaluation, and those of a given teacher "
         "before its logits are used: for models whose statistics lag (low BN momentum, e.g. "
         "torchvision's mobilenet_v3_small); costs one forward pass over the training data")
    _add(o, "--val-size", type=integer, default=None,
         help="training images held out for checkpoint selection (default: 5000, at most a tenth "
         "of the images used); 0 selects on the test set as the paper did")
    _add(o, "--train-subset", type=integer, default=None, help="train on only N images (quick runs)")
    _add(o, "--output-dir", default=None,
         help="everything the run writes (default: runs/<dataset>-<method>-<teacher>-<student>)")
    _add(o, "--logits-cache-dir", default=None,
         help="cache the frozen teacher's logits here, one file per epoch (and per evaluation "
         "split), shared by every run with the same teacher, data, augmentation, seed and "
         "precision: later runs read them instead of running the teacher (one process only)")
    _add(o, "--logits-cache-max-gb", type=real, default=50.0,
         help="past this size of --logits-cache-dir the teacher runs live (cached files are "
         "still read)")
    settings.add_arguments(p, CLI)
    own_args.add_arguments(p, _add)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad settings before anything is loaded or trained."""
    own_args.check_args(args)
    from annealing_kd.computer_vision_tasks.data import DATASETS  # torch: only after --help

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
    for name in ("momentum", "weight_decay", "logits_cache_max_gb"):
        check_number(name, getattr(args, name), low=0)
    check_number("num_workers", args.num_workers, low=0, high=1024)
    check_number("logging_steps", args.logging_steps, low=1)
    check_folder(setting("logits_cache_dir"), args.logits_cache_dir)
    if args.val_size is not None:
        check_number("val_size", args.val_size, low=0)
    if args.train_subset is not None:
        check_number("train_subset", args.train_subset, low=1)
    if args.output_dir is None:
        args.output_dir = "runs/" + "-".join(
            str(v).replace(":", "_").replace("/", "_")
            for v in (args.dataset, args.method, args.teacher, args.student))


def flag_of(name: str) -> str:
    """How this CLI writes a setting in messages (``annealing_kd.common.errors.UsageError.spelled``)."""
    return settings.flag_speller(build_parser())(name)
