"""Keyed, cached, resumable stages inside a run directory.

A stage's key hashes its name, its own parameters and the keys of the stages it reads, so a
change anywhere upstream changes every key downstream. A stage writes into a temporary folder
that is renamed into place only after its manifest (parameters, seed, versions, timing,
checksums) is written: a killed run leaves no half-finished stage that looks finished, and a
rerun skips every stage whose folder exists.

One idiom makes a stage: `RunDir.compute(name, params, write, inputs)` (or `compute_json` for
one JSON object) does key, lock, verify, compute, manifest and rename. Only a batched pass that
writes several planned stages at once (one generation for all teachers, stacked students:
`interp.subliminal.jobs`) opens each stage's `Stage.running()` itself.

The store cannot lie:
- a key covers the stage's parameters, its inputs' keys, the store format, and the run's
  resolved device and dtype (`RunDir.device` / `RunDir.dtype`), so "auto" never hides a change;
- before a finished stage is reused its files are checked against the manifest (sizes, then
  sha256): a truncated or flipped artifact is logged in one line and the stage recomputed;
- a stage is computed under a file lock: a second process running the same config waits for
  it and then reuses it instead of deleting the first one's scratch folder; a wait ends after
  `INTERP_LOCK_TIMEOUT` seconds in one line naming the holder (`interp.store.locks`);
- every file the store writes goes through a temporary name unique to the writer, fsync, rename;
- a run folder's config.toml and its outputs change under the folder's lock: two runs of
  different configs started on one folder each keep their summary (`interp.store.runfolder`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from interp.config import ConfigError
from interp.store.locks import HeldLock, fault_point, fsync_dir, fsync_tree

log = logging.getLogger("interp")

# Bump when the meaning of a stored stage changes (every key changes with it).
STORE_FORMAT = 2

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


def _artifact_files(folder: Path) -> list[Path]:
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "manifest.json"]


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in _artifact_files(folder)}


def file_sizes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in _artifact_files(folder)}


def verify_folder(
    folder: Path, hash_files: Callable[[list[Path]], dict[Path, str]] | None = None
) -> str | None:
    """None if every file listed in `folder/manifest.json` is there with its size and sha256.

    Otherwise one phrase saying what is wrong (the first problem found). Sizes are compared
    first (a truncation costs no hashing), hashes after: by `sha256_file`, or by `hash_files`
    (the model cache passes one that remembers hashes by size and mtime).
    """
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        sums: dict[str, str] = manifest["checksums"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"manifest.json unreadable ({type(e).__name__})"
    sizes = manifest.get("sizes") or {}
    files = {rel: folder / rel for rel in sums}
    for rel, f in files.items():
        if not f.is_file():
            return f"{rel} is missing"
        if rel in sizes and f.stat().st_size != sizes[rel]:
            return f"{rel} has size {f.stat().st_size} bytes, the manifest says {sizes[rel]}"
    digests = hash_files(list(files.values())) if hash_files is not None else None
    for rel, digest in sums.items():
        got = digests[files[rel]] if digests is not None else sha256_file(files[rel])
        if got != digest:
            return f"{rel} does not match its sha256 in the manifest"
    return None


def stable_hash(obj: Any, n: int = 12) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:n]


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write a file atomically: a temporary name unique to this writer, then rename.

    A kill never leaves half a file, and two processes writing the same path never share a
    temporary file (the last rename wins, whole). The file is fsynced before the rename and
    the folder after it, so a power loss cannot leave an empty file under the final name.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        fault_point(f"file:{path.name}")
        tmp.replace(path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (see `write_atomic`)."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each non-blank line of a JSONL file: the one JSONL decoder. A line
    that is not UTF-8 or not JSON is one ConfigError naming file:line."""
    path = Path(path)
    for i, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8-sig" if i == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}:{i}: not valid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})") from e
        if not line.strip():
            continue
        try:
            yield i, json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{i}: not JSON ({e.msg} at column {e.colno})") from e


def read_jsonl(path: str | Path) -> list[Any]:
    return [row for _, row in iter_jsonl(path)]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


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
    # provenance written into the manifest but not into the stage's content (its checksums): how
    # the stage was computed, e.g. which other stages shared its batched pass
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return (self.path / "manifest.json").exists()

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / "manifest.json").read_text())

    def content_id(self) -> str | None:
        """Hash of the stage's checksums (None while it is not finished)."""
        return stable_hash(self.manifest["checksums"]) if self.done else None

    @contextmanager
    def running(self) -> Iterator[Path]:
        """Yield a scratch folder; on success it becomes `path`, with a manifest.

        Runs under the stage's lock (taken by `RunDir.stage`), so the scratch folder of a
        killed run can be cleared without touching another process's work.
        """
        try:
            self.run.acquire(self)
            yield from self._compute()
        finally:
            self.run.release(self)

    def _compute(self) -> Iterator[Path]:
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
            "sizes": file_sizes(tmp),
            **({"notes": self.notes} if self.notes else {}),
        }
        fault_point(f"stage:{self.name}")  # the tests' kill hook: files written, no manifest yet
        write_json(tmp / "manifest.json", manifest)
        fsync_tree(tmp)  # every file on disk before the folder is renamed into place
        if self.path.exists():
            shutil.rmtree(self.path)
        tmp.rename(self.path)
        fsync_dir(self.path.parent)
        self.run.timings[self.name] = manifest["wall_s"]
        self.run.computed.append(self.path.name)
        log.info("stage %s: done in %.1fs", self.name, manifest["wall_s"])


@dataclass
class RunDir:
    """A run's output folder: `runs/<name>/`, with `stages/<stage>-<key>/` inside.

    `device` and `dtype` are what the run resolved "auto" to; they enter every key.
    """

    root: Path
    seed: int = 0
    device: str = "cpu"
    dtype: str = "auto"
    timings: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)
    computed: list[str] = field(default_factory=list)  # stage folders this process computed
    used: list[str] = field(default_factory=list)  # every stage folder asked for, in order
    recomputed: dict[str, str] = field(default_factory=dict)
    _locks: dict[Path, HeldLock] = field(default_factory=dict, repr=False)
    _verified: set[Path] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        (self.root / "stages").mkdir(parents=True, exist_ok=True)

    def stage(
        self, name: str, params: dict[str, Any], inputs: dict[str, Stage] | None = None
    ) -> Stage:
        input_keys = {k: v.key for k, v in (inputs or {}).items()}
        # An input enters by its key and by its content: a recomputed input that came out
        # different (a GPU is not bitwise deterministic) invalidates everything built on it.
        contents = {k: v.content_id() for k, v in (inputs or {}).items()}
        key = stable_hash({"name": name, "params": params, "inputs": input_keys, "contents": contents,
                           "format": STORE_FORMAT, "device": self.device, "dtype": self.dtype})  # fmt: skip
        slug = name.replace("/", "__")
        st = Stage(name, key, self.root / "stages" / f"{slug}-{key}", params, input_keys, self)
        if st.path.name not in self.used:
            self.used.append(st.path.name)
        if self._reusable(st):
            return st
        # Not finished here: take its lock (another process may be computing it right now),
        # then look again. The lock is held until `running()` ends.
        self.acquire(st)
        if self._reusable(st):
            self.release(st)
        return st

    def compute(
        self, name: str, params: dict[str, Any], write: Callable[[Path], Any],
        inputs: dict[str, Stage] | None = None,
    ) -> Stage:  # fmt: skip
        """The one way a stage is made. Its key comes from `name`, `params` and the inputs' keys
        and contents; a finished, verified folder is reused; otherwise, under the stage's lock,
        `write(folder)` fills a scratch folder, the manifest is written, and the folder is renamed
        into place (`Stage.running`). Returns the finished stage."""
        st = self.stage(name, params, inputs)
        if not st.done:
            with st.running() as folder:
                write(folder)
        return st

    def compute_json(
        self, name: str, params: dict[str, Any], make: Callable[[], Any],
        inputs: dict[str, Stage] | None = None, filename: str = "result.json",
    ) -> Any:  # fmt: skip
        """`compute` for a stage whose output is one JSON object: `make()` returns it (called
        only when the stage is not finished); returns the object as stored."""
        st = self.compute(name, params, lambda folder: write_json(folder / filename, make()), inputs)
        return read_json(st.path / filename)

    def finished(self, path: Path) -> Stage:
        """A finished stage read back from its folder's manifest (an input for later stages,
        e.g. a run's dataset for an analysis); one line naming the folder if it is not one."""
        try:
            m = read_json(path / "manifest.json")
        except (OSError, ValueError) as e:
            raise ConfigError(f"{path}: not a finished stage ({e})") from e
        return Stage(m["stage"], m["key"], path, m["params"], m["inputs"], self)

    def _reusable(self, st: Stage) -> bool:
        if not st.path.exists():
            return False
        problem = None if st.path in self._verified else verify_folder(st.path)
        if problem is None:
            self._verified.add(st.path)
            if st.name not in self.cached:
                log.info("stage %s: cached (key %s)", st.name, st.key)
                self.cached.append(st.name)
            self.timings.setdefault(st.name, st.manifest.get("wall_s", 0.0))
            return True
        log.warning("stage %s: %s (%s); recomputing it", st.name, problem, st.path.name)
        self.recomputed[st.name] = problem
        shutil.rmtree(st.path, ignore_errors=True)
        return False

    def acquire(self, st: Stage) -> None:
        if st.path in self._locks:
            return
        # hidden: globs skip it; a wait names the holder and ends after INTERP_LOCK_TIMEOUT
        lock = HeldLock(st.path.with_name(f".{st.path.name}.lock"), f"stage {st.name} ({st.path.name})")
        lock.acquire()
        self._locks[st.path] = lock

    def release(self, st: Stage) -> None:
        lock = self._locks.pop(st.path, None)
        if lock is not None:
            lock.release()
