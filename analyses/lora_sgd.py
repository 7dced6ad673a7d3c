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

from interp.sweep import lora_artifact as study
from interp.sweep.scripts import run_sweep_script

HYPOTHESIS = "lora_artifact_sgd"


def test(sweep, root):  # noqa: ANN001, ANN201 - a Sweep and its folder
    cells, missing = study.cells(sweep, root)
    if missing:
        print("points without a result: " + "; ".join(f"{p} ({why})" for p, why in missing.items()))
    return study.sgd_blocks(cells)


def main(argv: list[str]) -> int:
    return run_sweep_script(HYPOTHESIS, test, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
