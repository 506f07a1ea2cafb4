"""TAKD (Mirzadeh et al. 2020): teacher -> assistant by KD, then assistant -> student by KD."""

from .base import Method, PhasePlan, register

register(Method("takd", (
    PhasePlan("assistant", "assistant", "kd", teacher="teacher"),
    PhasePlan("student", "student", "kd", teacher="assistant"),
), "KD through a teacher assistant"))
