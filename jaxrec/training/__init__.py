"""Training: the train state and step (`jaxrec.trainer`), the one loop and its hooks
(`loop`), re-plannable schedules (`schedule`), validation with keep-best and wall-clock
budgets (`selection`)."""
