"""One run per RUN_DIR at a time: an exclusive lock file naming its owner.

The lock (``RUN_DIR/run.lock``) is created atomically (hard link of a complete temporary file,
else ``O_CREAT | O_EXCL``) and holds the owner's host, pid, process start time and user. A lock
whose owner process is gone (same host, pid dead or reused) is stale, e.g. after SIGKILL, and
is taken over; any other is refused with a message naming the owner. A lock file that is not
such an owner record (empty, truncated, garbage) is refused with one line naming it: hcs cannot
prove whose it is, so it never removes it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from hcs.errors import InputError
from hcs.records import process_alive, process_record, utc_timestamp

__all__ = ["RunLock"]


class RunLock:
    """Context manager holding ``RUN_DIR/run.lock`` for the lifetime of a run.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with RunLock(d) as lock:
    ...     lock.path.exists()
    True
    >>> (Path(d) / "run.lock").exists()
    False
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "run.lock"
        self.took_over: dict[str, Any] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                self._create()
            except FileExistsError:
                owner = self._owner()
                if owner is not None and process_alive(owner):
                    raise InputError(
                        f"{self.path.parent} is in use by another run (pid {owner.get('pid')} "
                        f"on {owner.get('host')}, user {owner.get('user')}, since "
                        f"{owner.get('locked_at')}); lock file {self.path}") from None
                self.took_over = owner or {}
                self.path.unlink(missing_ok=True)  # stale: its owner is gone
                continue
            return
        raise InputError(f"{self.path}: could not take the run lock")

    def _create(self) -> None:
        """Create the lock complete or not at all: the owner record is written to a temporary
        file that is hard-linked to the lock name (fails if it exists), so no reader ever sees
        a half-written lock. Where hard links are not supported, ``O_EXCL`` and a write."""
        record = json.dumps({**process_record(), "locked_at": utc_timestamp()})
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(record)
            try:
                os.link(tmp, self.path)
                return
            except FileExistsError:
                raise
            except OSError:
                pass
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as f:
                f.write(record)
        finally:
            tmp.unlink(missing_ok=True)

    def _owner(self, wait_s: float = 1.0) -> dict[str, Any] | None:
        """The lock's owner; None if the lock vanished. A lock that is not an owner record
        (empty, truncated, garbage) is re-read for ``wait_s`` (another process may be writing
        it right now), then refused: hcs cannot tell whose it is, so it does not remove it."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                owner = json.loads(self.path.read_text())
                if isinstance(owner, dict) and {"host", "pid"} <= set(owner):
                    return owner
            except FileNotFoundError:
                return None
            except (OSError, ValueError):
                pass
            if time.monotonic() >= deadline:
                raise InputError(
                    f"{self.path}: unreadable run lock (not an owner record hcs writes); if no "
                    f"hcs run is using {self.path.parent}, delete {self.path} and run again")
            time.sleep(0.1)

    def release(self) -> None:
        try:
            owner = self._owner(wait_s=0.0)
        except InputError:
            return  # not ours any more: leave it
        if owner and owner.get("pid") == os.getpid() and owner.get(
                "host") == socket.gethostname():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
