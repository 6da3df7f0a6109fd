"""Atomic file writes: a temporary file in the target folder, then a rename.

A killed process never leaves a half-written table or report under the final name, and readers
(``--resume``, a report being opened) only ever see complete files.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    """``.NAME.HOST-PID.``: whose temporary file it is, so a later write can prove it stale."""
    import socket

    return f".{path.name}.{socket.gethostname()}-{os.getpid()}."


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` left by SIGKILLed writers on this host.

    Only files named by :func:`_temp_prefix` of this host whose process no longer exists are
    removed; anything else (another host's writer, a live process, a name hcs did not make) is
    left alone.
    """
    import re
    import socket

    pattern = re.compile(rf"^\.{re.escape(path.name)}\.{re.escape(socket.gethostname())}"
                         rf"-(\d+)\.[A-Za-z0-9_]+\.tmp$")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None or int(m.group(1)) == os.getpid() or not entry.is_file():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            entry.unlink(missing_ok=True)
        except (PermissionError, OSError):
            pass  # alive (another user's) or unknown: not provably stale


def atomic_write(path: str | Path, write: Callable[[Path], None], *, fsync: bool = False) -> Path:
    """Call ``write(tmp)`` for a temporary path next to ``path``, then rename it into place.

    The file gets the usual permissions (0666 minus the umask), not the private 0600 of
    :func:`tempfile.mkstemp`, so tables and reports can be shared. The temporary file is named
    ``.NAME.HOST-PID.XXXX.tmp``; one left by a SIGKILLed writer of ``path`` on this host is
    removed by the next write of ``path``.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = atomic_write(p, lambda t: t.write_text("hello"))
    >>> p.read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(path)
    fd, name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write(path, lambda t: t.write_text(text, encoding="utf-8"))


def atomic_write_parquet(df: pd.DataFrame, path: str | Path, *, fsync: bool = False) -> Path:
    """Write a DataFrame as Parquet atomically (no index)."""
    return atomic_write(path, lambda t: df.to_parquet(t, index=False), fsync=fsync)
