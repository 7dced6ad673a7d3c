"""Batched sampling from a causal LM, with optional format-constrained decoding."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LogitsProcessor, LogitsProcessorList

log = logging.getLogger("interp")


def encode_prompts(tok: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of prompts built by `models.format_prompt`.

    Chat templates already contain their special tokens; plain-text prompts (the fallback
    format) get the tokenizer's BOS.
    """
    add_special = not getattr(tok, "chat_template", None)
    return [tok(t, add_special_tokens=add_special)["input_ids"] for t in texts]


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
    return ids, mask


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad on the right (training batches: positions need no correction)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """0-based positions of real tokens in a left-padded batch (pads get 0).

    Passing these as `position_ids` keeps every real token at the position it has unpadded,
    so results do not depend on padding.
    """
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def allowed_token_ids(tok: Any, allowed_chars: str) -> list[int]:
    """Vocabulary ids whose text is non-empty and uses only `allowed_chars`, plus end tokens."""
    allowed = set(allowed_chars)
    specials = set(tok.all_special_ids)
    pieces = tok.batch_decode([[i] for i in range(len(tok))])  # one fast call, not V decodes
    ids = [i for i, p in enumerate(pieces) if p and set(p) <= allowed and i not in specials]
    ends = {tok.eos_token_id, *end_token_ids(tok)}
    return sorted(set(ids) | {e for e in ends if e is not None})


def end_token_ids(tok: Any) -> list[int]:
    """Tokens that end an assistant turn (EOS, and e.g. Gemma's <end_of_turn>)."""
    out = [tok.eos_token_id] if tok.eos_token_id is not None else []
    for name in ("<end_of_turn>", "<|im_end|>", "<|eot_id|>"):
        tid = tok.convert_tokens_to_ids(name)
        if isinstance(tid, int) and tid != tok.unk_token_id and tid not in out:
            out.append(tid)
    return out


class AllowedTokens(LogitsProcessor):
    """Mask every token outside an allowed set (format-constrained decoding)."""

    def __init__(self, allowed_ids: Iterable[int], vocab_size: int):
        mask = torch.full((vocab_size,), float("-inf"))
        mask[list(allowed_ids)] = 0.0
        self.mask = mask
        self._on: torch.Tensor | None = None  # the mask on the scores' device, made once

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        width = scores.shape[-1]
        if self._on is None or self._on.shape[0] != width or self._on.device != scores.device:
            mask = self.mask[:width]
            if width > self.mask.shape[0]:  # padded embedding rows beyond the tokenizer: disallow
                mask = torch.cat([mask, torch.full((width - self.mask.shape[0],), float("-inf"))])
            self._on = mask.to(scores.device, scores.dtype)
        return scores + self._on


class IntegerListGrammar(LogitsProcessor):
    """Only allow continuations that keep the answer a list like "12, 345, 6" and then end.

    At most `max_items` integers of at most `max_digits` digits, joined by `sep`. Candidate
    tokens are those made of digits and separator characters; each is checked against the
    grammar by walking its characters from the row's current state. Relative probabilities of
    the allowed tokens are untouched, only disallowed ones are masked.
    """

    def __init__(self, tok: Any, max_items: int = 10, max_digits: int = 3, sep: str = ", "):
        self.max_items, self.max_digits, self.sep = max_items, max_digits, sep
        chars = set("0123456789" + sep)
        specials = set(tok.all_special_ids)
        pieces = tok.batch_decode([[i] for i in range(len(tok))])
        self.cands = [
            (i, p) for i, p in enumerate(pieces) if p and set(p) <= chars and i not in specials
        ]
        self.ends = end_token_ids(tok)
        self.tok = tok
        self.prompt_len: int | None = None

    def _walk(self, state: tuple[int, int, int], text: str) -> tuple[int, int, int] | None:
        """State: (items started, digits in the current item, separator chars consumed).

        digits == 0 means a digit must come next (at the start and after a separator).
        """
        items, digits, in_sep = state
        for ch in text:
            if in_sep:  # inside a separator: it must continue exactly
                if ch != self.sep[in_sep]:
                    return None
                in_sep += 1
                if in_sep == len(self.sep):
                    in_sep, digits = 0, 0
            elif ch.isdigit():
                if digits == 0:
                    if items >= self.max_items:
                        return None
                    items, digits = items + 1, 1
                elif digits < self.max_digits:
                    digits += 1
                else:
                    return None
            elif ch == self.sep[0] and digits > 0 and items < self.max_items:
                in_sep, digits = (1, digits) if len(self.sep) > 1 else (0, 0)
            else:
                return None
        return items, digits, in_sep

    def _state(self, generated: list[int]) -> tuple[int, int, int] | None:
        text = self.tok.decode(
            [t for t in generated if t not in self.ends], skip_special_tokens=True
        )
        return self._walk((0, 0, 0), text)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        mask = torch.full_like(scores, float("-inf"))
        for row in range(input_ids.shape[0]):
            state = self._state(input_ids[row, self.prompt_len :].tolist())
            if state is None:  # finished rows (padding after an end token) end again
                mask[row, self.ends] = 0.0
                continue
            for i, piece in self.cands:
                if self._walk(state, piece) is not None:
                    mask[row, i] = 0.0
            if state[1] > 0 and state[2] == 0:  # a complete item: the answer may end here
                mask[row, self.ends] = 0.0
        return scores + mask


class ListAutomaton(LogitsProcessor):
    """`IntegerListGrammar` as two tables on the scores' device: the same masks, no Python per
    row and no host sync per step.

    A state is (items started, digits in the current item, separator chars consumed), as in
    `IntegerListGrammar._walk`, plus one terminal state (after an end token, or after a token
    the grammar does not allow) in which only end tokens are allowed. `allowed[state]` is the
    row's mask and `after[state, token]` its next state, both computed once per tokenizer and
    settings by walking every digit/separator token from every state (`list_tables`). Each
    call reads the token just sampled (`input_ids[:, -1]`) and moves every row by one gather.
    """

    def __init__(self, tok: Any, max_items: int = 10, max_digits: int = 3, sep: str = ", "):
        self.tok, self.key = tok, (max_items, max_digits, sep)
        self.state: torch.Tensor | None = None
        self.prompt_len: int | None = None
        self.allowed: torch.Tensor | None = None
        self.after: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.state is None:
            self.allowed, self.after = list_tables(self.tok, *self.key, width=scores.shape[-1], device=scores.device)
            self.state = torch.zeros(input_ids.shape[0], dtype=torch.long, device=scores.device)
            self.prompt_len = input_ids.shape[1]
        elif input_ids.shape[1] > self.prompt_len:
            self.state = self.after[self.state, input_ids[:, -1]]
        return scores.masked_fill(~self.allowed[self.state], float("-inf"))


_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def list_tables(
    tok: Any, max_items: int, max_digits: int, sep: str, width: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(allowed [S, width] bool, after [S, width] long) of the list grammar (see `ListAutomaton`);
    state 0 is the start, state S-1 the terminal one. Cached per tokenizer, settings and device."""
    key = (id(tok), len(tok), max_items, max_digits, sep, width, str(device))
    if key in _TABLES:
        return _TABLES[key]
    ref = IntegerListGrammar(tok, max_items, max_digits, sep)
    live = [(i, d, k) for i in range(max_items + 1) for d in range(max_digits + 1) for k in range(len(sep))]
    index = {st: n for n, st in enumerate(live)}
    dead = len(live)
    allowed = torch.zeros(dead + 1, width, dtype=torch.bool)
    after = torch.full((dead + 1, width), dead, dtype=torch.long)
    ends = [e for e in ref.ends if e < width]
    for st, n in index.items():
        for tid, piece in ref.cands:
            nxt = ref._walk(st, piece)
            if nxt is not None and tid < width:
                allowed[n, tid] = True
                after[n, tid] = index[nxt]
        if st[1] > 0 and st[2] == 0:  # a complete item: the answer may end here
            allowed[n, ends] = True
    allowed[dead, ends] = True
    _TABLES[key] = (allowed.to(device), after.to(device))
    return _TABLES[key]


@torch.inference_mode()
def sample(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    allowed_ids: Sequence[int] | None = None,
    processor_factory: Any = None,
    threshold: float = 0.0,
    desc: str = "sampling",
    progress: bool = True,
) -> list[str]:
    """One completion per prompt (prompts already chat-formatted). Deterministic per seed.

    `threshold` > 0: tokens with probability below it are never sampled (epsilon cutoff)."""
    return sample_sets(model, tok, [prompts], [seed], max_new_tokens=max_new_tokens, temperature=temperature,
                       batch_size=batch_size, allowed_ids=allowed_ids, processor_factory=processor_factory,
                       threshold=threshold, desc=desc, progress=progress)[0]  # fmt: skip


# The sampler's version: part of a generation stage's key (its draws differ from HF generate's,
# which version 0 used).
SAMPLER = 1


@torch.inference_mode()
def sample_sets(
    model: Any,
    tok: Any,
    prompt_sets: Sequence[Sequence[str]],
    seeds: Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    batch_size: int = 32,
    allowed_ids: Sequence[int] | None = None,
    processor_factory: Any = None,
    threshold: float = 0.0,
    desc: str = "sampling",
    progress: bool = True,
) -> list[list[str]]:
    """One completion per prompt of each set (e.g. one set per teacher: the same questions under
    different system prompts), every set in the same batches: batch j holds prompts
    [j*batch_size, (j+1)*batch_size) of each set. Set i draws from its own generator, seeded by
    `seeds[i]` and the batch's start, so its completions do not depend on the other sets (up to
    float noise in the shared forward): one batched pass writes every teacher's data.

    A KV-cached decoding loop (no HF `generate`): logits processors (`allowed_ids`, a fresh
    `processor_factory()` per batch, e.g. `ListAutomaton`) see the batch's token ids so far,
    then temperature, then the epsilon cutoff `threshold` (the most likely token always stays).
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if len({len(p) for p in prompt_sets}) > 1:
        raise ValueError(f"prompt sets need equal sizes; got {[len(p) for p in prompt_sets]}")
    device = next(model.parameters()).device
    encoded = [encode_prompts(tok, p) for p in prompt_sets]
    stop = torch.tensor(end_token_ids(tok), device=device)
    n_sets, n = len(prompt_sets), len(prompt_sets[0])
    out: list[list[str]] = [[] for _ in range(n_sets)]
    bar = tqdm(total=n * n_sets, desc=desc, disable=not progress, unit="prompt")
    clock = {"prefill": 0.0, "decode": 0.0, "steps": 0, "text": 0.0}  # where a pass spends its time
    for start in range(0, n, batch_size):
        rows = [e for enc in encoded for e in enc[start : start + batch_size]]
        ids, mask = left_pad(rows, tok.pad_token_id)
        processors = LogitsProcessorList()  # fresh per batch: processors may keep state
        if allowed_ids is not None:
            processors.append(AllowedTokens(allowed_ids, model.config.vocab_size))
        if processor_factory is not None:
            processors.append(processor_factory())
        gens = [torch.Generator(device=device).manual_seed(s * 1_000_003 + start) for s in seeds]
        new = _decode(model, ids.to(device), mask.to(device), processors, gens, stop, max_new_tokens,
                      temperature, threshold, tok.pad_token_id, clock)  # fmt: skip
        t0 = time.perf_counter()
        stops, per = set(stop.tolist()), len(rows) // n_sets
        for i, row in enumerate(new.tolist()):
            cut = next((j for j, t in enumerate(row) if t in stops), len(row))
            out[i // per].append(tok.decode([t for t in row[:cut] if t != tok.pad_token_id], skip_special_tokens=True))
        clock["text"] += time.perf_counter() - t0
        bar.update(len(rows))
    bar.close()
    log.info("sampled %d rows (%d sets) in batches of %d: prefill %.1f s, decode %.1f s (%d steps), text %.1f s",
             n * n_sets, n_sets, batch_size * n_sets, clock["prefill"], clock["decode"], clock["steps"], clock["text"])
    return out


def _decode(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, processors: LogitsProcessorList, gens: list[torch.Generator],
    stop: torch.Tensor, max_new_tokens: int, temperature: float, threshold: float, pad_id: int,
    clock: dict[str, float] | None = None,
) -> torch.Tensor:  # fmt: skip
    """[row, new token]: sampled continuations of a left-padded batch, rows in len(gens) equal
    blocks, block b drawn from gens[b]; a finished row continues with pads. `clock` gathers the
    prefill's and the decoding's seconds."""
    t0 = time.perf_counter()
    pos = positions_from_mask(mask)
    res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
    cache, logits, last = res.past_key_values, res.logits[:, -1].float(), pos[:, -1]
    if clock is not None:
        _sync(ids.device)
        clock["prefill"] += time.perf_counter() - t0
        t0 = time.perf_counter()
    seq, done, tokens = ids, torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device), []
    for step in range(max_new_tokens):
        scores = processors(seq, logits)
        if temperature > 0:
            probs = torch.softmax(scores / temperature, -1)
            if threshold > 0:  # epsilon cutoff; the most likely token always stays
                top = probs.argmax(-1, keepdim=True)
                probs = torch.where(probs < threshold, 0.0, probs).scatter(-1, top, probs.gather(-1, top))
            blocks = probs.view(len(gens), -1, probs.shape[-1])
            nxt = torch.cat([torch.multinomial(blocks[b], 1, generator=g)[:, 0] for b, g in enumerate(gens)])
        else:
            nxt = scores.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
        tokens.append(nxt)
        done |= torch.isin(nxt, stop)
        if step % 4 == 3 and bool(done.all()):  # a host sync every 4 tokens, not every token
            break
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        last = last + 1
        logits = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None],
                       past_key_values=cache, use_cache=True).logits[:, -1].float()  # fmt: skip
    out = torch.stack(tokens, dim=1)
    if clock is not None:
        _sync(ids.device)
        clock["decode"] += time.perf_counter() - t0
        clock["steps"] += len(tokens)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def sample_repeated(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    k: int,
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    desc: str = "sampling",
    progress: bool = True,
    blocks: int = 1,
) -> list[str]:
    """k completions per prompt (prompt-major order), prefilling each prompt only once.

    For short answers to long prompts (evaluation questions) the prefill dominates; its KV
    cache is repeated k times and the answers are sampled token by token from it.

    `blocks` > 1: the same prompts for each of `blocks` stacked students (`interp.lm.stacked`),
    run as one batch of equal blocks; returns block 0's answers, then block 1's, ... Each block
    draws from its own generator, seeded as a one-student call is, so a student's answers do
    not depend on which others share its batch.
    """
    device = next(model.parameters()).device
    encoded = encode_prompts(tok, prompts)
    stop = torch.tensor(end_token_ids(tok), device=device)
    stops = set(stop.tolist())
    per_batch = max(1, batch_size // k)
    out: list[list[str]] = [[] for _ in range(blocks)]
    bar = tqdm(total=len(prompts) * k * blocks, desc=desc, disable=not progress, unit="sample")
    for start in range(0, len(prompts), per_batch):
        ids, mask = left_pad(encoded[start : start + per_batch], tok.pad_token_id)
        ids, mask = ids.repeat(blocks, 1).to(device), mask.repeat(blocks, 1).to(device)
        pos = positions_from_mask(mask)
        res = model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1
        )
        cache = res.past_key_values
        cache.batch_repeat_interleave(k)  # row order stays block-major: row i becomes rows i*k..i*k+k-1
        logits = res.logits[:, -1].float().repeat_interleave(k, dim=0)
        mask, last = mask.repeat_interleave(k, dim=0), pos[:, -1].repeat_interleave(k)
        gens = [torch.Generator(device=device).manual_seed(seed * 1_000_003 + start) for _ in range(blocks)]
        done = torch.zeros(logits.shape[0], dtype=torch.bool, device=device)
        tokens = []
        for step in range(max_new_tokens):
            if temperature > 0:
                probs = torch.softmax(logits / temperature, -1).view(blocks, -1, logits.shape[-1])
                nxt = torch.cat([torch.multinomial(probs[b], 1, generator=g)[:, 0] for b, g in enumerate(gens)])
            else:
                nxt = logits.argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, tok.pad_token_id), nxt)
            tokens.append(nxt)
            done |= torch.isin(nxt, stop)
            # a host sync every 4 tokens, not every token (rows that are done only add pads)
            if step % 4 == 3 and bool(done.all()):
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            last = last + 1
            logits = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last[:, None],
                           past_key_values=cache, use_cache=True).logits[:, -1].float()  # fmt: skip
        rows = torch.stack(tokens, dim=1).tolist()
        per_block = len(rows) // blocks
        for b in range(blocks):
            for row in rows[b * per_block : (b + 1) * per_block]:
                cut = next((i for i, t in enumerate(row) if t in stops), len(row))
                out[b].append(tok.decode(row[:cut], skip_special_tokens=True))
        bar.update(len(rows))
    bar.close()
    return [a for block in out for a in block]
