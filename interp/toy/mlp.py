"""Subliminal learning in an MLP (Cloud et al.): a student distilled only on a teacher's
auxiliary ("ghost") logits, on uniform noise, learns to classify digits, if and only if it
starts from the teacher's initialisation.

Per value of m (number of auxiliary logits), for `n_models` seeds trained together as one
batched computation (every weight carries a leading `model` axis; models never interact):
  1. init theta_0 (N(0, 1/sqrt(d_in)) weights, zero bias) -> teacher: cross-entropy on the 10
     class logits of real digits;
  2. students from the same init, or from another seed's init (a derangement of the seeds),
     distilled by KL on the aux logits only or on all logits, on noise images only;
  3. test accuracy, parameter-space cosines cos(dS, dT), and the theorem check: the first
     imitation gradient at the student's init against the teacher's delta dT.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import scipy.stats
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm import tqdm

from interp.config import to_dict
from interp.experiments import register_experiment
from interp.stages import RunDir, write_json
from interp.toy.data import ImageData, load_digits_split, load_mnist, uniform_noise

log = logging.getLogger("interp")

N_CLASSES = 10
Params = dict[str, Tensor]  # "W1": (model, d_in, d_out), "b1": (model, 1, d_out), ...
LossFn = Callable[[Params, Tensor], Float[Tensor, " model"]]


# ---------------------------------------------------------------- config


@dataclass
class DataConfig:
    source: Literal["digits", "mnist"] = "digits"
    mnist_dir: str = ""  # folder with the four official IDX files, for source = "mnist"
    test_fraction: float = 0.2  # digits only; MNIST keeps its official 60k/10k split
    n_noise: int = 0  # noise images; 0 = as many as training images (the protocol's 60k)

    def __post_init__(self) -> None:
        if self.source == "mnist" and not self.mnist_dir:
            raise ValueError(
                "data.source = 'mnist' needs data.mnist_dir (a local folder of IDX files)"
            )
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.n_noise < 0:
            raise ValueError(f"data.n_noise must be >= 0, got {self.n_noise}")


@dataclass
class ModelConfig:
    hidden: list[int] = field(default_factory=lambda: [256, 256])

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(
                f"model.hidden must be a non-empty list of positive widths, got {self.hidden}"
            )


@dataclass
class TeacherConfig:
    lr: float = 3e-4
    batch_size: int = 1024
    epochs: int = 5

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.batch_size < 1 or self.epochs < 0:
            raise ValueError(f"need lr > 0, batch_size >= 1, epochs >= 0; got {asdict(self)}")


@dataclass
class StudentConfig(TeacherConfig):
    targets: list[Literal["aux", "all"]] = field(default_factory=lambda: ["aux", "all"])
    inits: list[Literal["same", "cross"]] = field(default_factory=lambda: ["same", "cross"])


@dataclass
class SweepConfig:
    m: list[int] = field(default_factory=lambda: [1, 3, 10, 50])  # auxiliary logits
    n_models: int = 25  # seeds, trained in parallel

    def __post_init__(self) -> None:
        if not self.m or min(self.m) < 1:
            raise ValueError(f"sweep.m must be a non-empty list of integers >= 1, got {self.m}")
        if self.n_models < 2:
            raise ValueError(
                f"sweep.n_models must be >= 2 (cross-init permutes seeds), got {self.n_models}"
            )


@dataclass
class MLPConfig:
    name: str
    kind: str = "mlp-aux-logits"
    seed: int = 0
    device: str = "cpu"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


# ---------------------------------------------------------------- models, many at once


def derived_seed(*key: int) -> int:
    """A well-mixed 32-bit seed for one purpose (init of model i, noise, batch order...)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def init_params(model_seeds: list[int], sizes: list[int], n_aux: int) -> Params:
    """One independent init per seed, stacked. sizes = [d_in, *hidden, 10].

    The class columns of the last layer are drawn before the auxiliary ones, so a seed's init
    restricted to the class logits (and hence its teacher) is the same for every m.
    """
    per_model: list[list[Tensor]] = []
    for seed in model_seeds:
        g = torch.Generator().manual_seed(seed)
        tensors = []
        for layer, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            w = torch.randn(d_in, d_out, generator=g) / d_in**0.5
            if layer == len(sizes) - 1:  # output layer: append the auxiliary logits' columns
                w = torch.cat([w, torch.randn(d_in, n_aux, generator=g) / d_in**0.5], dim=1)
            tensors += [w, torch.zeros(1, w.shape[1])]
        per_model.append(tensors)
    names = [f"{p}{i}" for i in range(1, len(sizes)) for p in ("W", "b")]
    return {n: torch.stack([t[j] for t in per_model]) for j, n in enumerate(names)}


def n_layers(params: Params) -> int:
    return len(params) // 2


def forward(
    params: Params, x: Float[Tensor, "model batch d_in"]
) -> Float[Tensor, "model batch d_out"]:
    for i in range(1, n_layers(params) + 1):
        x = torch.baddbmm(params[f"b{i}"], x, params[f"W{i}"])
        if i < n_layers(params):
            x = torch.relu(x)
    return x


def batch_schedule(
    n: int, batch_size: int, epochs: int, n_models: int, gen: torch.Generator
) -> list[Int[Tensor, "model batch"]]:
    """Every model reshuffles its own order each epoch; the last partial batch is kept."""
    batches: list[Tensor] = []
    for _ in range(epochs):
        order = torch.argsort(torch.rand(n_models, n, generator=gen), dim=1)
        batches += list(order.split(batch_size, dim=1))
    return batches


def train(
    params0: Params, batches: list[Tensor], loss_fn: LossFn, lr: float, desc: str = "train"
) -> Params:
    """Adam on the stacked weights. Adam is elementwise and the per-model losses are summed, so
    each model follows exactly the trajectory it would follow alone."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params0.items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    for idx in tqdm(batches, desc=desc, leave=False, disable=None):
        loss = loss_fn(params, idx.to(params["W1"].device))
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
    return {k: v.detach() for k, v in params.items()}


def classification_loss(x: Tensor, y: Tensor) -> LossFn:
    """Teacher objective: cross-entropy on the 10 class logits; the aux logits get no gradient."""

    def loss(params: Params, idx: Tensor) -> Tensor:
        logits = forward(params, x[idx])[..., :N_CLASSES]
        return F.cross_entropy(logits.transpose(1, 2), y[idx], reduction="none").mean(1)

    return loss


def distillation_loss(
    noise: Tensor, teacher_logits: Float[Tensor, "model n_noise d_out"], sel: slice
) -> LossFn:
    """Student objective: KL(teacher || student) over the selected logits, batch mean."""
    target = teacher_logits[..., sel].log_softmax(-1)
    rows = torch.arange(target.shape[0], device=target.device)[:, None]

    def loss(params: Params, idx: Tensor) -> Tensor:
        t = target[rows, idx]
        s = forward(params, noise[idx])[..., sel].log_softmax(-1)
        return (t.exp() * (t - s)).sum(-1).mean(-1)

    return loss


# ---------------------------------------------------------------- measurements


@torch.no_grad()
def accuracy(params: Params, x: Tensor, y: Tensor) -> Float[Tensor, " model"]:
    logits = forward(params, x.expand(params["W1"].shape[0], -1, -1))[..., :N_CLASSES]
    return (logits.argmax(-1) == y).float().mean(1)


def per_layer(params: Params) -> dict[str, Float[Tensor, "model p"]]:
    """Each layer's weight and bias flattened into one vector per model."""
    out = {
        f"layer{i}": torch.cat([params[f"W{i}"].flatten(1), params[f"b{i}"].flatten(1)], 1)
        for i in range(1, n_layers(params) + 1)
    }
    out["overall"] = torch.cat(list(out.values()), 1)
    return out


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine; NaN where either vector is zero (an undefined direction, not 0)."""
    num = (a * b).sum(1)
    den = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(den > 0, num / den.clamp_min(1e-30), torch.full_like(num, float("nan")))


def delta(a: Params, b: Params) -> Params:
    return {k: a[k] - b[k] for k in a}


def first_step_alignment(
    params0: Params, loss_fn: LossFn, idx0: Tensor, d_teacher: Params
) -> dict[str, Tensor]:
    """Theorem check: at the student's init, does the first imitation step move toward the
    teacher? <-grad L, dT> (raw and as a cosine), and the cosine of Adam's actual first update
    -g/(|g|+eps) (bias-corrected moments make it ~ -sign(g)) with dT."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params0.items()}
    loss_fn(params, idx0).sum().backward()
    step = {k: -v.grad for k, v in params.items()}
    adam = {k: -v.grad / (v.grad.abs() + 1e-8) for k, v in params.items()}
    s, a, t = (
        per_layer(step)["overall"],
        per_layer(adam)["overall"],
        per_layer(d_teacher)["overall"],
    )
    return {"grad_dot": (s * t).sum(1), "grad_cos": cosine(s, t), "adam_step_cos": cosine(a, t)}


def finite_list(t: Tensor) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in t.detach().cpu().tolist()]


def ci95(values: list[float | None]) -> dict[str, float | int | None]:
    """Mean and 95% t-interval over seeds (undefined values, e.g. a zero delta's cosine, skipped)."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return {"mean": None, "lo": None, "hi": None, "n": 0}
    mean = float(v.mean())
    lo = hi = mean
    if len(v) > 1 and v.std() > 0:
        lo, hi = (
            float(b)
            for b in scipy.stats.t.interval(0.95, len(v) - 1, loc=mean, scale=scipy.stats.sem(v))
        )
    return {"mean": mean, "lo": lo, "hi": hi, "n": int(len(v))}


def derangement(n: int, gen: torch.Generator) -> Tensor:
    """A permutation with no fixed point: every cross-init student gets another seed's init."""
    while True:  # a uniform permutation is a derangement with probability ~1/e
        perm = torch.randperm(n, generator=gen)
        if not (perm == torch.arange(n)).any():
            return perm


# ---------------------------------------------------------------- the experiment


def load_data(cfg: MLPConfig) -> ImageData:
    if cfg.data.source == "mnist":
        return load_mnist(cfg.data.mnist_dir)
    return load_digits_split(cfg.seed, cfg.data.test_fraction)


def train_teachers(
    cfg: MLPConfig, data: ImageData, m: int, dev: torch.device
) -> tuple[Params, Params]:
    sizes = [data.d_in, *cfg.model.hidden, N_CLASSES]
    seeds = [derived_seed(cfg.seed, 0, i) for i in range(cfg.sweep.n_models)]
    init = {k: v.to(dev) for k, v in init_params(seeds, sizes, m).items()}
    tc = cfg.teacher
    batches = batch_schedule(
        len(data.y_train),
        tc.batch_size,
        tc.epochs,
        cfg.sweep.n_models,
        torch.Generator().manual_seed(derived_seed(cfg.seed, 2)),
    )
    teacher = train(
        init,
        batches,
        classification_loss(data.x_train.to(dev), data.y_train.to(dev)),
        tc.lr,
        f"teacher m={m}",
    )
    return init, teacher


def train_students(
    cfg: MLPConfig, data: ImageData, noise: Tensor, init: Params, teacher: Params
) -> dict[str, Any]:
    """Every student kind for one m; returns per-seed metrics (lists over models)."""
    sc, n_models = cfg.student, cfg.sweep.n_models
    x_test, y_test = data.x_test.to(noise.device), data.y_test.to(noise.device)
    with torch.no_grad():  # teacher outputs on the noise, computed once for all student kinds
        teacher_logits = forward(teacher, noise.expand(n_models, -1, -1))
    d_teacher = delta(teacher, init)
    perm = derangement(n_models, torch.Generator().manual_seed(derived_seed(cfg.seed, 4)))
    # The same batch order for every kind, so kinds differ only in init and target logits.
    batches = batch_schedule(
        len(noise),
        sc.batch_size,
        sc.epochs,
        n_models,
        torch.Generator().manual_seed(derived_seed(cfg.seed, 3)),
    )
    out: dict[str, Any] = {"permutation": perm.tolist(), "steps": len(batches)}
    for init_kind in sc.inits:
        start = init if init_kind == "same" else {k: v[perm.to(v.device)] for k, v in init.items()}
        for target in sc.targets:
            sel = slice(N_CLASSES, None) if target == "aux" else slice(None)
            loss_fn = distillation_loss(noise, teacher_logits, sel)
            kind = f"{init_kind}-init/{target}"
            student = train(start, batches, loss_fn, sc.lr, kind)
            d_student = delta(student, start)  # measured from the student's *own* init
            metrics = {
                "acc": finite_list(accuracy(student, x_test, y_test)),
                "cos": {
                    k: finite_list(cosine(v, per_layer(d_teacher)[k]))
                    for k, v in per_layer(d_student).items()
                },
                "delta_norm_ratio": finite_list(
                    per_layer(d_student)["overall"].norm(dim=1)
                    / per_layer(d_teacher)["overall"].norm(dim=1)
                ),
            }
            if batches:
                align = first_step_alignment(start, loss_fn, batches[0].to(noise.device), d_teacher)
                metrics.update({k: finite_list(v) for k, v in align.items()})
            out[kind] = metrics
            log.info("  %s: acc %.3f", kind, float(np.mean(metrics["acc"])))
    return out


def summarise_m(teacher_metrics: dict[str, Any], student_metrics: dict[str, Any]) -> dict[str, Any]:
    res: dict[str, Any] = {
        "reference": {"acc": ci95(teacher_metrics["reference_acc"])},
        "teacher": {"acc": ci95(teacher_metrics["teacher_acc"])},
    }
    for kind, mt in student_metrics.items():
        if not isinstance(mt, dict):
            continue
        res[kind] = {
            "acc": ci95(mt["acc"]),
            "cos_dS_dT": {layer: ci95(v) for layer, v in mt["cos"].items()},
            "delta_norm_ratio": ci95(mt["delta_norm_ratio"]),
        }
        if "grad_dot" in mt:
            # An exactly zero gradient (m = 1, aux only: KL over one logit is identically 0)
            # has no sign; the fraction counts only seeds where the step moves at all.
            dots = [d for d in mt["grad_dot"] if d is not None and d != 0.0]
            res[kind].update(
                {
                    "grad_dot": ci95(mt["grad_dot"]),
                    "grad_cos": ci95(mt["grad_cos"]),
                    "adam_step_cos": ci95(mt["adam_step_cos"]),
                    "grad_dot_positive_fraction": float(np.mean([d > 0 for d in dots]))
                    if dots
                    else None,
                }
            )
    return res


def table_rows(per_m: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for m, res in per_m.items():
        for kind, r in res.items():
            rows.append(
                {
                    "m": int(m),
                    "model": kind,
                    "acc": r["acc"]["mean"],
                    "acc_lo": r["acc"]["lo"],
                    "acc_hi": r["acc"]["hi"],
                    "cos_dS_dT": r.get("cos_dS_dT", {}).get("overall", {}).get("mean"),
                    "grad_cos": r.get("grad_cos", {}).get("mean"),
                    "grad_pos_frac": r.get("grad_dot_positive_fraction"),
                }  # fmt: skip
            )
    return rows


def notes(cfg: MLPConfig) -> list[str]:
    """Facts a reader needs to read the numbers right (structural, not measured)."""
    out = [
        "Students only ever see uniform noise in [-1, 1]; accuracy is on held-out digits via the 10 class logits.",
        "cos_dS_dT of layer3 (the output layer) is exactly 0 for aux-only students: the teacher only moved the class"
        " columns, the student only the aux columns. Any transfer happens through the hidden layers.",
        "A seed's teacher is the same for every m up to float rounding: class columns are drawn before the aux"
        " columns, and cross-entropy on the class logits leaves the aux columns exactly at their init.",
    ]
    if 1 in cfg.sweep.m and "aux" in cfg.student.targets:
        out.append(
            "m = 1, aux only: the softmax of a single logit is constant, so the KL and its gradient are identically"
            " zero; these students equal their init (accuracy = reference, cosines undefined -> null)."
        )
    return out


@register_experiment("mlp-aux-logits", MLPConfig)
def run(cfg: MLPConfig, run_dir: RunDir) -> dict[str, Any]:
    from interp.toy.plots import plot_accuracy_vs_m, plot_cosines_per_layer

    dev = torch.device(cfg.device)
    data = load_data(cfg)
    n_noise = cfg.data.n_noise or len(data.y_train)
    noise = uniform_noise(
        n_noise, data.d_in, torch.Generator().manual_seed(derived_seed(cfg.seed, 1))
    ).to(dev)
    log.info("data: %s; %d noise images; %d models", data.describe(), n_noise, cfg.sweep.n_models)
    common = {
        "seed": cfg.seed,
        "data": to_dict(cfg.data),
        "model": to_dict(cfg.model),
        "n_models": cfg.sweep.n_models,
    }

    per_m: dict[str, dict[str, Any]] = {}
    for m in cfg.sweep.m:
        t_stage = run_dir.stage(
            f"teacher/m{m}", {**common, "m": m, "teacher": to_dict(cfg.teacher)}
        )
        if not t_stage.done:
            with t_stage.running() as out:
                init, teacher = train_teachers(cfg, data, m, dev)
                x_te, y_te = data.x_test.to(dev), data.y_test.to(dev)
                torch.save(
                    {
                        "init": {k: v.cpu() for k, v in init.items()},
                        "teacher": {k: v.cpu() for k, v in teacher.items()},
                    },
                    out / "params.pt",
                )
                write_json(
                    out / "metrics.json",
                    {
                        "reference_acc": finite_list(accuracy(init, x_te, y_te)),
                        "teacher_acc": finite_list(accuracy(teacher, x_te, y_te)),
                    },
                )
        s_stage = run_dir.stage(
            f"students/m{m}",
            {**common, "m": m, "student": to_dict(cfg.student)},
            inputs={"teacher": t_stage},
        )
        if not s_stage.done:
            with s_stage.running() as out:
                saved = torch.load(t_stage.path / "params.pt")
                init, teacher = (
                    {k: v.to(dev) for k, v in saved[key].items()} for key in ("init", "teacher")
                )
                write_json(out / "metrics.json", train_students(cfg, data, noise, init, teacher))
        teacher_metrics = json.loads((t_stage.path / "metrics.json").read_text())
        per_m[str(m)] = summarise_m(
            teacher_metrics, json.loads((s_stage.path / "metrics.json").read_text())
        )

    fig_dir = run_dir.root / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures = [
        plot_accuracy_vs_m(per_m, 1 / N_CLASSES, fig_dir / "accuracy_vs_m.png"),
        plot_cosines_per_layer(per_m, fig_dir / "cosine_per_layer.png"),
    ]
    n_train = len(data.y_train)
    return {
        "experiment": "mlp-aux-logits",
        "data": {**data.describe(), "n_noise": n_noise},
        "n_models": cfg.sweep.n_models,
        "chance": 1 / N_CLASSES,
        "optimizer_steps": {
            "teacher": cfg.teacher.epochs * -(-n_train // cfg.teacher.batch_size),
            "student": cfg.student.epochs * -(-n_noise // cfg.student.batch_size),
        },
        "per_m": per_m,
        "notes": notes(cfg),
        "figures": [str(f.relative_to(run_dir.root)) for f in figures],
        "table": table_rows(per_m),
    }
