"""Wall times of the tiny table under both launchers, and the requeue timeline, from a
test_slurm run's folders (first log line to last results.json).

    python benchmarks/house/slurm_timeline.py <pytest tmp>/test_table_on_slurm_equals_loc0
"""
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

base = Path(sys.argv[1])
def span(out):
    logs = list((out / "logs").glob("*.log"))
    res = list(out.rglob("results.json"))
    start = min(os.stat(f).st_ctime for f in logs)
    end = max(r.stat().st_mtime for r in res)
    return start, end
for name in ("local", "slurm"):
    s, e = span(base / name)
    print(f"{name}: {e - s:.0f} s from the first run's start to the last results.json")
for rel in ("annealing-s0", "kd-s0"):
    log = base / "slurm" / "logs" / f"cifar10__{rel}.log"
    lines = log.read_text().splitlines()
    print(f"--- {rel}")
    for line in lines:
        if line.startswith(("# job", "$ ", "time limit near")):
            print("  ", line[:160])
    print("   results.json written", datetime.fromtimestamp((base / "slurm" / "cifar10" / rel / "results.json").stat().st_mtime, timezone.utc).isoformat(timespec="milliseconds"))
