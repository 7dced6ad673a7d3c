"""Test set-up: offline, deterministic, two threads (one per worker under xdist). Tiers: unit (tiny random models),
integration (the real embedded SmolLM2, marked `integration`), slow (excluded from make test)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the Hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import random  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs 2 workers: one thread each, never 2 x 2
    os.environ["INTERP_THREADS"] = "1"  # what the CLI's configure_threads and subprocesses read
    torch.set_num_threads(1)
else:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): its
    tiny models run faster so, and its numbers do not depend on the worker's thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# `make test` hands whole files to its two workers (--dist loadfile, --no-loadscope-reorder) in
# collection order. The longest go first, so that none of them starts late and sets the wall
# time (longest processing time first); the rest keep pytest's order. Measured on 2 cores: the
# quickstart file is ~4.5 minutes on one thread, the next ones 1-1.5 minutes.
LONG_FIRST = [
    "integration/test_quickstart_config.py",
    "integration/test_transmission_planted.py",
    "integration/test_sweep.py",
    "integration/test_integration_smollm2.py",
    "integration/test_faults.py",
    "integration/test_data_variants.py",
    "integration/test_analyze_run.py",
    "integration/test_analyses_scripts.py",
    "integration/test_lora_sweep.py",
    "integration/test_weight_split.py",
    "integration/test_shift_ablation_run.py",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("tests/"), len(rank)))
