"""A per-stage lock, so that several pipelines on one run folder never run the same stage together.

The lock is an advisory ``flock`` on ``<workdir>/.lock``: the kernel drops it when its process ends, however it
ends, so a crashed or killed run never leaves a stale lock behind, and the next run resumes the stage from its
checkpoints. The file stays (unlinking a locked file would let two processes lock two different files) and
holds the current or last owner's pid, host and start time, for the message a waiting run prints. Where
``fcntl`` does not exist (Windows) stages are not locked: run one pipeline per folder there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["LOCK_NAME", "StageBusy", "stage_lock", "wait_for_stage"]

LOCK_NAME = ".lock"


class StageBusy(RuntimeError):
    """Another process holds the stage's lock; ``holder`` is its record (pid, host, started)."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        super().__init__(f"{path.parent} is being run by pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                         f"since {holder.get('started', '?')}")


@contextlib.contextmanager
def stage_lock(workdir: str | os.PathLike, blocking: bool = False) -> Iterator[None]:
    """Hold the lock of ``workdir`` for the body. If another process holds it: wait with ``blocking``, else raise
    :class:`StageBusy` at once."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    path = Path(workdir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with os.fdopen(fd, "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            try:
                holder = json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            raise StageBusy(path, holder) from None
        try:
            f.seek(0)
            f.truncate()
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f)
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def wait_for_stage(workdir: str | os.PathLike) -> None:
    """Block until no process holds the lock of ``workdir`` (returns at once if none does)."""
    if fcntl is None:  # pragma: no cover
        return
    path = Path(workdir) / LOCK_NAME
    if not path.exists():
        return
    with open(path) as f:
        fcntl.flock(f, fcntl.LOCK_SH)  # granted once the holder's exclusive lock is gone
        fcntl.flock(f, fcntl.LOCK_UN)
