"""Teacher-logit cache benchmark (issue 19): what a phase-1 epoch and a whole table cost with it.

``epochs`` (one process; the four loops alternate A B C D, D C B A, ...): a phase-1 epoch of
``--teacher`` -> ``--student`` (resnet110 -> resnet8) on in-memory CIFAR-sized images through the
image CLI's own loader (``TensorLoader``: crop and flip) and step (``annealing_kd.common.training.trainer.
frozen_logits`` teacher, ``annealing_kd.common.methods.annealing.annealing_loss``), its targets from:

    alone   no teacher: the student alone (cross-entropy), the cost a cached epoch aims at
    live    the frozen teacher on every batch (no cache)
    cold    ``annealing_kd.common.logit_cache.epoch_logits.EpochLogits`` on an empty cache: the live teacher, its rows
            kept and the epoch's file written at the end
    warm    ``EpochLogits`` on a cache that holds the epoch: rows read, the teacher never runs

Targets: warm <= 1.15x alone and cold <= 1.05x live (seconds per epoch). Printed three ways: the
ratio of the medians, the median of the per-round ratios (the two loops back to back: the verdict)
and the ratio in CPU seconds of this process.

``table``: ``reproduce/run_table.py`` end to end (every row, the teacher too), with and without
the cache (``--no-logits-cache``), alternating which goes first, each round in a fresh folder
(``--table-args`` default: one column of ``fmnist-gap`` at a small scale, ``--jobs 2``);
target: at least 2x less wall time with the cache. Both must give the same table (fp32 on one
machine: cached targets are the live ones bit for bit).

``check`` (correctness on the device, for benchmarks/gpu_check.sh): tiny Annealing-KD runs of the
image CLI live, with a cold cache and with the warm cache, in fp32 and (on a GPU) bf16: the same
final weights bit for bit each time, and the warm run never runs the teacher.

    python benchmarks/bench_cache.py epochs --images 2048 --repeats 3 [--json out.json]
    python benchmarks/bench_cache.py table --repeats 1 [--table-args "..."] [--json out.json]
    python benchmarks/bench_cache.py check --device cuda
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

# one column (teacher resnet110) of the capacity-gap table, every row, 3 seeds, the teacher and
# the assistants alone with both cores: about 50 min for both variants on 2 CPU cores
# (docs/performance.md); the teacher on 5,000 images (on 1,000 its Annealing-KD student's
# phase-1 loss was not finite)
TABLE_ARGS = ("--table fmnist-gap --teacher resnet110 --seeds 3 --jobs 2 --feeders-alone "
              "--epochs teacher=2,p1=4,p2=2,tau=2 "
              "--extra '--train-subset 1000 --val-size 200 --num-workers 0' "
              "--teacher-extra '--train-subset 5000'")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    from annealing_kd.common.cli.args import Parser, check_number, integer

    p = Parser(description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["epochs", "table", "check"])
    p.add_argument("--repeats", type=integer, default=3, help="timed rounds of each variant")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    e = p.add_argument_group("epochs")
    e.add_argument("--teacher", default="resnet110")
    e.add_argument("--student", default="resnet8")
    e.add_argument("--num-classes", type=integer, default=10)
    e.add_argument("--images", type=integer, default=2048, help="images in one epoch")
    e.add_argument("--batch-size", type=integer, default=128)
    e.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    e.add_argument("--amp", default="none", choices=["none", "bf16"])
    e.add_argument("--channels-last", action="store_true")
    e.add_argument("--threads", type=integer, default=0, help="torch CPU threads (0: default)")
    t = p.add_argument_group("table")
    t.add_argument("--table-args", default=TABLE_ARGS,
                   help="reproduce/run_table.py arguments (--out and --no-logits-cache are added)")
    t.add_argument("--out", type=Path, default=None, help="folder of the rounds (default: a temp)")
    args = p.parse_args(argv)
    for name, low in (("repeats", 1), ("num_classes", 2), ("images", 1), ("batch_size", 1),
                      ("threads", 0)):
        check_number(name, getattr(args, name), low=low)
    return args


def epoch_loops(args: argparse.Namespace, tmp: Path):
    """The four loops of ``epochs`` mode (name -> fn() returning images processed) and an
    untimed warm-up per loop that also fills the warm cache."""
    import copy

    import numpy as np
    import torch

    from annealing_kd.common.logit_cache.epoch_logits import EpochLogits
    from annealing_kd.common.logit_cache.store import LogitCache
    from annealing_kd.common.methods.annealing import annealing_loss
    from annealing_kd.common.methods.losses import task_loss
    from annealing_kd.common.training.trainer import frozen_logits
    from annealing_kd.computer_vision_tasks.data import get_spec
    from annealing_kd.computer_vision_tasks.models import create_model
    from annealing_kd.computer_vision_tasks.tensor_loader import TensorLoader
    from benchmarks._util import resolve_device

    device = resolve_device(args.device)
    spec = get_spec("cifar10")
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (args.images, 3, 32, 32), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, args.num_classes, args.images))
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    teacher = create_model(args.teacher, args.num_classes).to(device, memory_format=fmt)
    student0 = create_model(args.student, args.num_classes).to(device, memory_format=fmt)
    amp = args.amp == "bf16"
    precision = "bf16" if amp else "fp32"

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def forward(model, batch):
        with autocast():
            return model(batch[0])

    live = frozen_logits(teacher, forward)
    parts = {"bench": args.teacher, "images": args.images, "batch": args.batch_size}
    warm_source = EpochLogits(LogitCache(tmp / "warm", say=print), parts, live,
                              lambda b: b[2], args.images, args.num_classes, precision)
    rounds = iter(range(10**6))

    def loop(kind: str):
        student = copy.deepcopy(student0).train()
        opt = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        loader = TensorLoader(images, labels, args.batch_size, spec.mean, spec.std, train=True,
                              device=device, channels_last=args.channels_last)

        def run() -> int:
            loader.set_epoch(0)
            source = {"alone": None, "live": live, "warm": warm_source}.get(kind)
            if kind == "cold":  # an empty cache every round
                source = EpochLogits(LogitCache(tmp / f"cold{next(rounds)}", say=print), parts,
                                     live, lambda b: b[2], args.images, args.num_classes,
                                     precision)
            if hasattr(source, "set_epoch"):
                source.set_epoch(0)
            seen = 0
            for batch in loader:
                logits = forward(student, batch).float()
                loss = (task_loss(logits, batch[1]) if source is None
                        else annealing_loss(logits, source(batch), 0.5))
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                seen += len(batch[1])
            if hasattr(source, "close"):
                source.close()
            return seen

        return run

    loops = {k: loop(k) for k in ("alone", "live", "cold", "warm")}
    return loops, device


def run_epochs(args: argparse.Namespace) -> dict:
    import torch

    from benchmarks._util import alternate, machine, table, verdict
    from reproduce.stats import median

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        loops, device = epoch_loops(args, Path(tmp))
        rates, cpu_rates = alternate(loops, args.repeats, device)  # warm-up fills the cache
    seconds = {k: args.images / median(v) for k, v in rates.items()}
    pairs = {"warm / alone": ("warm", "alone"), "cold / live": ("cold", "live"),
             "live / alone": ("live", "alone")}
    ratios = {k: seconds[a] / seconds[b] for k, (a, b) in pairs.items()}
    # the same ratio within each round (the two loops ran back to back), and in CPU seconds of
    # this process (less disturbed by other processes); the verdict is on the paired median
    paired = {k: [rb / ra for ra, rb in zip(rates[a], rates[b], strict=True)]
              for k, (a, b) in pairs.items()}
    cpu = {k: median([rb / ra for ra, rb in zip(cpu_rates[a], cpu_rates[b], strict=True)])
           for k, (a, b) in pairs.items()}
    targets = {"warm / alone": 1.15, "cold / live": 1.05}
    print(f"\n{args.teacher} -> {args.student}, {args.images} images per epoch, batch "
          f"{args.batch_size}, {device} {args.amp}{' channels_last' if args.channels_last else ''}"
          f"; {machine()}")
    print(table(["loop", "seconds per epoch (median)", "images/s"],
                [[k, v, args.images / v] for k, v in seconds.items()]))
    print(table(["ratio", "of the medians", "per round", "median per round", "CPU seconds",
                 "target", "verdict (median per round)"],
                [[k, v, " ".join(f"{x:.2f}" for x in paired[k]), median(paired[k]), cpu[k],
                  f"<= {targets[k]}" if k in targets else "–",
                  verdict(median(paired[k]), targets[k], higher_is_better=False)
                  if k in targets else "–"]
                 for k, v in ratios.items()]))
    return {"mode": "epochs", "machine": machine(), "settings": {
        k: getattr(args, k) for k in ("teacher", "student", "images", "batch_size", "amp",
                                      "channels_last", "repeats")} | {"device": str(device)},
        "images_per_s": {k: v for k, v in rates.items()}, "seconds_per_epoch": seconds,
        "ratios": ratios, "ratios_per_round": paired,
        "ratios_median_per_round": {k: median(v) for k, v in paired.items()},
        "ratios_cpu_seconds": cpu, "images_per_cpu_s": cpu_rates, "targets": targets}


def run_table_rounds(args: argparse.Namespace) -> dict:
    """Wall seconds of run_table with and without the cache, alternating, fresh folders."""
    import json

    from benchmarks._util import table, verdict
    from reproduce.stats import median

    base = args.out or Path(tempfile.mkdtemp(prefix="bench-cache-"))
    table_args = shlex.split(args.table_args)
    name = table_args[table_args.index("--table") + 1]
    seconds: dict[str, list[float]] = {"without cache": [], "with cache": []}
    figures: dict[str, dict] = {}
    for r in range(args.repeats):
        order = list(seconds) if r % 2 == 0 else list(seconds)[::-1]
        for variant in order:
            out = base / f"round{r + 1}-{variant.replace(' ', '-')}"
            cmd = [sys.executable, str(ROOT / "reproduce" / "run_table.py"), *table_args,
                   "--out", str(out), *(["--no-logits-cache"] if variant == "without cache" else [])]
            print(f"round {r + 1}/{args.repeats}: {variant}: {shlex.join(cmd)}", flush=True)
            tic = time.perf_counter()
            done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0:  # its own one-line error, and its exit status (2: bad input)
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                where = f"; logs under {out}" if out.exists() else ""
                print(f"error: run_table failed ({variant}): {last.removeprefix('error: ')}{where}",
                      file=sys.stderr)
                raise SystemExit(done.returncode)
            seconds[variant].append(time.perf_counter() - tic)
            figures[variant] = json.loads((out / f"{name}.json").read_text())["values"]
            print(f"  {seconds[variant][-1]:.0f}s", flush=True)
    ratio = median(seconds["without cache"]) / median(seconds["with cache"])
    same = figures["without cache"] == figures["with cache"]
    print(table(["variant", "wall seconds (median)", "rounds"],
                [[k, median(v), len(v)] for k, v in seconds.items()]))
    print(f"without / with: {ratio:.2f}x (target >= 2x: {verdict(ratio, 2.0)}); the same "
          f"table both ways: {'yes' if same else 'NO'}; runs under {base}")
    return {"mode": "table", "table_args": args.table_args, "seconds": seconds,
            "ratio_without_over_with": ratio, "target": 2.0, "same_figures": same}


CHECK = ["--dataset", "fake", "--train-subset", "256", "--val-size", "64", "--batch-size", "32",
         "--num-workers", "0", "--teacher", "resnet8", "--student", "plane2", "--teacher_epochs",
         "1", "--method", "annealing", "--student_epochs_p1", "2", "--student_epochs_p2", "1",
         "--max_temperature", "2", "--seed", "5", "--deterministic"]


def run_check(args: argparse.Namespace) -> dict:
    """Live, cold and warm runs of the image CLI on the device: the same weights bit for bit."""
    import json

    import torch
    from safetensors.torch import load_file

    from benchmarks._util import resolve_device

    device = resolve_device(args.device)
    amps = ["none", "bf16"] if device.type == "cuda" else ["none"]
    cli = ROOT / "computer_vision_tasks" / "annealing_kd_train.py"
    result: dict = {"mode": "check", "device": str(device), "checks": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for amp in amps:
            cache = ["--logits-cache-dir", f"{tmp}/cache-{amp}"]
            weights, streams = {}, {}
            for run in ("live", "cold", "warm"):
                out = f"{tmp}/{amp}-{run}"
                cmd = [sys.executable, str(cli), *CHECK, "--device", device.type, "--amp", amp,
                       "--output-dir", out, *([] if run == "live" else cache)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"error: {run} run failed: {done.stderr.strip()[-400:]}")
                weights[run] = load_file(f"{out}/student/best.safetensors")
                streams[run] = json.loads(Path(out, "results.json").read_text()).get(
                    "logit_cache", {}).get("streams", {}).get("teacher train", {})
            same = {f"{run} == live": all(torch.equal(weights["live"][k], weights[run][k])
                                          for k in weights["live"]) for run in ("cold", "warm")}
            warm = streams["warm"]
            same["warm run read every epoch"] = warm.get("files_read") == 2 and \
                warm.get("files_written") == 0
            result["checks"][amp] = same
            for name, ok in same.items():
                print(f"{device.type} {amp}: {name}: {'yes' if ok else 'NO'}", flush=True)
    result["passed"] = all(all(c.values()) for c in result["checks"].values())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    from annealing_kd.common.cli.entry import run_cli

    return run_cli(_main, argv, lambda name: "--" + name.replace("_", "-"))


def _main(argv: Sequence[str] | None) -> int:
    args = parse_args(argv)
    run = {"epochs": run_epochs, "table": run_table_rounds, "check": run_check}[args.mode]
    result = run(args)
    if args.json:
        import json

        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result.get("passed", True) else 1


if __name__ == "__main__":
    sys.exit(main())
