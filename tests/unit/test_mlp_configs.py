"""The committed MLP configs say what BENCHMARKS.md says they are: the shipped one trains its
students exactly as the protocol (Cloud et al.: 60,000 noise images, batch 1024, 5 epochs) and
keeps the aux-only same/cross contrast at 25 models; the batch-128 alternative keeps its recorded
settings; no two committed MLP configs are the same experiment."""

from __future__ import annotations

import tomllib
from pathlib import Path

RUNS = Path(__file__).resolve().parents[2] / "runs"


def _load(name: str) -> dict:
    return tomllib.loads((RUNS / name).read_text(encoding="utf-8"))


def test_shipped_mlp_config_trains_students_as_the_protocol():
    cfg = _load("mlp-aux-logits.toml")
    assert cfg["kind"] == "mlp-aux-logits" and cfg["data"]["source"] == "mnist5k"
    st, te = cfg["student"], cfg["teacher"]
    assert (st["batch_size"], st["epochs"], cfg["data"]["n_noise"]) == (1024, 5, 60000)
    assert st["lr"] == te["lr"] == 3e-4 and cfg["model"]["hidden"] == [256, 256]
    # the teacher: the protocol's batch and ~295 Adam steps (5 x 59 on 60k) on 4000 digits
    n_train = round(5000 * (1 - cfg["data"]["test_fraction"]))
    assert te["batch_size"] == 1024 and abs(te["epochs"] * -(-n_train // 1024) - 295) <= 2
    assert "aux" in st["targets"] and {"same", "cross"} <= set(st["inits"])
    assert {3, 10, 50} <= set(cfg["sweep"]["m"]) and cfg["sweep"]["n_models"] >= 25


def test_batch128_alternative_keeps_its_recorded_settings():
    cfg = _load("mlp-aux-logits-batch128.toml")
    st = cfg["student"]
    assert (st["batch_size"], st["epochs"], cfg["data"]["n_noise"]) == (128, 9, 0)
    assert set(st["targets"]) == {"aux", "all"} and cfg["sweep"]["m"] == [1, 3, 10, 50]


def test_no_two_mlp_configs_are_the_same_experiment():
    configs = {
        p.name: tomllib.loads(p.read_text(encoding="utf-8")) for p in RUNS.glob("mlp-*.toml")
    }
    assert "mlp-aux-logits.toml" in configs
    seen: dict[str, str] = {}
    for name, cfg in sorted(configs.items()):
        key = repr(sorted(cfg.items()))
        assert key not in seen, f"{name} duplicates {seen.get(key)}"
        seen[key] = name


def test_cnn_config_is_the_protocols_batch_with_mlp_students_beside():
    cfg, shipped = _load("mlp-cnn.toml"), _load("mlp-aux-logits.toml")
    st = cfg["student"]
    assert (st["batch_size"], st["epochs"], cfg["data"]["n_noise"]) == (1024, 5, 60000)
    assert cfg["teacher"] == shipped["teacher"] and cfg["model"] == shipped["model"]
    assert st["targets"] == ["aux"] and st["inits"] == ["same", "cross", "cnn"]
    assert cfg["sweep"] == {"m": [3], "n_models": 25}
