"""Your own images and models in the image CLI: image folders (train only / +val / +test),
Hugging Face datasets, torchvision/timm models by name, normalisation statistics, the loaders,
and the one-line errors."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from annealing_kd.computer_vision_tasks import data, model_zoo, own_data
from annealing_kd.computer_vision_tasks.annealing_kd_train import main
from annealing_kd.computer_vision_tasks.cli import parse_args

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "emu": (40, 40, 200)}
FAST = ["--batch-size", "6", "--num-workers", "0", "--device", "cpu", "--teacher_epochs", "1",
        "--student_epochs_p1", "2", "--student_epochs_p2", "1", "--max_temperature", "2",
        "--student-epochs", "1"]


def write_folder(root: Path, counts: dict[str, int], size: int = 16, seed: int = 0,
                 mode: str = "RGB") -> Path:
    """``root/<split>/<class>/<i>.png``: a class colour plus noise (learnable), PIL-written."""
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = np.clip(np.array(colour) + rng.integers(-40, 40, (size, size, 3)), 0, 255)
                img = Image.fromarray(a.astype(np.uint8))
                (img.convert("L") if mode == "L" else img).save(folder / f"{i}.png")
    return root


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def run(tmp_path: Path, folder: Path, *extra: str, out: str = "run") -> int:
    return main(["--dataset", "imagefolder", "--dataset-dir", str(folder), "--output-dir",
                 str(tmp_path / out), *FAST, *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


# ---- splits ---------------------------------------------------------------------------------------
def test_train_only_holds_out_val_size_and_reports_no_test(tmp_path, capsys):
    folder = write_folder(tmp_path / "d", {"train": 5})
    assert run(tmp_path, folder, "--method", "scratch", "--student", "resnet8",
               "--val-size", "3") == 0
    r = results(tmp_path / "run")
    c = r["config"]
    assert (c["train_images"], c["val_images"], c["test_images"]) == (12, 3, 0)
    d = c["derived"]  # derived from the data, apart from the flags
    assert d["classes"] == ["cat", "dog", "emu"] and c["num_classes"] == 3
    assert d["splits"] == {"val": "held out of train", "test": None}
    assert (d["image_size"], d["channels"], d["augment"]) == (16, 3, "crop-flip")
    assert (c["image_size"], c["augment"]) == (None, "auto")  # the flags as given
    final = r["final"]
    assert final["selected_on"] == "val"
    assert set(final["metrics"]) == {"val_accuracy", "last_epoch_val_accuracy"}
    out = capsys.readouterr().out
    assert "no test split" in out and "3 held-out training images" in out


def test_train_and_val_folders_select_on_val(tmp_path, capsys):
    folder = write_folder(tmp_path / "d", {"train": 4, "val": 2})
    assert run(tmp_path, folder, "--method", "scratch", "--student", "plane2") == 0
    c = results(tmp_path / "run")["config"]
    assert (c["train_images"], c["val_images"], c["test_images"]) == (12, 6, 0)
    assert "6 val images" in capsys.readouterr().out
    assert run(tmp_path, folder, "--method", "scratch", "--val-size", "2", out="run2") == 2
    assert "own val split; drop --val-size" in one_line_error(capsys)


def test_train_and_test_folders(tmp_path):
    folder = write_folder(tmp_path / "d", {"train": 4, "test": 2})
    assert run(tmp_path, folder, "--method", "scratch", "--val-size", "0") == 0
    r = results(tmp_path / "run")
    assert (r["config"]["val_images"], r["config"]["test_images"]) == (0, 6)
    assert r["final"]["selected_on"] == "test" and "test_accuracy" in r["final"]["metrics"]
    assert run(tmp_path, folder, "--method", "scratch", "--val-size", "3", out="run2") == 0
    r = results(tmp_path / "run2")
    assert r["final"]["selected_on"] == "val" and r["config"]["train_images"] == 9
    assert 0 <= r["final"]["metrics"]["test_accuracy"] <= 1


# ---- normalisation, sizes, loaders ----------------------------------------------------------------
def test_normalisation_stats_are_the_training_images_and_in_results_json(tmp_path):
    """Solid images, so the statistics can be worked out by hand: red 255 in 2 of 4 training
    images -> mean 0.5, std 0.5; green 255 in 1 of 4 -> 0.25, sqrt(0.25 * 0.75); blue 51 in
    all -> 0.2 and std 0 (a constant channel: std 1). The val image (white) must not count."""
    for split, name, colour in [("train", "a", (255, 0, 51)), ("train", "a", (255, 255, 51)),
                                ("train", "b", (0, 0, 51)), ("train", "b", (0, 0, 51)),
                                ("val", "a", (255, 255, 255))]:
        folder = tmp_path / "d" / split / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), colour).save(folder / f"{len(list(folder.iterdir()))}.png")
    assert main(["--dataset", "imagefolder", "--dataset-dir", str(tmp_path / "d"), "--method",
                 "scratch", "--student", "resnet8", "--output-dir", str(tmp_path / "run"),
                 *FAST, "--batch-size", "2"]) == 0
    norm = results(tmp_path / "run")["config"]["derived"]["normalization"]
    assert norm["mean"] == pytest.approx([0.5, 0.25, 0.2])
    assert norm["std"] == pytest.approx([0.5, math.sqrt(0.25 * 0.75), 1.0])
    assert norm["images"] == 4
    # and the loaders apply them: a val pixel is (1 - mean) / std
    args = parse_args(["--dataset", "imagefolder", "--dataset-dir", str(tmp_path / "d")])
    x, y = own_data.load(args).splits.val[0]
    assert y == 0 and x.shape == (3, 8, 8)
    assert x[:, 0, 0].tolist() == pytest.approx([1.0, 0.75 / math.sqrt(0.1875), 0.8], rel=1e-6)


def test_grey_images_of_different_sizes_need_image_size(tmp_path, capsys):
    folder = write_folder(tmp_path / "d", {"train": 3}, size=12, mode="L")
    Image.new("L", (20, 14), 128).save(folder / "train" / "cat" / "odd.png")
    assert run(tmp_path, folder, "--method", "scratch", "--val-size", "2") == 2
    assert "not all square and of one size" in one_line_error(capsys)
    assert run(tmp_path, folder, "--method", "scratch", "--val-size", "2", "--image-size",
               "10") == 0
    c = results(tmp_path / "run")["config"]["derived"]
    assert (c["image_size"], c["channels"]) == (10, 1) and len(c["normalization"]["mean"]) == 1
    best = load_file(tmp_path / "run" / "student" / "best.safetensors")
    assert best["conv1.weight"].shape == (16, 1, 3, 3)


def _own(folder: Path, *extra: str) -> own_data.OwnData:
    return own_data.load(parse_args(["--dataset", "imagefolder", "--dataset-dir", str(folder),
                                     *extra]))


def test_memory_and_disk_paths_and_the_tensor_loader_give_the_same_images(tmp_path):
    folder = write_folder(tmp_path / "d", {"train": 4, "val": 2}, size=20)
    mem, disk = _own(folder, "--image-size", "16"), _own(folder, "--image-size", "16",
                                                         "--memory-limit-gb", "0")
    assert mem.in_memory and not disk.in_memory
    assert mem.spec == disk.spec
    for i in range(len(mem.splits.val)):
        a, b = mem.splits.val[i], disk.splits.val[i]
        assert a[1] == b[1] and torch.equal(a[0], b[0])
    # the in-memory tensor loader serves the same normalised val batch
    loader = data.tensor_loader(mem.splits.val, mem.spec, 6, False, 0, "cpu", False)
    x, y, idx = next(iter(loader))
    ref = torch.stack([mem.splits.val[i][0] for i in range(6)])
    assert torch.allclose(x, ref, atol=1e-6) and y.tolist() == [0, 0, 1, 1, 2, 2]
    assert idx.tolist() == list(range(6))
    # its augmented training batches have the data's shape
    xt, *_ = next(iter(data.tensor_loader(mem.splits.train, mem.spec, 4, True, 0, "cpu", False)))
    assert xt.shape == (4, 3, 16, 16)


def test_random_resized_crop_decodes_from_disk(tmp_path):
    folder = write_folder(tmp_path / "d", {"train": 4, "val": 1}, size=20)
    assert run(tmp_path, folder, "--method", "scratch", "--augment", "random-resized-crop",
               "--image-size", "16") == 0
    c = results(tmp_path / "run")["config"]["derived"]
    assert c["augment"] == "random-resized-crop" and c["images_in_memory"] is False
    own = _own(folder, "--image-size", "72")  # auto: above 64 px
    assert own.info["augment"] == "random-resized-crop" and own.splits.train[0][0].shape == (3, 72, 72)


# ---- models by name -------------------------------------------------------------------------------
def test_torchvision_teacher_into_cifar_student_by_annealing(tmp_path):
    folder = write_folder(tmp_path / "d", {"train": 4, "test": 1})
    assert run(tmp_path, folder, "--teacher", "torchvision:resnet18", "--student", "resnet8",
               "--val-size", "2") == 0
    r = results(tmp_path / "run")
    assert [e["phase"] for e in r["epochs"]] == ["teacher", "phase1", "phase1", "phase2"]
    assert r["teacher"]["model"] == "torchvision:resnet18"
    assert r["teacher"]["parameters"] == model_zoo.models.num_parameters(
        model_zoo.create_model("torchvision:resnet18", 3, 3, 16))
    teacher = load_file(tmp_path / "run" / "teacher" / "best.safetensors")
    assert teacher["fc.weight"].shape == (3, 512)  # head sized to the dataset
    # the trained teacher loads back as --teacher-checkpoint
    assert run(tmp_path, folder, "--method", "kd", "--teacher", "torchvision:resnet18",
               "--teacher-checkpoint", str(tmp_path / "run" / "teacher" / "best.safetensors"),
               "--val-size", "2", out="run2") == 0
    assert results(tmp_path / "run2")["teacher"]["test_accuracy"] == r["teacher"]["test_accuracy"]


def test_torchvision_student_grey_input(tmp_path):
    folder = write_folder(tmp_path / "d", {"train": 4, "val": 1}, mode="L")
    assert run(tmp_path, folder, "--method", "kd", "--teacher", "plane2", "--student",
               "torchvision:mobilenet_v3_small") == 0
    best = load_file(tmp_path / "run" / "student" / "best.safetensors")
    model = model_zoo.create_model("torchvision:mobilenet_v3_small", 3, 1, 16)
    model.load_state_dict(best)
    assert best["features.0.0.weight"].shape[1] == 1 and best["classifier.3.weight"].shape[0] == 3


def test_pretrained_torchvision_weights_from_the_cache_head_resized(tmp_path, monkeypatch):
    from torchvision.models import get_model, get_model_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    url = get_model_weights("mobilenet_v3_small").DEFAULT.url
    torch.manual_seed(3)
    imagenet = get_model("mobilenet_v3_small", weights=None)  # 1000 classes, our stand-in
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cache / url.rsplit("/", 1)[-1])
    model = model_zoo.create_model("torchvision:mobilenet_v3_small", 5, 3, 32, pretrained=True)
    ours, theirs = model.state_dict(), imagenet.state_dict()
    assert ours["classifier.3.weight"].shape == (5, 1024)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours if not k.startswith("classifier.3"))


def test_pretrained_offline_says_so(tmp_path, monkeypatch, capsys):
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("offline")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    folder = write_folder(tmp_path / "d", {"train": 2, "val": 1})
    assert run(tmp_path, folder, "--method", "scratch", "--student", "torchvision:resnet18",
               "--pretrained") == 2
    err = one_line_error(capsys)
    assert "not in the torch hub cache" in err and "need the network once" in err
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-") in err


def test_timm_missing_is_one_line(tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "timm" else find_spec(name, *a))
    folder = write_folder(tmp_path / "d", {"train": 2, "val": 1})
    assert run(tmp_path, folder, "--method", "kd", "--teacher", "timm:resnet18") == 2
    assert "pip install 'annealing-kd[timm]'" in one_line_error(capsys)


@pytest.mark.skipif(importlib.util.find_spec("timm") is None, reason="timm not installed")
def test_timm_teacher_end_to_end(tmp_path):
    folder = write_folder(tmp_path / "d", {"train": 4, "val": 1}, mode="L")
    assert run(tmp_path, folder, "--method", "kd", "--teacher", "timm:resnet10t") == 0
    teacher = load_file(tmp_path / "run" / "teacher" / "best.safetensors")
    assert teacher["fc.weight"].shape[0] == 3 and teacher["conv1.0.weight"].shape[1] == 1
    assert run(tmp_path, folder, "--method", "kd", "--teacher", "timm:nosuchnet", out="r2") == 2


# ---- Hugging Face datasets ------------------------------------------------------------------------
def test_hf_dataset_from_disk_end_to_end(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    names = list(COLOURS)

    def split(n):
        labels = [i % 3 for i in range(n)]
        imgs = [Image.fromarray(np.clip(np.array(COLOURS[names[y]]) + rng.integers(
            -40, 40, (16, 16, 3)), 0, 255).astype(np.uint8)) for y in labels]
        return datasets.Dataset.from_dict(
            {"picture": imgs, "kind": [names[y] for y in labels]},
            features=datasets.Features({"picture": datasets.Image(),
                                        "kind": datasets.Value("string")}))

    datasets.DatasetDict({"train": split(12), "validation": split(6)}).save_to_disk(tmp_path / "hf")
    out = tmp_path / "run"
    argv = ["--dataset", f"hf:{tmp_path / 'hf'}", "--output-dir", str(out), "--method", "kd",
            "--teacher", "resnet8", "--student", "plane2", *FAST]
    assert main([*argv, "--image-column", "nope"]) == 2
    assert main([*argv, "--image-column", "picture"]) == 2  # label column unknown
    assert main([*argv, "--image-column", "picture", "--label-column", "kind"]) == 0
    c = results(out)["config"]
    assert c["derived"]["classes"] == ["cat", "dog", "emu"]
    assert (c["train_images"], c["val_images"]) == (12, 6)


def test_hf_columns_found_by_name_and_type_hidden_test_labels_skipped(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"img": datasets.Image(),
                                  "fine": datasets.ClassLabel(names=["b", "a"])})

    def split(labels):
        return datasets.Dataset.from_dict(
            {"img": [Image.new("RGB", (8, 8), (10 * y, 0, 0)) for y in labels], "fine": labels},
            features=features)

    datasets.DatasetDict({"train": split([0, 1] * 5), "test": split([-1, -1])}).save_to_disk(
        tmp_path / "hf")
    own = own_data.load(parse_args(["--dataset", f"hf:{tmp_path / 'hf'}", "--val-size", "2"]))
    assert own.info["classes"] == ["b", "a"]  # the ClassLabel's order, not sorted
    assert own.splits.test is None and len(own.splits.val) == 2  # -1 labels: test not used
    base = own.splits.train.dataset  # the decoded images, each with its own label
    assert base.targets.tolist() == [0, 1] * 5 and base.data[:, 0, 0, 0].tolist() == [0, 10] * 5


def test_hf_offline_unknown_dataset_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    assert main(["--dataset", "hf:someone/no-such-images", "--output-dir", str(tmp_path / "r"),
                 *FAST]) == 2
    err = one_line_error(capsys)
    assert "cannot load Hugging Face dataset 'someone/no-such-images'" in err


def test_datasets_is_imported_lazily(tmp_path):
    folder = write_folder(tmp_path / "d", {"train": 2, "val": 1})
    code = ("import sys; from annealing_kd.computer_vision_tasks import own_data, cli\n"
            f"own_data.load(cli.parse_args(['--dataset', 'imagefolder', '--dataset-dir', "
            f"{str(folder)!r}]))\n"
            "assert 'datasets' not in sys.modules, 'datasets imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---- errors ---------------------------------------------------------------------------------------
def _broken(folder: Path) -> str:
    bad = folder / "train" / "dog" / "broken.png"
    bad.write_bytes(b"not a png at all")
    return str(bad)


def _empty(folder: Path) -> str:
    (folder / "train" / "fox").mkdir()
    (folder / "train" / "fox" / "notes.txt").write_text("no images here")
    return "class folder " + str(folder / "train" / "fox") + " holds no images"


def _extra_val_class(folder: Path) -> str:
    (folder / "val" / "yak").mkdir()
    Image.new("RGB", (16, 16)).save(folder / "val" / "yak" / "0.png")
    return "class 'yak' of " + str(folder / "val") + " is not a class of"


def _checkpoint_with_10_classes(folder: Path) -> str:
    torch.save({"model_state_dict": model_zoo.create_model("torchvision:resnet18", 10,
                                                           3, 16).state_dict()},
               folder / "t.pt")
    return "has 10 classes (fc.weight) but the dataset has 3"


@pytest.mark.parametrize("make,args", [
    (_broken, []),
    (_empty, []),
    (_extra_val_class, []),
    (_checkpoint_with_10_classes, ["--method", "kd", "--teacher", "torchvision:resnet18",
                                   "--teacher-checkpoint", "{folder}/t.pt"]),
    (lambda f: "unknown --teacher 'torchvision:resnet9000'",
     ["--method", "kd", "--teacher", "torchvision:resnet9000"]),
    (lambda f: "unknown --student 'resnet9'", ["--student", "resnet9"]),
    (lambda f: "torchvision:squeezenet1_1 does not run on 16x16 images",
     ["--method", "scratch", "--student", "torchvision:squeezenet1_1"]),
    (lambda f: "--pretrained: no pretrained weights for resnet8 (only torchvision:/timm:",
     ["--method", "scratch", "--pretrained"]),
    (lambda f: f"{f / 'nothing' / 'train'} does not exist", ["--dataset-dir", "{folder}/nothing"]),
    (lambda f: "--image-size only applies to --dataset imagefolder or hf:<name>, not fake",
     ["--dataset", "fake", "--image-size", "32"]),
])
def test_bad_own_data_is_one_line_exit_2(tmp_path, capsys, make, args):
    folder = write_folder(tmp_path / "d", {"train": 2, "val": 1})
    match = make(folder)
    argv = [a.replace("{folder}", str(folder)) for a in args]
    assert run(tmp_path, folder, *argv) == 2
    err = one_line_error(capsys)
    assert (match in err) if make is not _broken else re.search(
        rf"cannot (decode|read) image {re.escape(match)}", err), err
    assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize("extra", [[], ["--memory-limit-gb", "0", "--num-workers", "1"]])
def test_truncated_image_is_named_in_memory_and_from_a_worker(tmp_path, capsys, extra):
    """The header reads fine, the pixels do not: found when decoding at start (in memory) or in
    a DataLoader worker (from disk), named on one line either way."""
    folder = write_folder(tmp_path / "d", {"train": 3, "val": 1})
    bad = folder / "val" / "emu" / "0.png"  # not in the statistics: decoded first by the loader
    bad.write_bytes(bad.read_bytes()[:60])
    assert run(tmp_path, folder, "--method", "scratch", "--batch-size", "4",
               *extra) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # from disk: after the training bar
    err = lines[-1].rsplit("\r", 1)[-1]
    assert err.startswith("error: ") and sum("error" in line for line in lines) == 1
    assert f"cannot decode image {bad} (OSError" in err and "Traceback" not in err, err
    # in memory the image is decoded at start; from disk the folder scan (tests/test_ownership.py:
    # repeated images are looked for by content) reads it before training too
    assert not any("student 1/1" in line for line in lines)


# ---- make example-own-data ------------------------------------------------------------------------
def test_example_own_images_writes_the_folder_and_distills(tmp_path, capsys):
    from test_cifar_data import write_idx_gz

    from demo import example_own_images as ex

    arrays = write_idx_gz(tmp_path / "fm", n_train=200, n_test=60)
    images, labels = arrays["train"]
    assert ex.main(["--out", str(tmp_path / "ex"), "--fashion-mnist", str(tmp_path / "fm"),
                    "--per-class", "3", "--test-per-class", "1", "--teacher", "resnet8",
                    "--epochs", "2", "--teacher-epochs", "1", "--device", "cpu"]) == 0
    folder = tmp_path / "ex" / "images"
    first_bag = int((labels == 8).nonzero()[0][0])  # the PNGs are the idx images, lossless
    png = np.asarray(Image.open(folder / "train" / "bag" / "0000.png"))
    assert np.array_equal(png, images[first_bag])
    assert sorted(p.name for p in (folder / "train").iterdir()) == sorted(ex.CLASSES)
    assert len(list((folder / "train").rglob("*.png"))) == 30
    r = results(tmp_path / "ex" / "run")
    assert r["config"]["derived"]["classes"] == sorted(ex.CLASSES)
    assert r["config"]["test_images"] == 10
    assert r["config"]["derived"]["channels"] == 1 and r["final"]["selected_on"] == "val"
    assert "student selected" in capsys.readouterr().out
    # the Makefile target runs it
    assert "demo/example_own_images.py" in (ROOT / "Makefile").read_text().split(
        "example-own-data:")[1].split("\n\n")[0]
