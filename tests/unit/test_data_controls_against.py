"""analyses/data_controls.py --against: arm minus arm per target, its interval at the run's level."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_script
from scipy import stats

from interp.store.artifacts import Run


def _script():
    return load_script("data_controls")


ROWS = {
    "top": {"gamma_per_seed_target": {"0": [0.05, 0.02, 0.04, 0.01], "1": [0.03, 0.04, 0.02, 0.02], "2": [0.1, 0.1, 0.1, 0.1]}},
    "random": {"gamma_per_seed_target": {"0": [0.01, 0.01, 0.02, 0.00], "1": [0.02, 0.01, 0.00, 0.01]}},
}


@pytest.mark.parametrize("ci", [0.8, 0.95, 0.99])
def test_the_interval_is_the_runs_level_over_targets_on_shared_seeds(tmp_path, ci):
    run = Run(tmp_path / "r", summary=None, config={"eval": {"ci": ci}}, analysis=None)
    v = _script()._against(run, ROWS, "top", "random", direction=1)
    d = np.mean([np.subtract(ROWS["top"]["gamma_per_seed_target"][s], ROWS["random"]["gamma_per_seed_target"][s])
                 for s in ("0", "1")], axis=0)  # seed 2: the other arm did not train it
    lo, hi = stats.t.interval(ci, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    assert (v.effect, v.n) == (pytest.approx(d.mean()), 4)
    assert (v.lo, v.hi) == (pytest.approx(lo), pytest.approx(hi))


def test_a_run_without_a_level_uses_95_percent(tmp_path):
    run = Run(tmp_path / "r", summary=None, config=None, analysis=None)
    wide = _script()._against(run, ROWS, "top", "random", direction=1)
    narrow = _script()._against(Run(tmp_path / "r", None, {"eval": {"ci": 0.8}}, None), ROWS, "top", "random", 1)
    assert wide.hi - wide.lo > narrow.hi - narrow.lo > 0
