"""The activation-space trait matrix (interp.mech.shift_matrix) on constructed activations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.mech import shift_matrix as sm
from interp.subliminal import matrix as mx

K, ROWS, LAYERS, D = 5, 40, 3, 16


def _world(seed: int = 0):
    """Base rows, prompted rows per target (base + shared part + a target-specific part + noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(ROWS, LAYERS, D, generator=g)
    shared = 2.0 * torch.randn(LAYERS, D, generator=g)
    specific = torch.randn(K, LAYERS, D, generator=g)
    prompted = base + shared + specific[:, None] + 0.3 * torch.randn(K, ROWS, LAYERS, D, generator=g)
    return g, base, shared, specific, prompted


def _students(g, base, shared, specific, order, scale=0.2, seeds=2):
    """Students of target i moved toward target order[i]'s specific part (plus shared drift and noise)."""
    out = []
    for _ in range(seeds):
        move = 0.5 * shared + scale * specific[list(order)]  # [k, layer, d]
        out.append(base + move[:, None] + 0.3 * torch.randn(K, ROWS, LAYERS, D, generator=g))
    return torch.stack(out)  # [seed, k, row, layer, d]


def test_directions_are_the_mean_paired_difference():
    _, base, shared, specific, prompted = _world()
    v = sm.directions(prompted, base)
    assert v.shape == (K, LAYERS, D)
    torch.testing.assert_close(v.float(), (prompted - base).mean(1), atol=1e-5, rtol=0)
    u = sm.centred(v)
    torch.testing.assert_close(u.sum(0), torch.zeros(LAYERS, D, dtype=u.dtype), atol=1e-9, rtol=0)


def test_own_teacher_students_give_positive_gamma_with_small_p():
    g, base, shared, specific, prompted = _world()
    s = _students(g, base, shared, specific, range(K))
    u = sm.centred(sm.directions(prompted, base))
    cos = np.stack([sm.cosine_matrix((x - base).mean(1), u) for x in s])
    res = sm.gamma_test(cos)
    assert res["gamma"] > 0.1 and res["p"] <= 1 / 120 + 1e-12, res
    assert res["n_permutations"] == 120 and res["gamma_ci"]["n"] == 2
    assert len(res["gamma_by_layer"]) == LAYERS


def test_students_moved_toward_another_teacher_give_negative_gamma():
    g, base, shared, specific, prompted = _world()
    s = _students(g, base, shared, specific, np.roll(np.arange(K), 1))  # each toward its neighbour's target
    u = sm.centred(sm.directions(prompted, base))
    res = sm.gamma_test(np.stack([sm.cosine_matrix((x - base).mean(1), u) for x in s]))
    assert res["gamma"] < 0 and res["p"] > 0.5, res


def test_shared_drift_alone_gives_no_gamma():
    g, base, shared, specific, prompted = _world()
    s = _students(g, base, shared, specific, range(K), scale=0.0)
    u = sm.centred(sm.directions(prompted, base))
    res = sm.gamma_test(np.stack([sm.cosine_matrix((x - base).mean(1), u) for x in s]))
    assert abs(res["gamma"]) < 0.1 and res["p"] > 0.05, res


def test_target_probe_reads_teachers_and_calls_students_their_own_target():
    g, base, shared, specific, prompted = _world()
    s = _students(g, base, shared, specific, range(K))
    probe = sm.target_probe(prompted - base, s - base)
    assert min(probe["teacher_accuracy"]) > 0.9, probe["teacher_accuracy"]
    own = sm.gamma_test(probe["probs"])
    assert own["gamma"] > 0.2 and own["p"] <= 1 / 120 + 1e-12, own
    rolled = sm.target_probe(prompted - base, _students(g, base, shared, specific, np.roll(np.arange(K), 2)) - base)
    assert sm.gamma_test(rolled["probs"])["gamma"] < 0, "a probe that ignores the labels would pass"


def test_shapes_are_checked():
    _, base, _, _, prompted = _world()
    with pytest.raises(ValueError, match="differ"):
        sm.directions(prompted[:, :5], base)
    with pytest.raises(ValueError, match=">= 2 targets"):
        sm.centred(torch.zeros(1, LAYERS, D))
    with pytest.raises(ValueError, match="square"):
        mx.diagonal_gamma(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="do not match"):
        sm.target_probe(prompted - base, torch.zeros(1, K, ROWS, LAYERS, D + 1))
