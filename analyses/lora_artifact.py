"""Hypothesis `lora_artifact_full_ft`: soft-label transmission is a LoRA artefact, i.e. gamma
falls to chance under full finetuning at its tuned learning rate (Nief et al., arXiv 2606.00831,
for hard labels).

Reads a held-out sweep over runs/lora-rank.toml (each recipe at the learning rate chosen on the
development split): the full-finetuning point against the reference (LoRA rank 8, AdamW).
Margin, fixed before the runs: "chance" = within +-25% of the reference's gamma around 0.

Verdict: "supported" if full finetuning's interval (over seeds; over targets with one seed)
lies inside that band; "not supported" if it lies entirely outside; "inconclusive" otherwise,
including an interval wider than the band. "not testable" without the two points.

    python analyses/lora_artifact.py sweeps/lora-rank.toml [--out-dir DIR]
"""

from __future__ import annotations

import sys

from interp.sweep.lora_artifact import claim_main

HYPOTHESIS = "lora_artifact_full_ft"

if __name__ == "__main__":
    sys.exit(claim_main(HYPOTHESIS, sys.argv[1:]))
