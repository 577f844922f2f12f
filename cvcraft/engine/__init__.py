"""The training engine: Trainer, optimizers, schedules, EMA, checkpoints, task modules."""
