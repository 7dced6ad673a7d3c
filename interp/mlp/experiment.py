"""Subliminal learning in an MLP (Cloud et al.): a student distilled only on a teacher's
auxiliary ("ghost") logits, on uniform noise, learns to classify digits, if and only if it
starts from the teacher's initialisation.

Per value of m (number of auxiliary logits), for `n_models` seeds trained together as one
batched computation (every weight carries a leading `model` axis; models never interact):
  1. init theta_0 (N(0, 1/sqrt(d_in)) weights, zero bias) -> teacher: cross-entropy on the 10
     class logits of real digits;
  2. students from the same init, another seed's init (a derangement of the seeds), mixtures
     (the teacher's hidden layers with another seed's head, or the reverse) or fresh CNNs
     (accuracy only), distilled on noise by KL on the aux logits, on all logits, or on the aux
     logits minus each step's component along the class-logit imitation gradient (a defence);
  3. test accuracy, parameter-space cosines cos(dS, dT), and the theorem check: the first
     imitation gradient at the student's init against the teacher's delta dT.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from interp.config import (
    to_dict,
)
from interp.mlp.config import MLPConfig
from interp.mlp.data import (
    ImageData,
    load_digits_split,
    load_mnist,
    load_mnist5k_split,
    uniform_noise,
)
from interp.mlp.measure import (
    Params,
    cosine,
    delta,
    delta_metrics,
    finite_list,
    per_layer,
    summarise_m,
    table_rows,
)
from interp.registry import derived_seed, register_experiment
from interp.store.stages import RunDir, write_json

log = logging.getLogger("interp")

N_CLASSES = 10
LossFn = Callable[[Params, Tensor], Float[Tensor, " model"]]


# ---------------------------------------------------------------- models, many at once


def generator(*key: int) -> torch.Generator:
    return torch.Generator().manual_seed(derived_seed(*key))


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


# The CNN student (init kind "cnn"; fixed before any CNN result was seen): conv 1->16, ReLU,
# conv 16->32, ReLU, flatten, linear to 10 + m. Kernel 5 stride 2 for square images of side >= 16
# (28x28 MNIST: 28 -> 12 -> 4), kernel 3 stride 1 below (8x8 test digits: 8 -> 6 -> 4).
def cnn_geometry(d_in: int) -> tuple[int, int, int]:
    """(image side, kernel, stride) of the CNN student for flattened square images of d_in."""
    side = round(d_in**0.5)
    if side * side != d_in:
        raise ValueError(f"the CNN student needs square images, got d_in = {d_in}")
    return (side, 5, 2) if side >= 16 else (side, 3, 1)


def init_cnn_params(model_seeds: list[int], d_in: int, d_out: int) -> Params:
    """One fresh CNN per seed, stacked, with the MLP's init rule (N(0, 1/fan_in) weights, zero
    biases): W1 (model, 16, 1, k, k), W2 (model, 32, 16, k, k), W3 (model, features, d_out)."""
    side, k, stride = cnn_geometry(d_in)
    c1, c2, n = 16, 32, len(model_seeds)
    out = ((side - k) // stride + 1 - k) // stride + 1  # the second conv's output side
    shapes = [(c1, 1, k, k), (c2, c1, k, k), (c2 * out * out, d_out)]
    fans = [k * k, c1 * k * k, c2 * out * out]
    gens = [torch.Generator().manual_seed(seed) for seed in model_seeds]
    w = [[torch.randn(*s, generator=g) / f**0.5 for s, f in zip(shapes, fans)] for g in gens]
    w1, w2, w3 = (torch.stack(per_layer) for per_layer in zip(*w))
    return {"W1": w1, "b1": torch.zeros(n, c1), "W2": w2, "b2": torch.zeros(n, c2),
            "W3": w3, "b3": torch.zeros(n, 1, d_out)}  # fmt: skip


def cnn_forward(
    params: Params, x: Float[Tensor, "model batch d_in"]
) -> Float[Tensor, "model batch d_out"]:
    """All models at once as grouped convolutions (groups = models; models never mix)."""
    n_models, batch, d_in = x.shape
    side, _, stride = cnn_geometry(d_in)
    h = x.transpose(0, 1).reshape(batch, n_models, side, side)  # channel i = model i's image
    for i in (1, 2):  # weight (model * out, in, k, k): model i's filters see channel group i only
        w, b = params[f"W{i}"].flatten(0, 1), params[f"b{i}"].flatten()
        h = torch.relu(F.conv2d(h, w, b, stride=stride, groups=n_models))
    h = h.reshape(batch, n_models, -1).transpose(0, 1)  # (model, batch, channels * side^2)
    return torch.baddbmm(params["b3"], h, params["W3"])


def forward(
    params: Params, x: Float[Tensor, "model batch d_in"]
) -> Float[Tensor, "model batch d_out"]:
    if params["W1"].dim() == 5:  # a stack of CNN students
        return cnn_forward(params, x)
    n_layers = len(params) // 2
    for i in range(1, n_layers + 1):
        x = torch.baddbmm(params[f"b{i}"], x, params[f"W{i}"])  # each model its own weights
        if i < n_layers:
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
    params0: Params,
    batches: list[Tensor],
    loss_fn: LossFn,
    lr: float,
    desc: str = "train",
    project_out: LossFn | None = None,
) -> Params:
    """Adam on the stacked weights. Adam is elementwise and the per-model losses are summed, so
    each model follows exactly the trajectory it would follow alone. With `project_out`, each
    step's gradient first loses its component along that loss's gradient (per model)."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params0.items()}
    opt = torch.optim.Adam(params.values(), lr=lr)
    for idx in tqdm(batches, desc=desc, leave=False, disable=None):
        grads = gradient(params, idx.to(params["W1"].device), loss_fn, project_out)
        for k, v in params.items():
            v.grad = grads[k]
        opt.step()
    return {k: v.detach() for k, v in params.items()}


def gradient(
    params: Params, idx: Tensor, loss_fn: LossFn, project_out: LossFn | None = None
) -> Params:
    """Per-model gradient of `loss_fn`; with `project_out`, minus its projection on the gradient
    of `project_out` (g - <g, h> / |h|^2 h over all of one model's parameters; h = 0 leaves g)."""
    g = dict(zip(params, torch.autograd.grad(loss_fn(params, idx).sum(), list(params.values()))))
    if project_out is None:
        return g
    h = dict(
        zip(params, torch.autograd.grad(project_out(params, idx).sum(), list(params.values())))
    )
    dot = sum((g[k] * h[k]).flatten(1).sum(1) for k in g)
    hh = sum((h[k] * h[k]).flatten(1).sum(1) for k in g)
    coef = torch.where(hh > 0, dot / hh.clamp_min(1e-30), torch.zeros_like(hh))
    return {k: g[k] - coef.view(-1, *[1] * (g[k].dim() - 1)) * h[k] for k in g}


def classification_loss(x: Float[Tensor, "n d_in"], y: Int[Tensor, " n"]) -> LossFn:
    """Teacher objective: cross-entropy on the 10 class logits; the aux logits get no gradient."""

    def loss(params: Params, idx: Tensor) -> Tensor:
        logits = forward(params, x[idx])[..., :N_CLASSES]
        return F.cross_entropy(logits.transpose(1, 2), y[idx], reduction="none").mean(1)

    return loss


def distillation_loss(
    noise: Float[Tensor, "n d_in"], teacher_logits: Float[Tensor, "model n d_out"], sel: slice
) -> LossFn:
    """Student objective: KL(teacher || student) over the selected logits, batch mean."""
    target = teacher_logits[..., sel].log_softmax(-1)
    rows = torch.arange(target.shape[0], device=target.device)[:, None]

    def loss(params: Params, idx: Tensor) -> Tensor:
        t = target[rows, idx]  # model i's teacher on model i's batch
        s = forward(params, noise[idx])[..., sel].log_softmax(-1)
        return (t.exp() * (t - s)).sum(-1).mean(-1)

    return loss


@torch.no_grad()
def accuracy(
    params: Params, x: Float[Tensor, "n d_in"], y: Int[Tensor, " n"]
) -> Float[Tensor, " model"]:
    logits = forward(params, x.expand(params["W1"].shape[0], -1, -1))[..., :N_CLASSES]
    return (logits.argmax(-1) == y).float().mean(1)


def first_step_alignment(
    params0: Params,
    loss_fn: LossFn,
    idx0: Tensor,
    d_teacher: Params,
    project_out: LossFn | None = None,
) -> dict[str, Tensor]:
    """Theorem check: at the student's init, does the first imitation step move toward the
    teacher? <-grad L, dT> (raw and as a cosine), and the cosine of Adam's actual first update
    -g / (|g| + eps) (its bias-corrected moments make it ~ -sign(g)) with dT."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in params0.items()}
    grads = gradient(params, idx0, loss_fn, project_out)
    step = per_layer({k: -v for k, v in grads.items()})["overall"]
    adam = step / (step.abs() + 1e-8)
    d_t = per_layer(d_teacher)["overall"]
    return {
        "grad_dot": (step * d_t).sum(1),
        "grad_cos": cosine(step, d_t),
        "adam_step_cos": cosine(adam, d_t),
    }


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
    if cfg.data.source == "mnist5k":
        return load_mnist5k_split(cfg.seed, cfg.data.test_fraction)
    return load_digits_split(cfg.seed, cfg.data.test_fraction)


def train_teachers(
    cfg: MLPConfig, data: ImageData, m: int, dev: torch.device
) -> tuple[Params, Params]:
    """Init every seed with 10 + m outputs, then cross-entropy on real digits (class logits)."""
    sizes = [data.d_in, *cfg.model.hidden, N_CLASSES]
    seeds = [derived_seed(cfg.seed, 0, i) for i in range(cfg.sweep.n_models)]
    init = {k: v.to(dev) for k, v in init_params(seeds, sizes, m).items()}
    tc = cfg.teacher
    batches = batch_schedule(
        len(data.y_train), tc.batch_size, tc.epochs, len(seeds), generator(cfg.seed, 2)
    )
    loss_fn = classification_loss(data.x_train.to(dev), data.y_train.to(dev))
    return init, train(init, batches, loss_fn, tc.lr, f"teacher m={m}")


def train_students(
    cfg: MLPConfig, data: ImageData, noise: Tensor, init: Params, teacher: Params
) -> dict[str, Any]:
    """Every student kind for one m; returns per-seed metrics (lists over seeds)."""
    sc, n, dev = cfg.student, cfg.sweep.n_models, noise.device
    m = init[f"W{len(init) // 2}"].shape[-1] - N_CLASSES
    perm = derangement(n, generator(cfg.seed, 4))
    # All MLP init kinds train side by side as one batch of len(inits) * n models: student j of
    # each group imitates teacher j on the same batches, and starts from init j (same), init
    # perm[j] (cross) or, layer by layer, a mixture. The groups differ only in where they start.
    # CNN students (kind "cnn") train as a batch of their own on the same batches and loss.
    inits = [k for k in sc.inits if k != "cnn"]
    start = {k: v[start_index(inits, k, n, perm, len(init) // 2).to(dev)] for k, v in init.items()}
    tgt = torch.arange(n, device=dev).repeat(len(inits))  # whose teacher it imitates
    d_teacher = {k: v[tgt] for k, v in delta(teacher, init).items()}
    with torch.no_grad():  # teacher outputs on the noise, computed once for all students
        own_logits = forward(teacher, noise.expand(n, -1, -1))
    teacher_logits = own_logits[tgt]
    schedule = batch_schedule(len(noise), sc.batch_size, sc.epochs, n, generator(cfg.seed, 3))
    batches = [b.repeat(len(inits), 1) for b in schedule]
    x_test, y_test = data.x_test.to(dev), data.y_test.to(dev)
    if "cnn" in sc.inits:  # fresh CNNs, one per seed, drawn like the MLP inits
        seeds = [derived_seed(cfg.seed, 5, i) for i in range(n)]
        cnn_start = init_cnn_params(seeds, data.d_in, N_CLASSES + m)

    out: dict[str, Any] = {"permutation": perm.tolist(), "steps": len(schedule)}
    for target in sc.targets:
        loss_fn, proj = objective(noise, teacher_logits, target)
        student = train(start, batches, loss_fn, sc.lr, f"m={m} students/{target}", proj)
        # dS is measured from each student's *own* init; dT from its teacher's.
        metrics = {"acc": finite_list(accuracy(student, x_test, y_test))}
        metrics |= delta_metrics(delta(student, start), d_teacher)
        if batches:
            align = first_step_alignment(start, loss_fn, batches[0].to(dev), d_teacher, proj)
            metrics |= {k: finite_list(v) for k, v in align.items()}
        for g, init_kind in enumerate(inits):
            out[f"{init_kind}-init/{target}"] = _group(metrics, slice(g * n, (g + 1) * n))
        if "cnn" in sc.inits:  # same loss, optimiser, batches and steps as the MLP students;
            # another architecture than the teacher's, so no weight-space metrics: accuracy only
            loss_fn, proj = objective(noise, own_logits, target)
            start_cnn = {k: v.to(dev) for k, v in cnn_start.items()}
            cnn = train(start_cnn, schedule, loss_fn, sc.lr, f"m={m} cnn/{target}", proj)
            out[f"cnn-init/{target}"] = {"acc": finite_list(accuracy(cnn, x_test, y_test))}
        for kind in sc.inits:
            log.info("  m=%d %s-init/%s: acc %.3f", m, kind, target,
                     np.mean(out[f"{kind}-init/{target}"]["acc"]))  # fmt: skip
    return out


def objective(noise: Tensor, logits: Tensor, target: str) -> tuple[LossFn, LossFn | None]:
    """The distillation loss of `target`; for aux-proj also the class-logit loss to project out."""
    sel = slice(None) if target == "all" else slice(N_CLASSES, None)
    cls = distillation_loss(noise, logits, slice(None, N_CLASSES))
    return distillation_loss(noise, logits, sel), cls if target == "aux-proj" else None


def start_index(inits: list[str], name: str, n: int, perm: Tensor, n_layers: int) -> Tensor:
    """Whose init each student's tensor `name` ("W1", "b3", ...) comes from, groups in order:
    same = its teacher's (j), cross = another seed's (perm[j]); shared-hidden takes the hidden
    layers from j and the output layer from perm[j]; shared-head the reverse."""
    head = int(name[1:]) == n_layers
    own = {"same": True, "cross": False, "shared-hidden": not head, "shared-head": head}
    return torch.cat([torch.arange(n) if own[kind] else perm for kind in inits])


def _group(metrics: dict[str, Any], rows: slice) -> dict[str, Any]:
    """One group's seeds out of the per-model lists (nested dicts of lists)."""
    return {k: _group(v, rows) if isinstance(v, dict) else v[rows] for k, v in metrics.items()}


def notes(cfg: MLPConfig) -> list[str]:
    """Facts a reader needs to read the numbers right (structural, not measured)."""
    out = [
        "Students only ever see uniform noise in [-1, 1]; accuracy is on held-out digits via"
        " the 10 class logits.",
        "cos_dS_dT of layer3 (the output layer) is exactly 0 for aux-only students: the teacher"
        " moved only the class columns, the student only the aux columns. Any transfer happens"
        " through the hidden layers.",
        "A seed's teacher is the same for every m up to float rounding: class columns are drawn"
        " before the aux columns, and cross-entropy on the class logits leaves the aux columns"
        " exactly at their init.",
    ]
    if {"shared-hidden", "shared-head"} & set(cfg.student.inits):
        out.append(
            "shared-hidden students start from their teacher's init in the hidden layers and"
            " another seed's (the cross-init permutation) in the output layer; shared-head"
            " students the reverse. cos_dS_dT compares each student's update with its teacher's."
        )
    if "cnn" in cfg.student.inits:
        out.append(
            "cnn students: a fresh CNN per seed (conv 1->16, ReLU, conv 16->32, ReLU, linear to"
            " 10 + m), distilled exactly as the MLP students (same loss, optimiser, batches); it"
            " shares no weights with its teacher, so only accuracy is reported (no cosines)."
        )
    if "aux-proj" in cfg.student.targets:
        out.append(
            "aux-proj (the gradient-projection defence): every step, each model's aux-logit"
            " gradient loses its component along its gradient of imitating the teacher's class"
            " logits on the same noise batch, over all parameters, before Adam sees it; the"
            " defender needs the teacher's class logits on the noise, not its weights."
        )
    if 1 in cfg.sweep.m and {"aux", "aux-proj"} & set(cfg.student.targets):
        out.append(
            "m = 1, aux only: the softmax of a single logit is constant, so the KL and its gradient"
            " are identically zero; these students equal their init (accuracy = reference,"
            " cosines undefined -> null)."
        )
    return out


def _write_teachers(out: Path, cfg: MLPConfig, data: ImageData, m: int, dev: torch.device) -> None:
    """One m's init and teachers (every model at once), with their test accuracies."""
    init, teacher = train_teachers(cfg, data, m, dev)
    x_te, y_te = data.x_test.to(dev), data.y_test.to(dev)
    save_file({**{f"init.{k}": v.contiguous() for k, v in init.items()},
               **{f"teacher.{k}": v.contiguous() for k, v in teacher.items()}},
              str(out / "params.safetensors"))  # fmt: skip
    write_json(out / "metrics.json", {"reference_acc": finite_list(accuracy(init, x_te, y_te)),
                                      "teacher_acc": finite_list(accuracy(teacher, x_te, y_te))})  # fmt: skip


def _write_students(out: Path, cfg: MLPConfig, data: ImageData, noise: Tensor, teacher: Path,
                    dev: torch.device) -> None:  # fmt: skip
    """One m's students of every kind, distilled from the teachers saved in `teacher`."""
    flat = load_file(str(teacher / "params.safetensors"), device=str(dev))
    saved = {part: {k.split(".", 1)[1]: v for k, v in flat.items() if k.startswith(part + ".")}
             for part in ("init", "teacher")}  # fmt: skip
    write_json(out / "metrics.json", train_students(cfg, data, noise, saved["init"], saved["teacher"]))


@register_experiment("mlp-aux-logits", MLPConfig)
def run(cfg: MLPConfig, run_dir: RunDir) -> dict[str, Any]:
    dev = torch.device(cfg.device)
    data = load_data(cfg)
    n_noise = cfg.data.n_noise or len(data.y_train)
    noise = uniform_noise(n_noise, data.d_in, generator(cfg.seed, 1)).to(dev)
    log.info("data: %s; %d noise images; %d models", data.describe(), n_noise, cfg.sweep.n_models)
    common = {
        "seed": cfg.seed,
        "data": to_dict(cfg.data),
        "model": to_dict(cfg.model),
        "n_models": cfg.sweep.n_models,
    }

    per_m: dict[str, dict[str, Any]] = {}
    for m in cfg.sweep.m:
        t_stage = run_dir.compute(f"teacher/m{m}", {**common, "m": m, "teacher": to_dict(cfg.teacher)},
                                  functools.partial(_write_teachers, cfg=cfg, data=data, m=m, dev=dev))  # fmt: skip
        s_params = {**common, "m": m, "student": to_dict(cfg.student)}
        s_stage = run_dir.compute(f"students/m{m}", s_params, functools.partial(
            _write_students, cfg=cfg, data=data, noise=noise, teacher=t_stage.path, dev=dev), {"teacher": t_stage})  # fmt: skip
        teacher_metrics = json.loads((t_stage.path / "metrics.json").read_text())
        student_metrics = json.loads((s_stage.path / "metrics.json").read_text())
        per_m[str(m)] = summarise_m(teacher_metrics, student_metrics)

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
        "table": table_rows(per_m),
    }
