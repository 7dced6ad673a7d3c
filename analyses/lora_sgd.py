"""Hypothesis `lora_artifact_sgd`: plain SGD blocks transmission; an adaptive optimiser is
required (Blank et al., arXiv 2606.00995).

Reads a held-out sweep over runs/lora-rank.toml: LoRA rank 8 under SGD with momentum at its
tuned learning rate against the reference (the same under AdamW). Margin, fixed before the
runs: "blocked" = within +-25% of the reference's gamma around 0.

Verdict: "supported" if SGD's interval lies inside that band; "not supported" if entirely
outside; "inconclusive" otherwise.

    python analyses/lora_sgd.py sweeps/lora-rank.toml [--out-dir DIR]
"""

from __future__ import annotations

import sys

from interp.sweep.lora_artifact import claim_main

HYPOTHESIS = "lora_artifact_sgd"

if __name__ == "__main__":
    sys.exit(claim_main(HYPOTHESIS, sys.argv[1:]))
