"""File locks that name their holder and give up, fsync before rename, and the kill hook.

- `HeldLock`: a file lock (released by the OS when its process dies, even by SIGKILL) with a
  holder file beside it (pid, host, start time). A wait longer than `INTERP_LOCK_TIMEOUT`
  seconds (default 6 hours) ends in one `LockTimeout` line naming the holder.
- `fsync_file` / `fsync_dir` / `fsync_tree`: what the store calls before and after every rename,
  so a power loss leaves the old file or the new one, never a renamed empty one.
- `fault_point`: the fault-injection hook of the tests. With `INTERP_KILL_AT` set, the process
  kills itself (SIGKILL: no cleanup, no finally) when it reaches a named point whose name
  starts with that value: `stage:<stage name>` (a stage's files written, its manifest not yet)
  or `file:<file name>` (a file written in full under its temporary name, not yet renamed).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from interp.config import ConfigError

log = logging.getLogger("interp")

LOCK_TIMEOUT_ENV = "INTERP_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 6 * 3600.0
KILL_AT_ENV = "INTERP_KILL_AT"


class LockTimeout(RuntimeError):
    """Another process held a lock for longer than the timeout (one line naming it)."""


def lock_timeout() -> float:
    """Seconds a lock is waited for: `INTERP_LOCK_TIMEOUT`, or 6 hours."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_S
    try:
        t = float(raw)
    except ValueError:
        t = math.nan
    if not (math.isfinite(t) and t > 0):
        raise ConfigError(f"{LOCK_TIMEOUT_ENV}={raw!r}: expected seconds, a number > 0 "
                          f"(default {DEFAULT_LOCK_TIMEOUT_S:g})")  # fmt: skip
    return t


class HeldLock:
    """A file lock at `path`, with `<path>.holder` saying who holds it.

    `what` names the locked thing in messages ("stage filter/trait", "run folder runs/x").
    """

    def __init__(self, path: str | Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self.holder_file = self.path.with_name(self.path.name + ".holder")
        self._lock = FileLock(str(self.path))

    def holder(self) -> str:
        """Who holds the lock, as the holder file says ("an unknown process" if it cannot)."""
        try:
            h = json.loads(self.holder_file.read_text())
            return f"pid {h['pid']} on {h['host']} since {h['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "an unknown process"

    def acquire(self) -> None:
        timeout = lock_timeout()
        try:
            self._lock.acquire(timeout=min(1.0, timeout))
        except Timeout:
            log.info("%s: %s holds it; waiting (at most %gs: %s)", self.what, self.holder(), timeout,
                     LOCK_TIMEOUT_ENV)  # fmt: skip
            try:
                self._lock.acquire(timeout=max(0.0, timeout - 1.0))
            except Timeout:
                raise LockTimeout(
                    f"{self.what}: waited {timeout:g}s for its lock {self.path}, held by {self.holder()} "
                    f"(a process that died would have freed it): wait for it or stop it, or set "
                    f"{LOCK_TIMEOUT_ENV} to wait longer"
                ) from None
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
        tmp = self.holder_file.with_name(f".{self.holder_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(me))
        tmp.replace(self.holder_file)

    def release(self) -> None:
        self.holder_file.unlink(missing_ok=True)  # before the lock: the next holder's file stays
        self._lock.release()

    def __enter__(self) -> HeldLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Every file under `folder`, then every folder, bottom up (before the folder is renamed)."""
    dirs = [folder]
    for p in folder.rglob("*"):
        if p.is_symlink():
            continue
        if p.is_file():
            fsync_file(p)
        elif p.is_dir():
            dirs.append(p)
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        fsync_dir(d)


def fault_point(where: str) -> None:
    """SIGKILL this process here when `INTERP_KILL_AT` is a prefix of `where` (tests only)."""
    at = os.environ.get(KILL_AT_ENV)
    if at and where.startswith(at):
        log.info("%s=%s: killing this process at %s", KILL_AT_ENV, at, where)
        for h in logging.getLogger().handlers + log.handlers:
            h.flush()
        os.kill(os.getpid(), signal.SIGKILL)
