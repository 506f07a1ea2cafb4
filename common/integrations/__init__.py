"""Outside formats the training loop writes to: experiment trackers and model cards."""
