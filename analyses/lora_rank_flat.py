"""Hypothesis `lora_artifact_rank_flat`: the rank curve is flat once the learning rate is tuned
per rank (the 151-run reply to Nief et al.).

Reads a held-out sweep over runs/lora-rank.toml: every LoRA rank (AdamW, soft labels over the
full vocabulary) at its tuned learning rate. Margin, fixed before the runs: "flat" = every
rank's gamma within +-25% of rank 8's.

Verdict: "supported" if every rank's interval lies inside the band; "not supported" if any
rank's interval lies entirely outside it; "inconclusive" otherwise.

    python analyses/lora_rank_flat.py sweeps/lora-rank.toml [--out-dir DIR]
"""

from __future__ import annotations

import sys

from interp.sweep.lora_artifact import claim_main

HYPOTHESIS = "lora_artifact_rank_flat"

if __name__ == "__main__":
    sys.exit(claim_main(HYPOTHESIS, sys.argv[1:]))
