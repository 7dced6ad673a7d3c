"""The verdict words of a report's page 1 (interp.report.verdict): each threshold from both sides."""

from __future__ import annotations

import pytest

from interp.report.verdict import (
    ABOVE,
    BELOW,
    INCONCLUSIVE,
    NOT_TESTED,
    NULL,
    P_NULL,
    P_TRANSMITS,
    TRANSMITS,
    WITHIN,
    control_verdict,
    verdict,
)

EPS = 1e-9


@pytest.mark.parametrize(
    ("gamma", "ci", "p", "word"),
    [
        # p around 0.01, interval above 0
        (0.3, (0.1, 0.5), P_TRANSMITS - EPS, TRANSMITS),
        (0.3, (0.1, 0.5), P_TRANSMITS, INCONCLUSIVE),
        # p < 0.01: the interval's lower end around 0
        (0.3, (EPS, 0.5), 0.001, TRANSMITS),
        (0.3, (0.0, 0.5), 0.001, INCONCLUSIVE),
        (0.3, (-0.1, 0.5), 0.001, INCONCLUSIVE),
        # no interval (one seed, no per-target one): p alone decides
        (0.3, None, 0.001, TRANSMITS),
        (0.3, None, 0.02, INCONCLUSIVE),
        (0.3, None, P_NULL, NULL),
        # p around 0.05, interval reaching 0
        (0.01, (-0.1, 0.2), P_NULL - EPS, INCONCLUSIVE),
        (0.01, (-0.1, 0.2), P_NULL, NULL),
        (-0.2, (-0.4, -0.1), 0.9, NULL),  # moved away from the teacher's target: no transmission
        # p >= 0.05 with the interval above 0: the permutation test does not confirm the seeds
        (0.2, (EPS, 0.3), 0.2, INCONCLUSIVE),
        (0.2, (0.0, 0.3), 0.2, NULL),
        # a small p with gamma <= 0 cannot read as transmission
        (0.0, None, 0.001, INCONCLUSIVE),
        # nothing to judge
        (None, None, None, NOT_TESTED),
        (0.3, (0.1, 0.5), None, NOT_TESTED),
        (0.3, (0.1, 0.5), float("nan"), NOT_TESTED),
    ],
)
def test_verdict_thresholds(gamma, ci, p, word):
    assert verdict(gamma, ci, p) == word


@pytest.mark.parametrize(
    ("ci", "word"),
    [
        ((EPS, 1.0), ABOVE),
        ((0.0, 1.0), WITHIN),
        ((-1.0, -EPS), BELOW),
        ((-1.0, 0.0), WITHIN),
        (None, None),
        ((float("nan"), 1.0), None),
    ],
)
def test_control_verdict_thresholds(ci, word):
    assert control_verdict(ci) == word


def test_arm_label_names_the_student_as_a_researcher_reads_it():
    from interp.report.answer import arm_label

    same = {
        "model": "smollm2-135m-instruct",
        "objective": "distill",
        "distill_vocab": "full",
        "method": "lora",
    }
    cross = {
        "model": "gemma3-270m",
        "objective": "distill",
        "distill_vocab": "numbers",
        "method": "full",
    }
    hard = {
        "model": "Qwen/Qwen2.5-0.5B",
        "objective": "sft",
        "distill_vocab": None,
        "method": "lora",
    }
    assert (
        arm_label("a", same, True)
        == "same-init student 'a' (SmolLM2-135M-Instruct, soft labels, full vocabulary, LoRA)"
    )
    assert arm_label("b", cross, False) == (
        "cross-model student 'b' (Gemma-3-270M base, soft labels over the number alphabet, full finetuning)"
    )
    assert arm_label("c", hard, True) == (
        "same-init student 'c' (Qwen/Qwen2.5-0.5B, hard labels, the teacher's sampled tokens, LoRA)"
    )
