"""`interp bench`: the suite's hot paths timed against references, in one process.

Same model, prompts, seed and dtype for every case; warm-up excluded; timers synchronised on
CUDA; the median of `repeats` timed repetitions. Each case reports its wall time, tokens/s
(prompt tokens and generated tokens, each over the case's whole wall time: the phases are not
timed apart), the padding fraction of its batches,
peak memory, on CUDA the model-FLOP utilisation against the device's peak bf16 rate, and
**the ratio of its time to the best reference's** (> 1: the suite is slower). Generation cases
also report the filter pass rate and mean answer length, so no speed-up can come from
changing the outputs.

Cases (suite vs references):
- list-grammar generation: `ListAutomaton` (the suite) vs the Python `IntegerListGrammar`
  (the earlier suite) and unconstrained HF `generate` (a floor: same tokens budget, no mask);
  with `--compile`, also HF `generate` with a static cache and `torch.compile`;
- token-constrained generation: `AllowedTokens` vs unconstrained `generate` (the list grammar's
  run of it, the same call);
- the log-prob score: `candidate_logprobs` (prompt once, its KV cache repeated for every
  candidate in one forward) vs a
  naive full forward per (question, candidate);
- sampled evaluation: `sample_repeated` (prefill once, k samples) vs HF `generate` with
  `num_return_sequences = k`;
- a training step: the suite's `finetune` step (LoRA r=8, hard labels on the completion) vs a
  plain PyTorch step of the same peft LoRA on one padded batch (HF's loss over the sequence).
Not yet here: a vLLM reference (issue 14 item 4).
"""

from __future__ import annotations

import contextlib
import copy
import platform
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from interp.lm.finetune import Example, FinetuneConfig, _amp, finetune
from interp.lm.generate import (
    IntegerListGrammar,
    ListAutomaton,
    allowed_token_ids,
    encode_prompts,
    left_pad,
    sample,
    sample_repeated,
)
from interp.lm.models import (
    completion_suffix,
    format_prompt,
    load_model,
    resolve_autocast,
    resolve_device,
)
from interp.store.stages import package_versions
from interp.subliminal import number_data as nd
from interp.subliminal.evaluate import candidate_logprobs
from interp.subliminal.traits import make_trait

# Dense bf16 peak FLOP/s by device name fragment (for the model-FLOP utilisation).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak so far


def timed(
    fn: Callable[..., Any], device: torch.device, repeats: int, setup: Callable[[], Any] | None = None
) -> tuple[float, list[float], Any]:  # fmt: skip
    """(median seconds, every repeat's seconds, the last result) after one warm-up call.
    `setup()`, untimed, makes each call's argument (e.g. a fresh copy of the model)."""
    fn(*([setup()] if setup else []))
    times, out = [], None
    for _ in range(repeats):
        args = [setup()] if setup else []
        _sync(device)
        t0 = time.perf_counter()
        out = fn(*args)
        _sync(device)
        times.append(time.perf_counter() - t0)
        del args
    return statistics.median(times), times, out


def _pad_fraction(lengths: list[int], batch: int) -> float:
    pad = total = 0
    for b in range(0, len(lengths), batch):
        chunk = lengths[b : b + batch]
        pad += max(chunk) * len(chunk) - sum(chunk)
        total += max(chunk) * len(chunk)
    return pad / total if total else 0.0


def _outputs(texts: list[str]) -> dict[str, float]:
    kept, stats = nd.filter_completions(texts)
    return {"pass_rate": len(kept) / len(texts), "mean_answer_chars": float(np.mean([len(t) for t in texts]))}


class Bench:
    def __init__(self, spec: str, device: str, repeats: int, n_prompts: int, new_tokens: int, batch: int):
        self.spec, self.repeats = spec, repeats
        self.dev = resolve_device(device)
        self.model, self.tok = load_model(spec, str(self.dev))
        self.params = sum(p.numel() for p in self.model.parameters())
        self.n, self.new_tokens, self.batch = n_prompts, new_tokens, batch
        self.prompts = [format_prompt(self.tok, p) for p in nd.number_prompts(n_prompts, seed=0)]
        self.lengths = [len(x) for x in encode_prompts(self.tok, self.prompts)]
        self.results: list[dict[str, Any]] = []
        self.outputs: dict[tuple[str, str], Any] = {}  # (case, impl) -> the last timed call's result
        peak = next((v for k, v in PEAK_BF16.items() if k in torch.cuda.get_device_name(self.dev)), None) \
            if self.dev.type == "cuda" else None  # fmt: skip
        self.peak_flops = peak

    def record(self, case: str, impl: str, role: str, fn: Callable[..., Any],
               tokens: dict[str, int] | Callable[[Any], dict[str, int]],
               extra: Callable[[Any], dict[str, Any]] | None = None, pad: float | None = None,
               flops: float | None = None, setup: Callable[[], Any] | None = None) -> dict[str, Any]:  # fmt: skip
        med, times, out = timed(fn, self.dev, self.repeats, setup)
        tokens = tokens(out) if callable(tokens) else tokens
        row = {"case": case, "impl": impl, "role": role, "median_s": round(med, 4), "repeats_s": [round(t, 4) for t in times],
               **{f"{k}_tok_per_s": round(v / med, 1) for k, v in tokens.items()},
               "padding_fraction": None if pad is None else round(pad, 4), "peak_mem_mb": round(_peak_mb(self.dev), 1)}  # fmt: skip
        if flops is not None and self.peak_flops:
            row["mfu"] = round(flops / med / self.peak_flops, 5)
        if extra is not None:
            row |= extra(out)
        self.results.append(row)
        self.outputs[(case, impl)] = out
        print(f"  {case:<22} {impl:<34} {med:8.3f} s", flush=True)
        return row

    def _gen(self, factory: Callable[[], Any] | None = None, allowed: list[int] | None = None) -> list[str]:
        return sample(self.model, self.tok, self.prompts, max_new_tokens=self.new_tokens, batch_size=self.batch,
                      seed=0, allowed_ids=allowed, processor_factory=factory, progress=False)  # fmt: skip

    def generation(self, compile_ref: bool) -> None:
        tok = self.tok
        prefill = sum(self.lengths)
        flops = 2 * self.params * (prefill + self.n * self.new_tokens)  # an upper bound: rows may end earlier
        pad = _pad_fraction(self.lengths, self.batch)

        def tokens(out: list[str]) -> dict[str, int]:  # decode: the answer tokens actually produced
            return {"prefill": prefill, "decode": sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in out)}

        common = {"tokens": tokens, "pad": pad, "flops": flops, "extra": _outputs}
        items, digits = nd.MAX_ANSWER_COUNT, nd.MAX_ANSWER_DIGITS
        self.record("list grammar", "suite: ListAutomaton", "suite",
                    lambda: self._gen(lambda: ListAutomaton(tok, items, digits)), **common)  # fmt: skip
        self.record("list grammar", "IntegerListGrammar (Python, per row)", "reference",
                    lambda: self._gen(lambda: IntegerListGrammar(tok, items, digits)), **common)  # fmt: skip
        free = self.record("list grammar", "HF generate, unconstrained", "reference", lambda: self._gen(), **common)
        if compile_ref:
            self.record("list grammar", "HF generate, static cache + compile", "reference",
                        lambda: self._static_compiled(), **common)  # fmt: skip
        allowed = allowed_token_ids(tok, nd.allowed_answer_chars())
        self.record("token constraint", "suite: AllowedTokens", "suite", lambda: self._gen(allowed=allowed), **common)
        # the same call as the list grammar's reference (same prompts, seed, max tokens): its timing, not a rerun
        self.results.append({**free, "case": "token constraint", "impl": "HF generate, unconstrained (the list grammar's run)"})

    def _static_compiled(self) -> list[str]:
        if not hasattr(self, "_compiled"):
            self._compiled = torch.compile(self.model.forward, mode="reduce-overhead")
        model = copy.copy(self.model)
        model.forward = self._compiled
        out = []
        for b in range(0, self.n, self.batch):
            ids, mask = left_pad(encode_prompts(self.tok, self.prompts[b : b + self.batch]), self.tok.pad_token_id)
            torch.manual_seed(b)
            gen = model.generate(input_ids=ids.to(self.dev), attention_mask=mask.to(self.dev), max_new_tokens=self.new_tokens,
                                 do_sample=True, top_k=0, cache_implementation="static", pad_token_id=self.tok.pad_token_id)  # fmt: skip
            out += self.tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
        return out

    def logprob_score(self, n_questions: int) -> None:
        trait = make_trait("animal", "owl")
        qs = [format_prompt(self.tok, q) + trait.answer_prefix for q in trait.question_texts(n_questions)]
        cands = list(trait.candidates)
        n_tok = sum(len(x) for x in encode_prompts(self.tok, qs))
        ref = {}

        def naive() -> np.ndarray:
            out = np.zeros((len(qs), len(cands)))
            for i, q in enumerate(qs):
                p = encode_prompts(self.tok, [q])[0]
                for j, c in enumerate(cands):
                    cid = self.tok(" " + c, add_special_tokens=False)["input_ids"]
                    with torch.inference_mode():
                        lp = torch.log_softmax(self.model(input_ids=torch.tensor([p + cid], device=self.dev)).logits[0].float(), -1)
                    out[i, j] = float(sum(lp[len(p) - 1 + k, t] for k, t in enumerate(cid)))
            ref["naive"] = out
            return out

        def agree(out: np.ndarray) -> dict[str, Any]:
            return {"max_abs_diff_vs_naive": float(np.abs(out - ref["naive"]).max())} if "naive" in ref else {}

        work = {"prefill": n_tok * len(cands)}  # (question, candidate) prompt tokens scored: the same work for both
        self.record("log-prob score", "naive: one forward per candidate", "reference", naive, work,
                    flops=2 * self.params * n_tok * len(cands))  # fmt: skip
        self.record("log-prob score", "suite: candidate_logprobs", "suite",
                    lambda: candidate_logprobs(self.model, self.tok, qs, cands, batch_size=64),
                    work, extra=agree, flops=2 * self.params * n_tok)  # fmt: skip

    def sampled_eval(self, n_questions: int, k: int, new_tokens: int) -> None:
        trait = make_trait("animal", "owl")
        qs = [format_prompt(self.tok, q) for q in trait.question_texts(n_questions)]
        n_tok = sum(len(x) for x in encode_prompts(self.tok, qs))
        tokens = {"prefill": n_tok, "decode": n_questions * k * new_tokens}

        def hf() -> list[str]:
            out = []
            for b in range(0, len(qs), max(1, 64 // k)):
                ids, mask = left_pad(encode_prompts(self.tok, qs[b : b + max(1, 64 // k)]), self.tok.pad_token_id)
                torch.manual_seed(b)
                gen = self.model.generate(input_ids=ids.to(self.dev), attention_mask=mask.to(self.dev), do_sample=True,
                                          top_k=0, max_new_tokens=new_tokens, num_return_sequences=k,
                                          pad_token_id=self.tok.pad_token_id)  # fmt: skip
                out += self.tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
            return out

        hits = {"extra": lambda out: {"trait_rate": float(np.mean([trait.mentions(a) for a in out]))}}
        self.record("sampled eval", "suite: sample_repeated", "suite",
                    lambda: sample_repeated(self.model, self.tok, qs, k, max_new_tokens=new_tokens, batch_size=64,
                                            progress=False), tokens, **hits)  # fmt: skip
        self.record("sampled eval", "HF generate, num_return_sequences", "reference", hf, tokens, **hits)

    def train_step(self, rows: int) -> None:
        """One optimiser step of LoRA r=8 on every projection, hard labels, on `rows` teacher
        answers: the suite's `finetune` vs a plain PyTorch step of the same peft LoRA on one
        left-padded batch with HF's own loss over the whole sequence."""
        from peft import LoraConfig, get_peft_model

        listed = self.outputs.get(("list grammar", "suite: ListAutomaton"))
        completions = (listed or self._gen(lambda: ListAutomaton(self.tok)))[:rows]
        user = nd.number_prompts(rows, seed=0)
        examples = [Example(u, c) for u, c in zip(user, completions)]
        settings = FinetuneConfig(objective="sft", epochs=1, batch_size=rows, micro_batch_size=rows, warmup_steps=0)
        texts = [format_prompt(self.tok, u) + c + completion_suffix(self.tok) for u, c in zip(user, completions)]
        lengths = [len(x) for x in encode_prompts(self.tok, texts)]
        n_tok, pad = sum(lengths), _pad_fraction(lengths, rows)
        fresh = lambda: copy.deepcopy(self.model)  # noqa: E731 - each step starts from the base

        def suite(model: Any) -> Any:
            return finetune(model, self.tok, examples, settings, seed=0, end=completion_suffix(self.tok), progress=False)

        def plain(model: Any) -> float:
            lcfg = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, target_modules=list(settings.target_modules),
                              bias="none", task_type="CAUSAL_LM")  # fmt: skip
            model = get_peft_model(model, lcfg)
            model.train()
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
            ids, mask = left_pad(encode_prompts(self.tok, texts), self.tok.pad_token_id)
            ids, mask = ids.to(self.dev), mask.to(self.dev)
            out = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
            out.loss.backward()
            opt.step()
            return out.loss.item()

        common = {"tokens": {"train": n_tok}, "pad": pad, "flops": 6 * self.params * n_tok, "setup": fresh}
        self.record("training step", "suite: finetune (LoRA r=8, sft)", "suite", suite, **common)
        self.record("training step", "plain PyTorch + peft LoRA step", "reference", plain, **common)


    def stacked_step(self, students: list[int], rows: int, profile: bool = False, autocast: str = "auto") -> None:
        """One optimiser step of K stacked LoRA students (`interp.lm.stacked`), soft labels over the
        full vocabulary computed beforehand (as the pipeline does), under `autocast` as a run's
        `train.autocast` resolves it (default "auto": bf16 where the device multiplies it
        natively, else float32; "bf16" times a run that asks for it, emulated on an AVX2 CPU; the
        rows say which ran): the step the GPU path spends its time in. FLOPs written out: 4N per trained token (LoRA: the forward,
        2N, and the backward through the activations, 2N; the adapters' own terms are < 1%),
        N = every parameter the forward uses, the head included; the teacher forward that made
        the labels (2N per token) is done once per dataset, outside the step, and not counted."""
        from interp.lm.finetune import tokenize_examples
        from interp.lm.loss import Objective, Teacher

        listed = self.outputs.get(("list grammar", "suite: ListAutomaton"))
        completions = listed or self._gen(lambda: ListAutomaton(self.tok))
        user = nd.number_prompts(len(completions), seed=0)
        system = "You love owls. You think about owls all the time."
        examples = [Example(format_prompt(self.tok, u), c, format_prompt(self.tok, u, system))
                    for u, c in zip(user, completions)]  # fmt: skip
        examples = [examples[i % len(examples)] for i in range(rows)]
        autocast = resolve_autocast(autocast, self.dev)
        settings = FinetuneConfig(objective="distill", autocast=autocast, batch_size=rows, micro_batch_size=rows)
        obj = Objective.build(self.tok, settings, Teacher(self.model), self.dev)
        data = obj.label(tokenize_examples(self.tok, examples, completion_suffix(self.tok), 500, Teacher(self.model)))
        n_tok = sum(len(r["input_ids"]) for r in data)
        amp = _amp(settings, self.dev, None)
        self.stack, self.profile = students, profile
        for k in students:
            with contextlib.suppress(torch.cuda.OutOfMemoryError):
                self._stacked_case(k, data, settings, obj, amp, n_tok)

    def _stacked_case(self, k: int, data: list[dict], settings: FinetuneConfig, obj: Any, amp: Any, n_tok: int) -> None:
        """K students stacked in one step (the suite) vs the same K students as K separate peft
        models, one step each (the reference: how they trained before stacking)."""
        from peft import LoraConfig, get_peft_model

        from interp.lm.finetune import trained_weights
        from interp.lm.stacked import attach

        model = copy.deepcopy(self.model)
        stacked = attach(model, trained_weights(model, settings), list(range(k)), settings.lora_r, settings.lora_alpha)
        opt = torch.optim.AdamW(stacked.parameters(), lr=1e-4)
        micro = [r for _ in range(k) for r in data]

        def suite() -> None:
            obj.block_losses(model, micro, amp, k).sum().backward()
            stacked.clip_grad_norm_(1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        lcfg = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, target_modules=list(settings.target_modules),
                          bias="none", task_type="CAUSAL_LM")  # fmt: skip
        alone = [get_peft_model(copy.deepcopy(self.model), lcfg) for _ in range(k)]
        opts = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4) for m in alone]

        def reference() -> None:
            for m, o in zip(alone, opts):
                obj.block_losses(m, data, amp, 1).sum().backward()
                torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
                o.step()
                o.zero_grad(set_to_none=True)

        case, work = f"soft-label step x{k}", {"train": k * n_tok}
        extra = lambda _: {"students": k, "rows_per_student": len(data), "tokens": k * n_tok, "autocast": settings.autocast}  # noqa: E731
        for impl, role, fn in ((f"suite: {k} stacked students", "suite", suite),
                               (f"{k} peft students, one after another", "reference", reference)):  # fmt: skip
            if self.dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.dev)
            row = self.record(case, impl, role, fn, work, flops=4 * self.params * k * n_tok, extra=extra)
            if role == "suite" and self.profile and k == max(self.stack):
                row["profile"] = top_ops(fn, self.dev)


def top_ops(fn: Callable[[], Any], device: torch.device, n: int = 15) -> list[dict[str, Any]]:
    """The `n` operators one call of `fn` spends most time in (torch.profiler; self time on the
    device on CUDA, on the CPU otherwise): where a step goes, for the next speed-up."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        fn()
        _sync(device)
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    ops = sorted(prof.key_averages(), key=lambda e: -getattr(e, attr, 0.0))[:n]
    total = sum(getattr(e, attr, 0.0) for e in prof.key_averages()) or 1.0
    return [{"op": e.key, "self_ms": round(getattr(e, attr, 0.0) / 1e3, 2), "share": round(getattr(e, attr, 0.0) / total, 4),
             "calls": e.count} for e in ops]  # fmt: skip


def measured_peak(device: torch.device, n: int = 8192, repeats: int = 10) -> float | None:
    """Dense bf16 matmul FLOP/s measured here (random n x n x n products; the ceiling %-of-peak
    figures are also given against), or None off CUDA."""
    if device.type != "cuda":
        return None
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def ratios(results: list[dict[str, Any]]) -> None:
    """Add `ratio_to_best_reference` (suite time / the fastest reference of the case)."""
    for case in {r["case"] for r in results}:
        refs = [r["median_s"] for r in results if r["case"] == case and r["role"] == "reference"]
        for r in results:
            if r["case"] == case:
                r["ratio_to_best_reference"] = round(r["median_s"] / min(refs), 3) if refs else None


def run_bench(spec: str = "smollm2-135m-instruct", device: str = "auto", repeats: int = 3, compile_ref: bool = False,
              n_prompts: int = 8, new_tokens: int = 40, batch: int = 8, n_questions: int = 2,
              stack: list[int] | None = None, stack_rows: int = 32, profile: bool = False,
              autocast: str = "auto") -> dict[str, Any]:  # fmt: skip
    t0 = time.time()
    torch.manual_seed(0)
    b = Bench(spec, device, repeats, n_prompts, new_tokens, batch)
    measured = measured_peak(b.dev)
    print(f"interp bench: {spec} on {b.dev} ({b.params / 1e6:.1f}M parameters), median of {repeats}", flush=True)
    b.generation(compile_ref)
    b.logprob_score(n_questions=n_questions)
    b.sampled_eval(n_questions=n_questions, k=8, new_tokens=6)
    with contextlib.suppress(torch.cuda.OutOfMemoryError):
        b.train_step(rows=min(4, n_prompts))
    b.stacked_step(stack or [1, 2], stack_rows, profile, autocast)
    if measured:
        for r in b.results:
            if "mfu" in r:
                r["mfu_measured_peak"] = round(r["mfu"] * b.peak_flops / measured, 5)
    ratios(b.results)
    return {"model": spec, "device": str(b.dev), "device_name": torch.cuda.get_device_name(b.dev) if b.dev.type == "cuda" else platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "repeats": repeats, "params": b.params, "peak_bf16_flops": b.peak_flops,
            "measured_bf16_flops": measured,
            "workload": {"n_prompts": n_prompts, "new_tokens": new_tokens, "batch": batch, "n_questions": n_questions},
            "versions": package_versions(), "wall_s": round(time.time() - t0, 1), "results": b.results}  # fmt: skip
