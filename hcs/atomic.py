"""Atomic writes: a temporary file or folder next to the target, then a rename.

A killed process never leaves a half-written table, report or plate under the final name, and
readers (``--resume``, a report being opened) only ever see complete files.

Folders (:func:`atomic_dir`) follow one rule (:func:`check_replaceable`): an output is never an
input, never contains one and never lies inside one, and ``--overwrite`` replaces only what hcs
can prove it wrote (an hcs plate, :func:`plate_not_ours`). Leftover ``OUT.partial-<pid>``
folders of killed hcs processes are removed by the next write (:func:`clean_stale_partials`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from hcs.errors import InputError, OutputExistsError
from hcs.records import process_alive, process_record


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
        if not _pid_exists(int(m.group(1))):
            entry.unlink(missing_ok=True)


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


# --- folders: replace only what hcs provably wrote ------------------------------------------------

#: The marker hcs writes into everything it creates: ``attrs["hcs"]["written_by"]`` of a plate,
#: the ``written_by`` field of ``simulation.json`` and of a partial folder's marker file.
WRITTEN_BY = "hcs"
#: Written first into every ``OUT.partial-<pid>`` folder: host, pid, process start time, user.
PARTIAL_MARKER = ".hcs-partial.json"
#: Keys that only hcs writes into a plate's ``attrs["hcs"]`` (plates of hcs versions that did
#: not yet write ``written_by`` are recognised by these).
_LEGACY_PLATE_KEYS = {"version", "vendor_format", "converted_at", "missing_planes", "stats"}


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plate_not_ours(path: str | Path) -> str | None:
    """Why ``path`` is not an OME-Zarr plate written by hcs, or ``None`` when it is one.

    A plate written by hcs has plate metadata (``ome.plate`` in ``zarr.json``, or ``plate`` in
    ``.zattrs``) and ``attrs["hcs"]["written_by"] == "hcs"`` (plates of earlier hcs versions:
    the hcs-only provenance keys ``version``, ``vendor_format``, ``converted_at``,
    ``missing_planes``, ``stats``). Its top level holds only zarr metadata, its row groups and
    ``vendor/``: anything else was put there by someone else, and the folder is not replaced.

    Examples
    --------
    >>> import tempfile
    >>> plate_not_ours(tempfile.mkdtemp()).endswith("no zarr.json or .zattrs")
    True
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return "not a folder" if not path.is_symlink() else "a symbolic link"
    attrs = None
    if (path / "zarr.json").is_file():
        meta = _read_json(path / "zarr.json") or {}
        attrs = meta.get("attributes") if isinstance(meta.get("attributes"), dict) else {}
        ome = attrs.get("ome")
        plate = ome.get("plate") if isinstance(ome, dict) else None
    elif (path / ".zattrs").is_file():
        attrs = _read_json(path / ".zattrs") or {}
        plate = attrs.get("plate")
    else:
        return "not an OME-Zarr plate: no zarr.json or .zattrs"
    if not isinstance(plate, dict):
        return "not an OME-Zarr plate (no plate metadata)"
    hcs = attrs.get("hcs")
    if not isinstance(hcs, dict) or not (
        hcs.get("written_by") == WRITTEN_BY or _LEGACY_PLATE_KEYS <= set(hcs)
    ):
        return "an OME-Zarr plate not written by hcs (no hcs provenance in its attributes)"
    rows = {str(r.get("name")) for r in plate.get("rows", []) if isinstance(r, dict)}
    allowed = rows | {"zarr.json", ".zattrs", ".zgroup", ".zmetadata", "vendor"}
    foreign = sorted(p.name for p in path.iterdir() if p.name not in allowed)
    if foreign:
        return f"holds {foreign[0]!r}, which hcs did not write"
    return None


def _under(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies inside it (both resolved)."""
    return a == b or a.is_relative_to(b)


def check_replaceable(
    out: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    not_ours: Callable[[Path], str | None] = plate_not_ours,
) -> None:
    """Refuse to write ``out`` where that could touch an input or something hcs did not write.

    The one rule for every hcs command that writes or replaces a folder (``hcs convert``,
    ``hcs simulate``): ``out`` must not be or contain any of ``inputs``, and an existing ``out``
    must not lie inside one (a new folder may); an existing ``out`` needs ``overwrite``, and
    even then is replaced only when it is an empty folder or ``not_ours(out)`` is ``None``,
    i.e. hcs can prove it wrote it.

    Raises
    ------
    InputError
        ``out`` is, contains or lies inside an input, or exists and is not provably hcs's
        (the message names the folder and why).
    OutputExistsError
        ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    out_r = out.resolve()
    exists = out.exists() or out.is_symlink()
    for inp in inputs:
        inp_r = Path(inp).resolve()
        if _under(inp_r, out_r):
            raise InputError(
                f"{out}: is or contains the input {inp}; hcs never replaces or deletes an input"
            )
        if exists and Path(inp).is_dir() and out_r.is_relative_to(inp_r):
            raise InputError(
                f"{out}: lies inside the input {inp}; hcs never replaces anything inside an "
                "input (choose an output folder outside it)"
            )
    if exists:
        if not overwrite:
            raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
        empty = out.is_dir() and not out.is_symlink() and not any(out.iterdir())
        why = None if empty else not_ours(out)
        if why is not None:
            raise InputError(
                f"{out}: not replaced: {why}; --overwrite only replaces what hcs wrote "
                "(remove it yourself, or choose another output)"
            )


#: What an existing output file must look like to be replaced with ``--overwrite``.
_FILE_KINDS = {"parquet": "a Parquet table", "html": "a report hcs wrote"}


def file_not_ours(path: str | Path, kind: str) -> str | None:
    """Why the file ``path`` may not be replaced as an output of ``kind``, or ``None``.

    ``kind`` ``"parquet"``: a regular Parquet file (``PAR1`` magic); ``"html"``: an HTML report
    with hcs's ``generator`` tag. A symlink or a folder is never replaced.
    """
    path = Path(path)
    if path.is_symlink():
        return "a symlink"
    if not path.is_file():
        return "not a file"
    with open(path, "rb") as fh:
        head = fh.read(2048)
    if kind == "parquet" and not head.startswith(b"PAR1"):
        return "not a Parquet file"
    if kind == "html" and b'<meta name="generator" content="hcs ' not in head:
        return "not a report hcs wrote"
    return None


def check_file_replaceable(
    out: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    kind: str = "parquet",
) -> None:
    """Refuse to write the output file ``out`` over an input or over a file that is not hcs's.

    The rule for single-file outputs (``wells.parquet``, ``stats.parquet``, the report):
    ``out`` may not be one of ``inputs`` (files) nor lie inside one (folders), and an existing
    ``out`` is replaced only with ``overwrite`` and only when it is of the output's ``kind``
    (:func:`file_not_ours`): ``-o layout.csv --overwrite`` never replaces the layout.

    Raises
    ------
    InputError
        ``out`` is an input, or exists and is not of ``kind`` (the message names both).
    OutputExistsError
        ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    out_r = out.resolve()
    for inp in inputs:
        inp_r = Path(inp).resolve()
        if out_r == inp_r or (Path(inp).is_dir() and out_r.is_relative_to(inp_r)):
            raise InputError(f"{out}: is {'inside ' if out_r != inp_r else ''}an input of this "
                             f"command ({inp}); hcs never replaces an input (choose another --out)")
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise OutputExistsError(f"{out} exists (use --overwrite to replace it)")
        why = file_not_ours(out, kind)
        if why is not None:
            raise InputError(f"{out}: not replaced: {why}; --overwrite only replaces "
                             f"{_FILE_KINDS[kind]} (choose another --out)")


def _partial_owner(folder: Path) -> dict[str, Any] | None:
    return _read_json(folder / PARTIAL_MARKER)


def clean_stale_partials(out: str | Path, not_ours: Callable[[Path], str | None]) -> list[str]:
    """Remove ``OUT.partial-<pid>`` / ``OUT.old-<pid>`` folders left by killed hcs processes.

    An ``OUT.old-<pid>`` (the previous output, swapped out) while ``OUT`` is absent means the
    writer died between the two renames of the swap: it is renamed back to ``OUT``, so a killed
    write leaves the previous state.

    A leftover is removed only when hcs can prove it wrote it and its writer is gone: its marker
    file (:data:`PARTIAL_MARKER`, written first) names this host and a process that is dead (or
    whose pid was reused; :func:`hcs.records.process_alive`), or, for ``OUT.old-<pid>`` (a
    finished output being swapped out) and a partial past its marker, ``not_ours`` proves it
    is hcs's and the pid is dead here. Any other leftover is left alone and named in a warning.

    Returns
    -------
    list of str
        One line per leftover that was kept (also issued as a :class:`UserWarning`).
    """
    out = Path(out)
    parent = out.parent
    if not parent.is_dir():
        return []
    kept: list[str] = []
    prefix_p, prefix_o = f"{out.name}.partial-", f"{out.name}.old-"
    for entry in sorted(parent.iterdir()):
        name = entry.name
        if not name.startswith((prefix_p, prefix_o)):
            continue
        pid_text = name.rsplit("-", 1)[1]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or entry.is_symlink():
            continue
        owner = _partial_owner(entry) if entry.is_dir() else None
        swap = _read_json(_swap_record(out, pid_text)) if name.startswith(prefix_o) else None
        if swap is not None and swap.get("written_by") == WRITTEN_BY \
                and str(swap.get("pid")) == pid_text and swap.get("old") == name:
            # the previous output, swapped out by a writer that recorded the swap first: its
            # deletion may have been cut short, so its content no longer proves anything
            owner, dead, proven = swap, not process_alive(swap), True
        elif owner is not None and owner.get("written_by") == WRITTEN_BY \
                and str(owner.get("pid")) == pid_text:
            dead = not process_alive(owner)
            proven = True
        else:  # no marker: the name's pid on this host, and the folder must be hcs's output
            dead = not _pid_exists(int(pid_text))  # (or empty: killed before its marker)
            proven = entry.is_dir() and (not any(entry.iterdir()) or not_ours(entry) is None)
        if proven and dead:
            if name.startswith(prefix_o) and not (out.exists() or out.is_symlink()):
                # killed between the two renames of a swap: put the previous output back
                entry.rename(out)
                warnings.warn(f"{out}: restored from {entry.name}, left by a killed process",
                              stacklevel=2)
                continue
            shutil.rmtree(entry, ignore_errors=True)
            _swap_record(out, pid_text).unlink(missing_ok=True)
            continue
        why = ("its process is still running, or runs on another host" if proven
               else "hcs cannot prove it wrote it")
        kept.append(f"{entry}: left over from an earlier run, not removed ({why})")
    for rec in parent.glob(f".{out.name}.swap-*.json"):
        pid_text = rec.name.rsplit("-", 1)[1][:-len(".json")]
        info = _read_json(rec)
        if pid_text.isdigit() and int(pid_text) != os.getpid() and info is not None \
                and info.get("written_by") == WRITTEN_BY and not process_alive(info) \
                and not (parent / str(info.get("old", ""))).exists():
            rec.unlink(missing_ok=True)
    for line in kept:
        warnings.warn(line, stacklevel=2)
    return kept


def _swap_record(out: Path, pid: str | int) -> Path:
    """``.OUT.swap-<pid>.json``: written before a writer swaps ``OUT`` out to
    ``OUT.old-<pid>``, removed once the old one is deleted, so a writer killed while deleting
    it leaves proof that the half-deleted ``OUT.old-<pid>`` is hcs's."""
    return out.parent / f".{out.name}.swap-{pid}.json"


def _pid_exists(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid)


@contextmanager
def atomic_dir(
    out: str | Path,
    *,
    inputs: Iterable[str | Path] = (),
    overwrite: bool = False,
    not_ours: Callable[[Path], str | None] = plate_not_ours,
) -> Iterator[Path]:
    """Build a folder in ``OUT.partial-<pid>`` and rename it to ``out`` when the block succeeds.

    Leftovers of killed hcs processes next to ``out`` are removed first
    (:func:`clean_stale_partials`), then :func:`check_replaceable` decides whether ``out`` may
    be written (again just before the final rename). The partial
    folder gets its marker file first; on any error (or Ctrl-C) it is removed again, so a
    failed write leaves nothing that looks like an output, and a replaced ``out`` is swapped
    out only once the new one is complete.

    Yields
    ------
    Path
        The partial folder to fill (it exists and holds only :data:`PARTIAL_MARKER`, which is
        removed before the rename).
    """
    out = Path(out)
    inputs = list(inputs)
    clean_stale_partials(out, not_ours)  # first: it may restore a swapped-out OUT
    check_replaceable(out, inputs=inputs, overwrite=overwrite, not_ours=not_ours)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f"{out.name}.partial-{os.getpid()}"
    if partial.exists() or partial.is_symlink():  # left by a dead process whose pid we reuse
        owner = _partial_owner(partial) if partial.is_dir() and not partial.is_symlink() else None
        if (owner or {}).get("written_by") != WRITTEN_BY and not_ours(partial) is not None:
            raise InputError(f"{partial}: exists and hcs cannot prove it wrote it; remove it")
        shutil.rmtree(partial)
    partial.mkdir()
    try:
        marker = {**process_record(), "written_by": WRITTEN_BY, "target": str(out)}
        (partial / PARTIAL_MARKER).write_text(json.dumps(marker), encoding="utf-8")
        yield partial
        (partial / PARTIAL_MARKER).unlink()
        if out.exists() or out.is_symlink():
            check_replaceable(out, inputs=inputs, overwrite=overwrite, not_ours=not_ours)
            old = out.parent / f"{out.name}.old-{os.getpid()}"
            record = _swap_record(out, os.getpid())
            record.write_text(json.dumps({**process_record(), "written_by": WRITTEN_BY,
                                          "old": old.name}), encoding="utf-8")
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old, ignore_errors=True)
            record.unlink(missing_ok=True)
        else:
            partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
