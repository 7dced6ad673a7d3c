"""Per-example attribution by the first-order alignment (issue 30, item 3): each row's score is
-<grad of its own training loss, grad of the target's log-odds> at the student's initialisation.
The inner products match a closed form on a hand-made softmax-regression model; the log-odds
gradient matches the evaluator's log-odds and a finite difference of them; the rows' shares add
up to the whole dataset's first-order prediction and each equals that row's own; on tiny models
the first-order top rows are rows planted from a teacher that favours the target, where random
rows are not; the config refuses what the score cannot do, in one line."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from helpers import RecordingDoc, tiny_subliminal_config

from interp.config import ConfigError, build
from interp.lm.attribution import first_order_scores, log_odds_gradient, row_inner_products
from interp.lm.finetune import Example, FinetuneConfig, trained_weights
from interp.lm.loss import Teacher
from interp.lm.models import format_prompt, tiny_model
from interp.mech.gradient import iter_imitation_gradients
from interp.subliminal.config import SubliminalConfig
from interp.subliminal.data_controls import rows_by_score

torch.set_num_threads(1)

CANDIDATES = ["owl", "cat", "dolphin"]  # multi-token candidates under a char-level tokenizer


# ---------------------------------------------------------------- the pure scoring


def test_row_inner_products_match_the_closed_form_of_softmax_regression():
    """Logits z = W x, loss l_r = CE(W x_r, y_r): grad l_r = (p_r - e_{y_r}) x_r^T. The log-odds of
    class t at a query x_q is z_t - mean_{c != t} z_c (the normaliser cancels), so its gradient is
    w x_q^T with w = e_t - (1 - e_t) / (K - 1), and <grad l_r, grad f> = ((p_r - e_y) . w)(x_r . x_q)."""
    g = torch.Generator().manual_seed(0)
    k, d, n, t = 4, 5, 7, 2
    W = torch.randn(k, d, generator=g, dtype=torch.float64, requires_grad=True)
    X, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(0, k, (n,), generator=g)
    xq = torch.randn(d, generator=g, dtype=torch.float64)
    lp = torch.log_softmax(W @ xq, dim=-1)
    f = lp[t] - (lp.sum() - lp[t]) / (k - 1)
    (grad_f,) = torch.autograd.grad(f, [W])

    def row_losses(micro: list[int]) -> torch.Tensor:
        idx = torch.tensor(micro)
        return torch.nn.functional.cross_entropy(X[idx] @ W.T, y[idx], reduction="none")

    got = row_inner_products(row_losses, list(range(n)), [W], [grad_f], micro_batch_size=3)
    w = torch.full((k,), -1.0 / (k - 1), dtype=torch.float64)
    w[t] = 1.0
    p = torch.softmax(X @ W.detach().T, dim=-1)
    want = ((p - torch.nn.functional.one_hot(y, k)) @ w) * (X @ xq)
    assert got == pytest.approx(want.tolist(), rel=1e-10, abs=1e-12)
    assert len(set(np.sign(got))) == 2  # both signs occur: a non-trivial check
    with pytest.raises(ValueError, match="shape"):
        row_inner_products(lambda m: row_losses(m).sum(), [0, 1], [W], [grad_f], micro_batch_size=2)


def _tiny(objective: str):  # noqa: ANN202
    model, tok = tiny_model("tiny-llama", seed=0)
    model = model.double()
    tok.padding_side = "right"
    settings = FinetuneConfig(objective=objective, layers=[1])
    teacher = None
    if objective == "distill":  # soft labels from a differently initialised teacher of the same tokenizer
        t_model, _ = tiny_model("tiny-llama", seed=1)
        teacher = Teacher(t_model.double())
    return model, tok, settings, teacher


def _prompts(tok) -> list[str]:  # noqa: ANN001
    return [format_prompt(tok, q) + "My favorite animal is the" for q in ("Which animal?", "Name one.")]


def test_the_log_odds_gradient_is_the_evaluators_log_odds_and_its_finite_difference():
    from interp.subliminal.evaluate import candidate_logprobs
    from interp.subliminal.matrix import log_odds

    model, tok, settings, _ = _tiny("sft")
    names = trained_weights(model, settings)
    prompts = _prompts(tok)
    value, grad = log_odds_gradient(model, tok, prompts, CANDIDATES, "cat", names, batch_size=1)
    assert value == pytest.approx(log_odds(candidate_logprobs(model, tok, prompts, CANDIDATES))[1], rel=1e-5)

    params = dict(model.named_parameters())
    eps = 1e-5

    def moved(sign: float) -> float:
        with torch.no_grad():
            for n, gr in zip(names, grad):
                params[n] += sign * eps * gr
        v = log_odds_gradient(model, tok, prompts, CANDIDATES, "cat", names)[0]
        with torch.no_grad():
            for n, gr in zip(names, grad):
                params[n] -= sign * eps * gr
        return v

    sq = sum(float(gr.pow(2).sum()) for gr in grad)
    assert sq > 1e-6
    assert (moved(1.0) - moved(-1.0)) / (2 * eps) == pytest.approx(sq, rel=1e-4)
    with pytest.raises(ValueError, match="among >= 2 candidates"):
        log_odds_gradient(model, tok, prompts, ["owl", "cat"], "dolphin", names)


@pytest.mark.parametrize("objective", ["sft", "distill"])
def test_row_shares_add_up_to_the_datasets_first_order_prediction_and_each_is_its_own(objective):
    model, tok, settings, teacher = _tiny(objective)
    names = trained_weights(model, settings)
    examples = [Example(format_prompt(tok, f"numbers {i}"), f"{i}3, {i}7, 1{i}" * (1 + i % 2),
                        format_prompt(tok, f"numbers {i}", "You love owls."), (1, 2) if i == 2 else ())
                for i in range(5)]  # fmt: skip
    _, grad_f = log_odds_gradient(model, tok, _prompts(tok), CANDIDATES, "owl", names)
    direction = dict(zip(names, grad_f))
    end = tok.eos_token
    scores = first_order_scores(model, tok, examples, names, grad_f, end, settings=settings, teacher=teacher,
                                micro_batch_size=2)  # fmt: skip

    def predicted(exs: list[Example]) -> float:  # -<grad L, grad f>, L the mean over the loss positions
        (g,) = iter_imitation_gradients(model, tok, exs, names, len(exs), end, settings=settings, teacher=teacher)
        return -sum(float((g[n] * direction[n]).sum()) for n in names)

    # the float64 model is float64 but for its RMSNorms (float32 inside, as transformers writes
    # them): the two paths, which scale the loss before or after the backward pass, agree to ~1e-8
    whole = predicted(examples)
    assert abs(whole) > 1e-6
    assert sum(r["contribution"] for r in scores) == pytest.approx(whole, rel=1e-6)
    for ex, r in zip(examples, scores):
        assert r["per_position"] == pytest.approx(predicted([ex]), rel=1e-6)
    n = [r["n_positions"] for r in scores]
    assert n[2] == n[0] - 2  # the masked row scores over its loss positions only
    assert [r["contribution"] * sum(n) / k for r, k in zip(scores, n)] == pytest.approx([r["per_position"] for r in scores])


# ---------------------------------------------------------------- config


def _cfg(*students: dict, eval_questions: str = "test", **over) -> SubliminalConfig:  # noqa: ANN003
    raw = copy.deepcopy(tiny_subliminal_config(**over) | {"name": "tiny"})
    raw["students"] = [*students, {"name": "control", "data": "control"}]
    raw["eval"]["questions"] = eval_questions
    return build(SubliminalConfig, raw)


@pytest.mark.parametrize(("student", "over", "message"), [
    ({"subset": "first-order-top"}, {"eval_questions": "all"},
     "'a' subset = 'first-order-top' ranks rows by the target's log-odds on the questions the run is not evaluated on; "
     "eval.questions = 'all' leaves no unscored question (set 'test': rows then scored on 'dev', or 'dev')"),
    ({"subset": "first-order-bottom", "subset_fraction": 0.1}, {"data__n_keep": 8}, "'a' subset_fraction = 0.1 keeps no row of 8"),
    ({"subset": "first-order-top", "data": "control"}, {}, "'a' sets subset, which applies to trait data only"),
    ({"subset": "first-order-up"}, {}, "first-order-up"),
])  # fmt: skip
def test_unsupported_first_order_subsets_are_one_line_naming_the_student(student, over, message):
    with pytest.raises(ConfigError) as e:
        _cfg({"name": "a", **student}, **over)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_first_order_subsets_refuse_a_trait_without_candidates_and_take_cross_model_students():
    raw = copy.deepcopy(tiny_subliminal_config() | {"name": "tiny"})
    raw["trait"] = {"kind": "misalignment", "target": "misaligned"}
    raw["students"] = [{"name": "a", "subset": "first-order-top"}, {"name": "control", "data": "control"}]
    raw["eval"]["questions"] = "test"
    with pytest.raises(ConfigError, match="trait.kind = 'misalignment' has no one-word candidates"):
        build(SubliminalConfig, raw)
    cross = _cfg({"name": "x", "model": "tiny-gemma", "subset": "first-order-top", "subset_fraction": 0.25})
    assert cross.students[0].subset == "first-order-top"  # scored at the cross-model student's own base


def test_the_score_reads_the_half_of_the_questions_the_run_is_not_scored_on():
    from interp.subliminal.attribution import scoring_questions, scoring_split
    from interp.subliminal.evaluate import questions

    for split, other in (("test", "dev"), ("dev", "test")):
        cfg = _cfg({"name": "a", "subset": "first-order-top"}, eval_questions=split)
        trait = cfg.get_trait()
        scored = scoring_questions(trait, cfg.eval)
        assert scoring_split(split) == other and len(scored) == len(trait.question_texts()) // 2
        assert not set(scored) & set(questions(trait, cfg.eval))
    with pytest.raises(ValueError, match="'all' leaves no unscored half"):
        scoring_split("all")


# ---------------------------------------------------------------- planted rows through the run's path


def _planted(tmp_path):  # noqa: ANN001, ANN202
    """40 rows, 10 of them (scattered) sampled from a teacher that favours the target: the base
    with the output rows of the characters of "owl" moved along the mean final hidden state (its
    log p(" owl") is higher after any prompt; its text still mostly random), the rest from the base."""
    from interp.lm.delta import Delta
    from interp.lm.generate import sample
    from interp.lm.models import Variant, load_model

    base, tok = load_model("tiny-llama", "cpu", "float32")
    head = base.get_output_embeddings().weight
    (name,) = [n for n, p in base.named_parameters() if p is head]
    enc = tok([format_prompt(tok, f"Continue: {i}, {i + 3}") for i in range(8)], return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = base(**enc, output_hidden_states=True).hidden_states[-1][enc["attention_mask"].bool()].mean(0)
        moved = head.detach().clone()
        moved[[tok.convert_tokens_to_ids(c) for c in "owl"]] += 6.0 * head.norm(dim=1).mean() * hidden / hidden.norm()
    Delta(dense_parts={name: moved}).save(tmp_path / "teacher.safetensors")
    teacher = Variant("tiny-llama", delta_path=tmp_path / "teacher.safetensors")
    t_model, _ = teacher.load("cpu", "float32")
    planted = sorted(random.Random("planted").sample(range(40), 10))
    users = [f"Continue: {i}, {i + 3}, {i + 6}" for i in range(40)]
    texts = [format_prompt(tok, u) for u in users]
    outs = {who: sample(m, tok, texts, max_new_tokens=12, temperature=1.0, batch_size=40, seed=s, progress=False)
            for who, m, s in (("teacher", t_model, 0), ("base", base, 1))}  # fmt: skip
    rows = [{"prompt": u, "completion": outs["teacher" if i in planted else "base"][i] or "7"} for i, u in enumerate(users)]
    return rows, planted, teacher


def test_first_order_top_rows_are_the_planted_rows_and_the_top_and_bottom_arms_share_one_stage(tmp_path):
    from interp.store.stages import RunDir, read_json, read_jsonl, write_jsonl
    from interp.subliminal.stages import student_rows

    torch.manual_seed(0)
    rows, planted, teacher = _planted(tmp_path)
    run = RunDir(tmp_path / "run", device="cpu", dtype="float32")
    data = run.compute("filter/trait", {"rows": 40}, lambda out: write_jsonl(out / "dataset.jsonl", rows))
    cfg = _cfg({"name": "top", "subset": "first-order-top", "subset_fraction": 0.25},
               {"name": "bottom", "subset": "first-order-bottom", "subset_fraction": 0.25},
               {"name": "top-lr", "subset": "first-order-top", "subset_fraction": 0.25, "lr": 1e-2},
               {"name": "top-full", "subset": "first-order-top", "subset_fraction": 0.25, "method": "full"},
               data__n_keep=40)  # fmt: skip
    got = {s.name: student_rows(cfg, run, s, "owl", 0, data, teacher, None) for s in cfg.students if s.data == "trait"}  # type: ignore[arg-type]
    stage = got["top"][2]["first_order"]
    # keyed by what the score depends on: lr acts after the first gradient, the trained weights do not
    assert got["bottom"][2]["first_order"].path == stage.path == got["top-lr"][2]["first_order"].path
    assert got["top-full"][2]["first_order"].path != stage.path
    scores = [r["contribution"] for r in read_jsonl(stage.path / "scores.jsonl")]
    assert len(scores) == 40 and read_json(stage.path / "info.json")["split"] == "dev"
    assert got["top"][0] == [rows[i] for i in rows_by_score(scores, "first-order-top", 0, 0.25)]
    assert got["top"][1] == {"subset": "first-order-top", "subset_fraction": 0.25}

    precision = lambda picked: len(set(picked) & set(planted)) / len(picked)  # noqa: E731
    top, bottom = (rows_by_score(scores, f"first-order-{e}", 0, 0.25) for e in ("top", "bottom"))
    assert precision(top) >= 0.6 and precision(bottom) <= 0.1, (top, planted)
    randoms = [precision(rows_by_score(scores, "random", seed=s, fraction=0.25)) for s in (0, 1, 2)]
    assert max(randoms) < precision(top) and sum(randoms) / 3 <= 0.4, randoms
    assert np.mean([scores[i] for i in planted]) > 2 * np.mean([s for i, s in enumerate(scores) if i not in planted])


# ---------------------------------------------------------------- the report


def test_the_report_shows_the_first_order_ends_and_the_agreement_with_the_scan():
    from interp.analysis.data_controls import render_first_order_ends, scan_ends

    rows = [{"prompt": f"Continue {i}", "completion": f"{i}, {i}"} for i in range(6)]
    ends = scan_ends(rows, [0.1, -0.5, 0.4, 0.0, 0.3, -0.1], n=2, key="contribution")
    assert [r["index"] for r in ends["top"]] == [2, 4] and [r["index"] for r in ends["bottom"]] == [1, 5]
    assert ends["top"][0]["contribution"] == 0.4

    doc = RecordingDoc()
    block = {"arms": ["fo-top", "fo-bottom"], "spearman_scan_mean": 0.25, "spearman_scan_per_position_mean": 0.5,
             "by_target": {"owl": ends | {"n": 6, "split": "dev", "spearman_scan": 0.25}}}  # fmt: skip
    render_first_order_ends(doc, block)  # type: ignore[arg-type]
    (table,) = doc.tables
    assert [r[:3] for r in table[1:]] == [["owl", "top", "2"], ["owl", "top", "4"], ["owl", "bottom", "1"],
                                          ["owl", "bottom", "5"]]  # fmt: skip
    assert "fo-top, fo-bottom" in doc.paras[0] and "'dev' questions" in doc.paras[0] and "6 (owl) rows" in doc.paras[0]
