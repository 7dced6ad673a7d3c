"""The auxiliary-logit MLP experiment (Cloud et al.'s MNIST demonstration on sklearn digits):
`data` (images and noise), `measure` (accuracy, parameter cosines, the theorem's first-step
check) and `experiment` (the registered `mlp-aux-logits` kind, batched over seeds)."""
