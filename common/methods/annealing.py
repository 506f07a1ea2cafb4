"""Annealing-KD (Jafari et al. 2021).

phase1: the student regresses the teacher's annealed logits, MSE(z_s, Phi(T) * z_t), with the
        temperature T stepping down from tau_max to 1 (common/methods/schedule.py, common/methods/losses.py);
phase2: from the best phase-1 weights, the student trains on hard labels, without the teacher
        (skipped when its budget is 0 epochs).
The final student is the best epoch over both phases.
"""

from annealing_kd.common.methods.base import Method, Step, register

register(Method("annealing", (
    Step("phase1", "student", "anneal", teacher="teacher"),
    Step("phase2", "student", "task", start="phase1", skippable=True),
), "Annealing-KD: annealed teacher logits (phase 1), then hard labels (phase 2)"))
