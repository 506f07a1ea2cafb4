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
    import annealing_kd.common.methods.losses

    seen: list[str] = []
    loss = annealing_kd.common.methods.losses.hinton_kd_loss

    def recording(*args):
        seen.append(args[5])
        return loss(*args)

    monkeypatch.setattr(annealing_kd.common.methods.losses, "hinton_kd_loss", recording)
    return seen


# the end-to-end runs of the CLIs, scripts and demos, the kill and multi-process tests and the
# fuzzer: `make test` runs them, `pytest -m "not slow"` (make test-quick) is the quick loop
SLOW_TESTS = {
    "test_image_part_end_to_end", "test_text_part_end_to_end", "test_tiny_cifar_table_end_to_end",
    "test_parallel_jobs_respect_dependencies", "test_deadline_stops_runs_and_reports_what_finished",
    "test_failed_run_stops_with_one_line_error", "test_kill_at_every_rename_of_an_epoch_commit_then_resume",
    "test_kill_while_a_teacher_logit_file_is_written_then_resume", "test_strace_kill_at_a_real_rename",
    "test_two_process_ddp_run_writes_one_results_json", "test_ddp_two_processes",
    "test_bench_cache_table_gives_the_same_table_with_and_without_the_cache",
    "test_gpu_check_cache_parts_run_on_the_cpu", "test_bench_text_data_runs_tiny",
    "test_bench_glue_runs_tiny_and_reports_consistent_ratios",
    "test_finetune_matches_transformers_trainer_step_for_step", "test_whole_comparison_at_a_tiny_size",
    "test_annealing_every_task", "test_real_minilm_teacher", "test_resume_gives_the_same_student",
    "test_resume_matches_an_uninterrupted_run", "test_the_pipeline_learns",
    "test_every_method_end_to_end", "test_annealing_kd_finetune_takd_end_to_end",
    "test_timm_teacher_end_to_end", "test_hf_dataset_from_disk_end_to_end",
    "test_torchvision_teacher_into_cifar_student_by_annealing",
    "test_example_own_images_writes_the_folder_and_distills",
    "test_a_second_run_on_a_folder_in_use_is_refused_then_resume_after_a_kill_works",
    "test_an_error_after_the_models_load_has_no_library_log_above_it",
}
SLOW_FILES = {"test_fuzz_cli.py"}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.originalname in SLOW_TESTS or item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
