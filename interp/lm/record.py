"""Residual-stream recording through three backends that must agree, and activation storage.

`resid_post` of block `layer` (0..n_layers-1) is the output of HF decoder layer `layer`:
HF `hidden_states[layer + 1]` for every block but the last; for the last block it is the value
*before* the final norm (HF's `hidden_states[-1]` is after it), as in TransformerLens.

Backends (same numbers to ~1e-6 in float32):
- "hf": `output_hidden_states=True`, plus a hook on the last block for its pre-norm output.
  Sees `interp.lm.steer` hooks.
- "transformer_lens": a `TransformerBridge` (`blocks.{layer}.hook_resid_post`) from `bridge_for`.
- "nnsight": a `TransformersModel` trace saving `<layers>[layer].output`, from `nnsight_for`.

Prompts are already-formatted text, tokenised by `generate.encode_prompts`, batched with LEFT
padding and mask-derived `position_ids` (each real token keeps the position it has unpadded), so
padding does not change activations. Results come back on CPU as float32.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Float
from torch import Tensor

from interp.lm.generate import encode_prompts, left_pad, positions_from_mask
from interp.lm.steer import decoder_layers, n_steering_hooks
from interp.store.stages import write_atomic

Backend = Literal["hf", "transformer_lens", "nnsight"]
BACKENDS: tuple[str, ...] = ("hf", "transformer_lens", "nnsight")

# Wrappers cached per HF model object (weakly: they die with it) and its device/dtype.
_BRIDGES: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_NNSIGHT: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


def _shared_copy(model: Any) -> Any:
    """A structural copy whose parameters and buffers ARE the original's tensors.

    Both wrappers rewrite the model they are given: `boot_transformers` swaps every submodule
    for a bridge component (state-dict keys change, attention becomes eager), nnsight installs
    instance-level `forward` wrappers. Wrapping a copy leaves the caller's model untouched,
    while weight updates in place (training, LoRA merges) still show through.
    """
    memo = {id(t): t for t in [*model.parameters(), *model.buffers()]}
    return copy.deepcopy(model, memo)


def _key(model: Any) -> tuple[Any, ...]:
    p = next(model.parameters())
    return (p.device, p.dtype, model.config.num_hidden_layers)


def bridge_for(model: Any, tok: Any, *, fresh: bool = False) -> Any:
    """A TransformerLens `TransformerBridge` over (a parameter-sharing copy of) `model`."""
    from transformer_lens.model_bridge import TransformerBridge

    cached = _BRIDGES.get(model)
    if cached is not None and cached[0] == _key(model) and not fresh:
        return cached[1]
    if not getattr(tok, "name_or_path", None):
        # Without a name the bridge tries to load a tokenizer by name (a Hub call).
        raise ValueError("the tokenizer needs a name_or_path for TransformerBridge")
    p = next(model.parameters())
    bridge = TransformerBridge.boot_transformers(
        getattr(model, "name_or_path", None) or "interp-model",  # a label; nothing is fetched
        hf_model=_shared_copy(model),
        tokenizer=tok,
        device=p.device,
        dtype=p.dtype,  # same dtype: boot must not cast the shared parameters
    )
    bridge.eval()
    _BRIDGES[model] = (_key(model), bridge)
    return bridge


def nnsight_for(model: Any, tok: Any, *, fresh: bool = False) -> Any:
    """An nnsight `TransformersModel` over (a parameter-sharing copy of) `model`."""
    from nnsight.modeling.transformers import TransformersModel

    cached = _NNSIGHT.get(model)
    if cached is not None and cached[0] == _key(model) and not fresh:
        return cached[1]
    wrapped = TransformersModel(_shared_copy(model), tokenizer=tok, task="text-generation")
    _NNSIGHT[model] = (_key(model), wrapped)
    return wrapped


def _layers_path(model: Any) -> str:
    """Attribute path of the decoder blocks ('model.layers'), to address them in nnsight."""
    target = decoder_layers(model)
    for name, module in model.named_modules():
        if module is target:
            return name
    raise TypeError("decoder blocks are not a submodule of the model")


def _envoy(wrapped: Any, path: str) -> Any:
    return functools.reduce(getattr, path.split("."), wrapped)


def _hidden(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


# ---------------------------------------------------------------- backends, one batch each
# Each returns resid_post as a list over layers of [batch, pos, d_model].


def _run_hf(model: Any, ids: Tensor, mask: Tensor, pos: Tensor) -> list[Tensor]:
    last: list[Tensor] = []
    # Registered now, so after any (prepended) steering hook: sees the steered pre-norm value.
    handle = decoder_layers(model)[-1].register_forward_hook(
        lambda mod, args, out: last.append(_hidden(out))
    )
    try:
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False,
            output_hidden_states=True,
        )  # fmt: skip
    finally:
        handle.remove()
    n_layers = len(decoder_layers(model))
    if len(out.hidden_states) != n_layers + 1 or len(last) != 1:
        raise RuntimeError(f"expected {n_layers + 1} hidden states, got {len(out.hidden_states)}")
    return [*out.hidden_states[1:n_layers], last[0]]


def _run_bridge(bridge: Any, ids: Tensor, mask: Tensor, pos: Tensor) -> list[Tensor]:
    names = [f"blocks.{layer}.hook_resid_post" for layer in range(bridge.cfg.n_layers)]
    # Token ids, not text: the bridge's own tokenisation prepends BOS to chat-formatted text.
    _, cache = bridge.run_with_cache(ids, attention_mask=mask, position_ids=pos, names_filter=names)
    return [cache[n] for n in names]


def _run_nnsight(wrapped: Any, path: str, n_layers: int, ids: Tensor, mask: Tensor,
                 pos: Tensor) -> list[Tensor]:  # fmt: skip
    blocks = _envoy(wrapped, path)
    saved = []
    # nnsight re-reads this body from source: it must stay in a real file, on its own lines.
    with wrapped.trace(ids, attention_mask=mask, position_ids=pos, use_cache=False):
        for layer in range(n_layers):
            saved.append(blocks[layer].output.save())
    return [_hidden(s) for s in saved]


def _refuse_if_steered(model: Any, backend: str) -> None:
    if n_steering_hooks(model):
        raise RuntimeError(
            f"steering hooks are active on this model; backend '{backend}' runs a copy that "
            "does not see them: use backend='hf'"
        )


def _pad_id(tok: Any) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def _batches(seqs: list[list[int]], batch_size: int) -> list[list[int]]:
    """Indices grouped by similar length (less padding), longest first."""
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def resid_post_from_ids(
    model: Any, tok: Any, seqs: Sequence[Sequence[int]], keep: Sequence[int], *,
    backend: Backend = "hf", batch_size: int = 16,
) -> list[Float[Tensor, "pos layer d_model"]]:  # fmt: skip
    """resid_post at the last `keep[i]` tokens of each sequence: [keep_i, layer, d_model]."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend '{backend}' (choose {', '.join(BACKENDS)})")
    if backend != "hf":
        _refuse_if_steered(model, backend)
    seqs = [list(s) for s in seqs]
    if len(keep) != len(seqs):
        raise ValueError(f"{len(seqs)} sequences but {len(keep)} keep counts")
    for i, (s, k) in enumerate(zip(seqs, keep)):
        if not 1 <= k <= len(s):
            raise ValueError(f"sequence {i}: cannot keep {k} of its {len(s)} tokens")
    device = next(model.parameters()).device
    pad_id = _pad_id(tok)
    n_layers = len(decoder_layers(model))
    if backend == "transformer_lens":
        bridge = bridge_for(model, tok)
        run = functools.partial(_run_bridge, bridge)
    elif backend == "nnsight":
        run = functools.partial(
            _run_nnsight, nnsight_for(model, tok), _layers_path(model), n_layers
        )
    else:
        run = functools.partial(_run_hf, model)
    out: list[Tensor | None] = [None] * len(seqs)
    for idx in _batches(seqs, batch_size):
        ids, mask = left_pad([seqs[i] for i in idx], pad_id)
        ids, mask = ids.to(device), mask.to(device)
        per_layer = run(ids, mask, positions_from_mask(mask))
        tail = max(keep[i] for i in idx)  # stack only the kept positions: memory for 'last'
        stacked = torch.stack([h[:, -tail:] for h in per_layer], dim=2)  # [batch, pos, layer, d]
        for row, i in enumerate(idx):
            out[i] = stacked[row, tail - keep[i] :].float().cpu()
    return out  # type: ignore[return-value]


def residual_stream(
    model: Any, tok: Any, prompts: list[str], *, backend: Backend = "hf",
    positions: Literal["last", "all"] = "last", batch_size: int = 16,
) -> Float[Tensor, "prompt layer d_model"] | list[Float[Tensor, "pos layer d_model"]]:  # fmt: skip
    """resid_post after every block at the last prompt token, or at all of its tokens.

    `positions="last"` gives one [prompt, layer, d_model] tensor; `"all"` a list of
    [pos, layer, d_model] tensors, one per prompt (pads removed).
    """
    if not prompts:
        raise ValueError("no prompts")
    seqs = encode_prompts(tok, prompts)
    if positions == "last":
        keep = [1] * len(seqs)
    elif positions == "all":
        keep = [len(s) for s in seqs]
    else:
        raise ValueError(f"positions must be 'last' or 'all', got '{positions}'")
    acts = resid_post_from_ids(model, tok, seqs, keep, backend=backend, batch_size=batch_size)
    return torch.stack([a[0] for a in acts]) if positions == "last" else acts


def answer_activations(
    model: Any, tok: Any, prompts: list[str], answers: list[str], *, backend: Backend = "hf",
    reduce: Literal["mean", "none"] = "mean", batch_size: int = 16,
) -> Float[Tensor, "prompt layer d_model"] | list[Float[Tensor, "answer_pos layer d_model"]]:  # fmt: skip
    """resid_post at the answer tokens of prompt + answer (answer tokenised on its own and
    appended, as in `evaluate.candidate_logprobs`): mean over them, stacked [prompt, layer,
    d_model], or with `reduce="none"` one [answer_pos, layer, d_model] tensor per example."""
    if not prompts or len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts and {len(answers)} answers")
    answer_ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
    empty = [i for i, a in enumerate(answer_ids) if not a]
    if empty:
        raise ValueError(f"answers {empty[:5]} tokenise to nothing")
    seqs = [p + a for p, a in zip(encode_prompts(tok, prompts), answer_ids)]
    keep = [len(a) for a in answer_ids]
    acts = resid_post_from_ids(model, tok, seqs, keep, backend=backend, batch_size=batch_size)
    if reduce == "none":
        return acts
    if reduce != "mean":
        raise ValueError(f"reduce must be 'mean' or 'none', got '{reduce}'")
    return torch.stack([a.mean(dim=0) for a in acts])


# ---------------------------------------------------------------- storage

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
REQUIRED_META = ("model", "backend", "positions", "prompt_set")


def read_index(path_dir: str | Path) -> dict[str, dict[str, Any]]:
    index = Path(path_dir) / "index.json"
    return json.loads(index.read_text())["entries"] if index.exists() else {}


def save_activations(
    path_dir: str | Path, name: str,
    tensor: Float[Tensor, "prompt layer d_model"] | list[Float[Tensor, "pos layer d_model"]],
    meta: dict[str, Any],
) -> Path:  # fmt: skip
    """Write `<name>.safetensors` and its entry in `index.json` (both atomically).

    `meta` needs model, backend, positions and prompt_set; anything else JSON-able is kept.
    A list of per-prompt tensors is stored concatenated along axis 0 with their lengths.
    """
    from filelock import FileLock
    from safetensors.torch import save

    if not _NAME.match(name):
        raise ValueError(f"bad activation name '{name}' (letters, digits, . _ - only)")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"meta is missing {missing} (needs {', '.join(REQUIRED_META)})")
    path_dir = Path(path_dir)
    path_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(tensor, Tensor):
        tensors = {"activations": tensor.detach().cpu().contiguous()}
        shape: Any = list(tensor.shape)
    else:
        parts = [t.detach().cpu() for t in tensor]
        tensors = {
            "activations": torch.cat(parts).contiguous(),
            "lengths": torch.tensor([p.shape[0] for p in parts], dtype=torch.long),
        }
        shape = [list(p.shape) for p in parts]
    entry = {
        "name": name,
        "file": f"{name}.safetensors",
        "ragged": not isinstance(tensor, Tensor),
        "shape": shape,
        "dtype": str(tensors["activations"].dtype).removeprefix("torch."),
        "layer_axis": meta.get("layer_axis", 1),
        **{k: v for k, v in meta.items() if k != "layer_axis"},
    }
    json.dumps(entry)  # fail before writing anything if meta is not JSON-able
    target = path_dir / entry["file"]
    write_atomic(target, save(tensors, metadata={"entry": json.dumps(entry)}))
    with FileLock(str(path_dir / ".index.lock")):  # index.json read-modify-write across processes
        entries = read_index(path_dir)
        entries[name] = entry
        write_atomic(path_dir / "index.json", json.dumps({"entries": entries}, indent=1, sort_keys=True))
    return target


def load_activations(
    path_dir: str | Path, name: str
) -> tuple[Tensor | list[Tensor], dict[str, Any]]:
    """(tensor, or list of per-prompt tensors if saved ragged; its index.json entry)."""
    from safetensors.torch import load_file

    entries = read_index(path_dir)
    if name not in entries:
        raise KeyError(f"no activations '{name}' in {path_dir} (have: {', '.join(entries)})")
    entry = entries[name]
    tensors = load_file(str(Path(path_dir) / entry["file"]))
    acts = tensors["activations"]
    if entry["ragged"]:
        return list(torch.split(acts, tensors["lengths"].tolist())), entry
    return acts, entry
