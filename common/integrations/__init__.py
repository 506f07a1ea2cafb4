"""Outside tools: transformers.Trainer, experiment trackers, model cards."""
