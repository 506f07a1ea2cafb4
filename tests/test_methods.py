"""The method layer: each method's phases, aliases, and the same names in both CLIs."""

from __future__ import annotations

import pytest

from annealing_kd.common.errors import UsageError
from annealing_kd.common.methods import TEACHER_PHASE, get_method, method_names, steps_of


def phases(name: str, trains_teacher: bool = False) -> list[tuple[str, str, str, str | None]]:
    return [(s.phase, s.model, s.objective, s.teacher) for s in steps_of(get_method(name), trains_teacher)]


def test_every_method_its_phases():
    assert phases("scratch", trains_teacher=True) == [("student", "student", "task", None)]
    assert phases("kd") == [("student", "student", "kd", "teacher")]
    assert phases("kd", trains_teacher=True)[0] == ("teacher", "teacher", "task", None)
    assert phases("takd") == [("assistant", "assistant", "kd", "teacher"),
                              ("student", "student", "kd", "assistant")]
    assert phases("annealing") == [("phase1", "student", "anneal", "teacher"),
                                   ("phase2", "student", "task", None)]
    assert get_method("annealing").steps[1].start == "phase1"  # phase 2 from the best phase 1
    assert get_method("annealing").student_phases == ["phase1", "phase2"]
    assert TEACHER_PHASE.objective == "task"


def test_scratch_and_finetune_are_one_method():
    assert get_method("finetune") is get_method("scratch")
    assert not get_method("finetune").uses("teacher") and get_method("takd").uses("assistant")
    with pytest.raises(UsageError, match="unknown method 'fitnets'; choose one of annealing, "):
        get_method("fitnets")


def test_both_clis_offer_the_same_methods():
    from annealing_kd.computer_vision_tasks.cli import parse_args
    from annealing_kd.NLP_glue_tasks.cli import build_parser

    glue = next(a for a in build_parser()._actions if a.dest == "method")
    assert sorted(glue.choices) == method_names() == ["annealing", "finetune", "kd", "scratch", "takd"]
    for name in method_names():
        assert parse_args(["--method", name, "--assistant", "resnet8"]).method == name
