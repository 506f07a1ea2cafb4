"""The Fashion-MNIST table on one GPU within a time budget, at the paper's schedule length.

Rows: teacher (resnet20 by default), student alone, KD, TAKD (assistant resnet14, itself KD from
the teacher) and Annealing-KD, student resnet8, one seed, each through the CIFAR CLI. Schedule:
the paper's CIFAR one (teacher 200 epochs; phase 1 200 and phase 2 200 epochs, tau_max 10; the
baselines and the assistant 400 = phase 1 + phase 2). The number of training images is chosen so
that the whole table fits ``--budget-s``: the training steps of every model are timed first (bf16,
channels_last, batch 128) and the subset sized from them (``--images`` overrides). The data must
be on disk (``--dataset-dir``: the four ``*-idx?-ubyte.gz`` files, e.g. copied from
/usr/share/datasets/fashion-mnist). Writes ``<out>/fmnist-gpu-table.md`` and ``.json``.

    python benchmarks/fmnist_gpu_table.py --dataset-dir data/fashion-mnist --budget-s 400
    python benchmarks/fmnist_gpu_table.py --device cpu --tiny    # smoke test (minutes on a CPU)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from annealing_kd.common.run_folder import read_results  # noqa: E402

CLI = ROOT / "computer_vision_tasks" / "annealing_kd_train.py"
FMNIST_TRAIN = 60_000
STARTUP_S = 15.0  # per CLI call: imports, data, moving it to the GPU, the test-set evaluations
EPOCH_OVERHEAD_S = 0.05  # per epoch: evaluation launch, checkpoints, results.json
SAFETY = 1.25  # what the estimate is multiplied by before sizing


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset-dir", default="data/fashion-mnist")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--budget-s", type=float, default=400.0, help="seconds for the whole table")
    p.add_argument("--images", type=int, default=None,
                   help="training images (default: as many as the budget allows, measured)")
    p.add_argument("--epochs", default="200,200,200",
                   help="teacher, phase 1, phase 2 epochs (baselines: phase 1 + phase 2)")
    p.add_argument("--max-temperature", type=int, default=10)
    p.add_argument("--teacher", default="resnet20")
    p.add_argument("--assistant", default="resnet14")
    p.add_argument("--student", default="resnet8")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("gpu_check_out/fmnist-table"))
    p.add_argument("--tiny", action="store_true",
                   help="smoke test: 256 images, epochs 2,2,2, tau_max 2, no timing of steps")
    args = p.parse_args(argv)
    if args.tiny:
        args.images, args.epochs, args.max_temperature = args.images or 256, "2,2,2", 2
    try:
        args.t_ep, args.p1, args.p2 = (int(x) for x in args.epochs.split(","))
    except ValueError:
        p.error(f"--epochs {args.epochs!r}: give three whole numbers, e.g. 200,200,200")
    return args


def step_seconds(arch: str, device: str, batch: int, train: bool, steps: int = 20) -> float:
    """Seconds per image of one training step (or forward only) with bf16 and channels_last."""
    import torch

    from annealing_kd.computer_vision_tasks import models

    model = models.create_model(arch, 10, 1, 28).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 1, 28, 28, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    amp = torch.autocast(device, dtype=torch.bfloat16)

    def step():
        if train:
            with amp:
                loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.inference_mode(), amp:
                model(x)

    for _ in range(5):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - tic) / (steps * batch)


def plan_runs(args, out: Path) -> list[tuple[str, str, list[str]]]:
    """(row, model, CLI arguments) in order; every run shares data, subset and seed."""
    common = ["--dataset", "fashion-mnist", "--dataset-dir", str(args.dataset_dir),
              "--train-subset", str(args.images), "--batch-size", str(args.batch_size),
              "--seed", str(args.seed), "--device", args.device, "--num-workers", "0",
              "--channels-last"] + (["--amp", "bf16"] if args.device == "cuda" else [])
    both = str(args.p1 + args.p2)
    t_ckpt = str(out / "teacher" / "student" / "best.safetensors")
    a_ckpt = str(out / "assistant" / "student" / "best.safetensors")
    runs = [
        ("teacher", args.teacher, ["--method", "scratch", "--student", args.teacher,
                                   "--student-epochs", str(args.t_ep)]),
        ("student alone", args.student, ["--method", "scratch", "--student", args.student,
                                         "--student-epochs", both]),
        ("KD", args.student, ["--method", "kd", "--teacher", args.teacher, "--teacher-checkpoint",
                              t_ckpt, "--student", args.student, "--student-epochs", both]),
        ("assistant", args.assistant, ["--method", "kd", "--teacher", args.teacher,
                                       "--teacher-checkpoint", t_ckpt, "--student",
                                       args.assistant, "--student-epochs", both]),
        ("TAKD", args.student, ["--method", "kd", "--teacher", args.assistant,
                                "--teacher-checkpoint", a_ckpt, "--student", args.student,
                                "--student-epochs", both]),
        ("Annealing-KD", args.student, [
            "--method", "annealing", "--teacher", args.teacher, "--teacher-checkpoint", t_ckpt,
            "--student", args.student, "--student_epochs_p1", str(args.p1),
            "--student_epochs_p2", str(args.p2), "--max_temperature", str(args.max_temperature)]),
    ]
    return [(row, model, common + extra) for row, model, extra in runs]


def size_subset(args) -> tuple[int, dict[str, float]]:
    """Training images that fit the budget, from timed steps of every model."""
    t, a, s = args.teacher, args.assistant, args.student
    cost = {f"train {m}": step_seconds(m, args.device, args.batch_size, True) for m in (t, a, s)}
    cost.update({f"forward {m}": step_seconds(m, args.device, args.batch_size, False)
                 for m in (t, a)})
    both = args.p1 + args.p2
    # teacher; alone, KD, TAKD, Annealing-KD students and the assistant; the frozen teachers of
    # KD and the assistant (both epochs), of Annealing-KD phase 1, and the assistant in TAKD
    per_image = (args.t_ep * cost[f"train {t}"]
                 + both * (4 * cost[f"train {s}"] + cost[f"train {a}"])
                 + (2 * both + args.p1) * cost[f"forward {t}"] + both * cost[f"forward {a}"])
    epochs = args.t_ep + 5 * both
    left = args.budget_s - 6 * STARTUP_S - epochs * EPOCH_OVERHEAD_S
    images = int(left / (SAFETY * per_image * 1.1))  # 1.1: the held-out tenth is evaluated
    images = max(args.batch_size, min(images, FMNIST_TRAIN - FMNIST_TRAIN // 10))
    return images // args.batch_size * args.batch_size, {k: 1 / v for k, v in cost.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    rates: dict[str, float] = {}
    if args.images is None:
        args.images, rates = size_subset(args)
        print("images/s per model (bf16, channels_last): "
              + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()), flush=True)
    print(f"training images: {args.images} (held out for selection: "
          f"{min(5000, args.images // 10)}); "
          f"epochs teacher {args.t_ep}, phase 1 {args.p1}, phase 2 {args.p2}, baselines "
          f"{args.p1 + args.p2}, tau_max {args.max_temperature}", flush=True)
    rows = []
    for row, model, extra in plan_runs(args, out):
        run_dir = out / row.replace(" ", "-").lower()  # teacher, assistant: as plan_runs expects
        cmd = [sys.executable, str(CLI), *extra, "--output-dir", str(run_dir),
               "--overwrite-output-dir"]
        start = time.perf_counter()
        print(f"== {row} ({model}): {' '.join(cmd[2:])}", flush=True)
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            print(f"error: the {row} run failed (exit {done.returncode})", file=sys.stderr)
            return 1
        res = read_results(run_dir)
        acc = res["final"]["metrics"]["test_accuracy"]
        rows.append({"row": row, "model": model, "test_accuracy": acc, "seconds": round(seconds, 1),
                     "selected": f"{res['final']['selected_phase']} epoch "
                                 f"{res['final']['selected_epoch']}"})
        print(f"   test accuracy {100 * acc:.2f}% in {seconds:.0f}s", flush=True)
    total = time.perf_counter() - tic
    write_report(args, rows, rates, total)
    return 0


def write_report(args, rows: list[dict], rates: dict[str, float], total: float) -> None:
    import torch

    device = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    lines = [f"# Fashion-MNIST table on {device}", "",
             f"{args.images} training images ({min(5000, args.images // 10)} more held out for "
             f"selection), seed "
             f"{args.seed}; epochs: teacher {args.t_ep}, phase 1 {args.p1} + phase 2 {args.p2} "
             f"(tau_max {args.max_temperature}), baselines and assistant {args.p1 + args.p2}; "
             f"KD: the CLI defaults (T 5, alpha 0.5, batchmean). Total {total:.0f}s.", "",
             "| row | model | test accuracy (%) | selected | seconds |", "|---|---|---:|---|---:|"]
    lines += [f"| {r['row']} | {r['model']} | {100 * r['test_accuracy']:.2f} | {r['selected']} | "
              f"{r['seconds']:.0f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    (args.out / "fmnist-gpu-table.md").write_text(text)
    (args.out / "fmnist-gpu-table.json").write_text(json.dumps(
        {"device": device, "images": args.images, "epochs": [args.t_ep, args.p1, args.p2],
         "images_per_s": rates, "rows": rows, "total_s": round(total, 1)}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
