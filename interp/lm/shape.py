"""What a config can be checked against before any weights load: a model's block count and
module names, from its config alone (a tiny model's, an embedded model's converted config.json
or its GGUF metadata, a local directory's or a cached Hub snapshot's config.json); and a Hub
model's resolved revision (the commit of the snapshot in the local cache)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.lm.checkpoints import EMBEDDED, ModelError, cache_dir, embedded_gguf, gguf_sha256  # noqa: F401  (re-exported)

TINY = ("tiny-llama", "tiny-gemma")

# GGUF architecture -> transformers model type (the embedded models' architectures)
_GGUF_TYPES = {"llama": "llama", "gemma3": "gemma3_text"}


def tiny_config(kind: str = "tiny-llama", **overrides: Any) -> Any:
    """The config of a tiny model (2 layers, d_model 64, the character tokenizer's vocabulary)."""
    from transformers import Gemma3TextConfig, LlamaConfig

    tok = tiny_tokenizer(chat_template=False)
    common = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )  # fmt: skip
    common.update(overrides)
    if kind == "tiny-llama":
        return LlamaConfig(**common, architectures=["LlamaForCausalLM"])
    if kind == "tiny-gemma":
        return Gemma3TextConfig(**common, head_dim=16, sliding_window=64, architectures=["Gemma3ForCausalLM"])
    raise ModelError(f"unknown tiny model '{kind}' (choose {', '.join(TINY)})")


def tiny_tokenizer(chat_template: bool = True) -> Any:
    """A character-level fast tokenizer (printable ASCII), built offline."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(specials + chars)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()  # characters join without spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>", name_or_path="interp-tiny-char", add_bos_token=True,
    )  # fmt: skip
    if chat_template:
        tok.chat_template = (
            "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}<eos>\n{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}"
        )
    return tok


@dataclass(frozen=True)
class ModelShape:
    """A model's block count and the names of its modules (the last part of each dotted name)."""

    spec: str
    n_layers: int
    modules: frozenset[str]  # empty when its code could not be built on the meta device
    vocab_size: int | None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE") == "1"


def hub_snapshot(spec: str) -> Path | None:
    """The local cache's snapshot folder of a Hub id's default revision (None: not cached)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        got = try_to_load_from_cache(spec, "config.json")
    except Exception:  # noqa: BLE001 - an id huggingface_hub refuses is simply not cached
        return None
    return Path(got).parent if isinstance(got, str) else None


def hub_revision(spec: str) -> str | None:
    """The commit a Hub id resolves to: its cached snapshot's, or (online) the Hub's; None if unknown."""
    snap = hub_snapshot(spec)
    if snap is not None:
        return snap.name
    if hub_offline():
        return None
    if spec not in _ONLINE_REVISIONS:  # one question to the Hub per id per process, not one per stage key
        try:
            from huggingface_hub import model_info

            _ONLINE_REVISIONS[spec] = model_info(spec).sha
        except Exception:  # noqa: BLE001 - no network, no such repo: the load will say which
            _ONLINE_REVISIONS[spec] = None
    return _ONLINE_REVISIONS[spec]


_ONLINE_REVISIONS: dict[str, str | None] = {}


def _hf_config(spec: str, trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    if spec in EMBEDDED:
        converted = cache_dir() / "models" / spec
        if (converted / "config.json").is_file():
            return AutoConfig.from_pretrained(converted)
        return _gguf_config(spec)
    if Path(spec).is_dir():
        return AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
    snap = hub_snapshot(spec)
    if snap is None and hub_offline():
        return None
    return AutoConfig.from_pretrained(spec, revision=snap.name if snap else None,
                                      trust_remote_code=trust_remote_code)  # fmt: skip


def _gguf_config(spec: str) -> Any:
    """An embedded model's config from its GGUF's metadata (architecture, blocks, vocabulary)."""
    from transformers import AutoConfig

    meta = gguf_metadata(embedded_gguf(spec))
    arch = meta.get("general.architecture")
    if arch not in _GGUF_TYPES or not isinstance(meta.get(f"{arch}.block_count"), int):
        raise ModelError(f"model '{spec}': GGUF architecture {arch!r} is not one the suite converts")
    vocab = meta.get(f"{arch}.vocab_size", meta.get("tokenizer.ggml.tokens"))
    extra = {"vocab_size": vocab} if isinstance(vocab, int) else {}
    return AutoConfig.for_model(_GGUF_TYPES[arch], num_hidden_layers=meta[f"{arch}.block_count"], **extra)


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_metadata(path: Path) -> dict[str, Any]:
    """A GGUF file's key/value header: scalars and strings as values, arrays as their lengths.

    Reads the header alone (gguf's reader also maps every tensor: seconds for Gemma's 262k
    tokens, where this takes a fraction of one)."""
    import struct

    with open(path, "rb") as f:
        def read(fmt: str) -> Any:
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def string() -> str:
            return f.read(read("<Q")).decode("utf-8", "replace")

        def value(kind: int) -> Any:
            if kind == 8:
                return string()
            if kind == 9:
                item, n = read("<I"), read("<Q")
                for _ in range(n):
                    value(item)
                return n
            return read(_SCALARS[kind])

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        read("<I")  # version
        read("<Q")  # tensor count
        return {string(): value(read("<I")) for _ in range(read("<Q"))}


def _module_names(config: Any, trust_remote_code: bool) -> frozenset[str]:
    """Every module's last name, from the architecture built on the meta device (no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - an architecture transformers cannot build: names unknown
        return frozenset()
    leaves = (name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name)
    return frozenset(n for n in leaves if not n.isdigit())  # not the blocks' indices


@functools.lru_cache(maxsize=64)
def model_shape(spec: str, trust_remote_code: bool = False) -> ModelShape | None:
    """A model's shape from its config, no weights; None when its config is not on this machine
    (a Hub id outside the local cache while offline)."""
    try:
        config = tiny_config(spec) if spec in TINY else _hf_config(spec, trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise ModelError(f"model '{spec}': its config could not be read ({str(e).splitlines()[0]})") from e
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = getattr(text, "num_hidden_layers", None)
    if not isinstance(n_layers, int):
        return None
    return ModelShape(spec, n_layers, _module_names(config, trust_remote_code), getattr(text, "vocab_size", None))
