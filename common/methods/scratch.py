"""Scratch / fine-tune: the student on hard labels only (no teacher)."""

from .base import Method, PhasePlan, register

register(Method("scratch", (PhasePlan("student", "student", "task"),),
                "the student on hard labels, no teacher", aliases=("finetune",)))
