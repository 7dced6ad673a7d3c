"""CUDA out-of-memory in training, faked on CPU: the step is retried with half the micro-batch
(never half the optimiser batch), logged; at micro-batch 1 it fails with one line."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from interp.lm.finetune import Example, FinetuneConfig, finetune
from interp.lm.loss import Objective
from interp.lm.models import format_prompt, tiny_model

SETTINGS = FinetuneConfig(epochs=2, lr=5e-2, warmup_steps=1, batch_size=4, micro_batch_size=4)


def _examples(tok, n=8):
    return [Example(format_prompt(tok, f"list {i}"), f"{i}1, {i}2" + ", 7" * (i % 3)) for i in range(n)]


def _train(settings: FinetuneConfig):
    model, tok = tiny_model("tiny-llama", seed=3)
    res = finetune(model, tok, _examples(tok), settings, seed=0, progress=False)
    return {n: t.clone() for n, t in res.delta.items()}, res.log


def _oom_on_calls(monkeypatch, calls: set[int]) -> list[int]:
    """Make Objective.block_losses raise CUDA OOM on the given call numbers (1-based); returns
    the micro-batch sizes it was called with."""
    real = Objective.block_losses
    seen: list[int] = []

    def faulty(self, model, micro, *args, **kwargs):
        seen.append(len(micro))
        if len(seen) in calls:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (faked)")
        return real(self, model, micro, *args, **kwargs)

    monkeypatch.setattr(Objective, "block_losses", faulty)
    return seen


def test_an_oom_halves_the_micro_batch_and_the_result_is_that_of_the_smaller_micro_batch(monkeypatch, caplog):
    clean, clean_log = _train(SETTINGS)
    half, half_log = _train(dataclasses.replace(SETTINGS, micro_batch_size=2))
    # the first step's one micro-batch (4 rows) runs out of memory: the step is retried with 2
    # rows a micro-batch, and every later step keeps the halved micro-batch
    seen = _oom_on_calls(monkeypatch, {1})
    with caplog.at_level(logging.WARNING, logger="interp"):
        faulted, faulted_log = _train(SETTINGS)
    assert seen[0] == 4 and set(seen[1:]) == {2}  # retried with 2 rows a micro-batch from then on
    assert [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()] == [
        "CUDA out of memory at optimiser step 1: micro-batch 4 -> 2, step retried (the optimiser "
        "batch stays 4: the same update)"]
    # bit-identical to a run configured with the halved micro-batch from the start ...
    assert faulted.keys() == half.keys()
    assert all(torch.equal(faulted[n], half[n]) for n in half)
    assert faulted_log["loss"] == half_log["loss"] and faulted_log["steps"] == clean_log["steps"] == 4
    # ... and to the unfaulted run up to float summation order (same batches, same update)
    assert max((faulted[n] - clean[n]).abs().max().item() for n in clean) < 1e-5
    assert faulted_log["loss"] == pytest.approx(clean_log["loss"], rel=1e-5)


def test_a_partial_step_is_dropped_before_the_retry(monkeypatch):
    half, _ = _train(dataclasses.replace(SETTINGS, micro_batch_size=2))
    # micro-batch 2 from the start; the OOM hits the second micro-batch of step 1, after the first
    # micro-batch's backward: kept, its gradient would count twice and the result would differ
    seen = _oom_on_calls(monkeypatch, {2})
    faulted, _ = _train(dataclasses.replace(SETTINGS, micro_batch_size=2))
    assert seen[:4] == [2, 2, 1, 1]
    once, _ = _train(dataclasses.replace(SETTINGS, micro_batch_size=1))
    assert all(torch.equal(faulted[n], once[n]) for n in once)
    assert max((faulted[n] - half[n]).abs().max().item() for n in half) < 1e-5


def test_an_oom_at_micro_batch_one_is_one_line(monkeypatch):
    _oom_on_calls(monkeypatch, set(range(1, 100)))
    with pytest.raises(RuntimeError, match=r"^CUDA out of memory at optimiser step 1 with micro-batch 1: ") as e:
        _train(SETTINGS)
    assert "\n" not in str(e.value)
    assert isinstance(e.value.__cause__, torch.cuda.OutOfMemoryError)
