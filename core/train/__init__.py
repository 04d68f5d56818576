"""Training: optimizers, schedules, the trainer loop and metrics."""
