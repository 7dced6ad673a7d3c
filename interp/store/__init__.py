"""The run store: keyed, verified, resumable stages (`stages`) and the typed readers of a
finished run's artifacts (`artifacts`). The bottom of the stack: imports nothing of the suite
above `config`."""
