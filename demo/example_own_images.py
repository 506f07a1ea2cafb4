"""Your own images, offline: write a small image folder of real images and distill on it.

    python demo/example_own_images.py [--out runs/example-own-images] [--per-class 50]

Writes ``<out>/images/{train,test}/<class>/<i>.png`` from Fashion-MNIST (the Debian
``dataset-fashion-mnist`` files; ``--fashion-mnist DIR`` for another folder of the four idx .gz
files), the layout ``--dataset imagefolder`` reads, then runs Annealing-KD from a torchvision
resnet18 teacher (trained in the run) into a CIFAR resnet8 student on it, selecting on images
held out of train and reporting the test folder. Results: ``<out>/run/results.json``.
At this size (450 training images, a few epochs, an ImageNet-shaped resnet18 on 28x28 images)
the accuracies show that the pipeline runs, not how the methods rank.
"""

from __future__ import annotations

import gzip
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python demo/example_own_images.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annealing_kd.common.cli.args import Parser, integer  # noqa: E402
from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.common.errors import UsageError  # noqa: E402

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
           "ankle-boot"]


def read_idx(folder: Path, split: str):
    """Images (N, 28, 28) uint8 and labels (N,) of the idx .gz files of ``split`` (train/t10k)."""
    import numpy as np

    try:
        with gzip.open(folder / f"{split}-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
    except OSError as exc:
        raise UsageError(f"cannot read Fashion-MNIST from {folder} ({exc}); install the Debian "
                         "package dataset-fashion-mnist or pass --fashion-mnist DIR") from None
    return images, labels


def write_image_folder(out: Path, source: Path, per_class: int, test_per_class: int) -> Path:
    """The first ``per_class`` training and ``test_per_class`` test images of each class as PNG
    files in ``out/{train,test}/<class>/``; returns ``out``."""
    from PIL import Image

    for split, idx_split, n in (("train", "train", per_class), ("test", "t10k", test_per_class)):
        images, labels = read_idx(source, idx_split)
        for c, name in enumerate(CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, j in enumerate((labels == c).nonzero()[0][:n]):
                Image.fromarray(images[j]).save(folder / f"{i:04d}.png")
    return out


def _main(argv: Sequence[str] | None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/example-own-images")
    p.add_argument("--fashion-mnist", default=str(FASHION_MNIST), help="the four idx .gz files")
    p.add_argument("--per-class", type=integer, default=50, help="training images per class")
    p.add_argument("--test-per-class", type=integer, default=20, help="test images per class")
    p.add_argument("--teacher", default="torchvision:resnet18")
    p.add_argument("--student", default="resnet8")
    p.add_argument("--teacher-epochs", type=integer, default=8)
    p.add_argument("--epochs", type=integer, default=8,
                   help="phase-1 epochs (tau_max: at most 4); phase 2: half of it")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    from annealing_kd.common.run_folder import OutputFolder

    # every file recorded in --out's manifest; none written over a file we did not write
    out = OutputFolder(a.out, "example_own_images")
    folder = out.folder("images", lambda d: write_image_folder(d, Path(a.fashion_mnist),
                                                               a.per_class, a.test_per_class))
    print(f"wrote {folder}/train and {folder}/test ({a.per_class} and {a.test_per_class} "
          f"images per class, {len(CLASSES)} classes)")
    from annealing_kd.computer_vision_tasks.annealing_kd_train import main

    val = max(len(CLASSES), a.per_class * len(CLASSES) // 10)
    return main(["--dataset", "imagefolder", "--dataset-dir", str(folder), "--val-size", str(val),
                 "--teacher", a.teacher, "--student", a.student, "--method", "annealing",
                 "--teacher_epochs", str(a.teacher_epochs), "--student_epochs_p1", str(a.epochs),
                 "--student_epochs_p2", str(max(1, a.epochs // 2)), "--max_temperature",
                 str(min(4, a.epochs)), "--batch-size", "32", "--learning-rate", "0.01",
                 "--num-workers", "0", "--device", a.device, "--output-dir", str(out.child("run")),
                 "--overwrite-output-dir"])


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
