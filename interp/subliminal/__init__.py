"""The subliminal-learning experiment on LLMs: config, teachers, stages, the trait x student matrix."""
