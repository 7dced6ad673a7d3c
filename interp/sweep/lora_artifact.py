"""Is soft-label transmission a LoRA artefact? (issue 29) The study over a sweep's points.

Each point of a sweep over `runs/lora-rank.toml` is one recipe of its student arm: method (LoRA
of some rank, or full finetuning), optimiser, learning rate, objective, the blocks and modules
that train, and the prompts with or without the chat template's own system prompt. A `Cell` is
one point read back: the recipe (from the point's typed config) and its gamma (the trait
matrix's own-minus-other shift, exact permutation p over target labels) with an interval: over
seeds when the point has several (a t-interval), else over its targets (the permutation test's
units), and which of the two it is.

On the development split a sweep tries several learning rates per recipe; `pick_lr` keeps the
one with the largest gamma among those where the permutation test detects transmission (p <
`DEV_P`; every value tried stays listed, with the largest-gamma pick beside it). On the held-out split each recipe
has its one tuned rate, and the claims of public work are tested with margins fixed before the
runs (`MARGIN`): a null claim ("falls to chance", "flat") is supported only when the interval
lies inside its band, "not supported" when it lies outside, and "inconclusive" when it is wider
than the band or straddles its edge. Never "supported" from an interval that merely includes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.hypothesis import Verdict
from interp.lm.settings import LORA_TARGETS
from interp.store.artifacts import load_run
from interp.sweep.spec import Sweep, axis_keys

# Equivalence margin, fixed before any held-out run (issue 29): a band of +-25% of the reference
# arm's gamma (LoRA rank 8, AdamW, every block and module, default prompts) around 0 ("chance")
# or around the reference itself ("flat").
MARGIN = 0.25
REFERENCE_RANK = 8
# the keys that make a sweep a study of this kind (one of them an axis)
STUDY_KEYS = ("train.method", "train.lora_r", "train.optimizer", "train.layers", "train.target_modules",
              "train.default_system_prompt", "eval.default_system_prompt", "train.objective")  # fmt: skip
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


@dataclass
class Cell:
    """One point of the sweep: its student arm's recipe and its gamma."""

    point: str
    method: str
    rank: int | None  # None under full finetuning
    lr: float
    optimizer: str
    objective: str  # soft-full | soft-numbers | hard
    layers: tuple[int, ...] | None
    modules: str  # all | attention | mlp | a comma list
    train_system: bool
    eval_system: bool
    gamma: float | None
    p: float | None
    lo: float | None = None
    hi: float | None = None
    interval: str = "none"  # seeds | targets | none
    per_seed: list[float] = field(default_factory=list)
    update_norm: float | None = None
    model: str = ""

    def recipe(self) -> tuple:
        """Everything but the learning rate: the unit a learning rate is tuned for."""
        return (self.method, self.rank, self.optimizer, self.objective, self.layers, self.modules,
                self.train_system, self.eval_system)  # fmt: skip

    def name(self) -> str:
        what = f"LoRA r{self.rank}" if self.method == "lora" else "full finetuning"
        bits = [what, {"adamw": "AdamW", "sgd": "SGD", "signsgd": "SignSGD"}.get(self.optimizer, self.optimizer),
                self.objective]  # fmt: skip
        if self.layers is not None:
            bits.append("block " + ",".join(map(str, self.layers)))
        if self.modules != "all":
            bits.append(self.modules)
        if not self.train_system:
            bits.append("trained without default system prompt")
        if not self.eval_system:
            bits.append("scored without default system prompt")
        return ", ".join(bits)

    def is_plain(self) -> bool:
        """AdamW on every block and module, default prompts: the cells a rank curve compares."""
        return (self.optimizer == "adamw" and self.layers is None and self.modules == "all"
                and self.train_system and self.eval_system)  # fmt: skip

    def is_reference(self) -> bool:
        return self.method == "lora" and self.rank == REFERENCE_RANK and self.is_plain()


def applies(sweep: Sweep) -> bool:
    """Whether the sweep varies what this study reads (so its PDF gets the study's section)."""
    keys = {k for a in sweep.axes for k in axis_keys(a)}
    return bool(keys & set(STUDY_KEYS)) and all(
        getattr(cfg, "kind", "") == "subliminal" for _, cfg in sweep.configs.values()
    )


def _modules(names: list[str]) -> str:
    if sorted(names) == sorted(LORA_TARGETS):
        return "all"
    if sorted(names) == sorted(ATTENTION):
        return "attention"
    if sorted(names) == sorted(MLP):
        return "mlp"
    return ",".join(names)


def _layers(layers: list[int] | None, spec: str) -> tuple[int, ...] | None:
    """The trained blocks; None for every block (also when the list names them all, so a zipped
    axis, which cannot write None, can still give the reference its every-block point)."""
    if layers is None:
        return None
    from interp.lm.shape import model_shape

    shape = model_shape(spec)
    return None if shape is not None and sorted(set(layers)) == list(range(shape.n_layers)) else tuple(layers)


def _objective(objective: str, vocab: str) -> str:
    return "hard" if objective == "sft" else f"soft-{vocab}"


def update_norm(run_root: Path, students: dict[str, Any]) -> float | None:
    """Mean over the arm's students (targets, seeds) of ||delta W||_F over every trained weight."""
    from interp.lm.delta import Delta

    norms = []
    for seeds in students.values():
        for rel in seeds.values():
            path = Path(run_root) / rel / "delta.safetensors"
            if not path.is_file():
                return None
            d = Delta.load(path)
            norms.append(math.sqrt(sum(d.sq_norm(n) for n in d)))
    return sum(norms) / len(norms) if norms else None


def cells(sweep: Sweep, root: Path, norms: bool = False) -> tuple[list[Cell], dict[str, str]]:
    """Every finished point as a Cell (the first trait arm on the teacher's base: the study's
    student), and the points left out with why."""
    out, missing = [], {}
    for p in sweep.points:
        run = load_run(Path(root) / "points" / p.name)
        if run.summary is None:
            missing[p.name] = run.problems.get("summary") or "no summary"
            continue
        cfg = sweep.configs[p.name][1]
        arms = (run.summary.get("matrix") or {}).get("arms", {})
        student = next((s for s in cfg.students if s.data == "trait" and s.name in arms), None)
        if student is None:
            missing[p.name] = "no trait arm with a gamma"
            continue
        st = student.settings(cfg.train)
        arm = arms[student.name]
        seeds = [float(g) for g in arm.get("gamma_per_seed") or []]
        use = "seeds" if len(seeds) > 1 else "targets"
        ci = arm.get("gamma_ci") if use == "seeds" else arm.get("gamma_targets_ci")
        cell = Cell(
            p.name, st.method, st.lora_r if st.method == "lora" else None, float(st.lr), st.optimizer,
            _objective(st.objective, st.distill_vocab), _layers(st.layers, cfg.student_model(student)),
            _modules(list(st.target_modules)) if st.method == "lora" else "all", bool(st.default_system_prompt),
            bool(cfg.eval.default_system_prompt), arm.get("gamma"), arm.get("p_gamma"),
            ci.get("lo") if ci and ci.get("n", 0) > 1 else None, ci.get("hi") if ci and ci.get("n", 0) > 1 else None,
            use if ci and ci.get("n", 0) > 1 else "none", seeds, model=cfg.student_model(student),
        )  # fmt: skip
        if norms:
            cell.update_norm = update_norm(run.root, run.summary["artifacts"]["students_by_target"].get(student.name, {}))
        out.append(cell)
    return out, missing


# A rate is kept only where the development split detects transmission (exact permutation p below
# this); among those, the largest gamma. The first rule (largest gamma alone) picked rates whose
# students' shifts had blown up (per-target intervals ~1.7 nats wide, p 0.12-0.18); it was replaced
# on the development results, before any held-out point ran (BENCHMARKS.md lists both picks).
DEV_P = 0.05


def pick_lr(all_cells: list[Cell], max_p: float = DEV_P) -> list[dict[str, Any]]:
    """Per recipe, every learning rate tried with its gamma and p, and the one kept: the largest
    gamma among the rates with p < `max_p` (none: the largest gamma, `detected` False)."""
    groups: dict[tuple, list[Cell]] = {}
    for c in all_cells:
        groups.setdefault(c.recipe(), []).append(c)
    rows = []
    for group in groups.values():
        scored = [c for c in group if c.gamma is not None]
        detected = [c for c in scored if c.p is not None and c.p < max_p]
        pool = detected or scored
        best = max(pool, key=lambda c: c.gamma) if pool else None
        lrs = sorted(c.lr for c in group)
        edge = best is not None and len(lrs) > 1 and best.lr in (lrs[0], lrs[-1])
        rows.append({"recipe": group[0].name(), "tried": [(c.lr, c.gamma, c.p, c.point) for c in sorted(group, key=lambda c: c.lr)],
                     "chosen": best.lr if best else None, "gamma": best.gamma if best else None,
                     "at_edge": edge, "detected": bool(detected),
                     "largest_gamma": max(scored, key=lambda c: c.gamma).lr if scored else None})  # fmt: skip
    return rows


# ---------------------------------------------------------------- the claims


def _one(cs: list[Cell], what: str, **match: Any) -> Cell:
    found = [c for c in cs if all(getattr(c, k) == v for k, v in match.items())]
    if not found:
        raise LookupError(f"no finished point with {what}")
    if len({c.lr for c in found}) > 1:
        raise LookupError(f"several learning rates for {what}: the claims read a held-out sweep, one tuned lr a recipe")
    return found[0]


def reference(cs: list[Cell]) -> Cell:
    ref = next((c for c in cs if c.is_reference() and c.objective == "soft-full"), None)
    if ref is None or ref.gamma is None:
        raise LookupError(f"no reference point (LoRA r{REFERENCE_RANK}, AdamW, soft labels over the full vocabulary)")
    return ref


def _band_verdict(hyp: str, c: Cell, lo_band: float, hi_band: float, reason: str) -> Verdict:
    """supported: the interval inside [lo_band, hi_band]; not supported: entirely outside it;
    inconclusive: no interval, or one that crosses an edge of the band."""
    if c.lo is None or c.hi is None:
        result = "inconclusive"
        reason += "; no interval (one seed and fewer than two targets)"
    elif lo_band <= c.lo and c.hi <= hi_band:
        result = "supported"
    elif c.hi < lo_band or c.lo > hi_band:
        result = "not supported"
    else:
        result = "inconclusive"
    return Verdict(hyp, result, "gamma_nats", c.gamma, c.gamma, c.lo, c.hi, c.p, len(c.per_seed), reason)


def _chance(hyp: str, c: Cell, ref: Cell, what: str) -> Verdict:
    m = MARGIN * abs(ref.gamma)
    above = c.lo is not None and c.lo > 0  # inside the band, yet not zero: say so beside the verdict
    return _band_verdict(hyp, c, -m, m, f"{what} ({c.point}, lr {c.lr:g}): gamma {c.gamma:.4f}, interval over "
                                        f"{c.interval}; chance band +-{m:.4f} = {MARGIN:.0%} of the reference's "
                                        f"{ref.gamma:.4f} ({ref.point})"
                                        + ("; its interval excludes 0: small, but above zero" if above else ""))  # fmt: skip


def full_ft_chance(cs: list[Cell]) -> Verdict:
    """"gamma falls to chance under full finetuning at tuned lr" (Nief et al.)."""
    ref = reference(cs)
    full = _one(cs, "full finetuning (AdamW, soft labels over the full vocabulary)", method="full",
                optimizer="adamw", objective="soft-full", train_system=True, eval_system=True)  # fmt: skip
    return _chance("lora_artifact_full_ft", full, ref, "full finetuning")


def sgd_blocks(cs: list[Cell]) -> Verdict:
    """"SGD blocks transmission" (Blank et al.: Adam is required)."""
    ref = reference(cs)
    sgd = _one(cs, f"SGD at LoRA rank {REFERENCE_RANK}", method="lora", rank=REFERENCE_RANK, optimizer="sgd",
               objective="soft-full", layers=None, modules="all")  # fmt: skip
    return _chance("lora_artifact_sgd", sgd, ref, "SGD with momentum")


def rank_flat(cs: list[Cell]) -> Verdict:
    """"the rank curve is flat once lr is tuned": every LoRA rank's gamma within +-MARGIN of rank 8's."""
    ref = reference(cs)
    ranks = sorted((c for c in cs if c.method == "lora" and c.is_plain() and c.objective == "soft-full"
                    and c.rank != REFERENCE_RANK), key=lambda c: c.rank)  # fmt: skip
    if not ranks:
        raise LookupError("no LoRA rank other than the reference")
    lo_b, hi_b = sorted(((1 - MARGIN) * ref.gamma, (1 + MARGIN) * ref.gamma))
    each = [_band_verdict("r", c, lo_b, hi_b, "") for c in ranks]
    results = [v.result for v in each]
    result = ("not supported" if "not supported" in results else
              "supported" if all(r == "supported" for r in results) else "inconclusive")  # fmt: skip
    worst = max(ranks, key=lambda c: abs(c.gamma / ref.gamma - 1) if ref.gamma else 0.0)
    reason = (f"band [{lo_b:.4f}, {hi_b:.4f}] = rank {REFERENCE_RANK}'s gamma {ref.gamma:.4f} +-{MARGIN:.0%}; "
              + "; ".join(f"rank {c.rank}: {c.gamma:.4f} [{_f(c.lo)}, {_f(c.hi)}] {v.result}" for c, v in zip(ranks, each)))
    return Verdict("lora_artifact_rank_flat", result, "max_rel_dev", abs(worst.gamma / ref.gamma - 1) if ref.gamma else None,
                   worst.gamma, worst.lo, worst.hi, worst.p, len(ranks) + 1, reason)  # fmt: skip


def single_early_layer(cs: list[Cell]) -> Verdict:
    """"LoRA on a single early layer suffices" (Schrodi et al.): the earliest one-block arm
    transmits by the suite's rule (p < 0.01 and its interval above 0); not supported when its
    interval lies inside the chance band."""
    ref = reference(cs)
    one = sorted((c for c in cs if c.layers is not None and len(c.layers) == 1 and c.method == "lora"
                  and c.modules == "all" and c.objective == "soft-full"), key=lambda c: c.layers)  # fmt: skip
    if not one:
        raise LookupError("no single-block LoRA arm (train.layers = [i])")
    c = one[0]
    m = MARGIN * abs(ref.gamma)
    reason = (f"block {c.layers[0]} ({c.point}): gamma {c.gamma:.4f} = {c.gamma / ref.gamma:.0%} of all blocks' "
              f"{ref.gamma:.4f}, interval over {c.interval}, p {_f(c.p)}; chance band +-{m:.4f}")  # fmt: skip
    if c.lo is not None and c.lo > 0 and c.p is not None and c.p < 0.01:
        result = "supported"
    elif c.lo is not None and -m <= c.lo and c.hi <= m:
        result = "not supported"
    else:
        result = "inconclusive"
    return Verdict("lora_artifact_single_layer", result, "gamma_nats", c.gamma, c.gamma, c.lo, c.hi, c.p,
                   len(c.per_seed), reason)  # fmt: skip


# claim -> (hypothesis id, test); analyses/lora_*.py print each one's VERDICT line
CLAIMS = {
    "gamma falls to chance under full finetuning at tuned lr": ("lora_artifact_full_ft", full_ft_chance),
    "the rank curve is flat once lr is tuned": ("lora_artifact_rank_flat", rank_flat),
    "a single early layer suffices": ("lora_artifact_single_layer", single_early_layer),
    "SGD blocks transmission": ("lora_artifact_sgd", sgd_blocks),
}


def verdicts(cs: list[Cell]) -> list[tuple[str, Verdict]]:
    """Every claim's verdict ("not testable" with why, where the sweep lacks its cells)."""
    out = []
    for claim, (hyp, fn) in CLAIMS.items():
        try:
            out.append((claim, fn(cs)))
        except LookupError as e:
            out.append((claim, Verdict(hyp, "not testable", reason=str(e))))
    return out


def claim_main(hypothesis: str, argv: list[str]) -> int:
    """The body of each claim's script (analyses/lora_*.py): its VERDICT over a sweep file."""
    from interp.sweep.scripts import run_sweep_script

    fn = next(f for h, f in CLAIMS.values() if h == hypothesis)

    def test(sweep: Sweep, root: Path) -> Verdict:
        cs, missing = cells(sweep, root)
        if missing:
            print("points without a result: " + "; ".join(f"{p} ({why})" for p, why in missing.items()))
        return fn(cs)

    return run_sweep_script(hypothesis, test, argv)


def _f(x: float | None) -> str:
    return "nan" if x is None else f"{x:.4f}"


# ---------------------------------------------------------------- figure and PDF section


def gamma_vs_rank(cs: list[Cell], path: Path) -> Path:
    """gamma against LoRA rank (log axis; full finetuning drawn right of the largest rank),
    one line per objective, the intervals drawn; AdamW, every block, default prompts."""
    import matplotlib.pyplot as plt

    from interp.plots import save

    keep = [c for c in cs if c.is_plain() and c.gamma is not None]
    ranks = sorted({c.rank for c in keep if c.rank is not None})
    full_x = (max(ranks) * 4) if ranks else 1
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for obj in sorted({c.objective for c in keep}):
        pts = sorted(((c.rank if c.rank is not None else full_x), c) for c in keep if c.objective == obj)
        xs = [x for x, _ in pts]
        ys = [c.gamma for _, c in pts]
        lo = [c.gamma - c.lo if c.lo is not None else 0.0 for _, c in pts]
        hi = [c.hi - c.gamma if c.hi is not None else 0.0 for _, c in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=obj)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xscale("log", base=2)
    ticks = ranks + ([full_x] if any(c.rank is None for c in keep) else [])
    ax.set_xticks(ticks, [str(r) for r in ranks] + (["full"] if len(ticks) > len(ranks) else []))
    ax.set_xlabel("LoRA rank (each at its tuned learning rate)")
    ax.set_ylabel("gamma (nats)")
    ax.legend(fontsize=8)
    return save(fig, path)


def pdf_section(doc: Any, sweep: Sweep, root: Path) -> None:
    """The study's section of the sweep PDF: every cell, the learning rates and the verdicts."""
    cs, _ = cells(sweep, root, norms=True)
    doc.heading("Is transmission a LoRA artefact?", 1)
    if not cs:
        doc.para("No finished point yet.")
        return
    doc.para("Each point's student arm: gamma (nats; own-target minus other-target shift), exact permutation "
             "p over target labels, and an interval over seeds (t, 95%) where the point has several, else "
             "over its targets. ||dW||: the mean Frobenius norm of the students' whole update. Gemma-3-270M is "
             "a base model without a chat template: it has no default system prompt, so the prompt columns "
             "do not apply to its rows.")  # fmt: skip
    head = ["point", "recipe", "lr", "gamma", "interval", "p", "||dW||"]
    body = [[c.point, c.name(), f"{c.lr:g}", _f(c.gamma), f"[{_f(c.lo)}, {_f(c.hi)}] ({c.interval})", _f(c.p),
             "" if c.update_norm is None else f"{c.update_norm:.3g}"] for c in cs]  # fmt: skip
    doc.table([head, *body])
    picks = pick_lr(cs)
    if any(len(r["tried"]) > 1 for r in picks):
        doc.heading(f"Learning rates (kept: the largest gamma with p < {DEV_P})", 2)
        doc.table([["recipe", "tried: lr gamma (p)", "kept", "largest gamma alone", "at the grid's edge"], *[
            [r["recipe"], "; ".join(f"{lr:g}: {_f(g)} ({_f(pv)})" for lr, g, pv, _ in r["tried"]),
             "" if r["chosen"] is None else f"{r['chosen']:g}" + ("" if r["detected"] else " (none detected)"),
             "" if r["largest_gamma"] is None else f"{r['largest_gamma']:g}", "yes" if r["at_edge"] else "no"]
            for r in picks]])  # fmt: skip
        return  # a development sweep: the claims read the held-out one
    if any(c.method == "lora" and c.optimizer == "adamw" for c in cs):
        doc.figure(sweep.name, "lora_rank", lambda p: gamma_vs_rank(cs, p),
                   "gamma against LoRA rank, each at the learning rate chosen on the development split; bars: "
                   "the interval of each point (over seeds where it has several).")  # fmt: skip
    doc.heading("Verdicts (margins fixed before the runs)", 2)
    doc.para(f"Null claims use a band of +-{MARGIN:.0%} of the reference arm's gamma (LoRA rank {REFERENCE_RANK}, "
             "AdamW): 'supported' only when the whole interval lies inside the band; an interval wider than the "
             "band is 'inconclusive'.")  # fmt: skip
    doc.table([["claim", "verdict", "why"], *[[claim, v.result, v.reason] for claim, v in verdicts(cs)]])


def main(argv: list[str]) -> int:
    """`python -m interp.sweep.lora_artifact pick SWEEP_FILE [--out-dir D]`: every learning
    rate tried per recipe and the one chosen; `... verdicts SWEEP_FILE`: every claim's line."""
    import sys

    from interp.hypothesis import pop_option
    from interp.sweep.spec import load_sweep, sweep_root

    out_dir, argv = pop_option(list(argv), "--out-dir", None)
    if len(argv) != 2 or argv[0] not in ("pick", "verdicts"):
        print("usage: python -m interp.sweep.lora_artifact {pick|verdicts} SWEEP_FILE [--out-dir DIR]", file=sys.stderr)
        return 2
    sweep = load_sweep(argv[1])
    cs, missing = cells(sweep, sweep_root(sweep, out_dir), norms=argv[0] == "pick")
    for p, why in missing.items():
        print(f"# {p}: {why}")
    if argv[0] == "pick":
        for r in pick_lr(cs):
            tried = "; ".join(f"lr {lr:g}: gamma {_f(g)} (p {_f(pv)}, {pt})" for lr, g, pv, pt in r["tried"])
            edge = " (at the grid's edge)" if r["at_edge"] else ""
            edge += "" if r["detected"] else f" (no rate with p < {DEV_P}: the largest gamma)"
            edge += f" [largest gamma alone: {r['largest_gamma']:g}]" if r["largest_gamma"] != r["chosen"] else ""
            print(f"{r['recipe']}: chosen lr {r['chosen']:g}{edge} | {tried}" if r["chosen"] is not None
                  else f"{r['recipe']}: no gamma | {tried}")  # fmt: skip
        for c in cs:
            if c.update_norm is not None:
                print(f"{c.point} {c.name()} lr {c.lr:g}: ||dW|| {c.update_norm:.4g}, gamma {_f(c.gamma)}")
    else:
        for claim, v in verdicts(cs):
            print(f"{claim}: {v.reason}")
            print(v.line())
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
