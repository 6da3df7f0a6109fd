"""The small records hcs writes everywhere: a file's sha256, a UTC timestamp, a failure record.

Each has one home here so that run.json, analyze.json, plate attrs, model cards and failure
tables agree on format.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["failure_record", "process_alive", "process_record", "sha256_file",
           "utc_timestamp"]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.txt"
    >>> _ = p.write_text("abc")
    >>> sha256_file(p)[:12]
    'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def utc_timestamp() -> str:
    """The current time as ISO 8601 UTC to the second, e.g. ``2026-12-04T14:18:45Z``.

    Examples
    --------
    >>> len(utc_timestamp()), utc_timestamp().endswith("Z")
    (20, True)
    """
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def failure_record(well: str, field: int, exc: BaseException, **extra: Any) -> dict[str, Any]:
    """One row of a run's ``failures.parquet``: where it failed, the exception's type and message.

    Parameters
    ----------
    well, field
        The field that failed.
    exc
        The exception.
    **extra
        More columns (``attempts``, ``time`` ...).

    Examples
    --------
    >>> failure_record("B03", 1, ValueError("bad plane"), attempts=2)["error"]
    'bad plane'
    """
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return {"well": well, "field": int(field), "error_type": type(exc).__name__,
            "error": str(exc) or text, **extra}


def process_record() -> dict[str, Any]:
    """Who this process is, to be written into a lock or a partial-output marker: ``host``,
    ``pid``, ``started`` (the process's creation time, so a reused pid is told apart) and
    ``user``."""
    import psutil

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": psutil.Process().create_time(), "user": user}


def process_alive(record: dict[str, Any]) -> bool:
    """Whether the process of a :func:`process_record` may still be running.

    A process on another host cannot be checked and counts as alive; on this host it is alive
    when its pid exists with the recorded creation time (a reused pid is a different process).

    Examples
    --------
    >>> process_alive(process_record())
    True
    >>> process_alive({**process_record(), "started": 0.0})
    False
    """
    import psutil

    if record.get("host") != socket.gethostname():
        return True
    try:
        proc = psutil.Process(int(record["pid"]))
        return abs(proc.create_time() - float(record.get("started", 0))) < 1.0
    except (psutil.NoSuchProcess, KeyError, ValueError, TypeError):
        return False
