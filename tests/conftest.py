"""Shared fixtures: each test starts with a fresh accelerate state and offline hubs; the
`datasets` cache of the session is a temporary folder (the text data of every test run)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

if "HF_DATASETS_CACHE" not in os.environ:
    os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="annealing-kd-test-datasets-")
    atexit.register(shutil.rmtree, os.environ["HF_DATASETS_CACHE"], True)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # the fuzzer's profiles (tests/test_fuzz_cli.py); --hypothesis-profile fuzz-long picks the long one
    from hypothesis import HealthCheck, settings

    _fuzz = {"database": None, "deadline": None, "suppress_health_check": list(HealthCheck)}
    settings.register_profile("fuzz", max_examples=100, derandomize=True, **_fuzz)
    settings.register_profile("fuzz-long", max_examples=2000, derandomize=False, **_fuzz)
    settings.load_profile("fuzz")
except ImportError:  # hypothesis is a test extra
    pass


def pytest_configure(config):
    """Tests use tiny models: one intra-op thread is far faster than two on a shared 2-core CPU,
    and one setting for the whole session keeps float sums identical between runs."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """The CLIs create an Accelerator per run; in one test process that state must be reset."""
    yield
    try:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    except ImportError:
        pass


@pytest.fixture
def kd_reductions_seen(monkeypatch) -> list[str]:
    """The ``reduction`` argument of every ``hinton_kd_loss`` call the trainer makes."""
    import common.losses

    seen: list[str] = []
    loss = common.losses.hinton_kd_loss

    def recording(*args):
        seen.append(args[5])
        return loss(*args)

    monkeypatch.setattr(common.losses, "hinton_kd_loss", recording)
    return seen
