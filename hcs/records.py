"""The small records hcs writes everywhere: a file's sha256, a UTC timestamp, a failure record.

Each has one home here so that run.json, analyze.json, plate attrs, model cards and failure
tables agree on format.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["failure_record", "sha256_file", "utc_timestamp"]


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
