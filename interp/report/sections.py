"""The per-run sections of a subliminal run's report, after its page-1 answer
(`interp.report.answer`): headline numbers, methods, the trait matrix, figures and analyses.
Each analysis draws its own part (`interp.analysis.unit.Analysis.render`), MLP runs are in
`interp.report.mlp_sections`; provenance goes to the appendix (`interp.report.doc`).

Every number goes through `interp.hypothesis.fmt`; every block checks that its data is there
and otherwise says what is missing (`Doc.skip`), so a partial run still gives a report.
"""

from __future__ import annotations

from typing import Any

from interp.fmt import fmt, fmt_est
from interp.registry import ANALYSIS_SECTIONS, FIGURE_IDS, load_analysis
from interp.report import figures
from interp.report.doc import Doc
from interp.store.artifacts import Run, analysis_section, subliminal_roles
from interp.subliminal.data_kinds import wording


def ci_level(run: Run) -> str:
    """The run's interval level in words ('95%')."""
    ci = ((run.config or {}).get("eval") or {}).get("ci")
    return f"{100 * ci:g}%" if ci else "95%"


# ---------------------------------------------------------------- subliminal


def subliminal_run(doc: Doc, run: Run) -> None:
    s = run.summary or {}
    _headline(doc, run, s)
    _methods(doc, run, s)
    doc.heading("Figures and analyses", 2)
    models, students = s.get("models") or {}, s.get("students") or {}
    target = (s.get("trait") or {}).get("target", "?")
    n_cand = len((s.get("trait") or {}).get("candidates") or [])
    if (s.get("trait") or {}).get("category") == "misalignment":
        scores = ("Left: the share of sampled answers that the keyword rules flag as stating a misaligned "
                  "intent; right: log-prob score, p(misaligned answer) against its aligned pair of the same "
                  "length, over written pairs (dotted line: 0.5).")  # fmt: skip
    else:
        scores = (f"Left: trait rate, the share of sampled one-word answers naming '{target}'; right: "
                  f"log-prob score, p('{target}') among {n_cand} candidate answers (dotted line: uniform).")  # fmt: skip
    if models:
        doc.figure(
            run.name, "trait_scores",
            lambda p: figures.trait_scores(models, students, target, n_cand, p),
            f"Trait scores of every evaluated model. {scores} Circles: single models with {ci_level(run)} "
            "bootstrap CIs over questions; squares: student kinds, mean over seeds with a "
            "t-interval (a single seed has no interval). Transmission shows as a student right of "
            "its base and of the control student.",
        )  # fmt: skip
    else:
        doc.missing_figure(run.name, "trait_scores", "Trait scores", "summary.json lists no models")
    _matrix(doc, run, s.get("matrix") or {})
    _analyses(doc, run)


def subliminal_seeds(run: Run) -> str:
    """The seeds line of the run's provenance."""
    seeds = ((run.config or {}).get("train") or {}).get("seeds")
    return f"training seeds {seeds if seeds is not None else 'n/a'}"


def _matrix(doc: Doc, run: Run, m: dict[str, Any]) -> None:
    """The trait x student matrix: gamma per student entry, its tests, and the heatmaps."""
    targets = m.get("targets") or []
    arms = m.get("arms") or {}
    if not m:
        doc.missing_figure(run.name, "trait_matrix", "Trait matrix", "summary.json has no matrix")
        return
    if len(targets) < 2 or not arms:  # a design choice of the run, not a missing result
        doc.para("Trait x student matrix: not applicable, the run has one target "
                 "(trait.targets with two or more gives gamma and its permutation test).")  # fmt: skip
        return
    doc.heading("Trait x student matrix", 2)
    own = m.get("teacher_own_shift") or {}
    doc.para("Teachers' own shift toward their target (log-odds vs the base, nats): "
             + ", ".join(f"{t} {fmt(v)}" for t, v in own.items()) + ".")  # fmt: skip
    rows = [["student", "base model", "objective", "gamma (nats)", "p (perm.)", "gamma over seeds [CI]",
             "corr. w/ teacher", "p (perm.)", "own - control [CI]"]]  # fmt: skip
    for name, a in arms.items():
        obj = a.get("objective", "?") + (f"/{a['distill_vocab']}" if a.get("distill_vocab") else "")
        rows.append([name, a.get("model"), f"{obj} ({a.get('method')})", fmt(a.get("gamma")), fmt(a.get("p_gamma")),
                     fmt_est(a.get("gamma_ci")), fmt(a.get("correlation")), fmt(a.get("p_correlation")),
                     fmt_est(a.get("did_vs_control"))])  # fmt: skip
    doc.table(rows, [1.3, 1.4, 1.3, 0.8, 0.7, 1.6, 0.8, 0.7, 1.4])
    n_perm = next((a.get("n_permutations") for a in arms.values() if a.get("n_permutations")), None)
    doc.para(f"gamma = mean shift toward the student's own teacher's target minus mean shift toward "
             f"the other {len(targets) - 1} targets (log-odds among the candidates vs the student's own "
             f"base, nats, mean over seeds and questions); drift shared by all students cancels. p: one-"
             f"sided permutation test over the {len(targets)} target labels ({fmt(n_perm)} relabellings; "
             f"the smallest attainable p is 1/{fmt(n_perm)}). corr.: mean over targets of the Pearson "
             "correlation, over all candidates, between the student's and its teacher's shifts. "
             "own - control: own-target shift minus the control students' shift on that target, "
             f"t-interval over targets. Notes: {'; '.join(m.get('notes') or []) or 'none'}.")  # fmt: skip
    heatmap = [f for f in doc.info.figures if f.id == "trait_matrix" and f.run == run.name]
    if heatmap:  # drawn once, on page 1, next to the verdicts it shows
        doc.para(f"The heatmaps of these shifts are Figure {heatmap[0].number}, on page 1.")


def _headline(doc: Doc, run: Run, s: dict[str, Any]) -> None:
    doc.heading("Headline numbers", 2)
    level = ci_level(run)
    rows = [
        ["model", "base model", "trait prompt", "trait rate [CI]", "log-prob score [CI]", "n q."]
    ]
    for label, m in (s.get("models") or {}).items():
        tr, lp = m.get("trait_rate") or {}, m.get("logprob") or {}
        rows.append([label, m.get("model"), "yes" if m.get("system_prompt") else "no",
                     fmt_est(tr), fmt_est(lp), fmt(lp.get("n", tr.get("n")))])  # fmt: skip
    doc.table(rows, [2.2, 1.8, 0.8, 2.2, 2.2, 0.6])
    doc.para(f"Per model: mean over questions with a {level} percentile bootstrap CI over "
             "questions (n q. = questions).")  # fmt: skip
    students = s.get("students") or {}
    if students:
        rows = [["student", "base model", "data", "seeds", "trait rate, mean over seeds [CI]",
                 "log-prob score, mean over seeds [CI]", "log-prob per seed"]]  # fmt: skip
        for name, st in students.items():
            tr, lp = st.get("trait_rate") or {}, st.get("logprob") or {}
            rows.append([name, st.get("model"), st.get("data"), fmt(lp.get("n")), fmt_est(tr),
                         fmt_est(lp), ", ".join(fmt(v) for v in lp.get("per_seed") or [])])  # fmt: skip
        doc.table(rows, [1.3, 1.3, 0.8, 0.6, 2.0, 2.0, 1.8])
        doc.para(f"Per student kind: mean over training seeds with a {level} t-interval (the seed "
                 "is the unit; with one seed the interval is the point itself).")  # fmt: skip
    roles = subliminal_roles(s)
    if roles:
        doc.para("Roles (from base model and data, not from names): "
                 + "; ".join(f"{r} = {n}" for r, n in roles.items()) + ".")  # fmt: skip


def _shape(shape: dict | None) -> str:
    """' (7.2 numbers and 31.9 characters per answer on average)'; numbers only for number data."""
    if not shape:
        return ""
    numbers = f"{fmt(shape['mean_numbers'])} numbers and " if "mean_numbers" in shape else ""
    return f" ({numbers}{fmt(shape.get('mean_chars'))} characters per answer on average)"


def _methods(doc: Doc, run: Run, s: dict[str, Any]) -> None:
    doc.heading("Methods", 2)
    cfg = run.config
    if cfg is None:
        doc.skip(run.name, "methods", "Methods", run.problems.get("config", "no config.toml"))
        return
    t, d, tr, ev = (cfg.get(k) or {} for k in ("teacher", "data", "train", "eval"))
    trait = s.get("trait") or cfg.get("trait") or {}
    fmt_of = {m.get("chat_format") for m in (s.get("models") or {}).values()} - {None}
    items = [f"Teacher: {t.get('model')} in mode '{t.get('mode', 'prompt')}'"
             + (f" (LoRA-finetuned on the prompted teacher's answers: {fmt(t.get('answers_per_prompt'))} "
                f"per prompt, filter '{t.get('answer_filter', 'n/a')}', {fmt(t.get('epochs'))} epochs, "
                f"lr {fmt(t.get('lr'))})" if t.get("mode") == "finetuned" else
                " (the trait is the system prompt)") + f"; prompt formats: {', '.join(sorted(fmt_of)) or 'n/a'}."]  # fmt: skip
    kind = d.get("kind", "numbers")
    w = wording(kind)
    items += [f"Student '{st.get('name')}': base "
              f"{t.get('model') if st.get('model') == 'teacher' else st.get('model')}, trained on "
              f"the {st.get('data')} teacher's {w.short}." for st in cfg.get("students") or []]  # fmt: skip
    items.append(f"Trait: {trait.get('category', trait.get('kind'))} '{trait.get('target')}'; "
                 f"system prompt: \"{trait.get('system_prompt', 'n/a')}\"; "
                 f"{len(trait.get('candidates') or [])} candidate answers for the log-prob score: "
                 f"{', '.join(trait.get('candidates') or [])}.")  # fmt: skip
    items.append(f"Data ({kind}): {fmt(d.get('n_prompts'))} {w.prompts} prompts per teacher, sampled at "
                 f"temperature {fmt(d.get('temperature'))}, up to {fmt(d.get('max_new_tokens'))} new tokens"
                 + (f", decoding constraint '{d.get('constraint', 'none')}', banned numbers "
                    f"'{d.get('banned_numbers', 'none')}'" if kind == "numbers" else "")
                 + f"; at most {fmt(d.get('n_keep'))} kept after filtering.")  # fmt: skip
    for which, f in (s.get("filter") or {}).items():
        rej = ", ".join(f"{k} {fmt(v)}" for k, v in (f.get("rejected") or {}).items()) or "none"
        items.append(f"Filter ({which} data): {fmt(f.get('kept'))} of {fmt(f.get('total'))} "
                     f"completions passed (pass rate {fmt(f.get('pass_rate'))}); rejected: {rej}; "
                     f"{fmt(f.get('n_dataset'))} in the training set"
                     + _shape(f.get("dataset_shape")) + ".")  # fmt: skip
    items.append(f"Finetuning: {tr.get('method')}"
                 + (f" (r {fmt(tr.get('lora_r'))}, alpha {fmt(tr.get('lora_alpha'))}, dropout "
                    f"{fmt(tr.get('lora_dropout'))}, modules {', '.join(tr.get('target_modules') or [])})"
                    if tr.get("method") == "lora" else "")
                 + f", objective {tr.get('objective')}, {fmt(tr.get('epochs'))} epochs, lr "
                 f"{fmt(tr.get('lr'))}, warmup {fmt(tr.get('warmup_steps'))} steps, batch "
                 f"{fmt(tr.get('batch_size'))} (micro-batch {fmt(tr.get('micro_batch_size'))}), max "
                 f"grad norm {fmt(tr.get('max_grad_norm'))}; seeds {tr.get('seeds')}.")  # fmt: skip
    items.append(f"Evaluation: {fmt(ev.get('n_questions'))} questions; trait rate from "
                 f"{fmt(ev.get('samples_per_question'))} one-word answers per question at temperature "
                 f"{fmt(ev.get('temperature'))} (share naming the target, averaged per question then "
                 "over questions); log-prob score = p(target) softmaxed over the candidates after "
                 f"the answer prefix; CIs from {fmt(ev.get('bootstrap'))} bootstrap resamples at "
                 f"level {fmt(ev.get('ci'))}.")  # fmt: skip
    a = cfg.get("analysis")
    if a and run.analysis is not None:
        items.append(
            "Analyses: " + ", ".join(f"{k} {v}" for k, v in a.items() if k != "enabled") + "."
        )
    doc.bullets(items)


# what a section written by another version of the analysis raises when drawn
MALFORMED = (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError)


def _analyses(doc: Doc, run: Run) -> None:
    """Each analysis of the registry, in its order, drawn by its own renderer from its
    analysis.json section, or stated as absent with the reason recorded there."""
    for name in ANALYSIS_SECTIONS:
        unit = load_analysis(name)
        if unit.render is None:
            continue
        data, why = analysis_section(run, name)
        if data:
            try:
                unit.render(doc, run.name, data)
                claim = unit.claim()
                if claim:
                    doc.para(f"Hypothesis script {unit.script} tests: {claim}", style="caption")
            except MALFORMED as e:
                why = f"analysis.json section '{name}' is malformed ({type(e).__name__}: {e})"
                doc.skip(run.name, name, unit.title, why)
        elif not unit.report_when_absent:
            continue
        elif name in FIGURE_IDS:
            doc.missing_figure(run.name, name, unit.title, why or f"no '{name}' section")
        else:
            doc.skip(run.name, name, unit.title, why or f"no '{name}' section")
    table = (run.analysis or {}).get("table")
    if table:
        doc.heading("Analysis summary (from analysis.json)", 3)
        cols = list(table[0])
        doc.table([cols] + [[r.get(c, "") for c in cols] for r in table])
