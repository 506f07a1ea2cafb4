"""Atomic checkpoints, safe loading, seeding."""

import subprocess
import sys
import textwrap

import pytest
import torch

from annealing_kd.common.errors import UsageError
from annealing_kd.common.run_folder import load_state, load_weights, save_state, save_weights
from annealing_kd.common.training.seeding import EpochShuffleSampler


def test_weights_round_trip(tmp_path):
    sd = {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(3)}
    save_weights(sd, tmp_path / "m.safetensors")
    back = load_weights(tmp_path / "m.safetensors")
    assert set(back) == {"w", "b"} and torch.equal(back["w"], sd["w"])


def test_a_write_killed_half_way_leaves_the_previous_checkpoint_intact(tmp_path):
    path = tmp_path / "best.safetensors"
    save_weights({"w": torch.full((4,), 7.0)}, path)
    script = textwrap.dedent(f"""
        import os, signal
        from annealing_kd.common.run_folder import atomic_write
        def write(tmp):
            with open(tmp, "wb") as f:
                f.write(b"half a checkpoint")
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # killed mid-write
        atomic_write({str(path)!r}, write)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -9
    assert torch.equal(load_weights(path)["w"], torch.full((4,), 7.0))


def test_corrupt_or_missing_checkpoint_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UsageError, match="corrupt"):
        load_weights(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_weights(tmp_path / "missing.safetensors")
    with pytest.raises(UsageError, match="corrupt"):
        load_state(bad)


def test_state_loads_with_weights_only(tmp_path):
    save_state({"epoch": 3, "opt": {"t": torch.ones(2)}, "best": {"metric": 0.5}}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    assert state["epoch"] == 3 and state["best"] == {"metric": 0.5}
    assert torch.equal(state["opt"]["t"], torch.ones(2))


class Evil:
    """Not an allowed type for weights_only loading."""


def test_state_with_arbitrary_objects_is_refused(tmp_path):
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UsageError, match="corrupt"):
        load_state(tmp_path / "evil.pt")


def test_epoch_shuffle_depends_only_on_seed_and_epoch():
    a, b = EpochShuffleSampler(50, seed=3), EpochShuffleSampler(50, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b) and sorted(a) == list(range(50))
    b.set_epoch(5)
    assert list(a) != list(b)
    assert list(EpochShuffleSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]
