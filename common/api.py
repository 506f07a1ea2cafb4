"""Annealing-KD in your own training loop, for any PyTorch model: the stable public API.

The names in ``__all__`` are the interface; they keep their names and signatures (new keyword
arguments may be added, with defaults). Everything else in ``common`` may change.

    from annealing_kd.common.api import (AnnealingSchedule, all_teacher_logits, annealing_loss,
                                         check_teacher_logits, task_loss, teacher_logits)

    check_teacher_logits(all_teacher_logits(teacher, dev_loader), dev_labels)  # not at chance?
    schedule = AnnealingSchedule.per_epoch(epochs=phase1_epochs, max_temperature=tau_max)
    for epoch in range(phase1_epochs):                  # phase 1
        phi = schedule.phi(epoch)
        for x, y in loader:
            loss = annealing_loss(student(x), teacher_logits(teacher, x), phi)
            ...                                         # backward, step as usual
    # phase 2: from phase 1's best weights, loss = task_loss(student(x), y)

A runnable example: docs/own_loop.md. ``transformers.Trainer`` users: ``annealing_kd.common.hf_trainer``.
"""

from __future__ import annotations

from .methods.annealing import AnnealingSchedule, annealing_loss
from .methods.losses import KD_REDUCTIONS, hinton_kd_loss, task_loss
from .training.frozen_teacher import all_teacher_logits, teacher_logits
from .training.guards import check_teacher_logits
from .training.trainer import freeze

__all__ = ["AnnealingSchedule", "annealing_loss", "task_loss", "hinton_kd_loss", "KD_REDUCTIONS",
           "teacher_logits", "all_teacher_logits", "freeze", "check_teacher_logits"]
