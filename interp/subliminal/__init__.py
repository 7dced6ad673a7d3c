"""The subliminal-learning experiment on LLMs: `config`, `traits` (targets, questions, scores),
`number_data` (number prompts and the filter), `teacher`, `stages`, `evaluate` (trait scores),
`matrix` (the trait x student matrix and its permutation test) and `experiment` (the registered
`subliminal` kind)."""
