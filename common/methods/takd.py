"""TAKD (Mirzadeh et al. 2020): teacher -> assistant by KD, then assistant -> student by KD."""

from annealing_kd.common.methods.base import Method, Step, register

register(Method("takd", (
    Step("assistant", "assistant", "kd", teacher="teacher"),
    Step("student", "student", "kd", teacher="assistant"),
), "KD through a teacher assistant"))
