"""`autocast = "auto"`: bfloat16 only where the device computes it natively. On a CPU without
avx512_bf16 or AMX, torch emulates bf16 matmuls (~6x slower than float32 on an AVX2 EPYC), so a
recipe written for one machine must not crawl on another; what was used is what the run records."""

from __future__ import annotations

import copy
import logging
import platform
from pathlib import Path

import pytest
import torch
from helpers import tiny_subliminal_config, write_config

import interp.lm.models as models
from interp.config import to_dict
from interp.lm.finetune import Example, FinetuneConfig, finetune
from interp.lm.models import native_bf16, tiny_model
from interp.runner import open_run


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64", reason="reads /proc/cpuinfo")
def test_the_cpu_probe_agrees_with_the_kernels_flags():
    flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split())
    assert native_bf16(torch.device("cpu")) == bool({"avx512_bf16", "amx_bf16"} & flags)


def _config(tmp_path: Path, data: str, train: str) -> Path:
    cfg = tiny_subliminal_config()
    cfg["data"]["autocast"], cfg["train"]["autocast"] = data, train
    return write_config(tmp_path, cfg, f"t-{data}-{train}")


@pytest.mark.parametrize("native", [True, False])
def test_a_run_opens_with_auto_resolved_to_what_the_device_runs(tmp_path, monkeypatch, native):
    monkeypatch.setattr(models, "native_bf16", lambda dev: native)
    _, auto, _ = open_run(_config(tmp_path, "auto", "auto"))
    used = "bf16" if native else "off"
    assert (auto.data.autocast, auto.train.autocast) == (used, used)
    _, explicit, _ = open_run(_config(tmp_path, used, used))
    drop = lambda d: {k: v for k, v in d.items() if k != "name"}  # noqa: E731
    assert drop(to_dict(auto)) == drop(to_dict(explicit))  # the same config, so the same stage keys
    assert [s.settings(auto.train).autocast for s in auto.students] == [used] * len(auto.students)


def test_an_explicit_bf16_on_an_emulating_device_is_warned_about_and_kept(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(models, "native_bf16", lambda dev: False)
    with caplog.at_level(logging.WARNING, logger="interp"):
        _, cfg, _ = open_run(_config(tmp_path, "bf16", "off"))
    assert cfg.data.autocast == "bf16" and cfg.train.autocast == "off"
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and warned[0].startswith('[data] autocast = "bf16"'), warned


@pytest.mark.parametrize("native", [True, False])
def test_finetune_called_directly_resolves_auto_the_same_way(monkeypatch, native):
    monkeypatch.setattr(models, "native_bf16", lambda dev: native)
    model, tok = tiny_model("tiny-llama", seed=0)
    tok.padding_side = "right"
    rows = [Example("<user>go<eos>\n<assistant>", f"{i}{i}, {i + 3}") for i in range(4)]

    def delta(autocast: str) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        s = FinetuneConfig(epochs=1, lr=1e-2, batch_size=4, micro_batch_size=4, warmup_steps=0, autocast=autocast)
        return dict(finetune(copy.deepcopy(model), tok, rows, s, end="<eos>", progress=False).delta.items())

    auto, same, other = delta("auto"), delta("bf16" if native else "off"), delta("off" if native else "bf16")
    assert all(torch.equal(auto[k], same[k]) for k in auto)
    assert any(not torch.equal(auto[k], other[k]) for k in auto)  # bf16 and float32 steps differ here
