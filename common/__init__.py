"""Shared core of annealing-kd, one folder per concern (docs/architecture.md):

    methods/      the method: the annealing schedule and loss (methods/annealing.py), KD, TAKD
    training/     the training loop: trainer, optimizers, learning-rate schedules, seeding
    run_folder/   the run folder: lock, manifest, atomic epoch commits, fingerprints, results
    logit_cache/  frozen-teacher logits on disk
    integrations/ experiment trackers, model cards
    cli/          run settings and flag parsing shared by both CLIs
    api.py        the public API for your own training loop
    hf_trainer.py Annealing-KD inside your own transformers.Trainer script
    errors.py     bad input: one line ``error: ...``, exit 2
"""
