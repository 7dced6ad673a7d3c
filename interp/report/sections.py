"""The per-run sections of a subliminal run's report, after its page-1 answer
(`interp.report.answer`): headline numbers, methods, the trait matrix, figures and analyses.
The data-side sections live in `interp.report.data_sections`, MLP runs in
`interp.report.mlp_sections`; provenance goes to the appendix (`interp.report.doc`).

Every number goes through `interp.hypothesis.fmt`; every block checks that its data is there
and otherwise says what is missing (`Doc.skip`), so a partial run still gives a report.
"""

from __future__ import annotations

from typing import Any

from interp.fmt import fmt, fmt_est
from interp.report import figures
from interp.report.data_sections import data_side
from interp.report.doc import Doc
from interp.store.artifacts import Run, analysis_section, subliminal_roles
from interp.subliminal.data_kinds import wording

SECTION_TITLES = {
    "update_alignment": "Update alignment",
    "gradient_alignment": "Gradient alignment",
    "trait_direction": "Trait direction",
    "probes": "Probes",
    "steering": "Steering",
    "trajectories": "Trajectories",
}


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


# One figure per analysis section: (section, key that must be non-empty, figure, caption).
ANALYSIS_FIGURES: list[tuple[str, str, Any, Any]] = [
    ("update_alignment", "students", lambda d, p: figures.update_alignment(d["students"], p),
     lambda d: "Cosine between each student's weight update and its base's teacher update "
     "(dW_student vs dW_teacher, LoRA deltas merged). Heatmaps: per layer and per module, "
     "mean over seeds (red = aligned, blue = opposed, white = orthogonal); right: all "
     "parameters, mean over seeds with its t-interval, crosses = single seeds. Subliminal "
     "transmission predicts the same-init student above the control."),
    ("gradient_alignment", "datasets", lambda d, p: figures.gradient_alignment(d["datasets"], p),
     lambda d: "At each student's initialisation, cosine between the descent direction of the "
     "imitation loss on one batch of its training data and the teacher's update. Dots: "
     "batches; diamond: mean with bootstrap CI over batches; top: share of batches with "
     "positive cosine. The theorem predicts > 0 for a same-init student on trait data."),
    ("trait_direction", "students", lambda d, p: figures.trait_direction(d["students"], p),
     lambda d: "Per layer, cosine between the trait direction (mean activation of the "
     "trait-prompted base minus the plain base, last prompt token, backend "
     f"{d.get('backend', '?')}) and the student's mean activation shift from its base, with a "
     "bootstrap band over prompts. Above 0 = the student moved toward the trait; compare with "
     "the control."),
    ("probes", "bases", lambda d, p: figures.probes(d["bases"], d.get("students") or {}, p),
     lambda d: "Left: held-out AUROC per layer of logistic probes separating the trait-prompted "
     "base from the plain base (star = best layer, 0.5 = chance; a single split, no CI). Right: "
     "share of each student's prompts the probe of its base calls trait-bearing, with a "
     "Wilson 95% band (dotted: the base itself on number prompts)."),
    ("trajectories", "students", lambda d, p: figures.trajectories(d["students"], p),
     lambda d: "Students read back at each saved checkpoint (step 0 = the base; the first seed of "
     "the primary target). Panel 1: p(target) with its bootstrap CI over questions. Panel 2: cosine "
     "of the student's learned vector v_S (mean resid_post shift vs the base, last token of "
     f"{d.get('prompts', 'general prompts')}) with the teacher's trait vector v_T (prompted minus plain "
     "base on the same prompts), mean over layers. Then, where every target's student saved "
     "checkpoints: gamma over the targets at each step (own-target minus other-target shift, nats), "
     "with its t-interval over targets; and, for runs with a teacher delta, the cosine of the "
     "student's update with its teacher's (dashed, where every target has a finetuned teacher: the "
     "mean cosine of each target's student with the other targets' teachers, the baseline a shared "
     "finetuning direction gives) and the imitation-gradient alignment: the cosine of the descent "
     "direction of the student's own training loss at that checkpoint with the teacher's update, with "
     "a bootstrap CI over batches. A control student (data = 'control') is measured against the "
     "primary target's teacher and trait vector: what finetuning without the trait gives on each measure."),
]  # fmt: skip


def _analyses(doc: Doc, run: Run) -> None:
    sec = {k: analysis_section(run, k) for k in SECTION_TITLES}
    for key, needed, draw, caption in ANALYSIS_FIGURES:
        data, why = sec[key]
        if data and data.get(needed):
            doc.figure(run.name, key, lambda p, d=data, f=draw: f(d, p), caption(data))
        else:
            doc.missing_figure(run.name, key, SECTION_TITLES[key], why or f"no {needed}")
    st, why = sec["steering"]
    if st:
        _steering(doc, st)
    else:
        doc.skip(run.name, "steering", "Steering", why or "no steering results")
    um = (run.analysis or {}).get("update_matrix")
    if um and um.get("students"):
        _update_matrix(doc, um)
    mm = (run.analysis or {}).get("matrix_mechanisms")
    if mm:
        _matrix_mechanisms(doc, mm)
    # opt-in ([analysis] entanglement = true): absent = off
    en = (run.analysis or {}).get("entanglement")
    if en:
        _entanglement(doc, en)
    data_side(doc, run)
    table = (run.analysis or {}).get("table")
    if table:
        doc.heading("Analysis summary (from analysis.json)", 3)
        cols = list(table[0])
        doc.table([cols] + [[r.get(c, "") for c in cols] for r in table])


def _update_matrix(doc: Doc, um: dict[str, Any]) -> None:
    doc.heading("Whose update: each student against every target's teacher update", 3)
    rows = [
        [
            "arm",
            "seeds",
            "cosine: own teacher | others",
            "own - others [CI over seeds]",
            "p (perm.)",
            f"span share (r={um.get('rank')}): own | others | chance",
            "own - others [CI]",
            "p",
        ]
    ]
    entries = []
    for name, e in um["students"].items():
        entries.append((name, e))
        if e.get("independent_init"):  # the seeds whose LoRA init is not the teachers'
            entries.append((f"{name}, own-init seeds", e["independent_init"]))
    for name, e in entries:
        c, sh = e["cosine"], e.get("span_share")
        row = [name, ", ".join(map(str, e["seeds"])), f"{fmt(c['matched'])} | {fmt(c['mismatched'])}",
               fmt_est(c["contrast"]), fmt(c["contrast"]["p"])]  # fmt: skip
        row += ([f"{fmt(sh['matched'])} | {fmt(sh['mismatched'])} | {fmt(sh['baseline'])}", fmt_est(sh["contrast"]),
                 fmt(sh["contrast"]["p"])] if sh else ["n/a", "n/a", "n/a"])  # fmt: skip
        rows.append(row)
    doc.table(rows, [1.6, 0.8, 1.9, 2.2, 0.8, 2.4, 2.2, 0.8])
    doc.para(f"Each target's student update (targets {', '.join(um['targets'])}) against each target's "
             "finetuned-teacher update: the cosine over all shared weights, and the share of the student's "
             "update inside the teacher's top singular span. Own - others is the mean over the matrix "
             "diagonal minus the mean off it, per seed, with a t-interval over seeds; p is exact over "
             "relabellings of the targets of the seed-mean matrix. A direction every finetune of the base "
             "shares raises own and others alike; only the difference says the student followed its own "
             "teacher. In runs made before teachers had a seed of their own, they trained LoRA with the run's "
             "seed: a LoRA student of that seed can start from their A matrices, which raises its cosines with "
             "every teacher by construction; the own-init rows leave those seeds out.")  # fmt: skip


def _matrix_mechanisms(doc: Doc, mm: dict[str, Any]) -> None:
    """Trait-matrix runs: does each student's activation shift point toward its own teacher?"""
    doc.heading("Trait-matrix mechanisms at answer positions", 3)
    rows = [["student", "base model", "direction gamma [CI over seeds]", "p (perm.)",
             "probe gamma [CI]", "p (perm.)", "own - control cos [CI]"]]  # fmt: skip
    for name, a in (mm.get("arms") or {}).items():
        if a.get("control"):
            rows.append([name + " (control)", a.get("model"), "", "", "", "",
                         "cos " + fmt_est((a.get("cos_vs_control_direction") or {}).get("ci"))])  # fmt: skip
            continue
        d, pr = a.get("direction") or {}, a.get("probe") or {}
        rows.append([name, a.get("model"), fmt_est(d.get("gamma_ci")), fmt(d.get("p")),
                     fmt_est(pr.get("gamma_ci")), fmt(pr.get("p")), fmt_est(a.get("same_init_minus_control"))])  # fmt: skip
    doc.table(rows, [1.5, 1.5, 2.1, 1.1, 1.9, 1.1, 1.8])  # p columns fit "0.008333" on one line
    doc.para(f"Activations (resid_post, backend {mm.get('backend')}) averaged over the answer tokens "
             f"of {mm.get('n_rows')} held-out number rows with random answers that no model wrote: "
             "the positions soft-label students were taught at, without any system prompt in the "
             "student's input. Direction gamma: cosine of the student's activation shift (vs its base) "
             "with its own teacher's target-specific direction (teacher minus base, centred over "
             "targets) minus the cosine with the other targets' directions. Probe gamma: a "
             "probe trained to tell the teachers apart, applied to the students; probability of "
             "the own target minus the others. Both are means over layers (fixed in advance, no "
             "layer picked); p: permutation over target labels. own - control: cosine of a trait "
             "student's shift with (its teacher - the control teacher) minus the control "
             "student's, per seed. Cross-model students are compared with their own base "
             "prompted with each target's system prompt.")  # fmt: skip


def _entanglement(doc: Doc, en: dict[str, Any]) -> None:
    """Token entanglement: the numbers each target's prompt raises, their data rates, prompting."""
    doc.heading("Token entanglement and subliminal prompting", 3)
    rows = [["target", "top entangled numbers (shift, nats)", "rate /1000 trait | control",
             "p(target): loving them | random", "difference [CI]"]]  # fmt: skip
    for t, r in (en.get("targets") or {}).items():
        top = r["entangled"]["top"]
        rates = r.get("rates") or {}
        per = lambda k, n, rates=rates: fmt(((rates.get(k) or {}).get("per_1000") or {}).get(str(n)))  # noqa: E731  # fmt: skip
        pr = r["prompting"]
        rows.append([t, ", ".join(f"{x['number']} ({fmt(x['shift'])})" for x in top),
                     "; ".join(f"{x['number']}: {per('trait', x['number'])} | {per('control', x['number'])}" for x in top),
                     f"{fmt(pr['entangled'])} | {fmt(pr['random'])}", fmt_est(pr["diff"])])  # fmt: skip
    doc.table(rows, [1.2, 3.6, 3.6, 2.4, 2.2])
    n_prompts = (
        next(iter((en.get("targets") or {}).values()), {}).get("entangled", {}).get("n_prompts")
    )
    doc.para(f"Numbers 0-999 scored as the first answer ('<n>,') to {fmt(n_prompts)} held-out number "
             "prompts, with and without the target's system prompt; shift = mean log-prob change, "
             "centred over numbers per prompt. Rates: occurrences per 1,000 numbers in the trait "
             "teacher's and the control teacher's filtered data. Prompting: p(target) on the run's "
             "questions under 'You love <n>...' system prompts with the top numbers vs as many random "
             "numbers, difference with a paired bootstrap CI over questions.")  # fmt: skip


def _steering(doc: Doc, st: dict[str, Any]) -> None:
    doc.heading("Steering", 3)
    rows = [["test", "model", "before [CI]", "after [CI]", "difference [CI]"]]
    suf = st.get("sufficiency") or {}
    if suf:
        rows.append([f"sufficiency: add the direction at layer {fmt(st.get('layer'))} x "
                     f"{fmt(st.get('scale'))}", "base", fmt_est(suf.get("base")),
                     fmt_est(suf.get("steered")), fmt_est(suf.get("diff"))])  # fmt: skip
    nec = st.get("necessity") or {}
    if nec:
        rows.append(["necessity: project the direction out of every layer", nec.get("student"),
                     fmt_est(nec.get("unablated")), fmt_est(nec.get("ablated")),
                     fmt_est(nec.get("diff"))])  # fmt: skip
        rnd = nec.get("random_direction") or {}
        if rnd:
            rows.append(["control: project a random direction out of every layer", nec.get("student"),
                         fmt_est(rnd.get("unablated")), fmt_est(rnd.get("ablated")),
                         fmt_est(rnd.get("diff"))])  # fmt: skip
    doc.table(rows, [2.6, 1.2, 1.6, 1.6, 1.6])
    doc.para("Log-prob score before and after the intervention, paired bootstrap CI of the "
             "difference over questions. Sufficiency: steering the base should raise it; "
             "necessity: ablating the direction should lower the student's score.")  # fmt: skip
