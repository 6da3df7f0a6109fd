"""One run per RUN_DIR at a time: an exclusive lock file naming its owner.

The lock (``RUN_DIR/run.lock``) is created with ``O_CREAT | O_EXCL`` and holds the owner's host,
pid, process start time and user. A lock whose owner process is gone (same host, pid dead or
reused) is stale, e.g. after SIGKILL, and is taken over; any other is refused with a message
naming the owner.
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
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
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
            with os.fdopen(fd, "w") as f:
                json.dump({**process_record(), "locked_at": utc_timestamp()}, f)
            return
        raise InputError(f"{self.path}: could not take the run lock")

    def _owner(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            # being written right now, or garbage: treat a fresh file as owned
            try:
                age = time.time() - self.path.stat().st_mtime
            except OSError:
                return None
            return {"host": socket.gethostname(), "pid": -1} if age > 10 else \
                {"host": "?", "pid": "?"}

    def release(self) -> None:
        owner = self._owner()
        if owner and owner.get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
