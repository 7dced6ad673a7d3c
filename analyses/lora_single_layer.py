"""Hypothesis `lora_artifact_single_layer`: LoRA on a single early layer suffices for
transmission (Schrodi et al., ICLR 2026).

Reads a held-out sweep over runs/lora-rank.toml: the earliest single-block arm
(`train.layers = [i]`) against the reference (LoRA rank 8 on every block).

Verdict: "supported" if the one-block arm transmits by the suite's rule (permutation p < 0.01
and its interval above 0); "not supported" if its interval lies inside the chance band (+-25%
of the reference's gamma, fixed before the runs); "inconclusive" otherwise.

    python analyses/lora_single_layer.py sweeps/lora-rank.toml [--out-dir DIR]
"""

from __future__ import annotations

import sys

from interp.sweep.lora_artifact import claim_main

HYPOTHESIS = "lora_artifact_single_layer"

if __name__ == "__main__":
    sys.exit(claim_main(HYPOTHESIS, sys.argv[1:]))
