"""The update matrix over targets (interp.analysis.update_matrix): matched minus mismatched
cosines of each target's student update with every target's teacher update."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from interp.analysis.update_matrix import matched_contrast, update_matrix
from interp.lm.delta import Delta
from interp.mech.alignment import delta_cosines

TARGETS = ["owl", "cat", "fox", "bear"]
NAMES = {"model.layers.0.self_attn.q_proj.weight": (24, 16), "model.layers.1.mlp.up_proj.weight": (32, 16)}


def _lora(g: torch.Generator, scale: float = 1.0, r: int = 2) -> Delta:
    return Delta(factors={n: (torch.randn(r, i, generator=g) * scale, torch.randn(o, r, generator=g))
                          for n, (o, i) in NAMES.items()})  # fmt: skip


def _plus(a: Delta, b: Delta, wb: float) -> Delta:
    """a + wb * b as dense parts (a full-finetune-like student)."""
    return Delta(dense_parts={n: a.dense(n) + wb * b.dense(n) for n in NAMES})


def test_matched_contrast_is_diagonal_minus_off_diagonal_with_its_permutation_p():
    k = 4
    m = np.full((3, k, k), 0.1)
    for s in range(3):
        np.fill_diagonal(m[s], 0.5 + 0.1 * s)
    out = matched_contrast(m)
    assert out["per_seed"] == pytest.approx([0.4, 0.5, 0.6])
    assert out["contrast"]["mean"] == pytest.approx(0.5) and out["contrast"]["n"] == 3
    half = 4.302652729749462 * 0.1 / 3**0.5  # t(0.975, df=2) x sd / sqrt(n) of [0.4, 0.5, 0.6]
    assert (out["contrast"]["lo"], out["contrast"]["hi"]) == pytest.approx((0.5 - half, 0.5 + half))
    assert out["matched"] == pytest.approx(0.6) and out["mismatched"] == pytest.approx(0.1)
    # the identity labelling is the only one of 24 as large: p at its floor, exact
    assert out["contrast"]["n_permutations"] == 24 and out["contrast"]["p"] == pytest.approx(1 / 24)
    # a matrix whose rows all look alike has no contrast, whatever its level
    flat = matched_contrast(np.full((2, k, k), 0.7))
    assert flat["contrast"]["mean"] == pytest.approx(0.0) and flat["contrast"]["p"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"\[seeds, k, k\]"):
        matched_contrast(np.zeros((2, 3, 4)))


def _ctx(tmp_path, students: dict[str, dict[str, dict[str, Delta]]], teachers: dict[str, Delta], rank: int = 2):
    """A run folder holding these deltas, and the analysis context `update_matrix` reads."""
    art = {"teachers": {}, "students_by_target": {}}
    for t, d in teachers.items():
        d.save(tmp_path / f"teacher-{t}.safetensors")
        art["teachers"][t] = {"spec": "tiny", "delta": f"teacher-{t}.safetensors"}
    for name, by_t in students.items():
        for t, seeds in by_t.items():
            for seed, d in seeds.items():
                (tmp_path / f"{name}-{t}-{seed}").mkdir()
                d.save(tmp_path / f"{name}-{t}-{seed}" / "delta.safetensors")
                art["students_by_target"].setdefault(name, {}).setdefault(t, {})[seed] = f"{name}-{t}-{seed}"
    lora = SimpleNamespace(settings=lambda train: SimpleNamespace(method="lora"))
    config = SimpleNamespace(trait=SimpleNamespace(target_list=lambda: TARGETS), teacher=SimpleNamespace(model="tiny"),
                             train=None)  # fmt: skip
    return SimpleNamespace(config=config, art=art, cfg={"seed": 0}, teacher_seeds={"tiny": {0}}, student_cfg=lambda name: lora, a=SimpleNamespace(subspace_rank=rank), path=lambda rel: tmp_path / rel,
                           spec_of=lambda name: "gemma" if name == "cross" else "tiny")  # fmt: skip


def test_students_that_follow_their_own_teacher_are_told_apart_from_a_shared_direction(tmp_path):
    g = torch.Generator().manual_seed(0)
    common = _lora(g)  # a direction every teacher's update shares, whatever its trait
    teachers = {t: _plus(_lora(g), common, 1.0) for t in TARGETS}
    own = {t: {str(s): _plus(_lora(g), teachers[t], 0.5) for s in range(2)} for t in TARGETS}
    shared = {t: {str(s): _plus(_lora(g), common, 2.0) for s in range(2)} for t in TARGETS}
    partial = {t: {"0": _lora(g)} for t in TARGETS[:3]}  # no student for the fourth target
    ctx = _ctx(tmp_path, {"own": own, "shared": shared, "partial": partial, "cross": own}, teachers)
    out = update_matrix(ctx)
    assert set(out["students"]) == {"own", "shared"}
    assert "not every target" in out["skipped"]["partial"] and "not the teachers'" in out["skipped"]["cross"]
    o = out["students"]["own"]
    assert o["seeds"] == [0, 1]
    # seed 0 is the teachers' seed: its LoRA may share their init, so seed 1 is also given alone
    assert o["shared_init_seeds"] == [0] and o["independent_init"]["seeds"] == [1]
    assert o["independent_init"]["cosine"]["per_seed"] == pytest.approx(o["cosine"]["per_seed"][1:])
    assert o["cosine"]["per_seed_p"] == [pytest.approx(1 / 24)] * 2
    # each cell is the overall cosine of that student's and that teacher's deltas, seed-averaged
    mats = np.array([[[delta_cosines(own[t][s], teachers[u])["overall"] for u in TARGETS] for t in TARGETS]
                     for s in ("0", "1")])  # fmt: skip
    assert np.asarray(o["cosine"]["seed_mean_matrix"]) == pytest.approx(mats.mean(axis=0))
    assert o["cosine"]["contrast"]["mean"] > 0.2 and o["cosine"]["contrast"]["p"] == pytest.approx(1 / 24)
    assert o["span_share"]["contrast"]["mean"] > 0 and o["span_share"]["matched"] > o["span_share"]["baseline"]
    _report_rows_show(out, tmp_path)
    s = out["students"]["shared"]["cosine"]
    # the shared direction: every teacher looks alike to these students, so a large matched
    # cosine comes with an equal mismatched one and next to no contrast
    assert s["matched"] > 0.3 and abs(s["contrast"]["mean"]) < 0.1 * s["matched"]


def test_prompted_teachers_have_no_update_matrix(tmp_path):
    ctx = _ctx(tmp_path, {}, {})
    ctx.art["teachers"] = {t: {"spec": "tiny", "system": "You love them.", "delta": None} for t in TARGETS}
    assert update_matrix(ctx) is None


def _report_rows_show(out, tmp_path):
    """The report's table prints each arm's matched, mismatched and contrast figures."""
    from reportlab.platypus import Table

    from interp.analysis.update_matrix import render_update_matrix
    from interp.fmt import fmt, fmt_est
    from interp.report.doc import Doc, ReportInfo

    doc = Doc(tmp_path, ReportInfo(tmp_path / "r.pdf", ["r"]), None)
    render_update_matrix(doc, "r", out)
    (table,) = [f for f in doc.story if isinstance(f, Table)]
    cells = [[p.text for p in row] for row in table._cellvalues]
    own = out["students"]["own"]
    assert [c[0] for c in cells[1:]] == ["own", "own, own-init seeds", "shared", "shared, own-init seeds"]
    assert cells[2][1] == "1"
    assert cells[1][2] == f"{fmt(own['cosine']['matched'])} | {fmt(own['cosine']['mismatched'])}"
    assert cells[1][3] == fmt_est(own["cosine"]["contrast"]) and cells[1][6] == fmt_est(own["span_share"]["contrast"])
    assert cells[2][3] == fmt_est(own["independent_init"]["cosine"]["contrast"])


def test_update_steps_at_each_checkpoint_and_the_trajectory_figure(tmp_path):
    """Each step's own and others' cosines are recomputed from that step's saved factors; the
    last step is the final update, so it equals the update matrix's seed-0 contrast."""
    import json

    from interp.analysis.trajectories import trajectories_figure, update_steps

    g = torch.Generator().manual_seed(1)
    teachers = {t: _lora(g) for t in TARGETS}
    steps = {t: [_plus(_lora(g, 0.1), teachers[t], w) for w in (0.2, 0.6)] for t in TARGETS}  # step 1, step 2
    ctx = _ctx(tmp_path, {"traj": {t: {"0": steps[t][1]} for t in TARGETS}}, teachers)
    for t in TARGETS:
        d = tmp_path / f"traj-{t}-0"
        (d / "checkpoints").mkdir()
        steps[t][0].save(d / "checkpoints" / "delta-step1.safetensors")
        (d / "train_log.json").write_text(json.dumps({"steps": 2}))
    ctx.config.eval = SimpleNamespace(ci=0.95)
    rows = update_steps(ctx, "traj")
    assert [r["step"] for r in rows] == [1, 2]
    for r, k in zip(rows, (0, 1)):
        c = np.array([[delta_cosines(steps[t][k], teachers[u])["overall"] for u in TARGETS] for t in TARGETS])
        assert r["own"] == pytest.approx(np.trace(c) / 4)
        assert r["others"] == pytest.approx((c.sum() - np.trace(c)) / 12)
        assert r["contrast"] == pytest.approx(r["own"] - r["others"])
        # the interval is over targets: each row's own cosine minus its mean over the other teachers
        units = np.diag(c) - (c.sum(axis=1) - np.diag(c)) / 3
        half = stats.t.ppf(0.975, 3) * units.std(ddof=1) / 2
        ci = r["contrast_ci"]
        assert (ci["mean"], ci["lo"], ci["hi"], ci["n"]) == pytest.approx((units.mean(), units.mean() - half,
                                                                         units.mean() + half, 4))
    assert rows[1]["own"] > rows[0]["own"]  # the students move toward their own teachers
    final = update_matrix(ctx)["students"]["traj"]["cosine"]
    assert rows[-1]["contrast"] == pytest.approx(final["contrast"]["mean"])
    # the figure draws the other teachers' line and the gradient panel (five panels, 2 rows)
    est = {"mean": 0.1, "lo": 0.0, "hi": 0.2, "n": 2}
    traj = {"traj": {"steps": [{"step": s, "trait_score": est, "vector_cos": {"mean": 0.1 * s} if s else None,
                                "update_cos": r["own"] if s else None, "gradient_cos": {"cos_ci": est}}
                               for s, r in zip((0, 1, 2), [rows[0], *rows])],
                     "gamma_steps": [{"step": 0, "gamma": 0.0, "gamma_ci": None}], "update_steps": rows}}  # fmt: skip
    out = trajectories_figure(traj, tmp_path / "traj.png")
    assert out.exists() and out.stat().st_size > 10_000


def test_shared_init_is_read_from_the_teachers_manifests(tmp_path):
    """A student shares a teacher's LoRA init only when it trains LoRA on a base whose teacher's
    manifest records the student's seed; a teacher folder without a manifest counts as trained on
    the run's seed (what teachers did before they had their own seed stream)."""
    import json

    from interp.analysis.update_matrix import shares_teacher_init, teacher_seeds
    from interp.subliminal.stages import teacher_seed

    g = torch.Generator().manual_seed(0)
    for folder, seed in (("owl", teacher_seed(7, "owl")), ("cat", None), ("gemma-owl", 9)):
        (tmp_path / folder).mkdir()
        _lora(g).save(tmp_path / folder / "delta.safetensors")
        if seed is not None:
            (tmp_path / folder / "manifest.json").write_text(json.dumps({"params": {"seed": seed}}))
    art = {"teachers": {t: {"spec": "tiny", "delta": f"{t}/delta.safetensors"} for t in ("owl", "cat")},
           "teacher_deltas": {"gemma": "gemma-owl"}}  # fmt: skip
    ctx = SimpleNamespace(art=art, cfg={"seed": 7}, path=lambda rel: tmp_path / rel)
    assert teacher_seeds(ctx) == {"tiny": {teacher_seed(7, "owl"), 7}, "gemma": {9}}
    students = {"lora": ("lora", "tiny"), "full": ("full", "tiny"), "lora-gemma": ("lora", "gemma")}
    ctx.teacher_seeds = teacher_seeds(ctx)
    ctx.config = SimpleNamespace(train=None)
    ctx.student_cfg = lambda name: SimpleNamespace(settings=lambda train: SimpleNamespace(method=students[name][0]))
    ctx.spec_of = lambda name: students[name][1]
    assert shares_teacher_init(ctx, "lora", 7) and shares_teacher_init(ctx, "lora", str(teacher_seed(7, "owl")))
    assert not shares_teacher_init(ctx, "lora", 8) and not shares_teacher_init(ctx, "full", 7)
    assert shares_teacher_init(ctx, "lora-gemma", 9) and not shares_teacher_init(ctx, "lora-gemma", 7)


def test_finetuned_teachers_draw_seeds_apart_from_students_and_from_each_other():
    from interp.subliminal.stages import teacher_seed

    seeds = {teacher_seed(0, t) for t in TARGETS}
    assert len(seeds) == len(TARGETS)  # one stream per target
    assert seeds.isdisjoint(range(1000))  # no student seed of a usual sweep
    assert teacher_seed(0, "owl") == teacher_seed(0, "owl") != teacher_seed(1, "owl")
