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

from interp.sweep import lora_artifact as study
from interp.sweep.scripts import run_sweep_script

HYPOTHESIS = "lora_artifact_rank_flat"


def test(sweep, root):  # noqa: ANN001, ANN201 - a Sweep and its folder
    cells, missing = study.cells(sweep, root)
    if missing:
        print("points without a result: " + "; ".join(f"{p} ({why})" for p, why in missing.items()))
    return study.rank_flat(cells)


def main(argv: list[str]) -> int:
    return run_sweep_script(HYPOTHESIS, test, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
