"""Scratch / fine-tune: the student on hard labels only (no teacher)."""

from annealing_kd.common.methods.base import Method, PhasePlan, register

register(Method("scratch", (PhasePlan("student", "student", "task"),),
                "the student on hard labels, no teacher", aliases=("finetune",)))
