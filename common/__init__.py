"""Shared core of annealing-kd: schedule, losses, training loop, run directory, checkpoints."""
