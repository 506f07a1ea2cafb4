"""The training loop of both CLIs: trainer, optimizers, learning-rate schedules, seeding, the frozen
teacher's forward, progress bars and guards."""
