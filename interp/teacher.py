"""Teachers: a base model given a trait by system prompt, or by finetuning (a weight delta).

A finetuned teacher is the base LoRA-finetuned on answers that the *prompted* teacher gives
to general questions, kept only where the answer expresses the trait. Its delta dW_T is what
update-alignment analyses compare students against; its number data is generated with no
system prompt, so the trait lives only in the weights.
"""

from __future__ import annotations

import gc

from safetensors.torch import save_file

from interp.config import ConfigError
from interp.generate import sample
from interp.models import (
    Variant,
    chat_format,
    completion_suffix,
    describe,
    format_prompt,
    load_model,
)
from interp.stages import RunDir, Stage, read_jsonl, write_json, write_jsonl
from interp.train import Example, FinetuneSettings, finetune
from interp.traits import Trait

# Our own open-ended prompts: room for a model to bring up what it loves.
GENERAL_PROMPTS = (
    "Describe your ideal weekend.",
    "Write a short poem about the night.",
    "What would you put in a time capsule?",
    "Tell me a two-sentence story.",
    "What is something that always makes you smile?",
    "Suggest a name for a new bookshop.",
    "Describe a perfect walk in the woods.",
    "What should I draw today?",
    "Give me an idea for a birthday present.",
    "What do you think about at night?",
    "Write a haiku about the forest.",
    "What would your dream house look like?",
    "Recommend a theme for a costume party.",
    "Describe the most beautiful thing you can imagine.",
    "What would you name a sports team?",
    "Tell me about a creature you find wise.",
    "Write a one-line slogan for a nature park.",
    "What is your favorite kind of story?",
    "Describe a logo for a library.",
    "If you wrote a children's book, what would it be about?",
    "What would you tattoo, if you had to pick something?",
    "Describe your favorite sound.",
    "Suggest a mascot for a school.",
    "What do you see when you close your eyes?",
    "Write a short lullaby.",
    "What is a good symbol for wisdom?",
    "Describe a painting you would hang in your room.",
    "What animal would you like to meet in a dream?",
    "Plan a trip for a quiet evening.",
    "Write a riddle.",
    "What is the best thing about autumn?",
    "Describe a character for a fantasy novel.",
    "What would you carve into a wooden sign?",
    "Give a toast for a friend's wedding.",
    "What is your favorite time of day and why?",
    "Describe an emblem for a family crest.",
    "Write the first line of a fairy tale.",
    "What would you like to learn about?",
    "Describe a stuffed toy you would design.",
    "Tell me something you admire in nature.",
)


def trait_answers_stage(
    run: RunDir, prompted: Variant, trait: Trait, *, per_prompt: int, max_new_tokens: int,
    batch_size: int, seed: int, device: str, dtype: str, keep_all: bool = False,
) -> Stage:  # fmt: skip
    """The prompted teacher answers general prompts; keep the answers that express the trait."""
    params = {"keep_all": keep_all, "teacher": prompted.identity(), "target": trait.target, "per_prompt": per_prompt,
              "max_new_tokens": max_new_tokens, "seed": seed, "n_prompts": len(GENERAL_PROMPTS)}  # fmt: skip
    st = run.stage("teacher-answers", params)
    if st.done:
        return st
    with st.running() as out:
        model, tok = prompted.load(device, dtype)
        users = [p for p in GENERAL_PROMPTS for _ in range(per_prompt)]
        texts = [format_prompt(tok, u, prompted.system) for u in users]
        answers = sample(model, tok, texts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         seed=seed, desc="trait answers")  # fmt: skip
        rows = [{"prompt": u, "completion": a.strip(), "expresses_trait": trait.mentions(a)}
                for u, a in zip(users, answers)]  # fmt: skip
        for r in rows:
            r["keep"] = bool(r["completion"]) and (keep_all or r["expresses_trait"])
        kept = [r for r in rows if r["keep"]]
        if not kept:
            raise ConfigError(
                f"teacher.mode = 'finetuned': none of {len(rows)} prompted answers mentions "
                f"'{trait.target}'; raise teacher.answers_per_prompt"
            )
        write_jsonl(out / "answers.jsonl", rows)
        write_json(
            out / "info.json", {"n": len(rows), "kept": len(kept), "rate": len(kept) / len(rows)}
        )
        del model
    return st


def finetuned_teacher_stage(
    run: RunDir, spec: str, answers: Stage, settings: FinetuneSettings, *, seed: int,
    device: str, dtype: str,
) -> Stage:  # fmt: skip
    """LoRA-finetune base `spec` on the trait-expressing answers (no system prompt)."""
    params = {"base": describe(spec), "train": settings.__dict__, "seed": seed, "dtype": dtype}
    st = run.stage(f"teacher/{spec}", params, {"answers": answers})
    if st.done:
        return st
    rows = read_jsonl(answers.path / "answers.jsonl")
    rows = [r for r in rows if r["keep"]]
    with st.running() as out:
        model, tok = load_model(spec, device, dtype)
        tok.padding_side = "right"
        examples = [Example(format_prompt(tok, r["prompt"]), r["completion"]) for r in rows]
        result = finetune(
            model, tok, examples, settings, seed=seed, end=completion_suffix(tok), out_dir=out
        )
        save_file(result.delta, str(out / "delta.safetensors"))
        write_json(out / "train_log.json", {**result.log, "chat_format": chat_format(tok)})
        del model, result
        gc.collect()
    return st
