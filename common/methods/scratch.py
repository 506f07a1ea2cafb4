"""Scratch / fine-tune: the student on hard labels only (no teacher)."""

from annealing_kd.common.methods.base import Method, Step, register

register(Method("scratch", (Step("student", "student", "task"),),
                "the student on hard labels, no teacher", aliases=("finetune",)))
