"""Hinton KD: the student learns from the teacher's softened logits and the labels."""

from .base import Method, PhasePlan, register

register(Method("kd", (PhasePlan("student", "student", "kd", teacher="teacher"),),
                "Hinton KD from the teacher"))
