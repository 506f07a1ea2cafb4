"""run_table --launcher slurm against a real single-node SLURM cluster (tests/slurm_cluster.sh):
the table's order as job dependencies, a job requeued mid-run resuming to the weights of the local
run, a failing run reported by --status with its error, and the report equal to the local one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from reproduce import run_table as rt

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "slurm_cluster.sh"
TINY = ("--dataset fake --train-subset 160 --val-size 32 --batch-size 32 --num-workers 0 "
        "--device cpu")
TABLE = ["--table", "cifar10", "--seeds", "1", "--teacher", "resnet8", "--assistant", "resnet8",
         "--epochs", "teacher=2,p1=6,p2=2,tau=3", "--extra", TINY]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster of SLURM_CONF (.ci/run starts one), else one started here and stopped after."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OMP_NUM_THREADS", "1")  # the same threads here and in the jobs (they inherit it)
    if os.environ.get("SLURM_CONF"):
        yield os.environ["SLURM_CONF"]
        mp.undo()
        return
    folder = tmp_path_factory.mktemp("slurm")
    proc = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True,
                          text=True)
    if proc.returncode == 3 and not os.environ.get("AKD_REQUIRE_SLURM"):
        mp.undo()
        pytest.skip(f"no SLURM cluster here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    mp.setenv("SLURM_CONF", proc.stdout.strip())
    try:
        yield proc.stdout.strip()
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)])
        mp.undo()


def _queue() -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %T"], capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def _wait(until, timeout: float = 600, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def _jobs(out: Path) -> dict[str, str]:
    return json.loads((out / "slurm" / "jobs.json").read_text())


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _started(log: Path) -> list[datetime]:
    """When each job attempt of a run started (its log's '# job ... started' lines)."""
    return [datetime.fromisoformat(x.rsplit(" ", 1)[1]) for x in log.read_text().splitlines()
            if x.startswith("# job ")]


def _table_rows(md: Path) -> list[str]:
    """The report's figures and tests (not its timings and cache use, which the order of the
    runs changes)."""
    text = md.read_text().split("| row | runs timed")[0]
    return [x for x in text.splitlines() if x.startswith("| ")]


def test_table_on_slurm_equals_local(cluster, tmp_path: Path, capsys) -> None:
    local, remote = tmp_path / "local", tmp_path / "slurm"
    assert rt.main([*TABLE, "--out", str(local)]) == 0
    capsys.readouterr()

    assert rt.main([*TABLE, "--out", str(remote), "--launcher", "slurm"]) == 0
    out = capsys.readouterr().out
    assert out.count("submitted as job") == 7
    jobs = _jobs(remote)
    # again at once: nothing is submitted twice
    assert rt.main([*TABLE, "--out", str(remote), "--launcher", "slurm"]) == 0
    again = capsys.readouterr().out
    assert "submitted as job" not in again and again.count("queued earlier as job") + \
        again.count("finished earlier") == 7 and _jobs(remote) == jobs

    # stop two runs once each has committed an epoch, while it runs: Annealing-KD requeued by
    # the scheduler, KD asked to stop as before its time limit (USR1 to the batch step)
    stops = {"cifar10/annealing-s0": ["scontrol", "requeue"],
             "cifar10/kd-s0": ["scancel", "--signal=USR1", "--batch"]}

    def stop_when_running() -> bool:
        held = _queue()
        for rel in list(stops):
            committed = any((remote / rel).glob("*/committed"))  # student/ or phase1/
            if committed and held.get(jobs[rel]) == "RUNNING":
                subprocess.run([*stops.pop(rel), jobs[rel]], check=True)
        return not stops

    _wait(stop_when_running, what="the first committed epoch of the KD and Annealing-KD runs")
    _wait(lambda: not set(jobs.values()) & set(_queue()), what="every job to end")

    assert rt.main([*TABLE, "--out", str(remote), "--status"]) == 0
    status = capsys.readouterr().out
    assert status.count(": finished") == 7, status
    # each stopped job ran twice, the second time with --resume, to the local run's weights
    for rel in ("annealing-s0", "kd-s0"):
        log = (remote / "logs" / f"cifar10__{rel}.log").read_text()
        calls = [x for x in log.splitlines() if x.startswith("$ ")]
        assert len(calls) == 2 and not calls[0].endswith("--resume") and \
            calls[1].endswith("--resume"), log
    assert "time limit near" in (remote / "logs" / "cifar10__kd-s0.log").read_text()
    weights = sorted(f.relative_to(remote) for rel in jobs
                     for f in (remote / rel).rglob("*.safetensors"))
    assert len(weights) >= 2 * len(jobs)
    for rel in weights:
        assert _digest(remote / rel) == _digest(local / rel), rel
    # dependencies: the runs that read the teacher (the assistant) started after it finished
    def finished_at(rel: str) -> datetime:
        return datetime.fromtimestamp((remote / rel / "results.json").stat().st_mtime).astimezone()

    def started(rel: str) -> datetime:
        return _started(remote / "logs" / f"{rel.replace('/', '__')}.log")[0]

    assistant = next(r for r in jobs if "assistant" in r)
    for rel in (assistant, "cifar10/kd-s0", "cifar10/annealing-s0"):
        assert started(rel) >= finished_at("cifar10/teacher"), rel
    assert started("cifar10/takd-s0") >= finished_at(assistant)

    assert rt.main([*TABLE, "--out", str(remote), "--report-only"]) == 0
    capsys.readouterr()
    assert _table_rows(remote / "cifar10.md") == _table_rows(local / "cifar10.md")


def test_status_reports_a_failed_run_with_its_error(cluster, tmp_path: Path, capsys) -> None:
    argv = ["--table", "cifar10", "--seeds", "1", "--scale", "0.01", "--rows", "student alone",
            "--out", str(tmp_path), "--extra", TINY + " --train-subset 999999",
            "--launcher", "slurm"]
    assert rt.main(argv) == 0
    jobs = _jobs(tmp_path)
    capsys.readouterr()
    _wait(lambda: not set(jobs.values()) & set(_queue()), what="the job to end")
    assert rt.main([*argv, "--status"]) == 0
    line = capsys.readouterr().out.strip()
    assert "student alone" in line and "failed (job" in line
    assert "error: --train-subset 999999 must be in" in line
