"""Training machinery: objective, EMA, learning-rate schedules, checkpoints, the trainer."""
