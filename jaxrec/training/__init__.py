"""Training: the train state, loss and jitted sharded step (`step`), optimizers and schedules
(`optimizers`, `schedule`), the one loop and its hooks (`loop`), validation with keep-best and
wall-clock budgets (`selection`), and the metrics log (`metrics_log`)."""
