"""Keyed, cached, resumable stages inside a run directory.

A stage's key hashes its name, its own parameters and the keys of the stages it reads, so a
change anywhere upstream changes every key downstream. A stage writes into a temporary folder
that is renamed into place only after its manifest (parameters, seed, versions, timing,
checksums) is written: a killed run leaves no half-finished stage that looks finished, and a
rerun skips every stage whose folder exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

log = logging.getLogger("interp")

TRACKED_PACKAGES = (
    "interp", "torch", "transformers", "peft", "accelerate", "gguf", "transformer-lens",
    "nnsight", "numpy", "scipy", "scikit-learn", "safetensors", "matplotlib", "reportlab",
)  # fmt: skip


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(path: Path | None = None) -> str | None:
    here = path or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here, capture_output=True, text=True, timeout=5,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if not sha:
        return None
    return sha + ("-dirty" if dirty else "")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def stable_hash(obj: Any, n: int = 12) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename) so a kill never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class Stage:
    """One cached unit of work; `path` holds its outputs once `done`."""

    name: str
    key: str
    path: Path
    params: dict[str, Any]
    inputs: dict[str, str]
    run: RunDir

    @property
    def done(self) -> bool:
        return (self.path / "manifest.json").exists()

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text())

    @contextmanager
    def running(self) -> Iterator[Path]:
        """Yield a scratch folder; on success it becomes `path`, with a manifest."""
        tmp = self.path.with_name(self.path.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        log.info("stage %s: running (key %s)", self.name, self.key)
        t0, c0 = time.time(), time.process_time()
        yield tmp
        manifest = {
            "stage": self.name,
            "key": self.key,
            "params": self.params,
            "inputs": self.inputs,
            "seed": self.params.get("seed", self.run.seed),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "host": {"platform": platform.platform(), "python": sys.version.split()[0]},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t0)),
            "wall_s": round(time.time() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3),
            "checksums": checksums(tmp),
        }
        write_json(tmp / "manifest.json", manifest)
        if self.path.exists():
            shutil.rmtree(self.path)
        tmp.rename(self.path)
        self.run.timings[self.name] = manifest["wall_s"]
        log.info("stage %s: done in %.1fs", self.name, manifest["wall_s"])


@dataclass
class RunDir:
    """A run's output folder: `runs/<name>/`, with `stages/<stage>-<key>/` inside."""

    root: Path
    seed: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        (self.root / "stages").mkdir(parents=True, exist_ok=True)

    def stage(
        self, name: str, params: dict[str, Any], inputs: dict[str, Stage] | None = None
    ) -> Stage:
        input_keys = {k: v.key for k, v in (inputs or {}).items()}
        key = stable_hash({"name": name, "params": params, "inputs": input_keys})
        slug = name.replace("/", "__")
        st = Stage(name, key, self.root / "stages" / f"{slug}-{key}", params, input_keys, self)
        if st.done:
            log.info("stage %s: cached (key %s)", name, key)
            self.cached.append(name)
            self.timings.setdefault(name, st.manifest.get("wall_s", 0.0))
        return st
