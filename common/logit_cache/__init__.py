"""Frozen-teacher logits on disk, shared by every run that needs them (both CLIs)."""
