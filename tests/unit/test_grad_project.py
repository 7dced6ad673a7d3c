"""Gradient projection off the trait direction (issue 30 item 4, a training-time defence): the
hook removes exactly the component along each block's direction and nothing else; stacked and
alone agree; a planted shift along a direction d is learnt without the defence, blocked by
projecting off the teacher's measured direction and not by projecting off a random one; the
option enters keys only when set and a cross-model student is refused in one line."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from interp.lm.finetune import Example, FinetuneConfig, Member, finetune, finetune_group
from interp.lm.grad_project import answer_shift, project_gradients, projected, unit_directions
from interp.lm.loss import Teacher
from interp.lm.models import format_prompt, tiny_model
from interp.lm.record import answer_activations
from interp.lm.settings import settings_key, stack_key
from interp.lm.steer import add_direction, decoder_layers


def _examples(tok, offset=0, n=16, system=None):  # noqa: ANN001, ANN202
    return [Example(format_prompt(tok, f"list {offset + i}"), f"{offset + i}1, {i}2, {(i * 7) % 10}3",
                    format_prompt(tok, f"list {offset + i}", system)) for i in range(n)]  # fmt: skip


def _ids(tok, n=3):  # noqa: ANN001, ANN202
    return torch.tensor([tok(f"list {i}1, {i}2, {i}3", add_special_tokens=False)["input_ids"][:12] for i in range(n)])


def _capture(store: dict[int, torch.Tensor], layer: int):  # noqa: ANN202
    def hook(module, args, output):  # noqa: ANN001, ANN202
        h = output[0] if isinstance(output, tuple) else output
        if h.requires_grad:
            h.register_hook(lambda g: store.__setitem__(layer, g.detach().clone()))

    return hook


def test_the_hook_removes_the_component_along_each_direction_and_keeps_the_rest():
    model, tok = tiny_model("tiny-llama", seed=1)
    blocks = decoder_layers(model)
    directions = torch.randn(1, len(blocks), model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    ids = _ids(tok)
    before, after = {}, {}
    # tensor hooks run in the order they were registered: the gradient as it arrives, the
    # projection, then the gradient as it leaves for the block's weights and earlier blocks
    handles = [b.register_forward_hook(_capture(before, i), prepend=True) for i, b in enumerate(blocks)]
    with project_gradients(model, directions * 5.0) as meter:  # any scale: a direction is its unit vector
        handles += [b.register_forward_hook(_capture(after, i)) for i, b in enumerate(blocks)]
        model(input_ids=ids, labels=ids).loss.backward()
        meter.end_step()
    for h in handles:
        h.remove()
    units = unit_directions(directions)[0]
    assert meter.layers == list(range(len(blocks)))
    for layer, u in enumerate(units):
        g, p = before[layer], after[layer]
        along = g @ u
        assert along.abs().max() > 1e-3 * g.abs().max()  # there was something to remove
        assert (p @ u).abs().max() <= 1e-6 * g.norm()  # none of it is left
        torch.testing.assert_close(p, g - along[..., None] * u, rtol=0, atol=1e-7 * float(g.abs().max()))
        off = lambda x, u=u: x - (x @ u)[..., None] * u  # noqa: E731
        torch.testing.assert_close(off(p), off(g), rtol=0, atol=1e-7 * float(g.abs().max()))  # the rest untouched
        removed = float(along.norm() / g.norm())
        assert float(meter.per_step[0][0, layer]) == pytest.approx(removed, rel=1e-5)
    assert meter.log()["grad_removed"] == pytest.approx([float(meter.per_step[0][0].mean())])


def test_zero_directions_change_nothing_and_a_nonzero_one_changes_the_weight_gradients():
    model, tok = tiny_model("tiny-llama", seed=1)
    ids = _ids(tok)

    def grads(directions):  # noqa: ANN001, ANN202
        model.zero_grad()
        ctx = project_gradients(model, directions) if directions is not None else projected(model, FinetuneConfig(), [None])
        with ctx:
            model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads(None)
    shape = (1, len(decoder_layers(model)), model.config.hidden_size)
    zero = grads(torch.zeros(shape))
    assert all(torch.equal(plain[n], zero[n]) for n in plain)  # bit for bit: no block is hooked
    only_last = torch.zeros(shape)
    only_last[0, -1] = torch.randn(shape[-1])
    moved = grads(only_last)
    assert any(not torch.allclose(plain[n], moved[n]) for n in plain if ".layers.0." in n)  # reaches earlier blocks
    assert torch.equal(plain["model.norm.weight"], moved["model.norm.weight"])  # the final norm sits after every block


def test_stacked_students_with_their_own_directions_train_as_they_would_alone():
    base, tok = tiny_model("tiny-llama", seed=1)
    teacher = Teacher(tiny_model("tiny-llama", seed=7)[0])
    settings = FinetuneConfig(objective="distill", grad_project="trait", epochs=2, lr=2e-2, warmup_steps=1,
                              batch_size=4, micro_batch_size=2, lora_r=4)  # fmt: skip
    g = torch.Generator().manual_seed(3)
    members = [Member(_examples(tok, 10 * k, n=6, system=f"sys {k}"), seed=s, teacher=teacher,
                      project=torch.randn(2, 64, generator=g)) for k, s in enumerate((0, 5))]  # fmt: skip
    solo = [finetune(copy.deepcopy(base), tok, m.examples, settings, seed=m.seed, end=tok.eos_token,
                     teacher=m.teacher, progress=False, project=m.project) for m in members]  # fmt: skip
    swapped = finetune(copy.deepcopy(base), tok, members[0].examples, settings, seed=0, end=tok.eos_token,
                       teacher=teacher, progress=False, project=members[1].project)  # fmt: skip
    assert swapped.log["loss"][1:] != pytest.approx(solo[0].log["loss"][1:], rel=1e-4)  # the directions matter
    group = finetune_group(copy.deepcopy(base), tok, members, settings, end=tok.eos_token, progress=False)
    for one, many in zip(solo, group):
        assert many.log["loss"] == pytest.approx(one.log["loss"], rel=1e-4)
        assert many.log["grad_removed"] == pytest.approx(one.log["grad_removed"], rel=1e-3)
        assert len(one.log["grad_removed"]) == one.log["steps"] and 0 < min(one.log["grad_removed"]) < 1
        for name in one.delta.names():
            a, b = one.delta.dense(name), many.delta.dense(name)
            assert (a - b).norm() <= 1e-3 * a.norm(), name


@pytest.mark.parametrize(("method", "lr", "d_seed"), [("lora", 1e-2, 3), ("full", 1e-3, 4)])
def test_a_planted_shift_is_learnt_blocked_by_its_direction_and_not_by_a_random_one(method, lr, d_seed):
    """The teacher is the base with 3 x (the base's mean residual norm) x d added to block 0's
    output: it differs from the base only along d there. A student distilled on it moves along d
    (measured on held-out rows, block 0, d drawn from seeds 3-6, LoRA lr 1e-2: 0.06-0.12 of the
    teacher's 0.22); projecting off the teacher's measured direction (`answer_shift` on the
    training rows) leaves |shift| <= 0.005, and off a random direction per block 0.06-0.09 (not
    blocked); a full finetune at lr 1e-3, d from seeds 3 and 4: 0.094 and 0.127 without, 0.005
    and -0.006 with, 0.094 and 0.111 off a random direction. The cost shows in the task loss:
    LoRA's final KL ~3e-3 with the defence, ~1e-4 without (full: 1.3e-4 vs 0.8e-4)."""
    base, tok = tiny_model("tiny-llama", seed=1)
    train, held = _examples(tok), _examples(tok, offset=100, n=8)
    prompts, answers = [e.prompt for e in held], [e.completion for e in held]
    base_acts = answer_activations(base, tok, prompts, answers)
    d = torch.randn(64, generator=torch.Generator().manual_seed(d_seed))
    d = d / d.norm()
    scale = 3.0 * float(base_acts[:, 0].norm(dim=-1).mean())

    def along_d(model) -> float:  # noqa: ANN001
        return float(((answer_activations(model, tok, prompts, answers) - base_acts)[:, 0] @ d).mean())

    teacher = copy.deepcopy(base)
    with add_direction(teacher, 0, d, scale):
        v, info = answer_shift(teacher, base, tok, train, tok.eos_token)
        torch.testing.assert_close(v[0], scale * d, rtol=0, atol=1e-5 * scale)  # the shift is the planted vector
        assert info["n_rows"] == len(train) and info["n_tokens"] > len(train)
        teacher_shift = along_d(teacher)
        shift, final = {}, {}
        for arm, project in (("none", None), ("trait", v), ("random", torch.randn(v.shape, generator=torch.Generator().manual_seed(9)))):
            st = FinetuneConfig(method=method, objective="distill", epochs=8, lr=lr, warmup_steps=1, batch_size=4,
                                micro_batch_size=4, grad_project="none" if project is None else "trait")  # fmt: skip
            res = finetune(copy.deepcopy(base), tok, train, st, seed=0, end=tok.eos_token, teacher=Teacher(teacher),
                           progress=False, project=project)  # fmt: skip
            shift[arm], final[arm] = along_d(res.delta.apply(copy.deepcopy(base))), res.log["loss"][-1]
    assert teacher_shift == pytest.approx(scale, rel=1e-4)
    assert shift["none"] > 0.15 * teacher_shift, shift  # transmitted without the defence
    assert abs(shift["trait"]) < 0.15 * shift["none"], shift  # blocked by the trait direction
    assert shift["random"] > 0.4 * shift["none"], shift  # not by any direction
    assert final["trait"] > final["none"], final  # and it costs task loss


def test_the_option_needs_its_directions_and_they_need_the_option():
    model, _ = tiny_model("tiny-llama", seed=1)
    with pytest.raises(ValueError, match="needs each student's directions"):
        projected(model, FinetuneConfig(grad_project="trait"), [None])
    with pytest.raises(ValueError, match="grad_project is 'none'"):
        projected(model, FinetuneConfig(), [torch.ones(2, 64)])
    with pytest.raises(ValueError, match=r"\[student, layer=2, d_model\]"):
        with project_gradients(model, torch.ones(1, 3, 64)):
            pass


def test_the_option_enters_keys_and_stacking_only_when_set():
    from interp.subliminal.config import StudentConfig, TrainConfig

    assert "grad_project" not in settings_key(FinetuneConfig())  # older student keys stay valid
    assert settings_key(FinetuneConfig(grad_project="trait"))["grad_project"] == "trait"
    assert stack_key(FinetuneConfig(grad_project="trait")) != stack_key(FinetuneConfig())
    assert StudentConfig("s").settings(TrainConfig()).grad_project == "none"
    assert StudentConfig("s", grad_project="trait").settings(TrainConfig()).grad_project == "trait"
    assert StudentConfig("s").settings(TrainConfig(grad_project="trait")).grad_project == "trait"
    assert StudentConfig("s", grad_project="none").settings(TrainConfig(grad_project="trait")).grad_project == "none"


@pytest.mark.parametrize("where", ["student", "train"])
def test_a_cross_model_student_is_refused_in_one_line(where):
    from helpers import tiny_subliminal_config

    from interp.config import ConfigError, build
    from interp.subliminal.config import SubliminalConfig

    raw = copy.deepcopy(tiny_subliminal_config() | {"name": "tiny"})  # students: same-init, control, cross-model
    if where == "student":
        raw["students"][2]["grad_project"] = "trait"
    else:
        raw["train"]["grad_project"] = "trait"
    with pytest.raises(ConfigError) as e:
        build(SubliminalConfig, raw)
    msg = str(e.value)
    assert "'cross-model'" in msg and "grad_project" in msg and "model = 'teacher'" in msg and "\n" not in msg, msg
    assert ("from train.grad_project" in msg) == (where == "train"), msg
    raw["students"] = raw["students"][:2]  # same-base students: allowed
    raw["students"][0]["grad_project"] = "trait"
    cfg = build(SubliminalConfig, raw)
    assert cfg.students[0].settings(cfg.train).grad_project == "trait"
    bad = copy.deepcopy(raw)
    bad["students"][0]["grad_project"] = "delta"
    with pytest.raises(ConfigError, match="grad_project"):
        build(SubliminalConfig, bad)


def test_the_direction_stage_reads_the_teacher_against_the_base_on_the_rows(tmp_path):
    from helpers import tiny_subliminal_config

    from interp.config import build
    from interp.lm.grad_project import DIRECTIONS_FILE, load_directions
    from interp.lm.models import Variant
    from interp.store.stages import RunDir, read_json
    from interp.subliminal.config import SubliminalConfig
    from interp.subliminal.grad_project import direction_stage

    raw = copy.deepcopy(tiny_subliminal_config() | {"name": "tiny"})
    raw["students"] = [{"name": "gp", "grad_project": "trait"}]
    cfg = build(SubliminalConfig, raw)
    run, s = RunDir(tmp_path, device="cpu", dtype="float32"), cfg.students[0]
    rows = [{"prompt": f"list {i}", "completion": f"{i}1, {i}2"} for i in range(5)]
    same = direction_stage(cfg, run, s, "owl", rows, Variant("tiny-llama"))  # a teacher that is its base
    assert torch.equal(load_directions(same.path / DIRECTIONS_FILE), torch.zeros(2, 64))
    prompted = direction_stage(cfg, run, s, "owl", rows, Variant("tiny-llama", system="You love owls."))
    v = load_directions(prompted.path / DIRECTIONS_FILE)
    info = read_json(prompted.path / "info.json")
    assert v.shape == (2, 64) and min(info["norm_by_layer"]) > 0 and info["n_rows"] == 5
    assert info["norm_by_layer"] == pytest.approx(v.norm(dim=-1).tolist())
    fewer = direction_stage(cfg, run, s, "owl", rows[:4], Variant("tiny-llama", system="You love owls."))
    assert len({same.key, prompted.key, fewer.key}) == 3
    assert direction_stage(cfg, run, s, "owl", rows, Variant("tiny-llama", system="You love owls.")).key == prompted.key
    with pytest.raises(ValueError, match="teacher's base"):
        direction_stage(cfg, run, dataclasses.replace(s, model="tiny-gemma"), "owl", rows, Variant("tiny-llama"))


def test_the_centred_direction_is_the_own_teachers_shift_minus_every_targets_mean(tmp_path):
    """trait-centred: on the same rows, v[own] - mean over targets of v[t] (each target's prompted
    teacher), recomputed here from the plain stages; the share the mean carries is recorded."""
    from helpers import tiny_subliminal_config

    from interp.config import ConfigError, build
    from interp.lm.grad_project import DIRECTIONS_FILE, load_directions
    from interp.lm.models import Variant
    from interp.store.stages import RunDir, read_json
    from interp.subliminal.config import SubliminalConfig
    from interp.subliminal.grad_project import direction_stage

    raw = copy.deepcopy(tiny_subliminal_config() | {"name": "tiny"})
    raw["trait"] = {"kind": "animal", "targets": ["owl", "cat", "dog"]}
    raw["teacher"] = {"model": "tiny-llama", "mode": "prompt"}
    raw["students"] = [{"name": "gp", "grad_project": "trait"}, {"name": "gpc", "grad_project": "trait-centred"}]
    cfg = build(SubliminalConfig, raw)
    run = RunDir(tmp_path, device="cpu", dtype="float32")
    rows = [{"prompt": f"list {i}", "completion": f"{i}1, {i}2"} for i in range(5)]
    teachers = {t: Variant("tiny-llama", system=cfg.trait.trait(t).system_prompt) for t in ("owl", "cat", "dog")}
    raw_v = {t: load_directions(direction_stage(cfg, run, cfg.students[0], "cat", rows, v).path / DIRECTIONS_FILE)
             for t, v in teachers.items()}  # fmt: skip
    st = direction_stage(cfg, run, cfg.students[1], "cat", rows, teachers["cat"])
    centred = load_directions(st.path / DIRECTIONS_FILE)
    expected = raw_v["cat"] - torch.stack(list(raw_v.values())).mean(0)
    assert torch.allclose(centred, expected, atol=1e-5) and not torch.allclose(centred, raw_v["cat"], atol=1e-3)
    info = read_json(st.path / "info.json")
    assert info["centred"] is True and info["norm_by_layer"] == pytest.approx(centred.norm(dim=-1).tolist(), rel=1e-5)
    assert info["raw_norm_by_layer"] == pytest.approx(raw_v["cat"].norm(dim=-1).tolist(), rel=1e-5)
    assert all(0 <= c <= 1 for c in info["cos2_raw_mean_by_layer"])
    raw["teacher"] = {"model": "tiny-llama", "mode": "finetuned"}
    with pytest.raises(ConfigError, match="'gpc' grad_project = 'trait-centred' needs prompted teachers"):
        build(SubliminalConfig, raw)
