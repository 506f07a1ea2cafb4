"""Scratch / fine-tune: the student on hard labels only (no teacher)."""

from common.methods.base import Method, Step, register

register(Method("scratch", (Step("student", "student", "task"),),
                "the student on hard labels, no teacher", aliases=("finetune",)))
