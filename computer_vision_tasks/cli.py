"""Command line of the CIFAR pipeline: the original flags (both ``-`` and ``_`` spellings) and ours.

No heavy imports here: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse

from common.cli_args import Parser, check_number
from common.errors import UsageError
from common.methods import get_method, method_names, steps_of
from computer_vision_tasks import own_args

DATASET_NAMES = ["cifar10", "cifar100", "mnist", "fashion-mnist", "fake"]
EPOCH_FLAGS = {"teacher": "--teacher_epochs", "assistant": "--assistant-epochs",
               "student": "--student-epochs", "phase1": "--student_epochs_p1",
               "phase2": "--student_epochs_p2"}


def _add(parser: argparse._ActionsContainer, *names: str, **kwargs) -> None:
    """Add a flag under each given name and its ``-``/``_`` twin."""
    spelled: list[str] = []
    for name in names:
        body = name[2:]
        for variant in (name, "--" + body.replace("_", "-"), "--" + body.replace("-", "_")):
            if variant not in spelled:
                spelled.append(variant)
    parser.add_argument(*spelled, **kwargs)


def build_parser() -> Parser:
    p = Parser(
        prog="annealing_kd_train.py",
        description="Annealing-KD on CIFAR-10/100 (and MNIST, Fashion-MNIST): trains or loads the "
        "teacher, then trains the student by --method. Every flag also accepts its '_' or '-' twin.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("original flags")
    _add(g, "--dataset", default="cifar100",
         help=f"one of {', '.join(DATASET_NAMES)}; or your own: imagefolder (with --dataset-dir) "
         "or hf:<name> (a Hugging Face image classification dataset)")
    _add(g, "--dataset-dir", default="./data",
         help="where the datasets are (or are downloaded to); imagefolder: DIR with "
         "train/<class>/<images> and optionally val/ and test/")
    _add(g, "--teacher", default="resnet110",
         help="resnet8/14/20/26/32/44/56/110, plane2/4/6/8/10, torchvision:<name> (e.g. "
         "torchvision:resnet18) or timm:<name> (needs pip install 'annealing-kd[timm]')")
    _add(g, "--student", "--model", default="resnet8", help="student architecture")
    _add(g, "--teacher_epochs", type=int, default=200, help="epochs to train the teacher")
    _add(g, "--student_epochs_p1", type=int, default=200, help="annealing phase-1 epochs")
    _add(g, "--student_epochs_p2", type=int, default=100, help="annealing phase-2 epochs")
    _add(g, "--max_temperature", type=int, default=10, help="tau_max of the annealing schedule")
    _add(g, "--batch-size", type=int, default=128, help="training batch size (per process)")
    _add(g, "--learning-rate", type=float, default=0.1,
         help="SGD lr of ResNets (and torchvision:/timm: models): lr, lr/10 at 1/2, lr/100 at "
         "3/4 of each phase; plain CNNs: constant lr/10 (0.01 by default, as the original)")
    _add(g, "--momentum", type=float, default=0.9, help="SGD momentum")
    _add(g, "--weight-decay", type=float, default=1e-4, help="SGD weight decay")
    _add(g, "--teacher-checkpoint", default="",
         help="trained teacher: our .safetensors or the original's {'model_state_dict': ...} file")
    _add(g, "--cuda", dest="device", action="store_const", const="cuda",
         default=argparse.SUPPRESS,
         help="same as --device cuda")

    o = p.add_argument_group("ours")
    _add(o, "--method", default="annealing", help=f"one of {', '.join(method_names())}")
    _add(o, "--assistant", default=None, help="TAKD's teacher assistant (e.g. resnet20)")
    _add(o, "--student-epochs", type=int, default=None,
         help="epochs of the student for scratch/kd/takd (default: p1 + p2, Annealing-KD's budget)")
    _add(o, "--assistant-epochs", type=int, default=None,
         help="epochs of the TAKD assistant (default: --student-epochs)")
    _add(o, "--kd-alpha", type=float, default=0.5, help="weight of the soft term in Hinton KD")
    _add(o, "--kd-temperature", type=float, default=5.0, help="temperature of Hinton KD")
    _add(o, "--kd-reduction", default="batchmean", choices=["batchmean", "elementwise-mean"],
         help="KD soft term: batchmean = KL summed over classes, mean over the batch; "
         "elementwise-mean = mean over batch x classes (nn.KLDivLoss() default, the TAKD code "
         "behind the paper's KD/TAKD rows: C times smaller)")
    _add(o, "--anneal-per-step", action="store_true",
         help="step the annealing temperature per optimizer step instead of per epoch")
    _add(o, "--val-size", type=int, default=None,
         help="training images held out for checkpoint selection (default: 5000, at most a tenth "
         "of the images used); 0 selects on the test set as the paper did")
    _add(o, "--train-subset", type=int, default=None, help="train on only N images (quick runs)")
    _add(o, "--seed", type=int, default=20, help="seed of initialisation, data order and split")
    _add(o, "--output-dir", default=None,
         help="everything the run writes (default: runs/<dataset>-<method>-<teacher>-<student>)")
    _add(o, "--overwrite-output-dir", action="store_true", help="replace a run in --output-dir")
    _add(o, "--resume", action="store_true",
         help="continue the unfinished run in --output-dir with the same settings "
         "(refused if there is none)")
    _add(o, "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to train")
    _add(o, "--amp", default="none", choices=["none", "bf16", "fp16"], help="mixed precision")
    _add(o, "--channels-last", action="store_true", help="channels-last memory format")
    _add(o, "--num-workers", type=int, default=4, help="data-loading worker processes")
    _add(o, "--no-tensor-loader", "--no-gpu-loader", action="store_true",
         help="use torchvision's DataLoader (PIL transforms, --num-workers processes) instead of "
         "the in-memory tensor loader (the default for data held in memory, on CPU and GPU: the "
         "split lives on the device and is augmented there; its batches depend on (seed, epoch) "
         "only). Images decoded from disk and DDP always use the DataLoader")
    _add(o, "--deterministic", action="store_true", help="ask torch for deterministic kernels")
    own_args.add_arguments(p, _add)
    return p


def epochs(args: argparse.Namespace, budget: str) -> tuple[str, int]:
    """The flag and the number of epochs of a step's budget (a new method's: --student-epochs)."""
    flag = EPOCH_FLAGS.get(budget, "--student-epochs")
    return flag, getattr(args, flag[2:].replace("-", "_"))


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    check_args(args)
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad settings before anything is loaded or trained."""
    own_args.check_args(args)
    if args.dataset not in DATASET_NAMES and not own_args.is_own(args.dataset):
        raise UsageError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
    method = get_method(args.method)
    if method.uses("assistant") and not args.assistant:
        raise UsageError(f"--method {args.method} needs a teacher assistant; pass e.g. "
                         "--assistant resnet20")
    if args.student_epochs is None:
        args.student_epochs = args.student_epochs_p1 + args.student_epochs_p2
    if args.assistant_epochs is None:
        args.assistant_epochs = args.student_epochs
    for step in steps_of(method, trains_teacher=not args.teacher_checkpoint):
        flag, n = epochs(args, step.budget)
        if n < 1:
            raise UsageError(f"{flag} must be at least 1, got {n}")
        if step.objective != "anneal":
            continue
        if args.max_temperature < 1:
            raise UsageError(f"--max_temperature must be at least 1, got {args.max_temperature}")
        if not args.anneal_per_step and args.max_temperature > n:
            raise UsageError(
                f"--max_temperature {args.max_temperature} exceeds {flag} {n}: each temperature "
                "needs at least one epoch; lower --max_temperature, raise it, or pass "
                "--anneal-per-step")
    for flag, value in (("--batch-size", args.batch_size), ("--learning-rate", args.learning_rate),
                        ("--kd-temperature", args.kd_temperature)):
        check_number(flag, value, low=0, strict=True)
    for flag, value in (("--momentum", args.momentum), ("--weight-decay", args.weight_decay),
                        ("--num-workers", args.num_workers)):
        check_number(flag, value, low=0)
    check_number("--kd-alpha", args.kd_alpha, low=0, high=1)
    if args.val_size is not None:
        check_number("--val-size", args.val_size, low=0)
    if args.train_subset is not None:
        check_number("--train-subset", args.train_subset, low=1)
    if args.resume and args.overwrite_output_dir:
        raise UsageError("--resume and --overwrite-output-dir contradict each other; pass one")
    if args.output_dir is None:
        args.output_dir = "runs/" + "-".join(
            str(v).replace(":", "_").replace("/", "_")
            for v in (args.dataset, args.method, args.teacher, args.student))
