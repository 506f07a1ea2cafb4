#!/usr/bin/env bash
# The prepared GPU check of issue 6: fits in 8 minutes on one H100 (each part has its own
# time limit and the whole script a deadline of 450 s). Prints images/s of teacher training
# (resnet110), phase 1 (resnet110 -> resnet8) with the fast path on (GPU-resident loader, bf16,
# channels_last, teacher in inference mode) and off (torchvision DataLoader, fp32, NCHW) against
# the original's way, phase 2 (resnet8 alone), the GLUE phase-1 benchmark, and an estimate of the
# full CIFAR-10 table row (teacher 200 + phase 1 200 + phase 2 200 epochs, evaluation excluded).
#
#   bash benchmarks/gpu_check.sh                      # on the GPU machine
#   bash benchmarks/gpu_check.sh --device cpu --tiny  # smoke test of every part on a CPU
#   bash benchmarks/gpu_check.sh --only cache         # the teacher-logit cache parts alone
#
# The cache parts (issue 19; only with --only cache; under 4 minutes): cache_check runs tiny
# Annealing-KD runs of the image CLI live, with a cold and with a warm --logits-cache-dir, in fp32
# and bf16, and fails unless the final weights are the same bit for bit; cache_epochs times a phase-1 epoch of resnet110 -> resnet8 on the
# GPU-resident loader with a warm cache against the student alone (target <= 1.15x) and with a
# cold cache against no cache (target <= 1.05x).
#
# --table fmnist instead runs, within the same 8 minutes, (A) the Fashion-MNIST table of
# docs/results (reproduce/run_table.py --table fmnist-gap, teacher resnet20, student resnet8;
# rows student alone, KD, KD (paper-era), TAKD, Annealing-KD; 5 seeds, 14 runs at a time on the
# GPU) and (B) one seed of it at the paper's schedule length (teacher 200 epochs, phase 1 200 +
# phase 2 200, baselines 400) on as many training images as the rest of the time allows
# (benchmarks/fmnist_gpu_table.py measures the steps first).
# The GPU machine has no internet: the data (about 30 MB) travels in an ignored folder:
#   mkdir -p data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz data/fashion-mnist/
# and the device tool's run names it in carry: ["data/fashion-mnist"], command
#   bash benchmarks/gpu_check.sh --table fmnist --dataset-dir data/fashion-mnist
#   bash benchmarks/gpu_check.sh --table fmnist --device cpu --tiny   # smoke test on a CPU
#
# Figures (logs and JSON) go to $OUT (default: gpu_check_out/).
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
TINY=0
TABLE=""
ONLY=""
DATASET_DIR=data/fashion-mnist
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --tiny) TINY=1; shift ;;
    --table) TABLE="$2"; shift 2 ;;
    --dataset-dir) DATASET_DIR="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    *) echo "error: unknown argument $1; use --device {cuda,cpu}, --tiny, --table fmnist, --dataset-dir DIR, --only cache" >&2; exit 2 ;;
  esac
done
if [ -n "$TABLE" ] && [ "$TABLE" != fmnist ]; then
  echo "error: unknown table $TABLE; the one table is --table fmnist" >&2; exit 2
fi
if [ -n "$ONLY" ] && [ "$ONLY" != cache ]; then
  echo "error: unknown part $ONLY; --only cache is the one choice" >&2; exit 2
fi
if [ -z "${PY:-}" ]; then PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python; fi
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
DEADLINE=450

if [ "$TINY" = 1 ]; then
  CACHE="--device $DEVICE --teacher resnet8 --images 64 --batch-size 16 --repeats 1"
  CIFAR="--device $DEVICE --batch-size 16 --batches 2 --repeats 1 --num-workers 0"
  GLUE="--device $DEVICE --tiny --examples 32 --batch-size 16 --repeats 1"
  COMPILE=0
else
  CACHE="--device $DEVICE --images 12800 --batch-size 128 --repeats 3"
  CIFAR="--device $DEVICE --batch-size 128 --batches 50 --repeats 3 --num-workers 8"
  GLUE="--device $DEVICE --amp bf16 --examples 4096 --repeats 3"
  COMPILE=1
fi
if [ "$DEVICE" = cuda ]; then FAST="--amp bf16 --layout channels_last --data gpu"
else FAST="--layout channels_last --data gpu"; fi

echo "== machine"
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
$PY -c "import torch, torchvision, transformers; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

if [ "$TABLE" = fmnist ]; then
  if ! ls "$DATASET_DIR"/train-images-idx3-ubyte.gz >/dev/null 2>&1 && [ ! -d "$DATASET_DIR/FashionMNIST/raw" ]; then
    echo "error: no Fashion-MNIST in $DATASET_DIR; copy /usr/share/datasets/fashion-mnist/*.gz there and carry it" >&2
    exit 2
  fi
  RUNS=${RUNS:-/tmp/annealing-kd-gpu-runs}
  AMP=""; [ "$DEVICE" = cuda ] && AMP="--amp bf16"
  if [ "$TINY" = 1 ]; then  # smoke test on a CPU: no time goal
    A="--seeds 2 --jobs 2 --epochs teacher=2,p1=2,p2=1,tau=2"; SUB=512; TSUB=1024; B_BUDGET=900; B_SIZE="--tiny"
  else
    A="--seeds 5 --jobs 14 --epochs teacher=15,p1=20,p2=10 --deadline-s 262"; SUB=6000; TSUB=55000
    B_BUDGET=""; B_SIZE=""
  fi
  # A: the table of docs/results with 5 seeds: teacher resnet20 on 55,000 images (15 epochs),
  # students resnet8 on $SUB (phase 1 20 + phase 2 10; baselines 30), 14 runs at a time: 239 s on
  # an H100 (docs/results/fmnist-gpu). 15,000 student images and a 30-epoch teacher did not fit.
  echo "== A: Fashion-MNIST table, 5 seeds, runs in parallel (${SECONDS}s elapsed)"
  $PY reproduce/run_table.py --table fmnist-gap --teacher resnet20 $A --dataset-dir "$DATASET_DIR" \
    --out "$RUNS/fmnist-5-seeds" --extra "--device $DEVICE $AMP --channels-last --num-workers 0 --train-subset $SUB" \
    --teacher-extra "--train-subset $TSUB" 2>&1 | tee "$OUT/fmnist-5-seeds.log"
  rc_a=${PIPESTATUS[0]}
  cp "$RUNS"/fmnist-5-seeds/fmnist-gap.md "$RUNS"/fmnist-5-seeds/fmnist-gap.png "$OUT"/ 2>/dev/null
  tar -czf "$OUT/fmnist-5-seeds-runs.tgz" --exclude='*.safetensors' --exclude='*.pt' -C "$RUNS" fmnist-5-seeds
  # B: the paper's schedule length (teacher 200; phase 1 200 + phase 2 200), one seed, on as many
  # images as the rest of the 8 minutes allows (measured first).
  [ -z "$B_BUDGET" ] && B_BUDGET=$((440 - SECONDS))
  echo "== B: Fashion-MNIST table at the paper's schedule length, budget ${B_BUDGET}s (${SECONDS}s elapsed)"
  timeout -k 10 $((B_BUDGET + 40)) $PY benchmarks/fmnist_gpu_table.py --device "$DEVICE" --dataset-dir "$DATASET_DIR" \
    --budget-s "$B_BUDGET" --out "$RUNS/fmnist-paper-schedule" $B_SIZE 2>&1 | tee "$OUT/fmnist-paper-schedule.log"
  rc_b=${PIPESTATUS[0]}
  cp "$RUNS"/fmnist-paper-schedule/fmnist-gpu-table.md "$RUNS"/fmnist-paper-schedule/fmnist-gpu-table.json "$OUT"/ 2>/dev/null
  echo "== done in ${SECONDS}s (exit A $rc_a, B $rc_b)"
  [ "$rc_a" = 0 ] && [ "$rc_b" = 0 ]
  exit $?
fi

FAILED=()
part() {  # part NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 20 ]; then echo "== $name: skipped, the 8-minute budget is spent"; FAILED+=("$name(skipped)"); return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s, ${SECONDS}s elapsed)"
  timeout -k 10 "$limit" "$@" 2>&1 | grep -v "^  warm-up" | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "!! $name timed out after ${limit}s"; FAILED+=("$name(timeout)")
  elif [ "$rc" != 0 ]; then echo "!! $name failed (exit $rc)"; FAILED+=("$name(exit $rc)"); fi
}

if [ "$ONLY" = cache ]; then  # its own call: the default parts keep their 8 minutes
  CACHE_FAST="--channels-last"; [ "$DEVICE" = cuda ] && CACHE_FAST="--channels-last --amp bf16"
  LIMIT=110; [ "$TINY" = 1 ] && LIMIT=700  # a smoke test on a busy CPU: no time goal
  DEADLINE=$((SECONDS + 2 * LIMIT))
  part cache_check $LIMIT $PY benchmarks/bench_cache.py check --device "$DEVICE" --json "$OUT/cache_check.json"
  part cache_epochs $LIMIT $PY benchmarks/bench_cache.py epochs $CACHE $CACHE_FAST --json "$OUT/cache_epochs.json"
  echo "== done in ${SECONDS}s"
  if [ ${#FAILED[@]} -gt 0 ]; then echo "parts with problems: ${FAILED[*]}"; exit 1; fi
  exit 0
fi
part teacher 80 $PY benchmarks/bench_cifar.py --mode teacher $CIFAR $FAST --json "$OUT/teacher.json"
part phase1_fast 110 $PY benchmarks/bench_cifar.py --mode phase1 $CIFAR $FAST --json "$OUT/phase1_fast.json"
part phase1_off 80 $PY benchmarks/bench_cifar.py --mode phase1 $CIFAR --layout nchw --data torchvision --skip-original --json "$OUT/phase1_off.json"
part student 60 $PY benchmarks/bench_cifar.py --mode student $CIFAR $FAST --json "$OUT/student.json"
part glue 100 $PY benchmarks/bench_glue.py $GLUE --json "$OUT/glue.json"
if [ "$COMPILE" = 1 ]; then
  part phase1_compiled 120 $PY benchmarks/bench_cifar.py --mode phase1 $CIFAR $FAST --compile --skip-original --json "$OUT/phase1_compiled.json"
fi

echo "== estimate of the full CIFAR-10 row (50,000 images x 200 epochs per phase; evaluation not counted)"
$PY - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def best(name, exclude=("original",)):
    try:
        rates = json.loads((out / f"{name}.json").read_text())["images_per_s"]
    except (OSError, KeyError, ValueError):
        return None
    return max(v for k, v in rates.items() if k not in exclude)
parts = {"teacher (resnet110)": best("teacher"), "phase 1 (fast path)": best("phase1_fast"),
         "phase 2 (resnet8)": best("student")}
total = 0.0
for k, v in parts.items():
    if v is None:
        print(f"{k}: no figure"); total = None; continue
    s = 200 * 50_000 / v
    print(f"{k}: {v:,.0f} images/s -> {s / 60:.1f} min for 200 epochs")
    total = None if total is None else total + s
if total is not None:
    print(f"total: {total / 60:.1f} min (goal: under 20 min; {'MET' if total < 1200 else 'MISSED'})")
for off in ("phase1_off",):
    v = best(off)
    if v and parts["phase 1 (fast path)"]:
        print(f"phase 1 fast path vs off: {parts['phase 1 (fast path)'] / v:.2f}x")
EOF

echo "== done in ${SECONDS}s"
if [ ${#FAILED[@]} -gt 0 ]; then echo "parts with problems: ${FAILED[*]}"; exit 1; fi
