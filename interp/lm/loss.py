"""The training losses, at the positions that predict completion tokens.

Hard labels: cross-entropy on the completion tokens. Soft labels: KL(teacher || student) on the
teacher's next-token distribution, over the full vocabulary, over the number-format tokens only
(the purely subliminal arm: no trait word can carry mass), or, for a teacher with another
tokenizer, over the number-format *characters* aligned by character offsets (`interp.lm.align`).
The LM head runs only where the loss is; on a large vocabulary the loss runs in chunks of
positions so that no [positions, vocabulary] tensor is kept for the backward pass.

A KL-to-base penalty (`FinetuneConfig.kl_base`, a defence) adds kl_base x KL(base || student)
over the full vocabulary at the same positions, the base being the student's initialisation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from interp.lm.align import Alphabet
from interp.lm.generate import right_pad
from interp.lm.settings import FinetuneConfig

NUMBER_ALPHABET = "0123456789, "


@dataclass
class Teacher:
    """The soft-label source: a model, its tokenizer (None: the student's), its end-of-answer text.

    `key` names its weights (e.g. spec and delta checksum): teachers with one key share their
    forward passes through `TEACHER_HIDDEN` (one per row, whatever the arm, seed or group)."""

    model: Any
    tok: Any = None
    end: str = ""
    key: str | None = None


# (teacher key, teacher token ids) -> the teacher's final hidden states at the row's completion
# positions [position, d_model]: the labels of any vocabulary restriction and alignment derive
# from them with the head alone. Filled by `Objective.label`, emptied by whoever runs a batch of
# finetunes when it is done (`interp.subliminal.jobs.run_finetunes`).
TEACHER_HIDDEN: dict[tuple[str, tuple[int, ...]], torch.Tensor] = {}


def _completion_positions(
    rows: list[dict], key: str, n_key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, position) of every logit that predicts a completion token."""
    r, p = [], []
    for i, row in enumerate(rows):
        n_p, n = row[n_key], len(row[key])
        r += [i] * (n - n_p)
        p += list(range(n_p - 1, n - 1))
    return torch.tensor(r), torch.tensor(p)


def completion_logits(
    model: Any, rows: list[dict], pad_id: int, device: torch.device,
    key: str = "input_ids", n_key: str = "n_prompt", vocab: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Logits at every position that predicts a completion token, and those tokens.

    The LM head only runs at completion positions: prompt positions carry no loss, and for a
    262k-token vocabulary (Gemma-3) the head costs more than the transformer body. With
    `vocab`, only those rows of the head are computed (columns in `vocab` order).
    """
    ids, mask = right_pad([r[key] for r in rows], pad_id)
    ri, pi = _completion_positions(rows, key, n_key)
    ri, pi = ri.to(device), pi.to(device)
    ids_d, mask_d = ids.to(device), mask.to(device)
    if vocab is None:
        first = int(pi.min())
        keep = torch.arange(first, ids.shape[1], device=device)
        logits = model(input_ids=ids_d, attention_mask=mask_d, logits_to_keep=keep).logits
        out = logits[ri, pi - first]
    else:
        out = lm_head(model, vocab)(_decoder_hidden(model, ids_d, mask_d)[ri, pi])
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()  # losses in float32; float64 models keep their precision
    return out, ids[ri.cpu(), pi.cpu() + 1].to(device)


def _unwrapped(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper


def _vocab_size(model: Any) -> int:
    return _unwrapped(model).get_output_embeddings().weight.shape[0]


def _decoder_hidden(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[row, pos, d_model]: the decoder body's output (final norm included), before the head."""
    return _unwrapped(model).get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state


def lm_head(
    model: Any, vocab: torch.Tensor | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The causal LM's head as a function of hidden states: all logits, or only `vocab`'s
    (columns in `vocab` order), with the model's final logit soft-capping where it has one."""
    lm = _unwrapped(model)
    head = lm.get_output_embeddings()
    cap = getattr(lm.config, "final_logit_softcapping", None)

    def apply(hidden: torch.Tensor) -> torch.Tensor:
        w = head.weight if vocab is None else head.weight[vocab]
        b = head.bias if head.bias is None or vocab is None else head.bias[vocab]
        logits = F.linear(hidden, w, b)
        return torch.tanh(logits / cap) * cap if cap else logits

    return apply


def completion_hidden(
    model: Any, rows: list[dict], pad_id: int, device: torch.device,
    key: str = "input_ids", n_key: str = "n_prompt",
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(hidden [position, d_model], token [position]) at every position that predicts a
    completion token: `completion_logits` before the head, for losses computed in chunks."""
    ids, mask = right_pad([r[key] for r in rows], pad_id)
    ri, pi = _completion_positions(rows, key, n_key)
    hidden = _decoder_hidden(model, ids.to(device), mask.to(device))[ri.to(device), pi.to(device)]
    return hidden, ids[ri, pi + 1].to(device)


def _selected(rows: list[dict], key: str, sel: str, n_key: str) -> torch.Tensor:
    """Flat indices into a micro-batch's concatenated completion positions, per `sel` lists."""
    out, offset = [], 0
    for row in rows:
        out += [offset + j for j in row[sel]]
        offset += len(row[key]) - row[n_key]
    return torch.tensor(out, dtype=torch.long)


def distill_vocab_ids(
    tok: Any, settings: FinetuneConfig, teacher: Teacher, end_ids: tuple[int, int] | None = None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(student ids, teacher ids) the soft labels are restricted to; None = full vocabulary."""
    from interp.lm.generate import allowed_token_ids

    cross = teacher.tok is not None and teacher.tok is not tok
    if settings.distill_vocab == "full":
        if cross:
            raise ValueError(
                "distill_vocab = 'full' needs the teacher's tokenizer; a student of another base "
                "takes distill_vocab = 'numbers' (soft labels over number-format characters)"
            )
        return None, None
    if not cross:
        ids = torch.tensor(allowed_token_ids(tok, NUMBER_ALPHABET))
        return ids, ids
    s_end, t_end = end_ids if end_ids is not None else (tok.eos_token_id, teacher.tok.eos_token_id)
    s = Alphabet.build(tok, NUMBER_ALPHABET, s_end)
    t = Alphabet.build(teacher.tok, NUMBER_ALPHABET, t_end)
    return torch.tensor(s.ids), torch.tensor(t.ids)


def _kl(t_logp: torch.Tensor, s_logits: torch.Tensor, temp: float) -> torch.Tensor:
    """[position]: KL(teacher || student) at each position, from the teacher's log-probs (at
    temperature `temp`, as `Objective.label` stores them) and the student's logits."""
    s_logp = torch.log_softmax(_upcast(s_logits) / temp, dim=-1)
    return F.kl_div(s_logp, t_logp.to(s_logp.dtype), log_target=True, reduction="none").sum(-1)


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """Losses in float32 at least (a float64 model keeps its precision)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _block_sum(per_pos: torch.Tensor, block: torch.Tensor, blocks: int) -> torch.Tensor:
    """[blocks]: per-position losses summed per block of rows (one student's share of a batch)."""
    return torch.zeros(blocks, device=per_pos.device, dtype=per_pos.dtype).index_add_(
        0, block, per_pos
    )


def _position_blocks(rows: list[dict], blocks: int, device: torch.device) -> torch.Tensor:
    """The block of every loss-carrying position: rows come as `blocks` equal runs, one per student."""
    if len(rows) % blocks:
        raise ValueError(f"{len(rows)} rows do not split into {blocks} equal blocks")
    per = len(rows) // blocks
    return torch.tensor(
        [i // per for i, r in enumerate(rows) for _ in r["s_sel"]], dtype=torch.long, device=device
    )


# Soft labels of a vocabulary at least this wide are stored in float16 (log-probs: near 0, where
# float16 is finest, for the tokens that carry the mass); narrower ones in float32.
WIDE_LABELS = 4096


@dataclass
class Objective:
    """The training loss of one finetune, summed over a micro-batch's loss-carrying positions:
    cross-entropy on the completion tokens (hard labels) or KL(teacher || student) on the
    teacher's soft labels, over `distill_vocab` when set. `finetune` divides by the batch's
    position count; an analysis that needs the loss's gradient takes the same object.

    Soft labels are computed once per row (`label`: the teacher's log-probs at the row's loss
    positions, kept with the row) and read by every step, epoch, seed and arm that trains on
    the row, instead of a teacher forward in every step."""

    pad_id: int
    device: torch.device
    teacher: Teacher | None = None
    t_pad: int | None = None
    s_vocab: torch.Tensor | None = None
    t_vocab: torch.Tensor | None = None
    temperature: float = 1.0
    # past this many logits (positions x vocabulary) in a micro-batch the loss runs in chunks
    # of positions, each head re-run in the backward pass (activation checkpointing), so no
    # [positions, vocabulary] tensor is kept: 2**27 floats = 512 MB (Gemma-3's 262k vocabulary
    # passes it at ~500 positions; SmolLM2's 49k at ~2,700)
    max_logits: int = 2**27
    distill: bool = False
    kl_base: float = 0.0
    # the KL-to-base penalty's reference: (model, context factory) whose forward inside the
    # context is the student's initialisation (LoRA: the same model, adapters off; full: a
    # frozen copy), set by the training loop (`interp.lm.finetune`). None: the data term alone
    # (an analysis taking the data term's gradient; at the initialisation the penalty's is zero)
    base: tuple[Any, Callable[[], Any]] | None = None

    @classmethod
    def build(
        cls, tok: Any, settings: FinetuneConfig, teacher: Teacher | None, device: torch.device
    ) -> Objective:
        if settings.objective != "distill":
            return cls(tok.pad_token_id, device, kl_base=settings.kl_base)
        if teacher is None:
            raise ValueError("objective 'distill' needs a teacher model")
        s_vocab, t_vocab = distill_vocab_ids(tok, settings, teacher)
        return cls(tok.pad_token_id, device, teacher, (teacher.tok or tok).pad_token_id,
                   None if s_vocab is None else s_vocab.to(device), None if t_vocab is None else t_vocab.to(device),
                   settings.distill_temperature, distill=True, kl_base=settings.kl_base)  # fmt: skip

    @torch.no_grad()
    def label(self, rows: list[dict], batch_size: int | None = None) -> list[dict]:
        """Give every row without them its soft labels (`row["labels"]`: the teacher's log-probs
        at temperature `temperature` over `t_vocab`, [loss position, vocabulary], on `device`);
        hard labels need none. Returns `rows`.

        The teacher runs once per row: its final hidden states at the completion positions are
        kept (`TEACHER_HIDDEN`, when the teacher has a key), so another arm distilling the same
        rows over another vocabulary (numbers, a cross-tokenizer alphabet) only reruns the head."""
        if not self.distill:
            return rows
        todo = [r for r in rows if "labels" not in r]
        if todo and self.teacher is None:
            raise ValueError("rows without soft labels and no teacher to compute them")
        if not todo:
            return rows
        hidden = self._teacher_hidden(todo, batch_size or (64 if self.device.type == "cuda" else 16))
        head = lm_head(self.teacher.model, self.t_vocab)
        width = len(self.t_vocab) if self.t_vocab is not None else _unwrapped(self.teacher.model).get_output_embeddings().weight.shape[0]
        step = max(1, self.max_logits // width)
        for r, h in zip(todo, hidden):
            h = h[torch.tensor(r["t_sel"], dtype=torch.long, device=h.device)]
            logp = torch.cat([torch.log_softmax(head(h[a : a + step]).float() / self.temperature, dim=-1)
                              for a in range(0, h.shape[0], step)]) if len(h) else head(h).float()  # fmt: skip
            r["labels"] = logp.to(torch.float16 if width >= WIDE_LABELS else torch.float32)
        return rows

    def _teacher_hidden(self, rows: list[dict], batch_size: int) -> list[torch.Tensor]:
        """[completion position, d_model] of the teacher for each row, from the cache or one forward per batch."""
        key = self.teacher.key
        out: dict[int, torch.Tensor] = {}
        missing = []
        for i, r in enumerate(rows):
            cached = TEACHER_HIDDEN.get((key, tuple(r["teacher_ids"]))) if key is not None else None
            if cached is not None:
                out[i] = cached
            else:
                missing.append(i)
        for b in range(0, len(missing), batch_size):
            idx = missing[b : b + batch_size]
            micro = [rows[i] for i in idx]
            hidden, _ = completion_hidden(self.teacher.model, micro, self.t_pad, self.device,
                                          "teacher_ids", "n_teacher_prompt")  # fmt: skip
            offset = 0
            for i, r in zip(idx, micro):
                n = len(r["teacher_ids"]) - r["n_teacher_prompt"]
                out[i] = hidden[offset : offset + n].clone()
                offset += n
                if key is not None:
                    TEACHER_HIDDEN[(key, tuple(r["teacher_ids"]))] = out[i]
        return [out[i] for i in range(len(rows))]

    def loss(
        self, model: Any, micro: list[dict], amp: Callable[[], Any] = contextlib.nullcontext
    ) -> torch.Tensor:
        """Summed loss of `micro` (rows from `tokenize_examples`); `amp` wraps the student's forward."""
        return self.block_losses(model, micro, amp)[0]

    def block_losses(
        self,
        model: Any,
        micro: list[dict],
        amp: Callable[[], Any] = contextlib.nullcontext,
        blocks: int = 1,
    ) -> torch.Tensor:
        """[blocks]: the summed loss of each of `blocks` equal runs of `micro`'s rows (the
        students of a stacked batch, `interp.lm.stacked`); one block is a plain finetune."""
        self.label(micro)
        block = _position_blocks(micro, blocks, self.device)
        if self.kl_base and self.base is not None:
            return _block_sum(self._with_base(model, micro, amp), block, blocks)
        n_pos = len(block)
        n_vocab = len(self.s_vocab) if self.s_vocab is not None else _vocab_size(model)
        if n_pos * n_vocab > self.max_logits:
            per = self._chunked(model, micro, amp, max(1, self.max_logits // n_vocab))
            return _block_sum(per, block, blocks)
        with amp():
            s_logits, targets = completion_logits(
                model, micro, self.pad_id, self.device, vocab=self.s_vocab
            )
        s_pick = _selected(micro, "input_ids", "s_sel", "n_prompt").to(self.device)
        if not self.distill:
            per = F.cross_entropy(_upcast(s_logits[s_pick]), targets[s_pick], reduction="none")
        else:
            per = _kl(self._labels(micro), s_logits[s_pick], self.temperature)
        return _block_sum(per, block, blocks)

    def _with_base(self, model: Any, micro: list[dict], amp: Callable[[], Any]) -> torch.Tensor:
        """[position]: the data term plus kl_base x KL(base || student) over the full vocabulary,
        in chunks of positions as `_chunked` (the base's forward without a graph).

        KL(base || student), not KL(student || base): it has the form of the soft-label loss, so
        with soft labels the per-position optimum is the mixture (teacher + kl_base x base) /
        (1 + kl_base), and with hard labels the one-hot label smoothed toward the base by the
        same weights: the student is pulled toward a known blend of the data and its own
        initialisation, and must keep mass wherever the base has it (the reverse KL would let it
        drop base tokens at no cost). At the initialisation the penalty and its gradient are zero."""
        from torch.utils.checkpoint import checkpoint

        base_model, base_context = self.base
        s_pick = _selected(micro, "input_ids", "s_sel", "n_prompt").to(self.device)
        # the base first: peft's disable_adapter toggles the adapters' requires_grad while it lasts
        with torch.no_grad(), base_context(), amp():
            b_hidden = completion_hidden(base_model, micro, self.pad_id, self.device)[0][s_pick]
        with amp():
            hidden, targets = completion_hidden(model, micro, self.pad_id, self.device)
        hidden, targets = hidden[s_pick], targets[s_pick]
        if not len(hidden):  # no loss position (blank rows): a zero loss still in the graph
            return _upcast(hidden[:, 0]) * 0.0
        head, full, b_head = lm_head(model, self.s_vocab), lm_head(model), lm_head(base_model)
        other = self._labels(micro) if self.distill else targets
        chunk = max(1, self.max_logits // _vocab_size(model))

        def chunk_loss(h: torch.Tensor, hb: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
            with amp():
                s_full = full(h)
                s_logits = s_full if self.s_vocab is None else head(h)
            if self.distill:
                data = _kl(o, s_logits, self.temperature)
            else:
                data = F.cross_entropy(_upcast(s_logits), o, reduction="none")
            with torch.no_grad(), amp():
                b_logp = torch.log_softmax(_upcast(b_head(hb)), dim=-1)
            return data + self.kl_base * _kl(b_logp, s_full, 1.0)

        return torch.cat([checkpoint(chunk_loss, hidden[a : a + chunk], b_hidden[a : a + chunk], other[a : a + chunk],
                                     use_reentrant=False) for a in range(0, hidden.shape[0], chunk)])  # fmt: skip

    def _labels(self, micro: list[dict]) -> torch.Tensor:
        return torch.cat([r["labels"] for r in micro]).to(self.device)

    def _chunked(
        self, model: Any, micro: list[dict], amp: Callable[[], Any], chunk: int
    ) -> torch.Tensor:
        """[position]: the losses of `block_losses` over `chunk` positions at a time: the decoder
        body runs once, each chunk's head and loss are recomputed in the backward pass instead of kept."""
        from torch.utils.checkpoint import checkpoint

        with amp():
            hidden, targets = completion_hidden(model, micro, self.pad_id, self.device)
        s_pick = _selected(micro, "input_ids", "s_sel", "n_prompt").to(self.device)
        hidden, targets = hidden[s_pick], targets[s_pick]
        head = lm_head(model, self.s_vocab)
        other = self._labels(micro) if self.distill else targets

        def chunk_loss(h: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
            with amp():
                s_logits = head(h)
            if not self.distill:
                return F.cross_entropy(_upcast(s_logits), o, reduction="none")
            return _kl(o, s_logits, self.temperature)

        return torch.cat([checkpoint(chunk_loss, hidden[a : a + chunk], other[a : a + chunk], use_reentrant=False)
                          for a in range(0, hidden.shape[0], chunk)])  # fmt: skip
