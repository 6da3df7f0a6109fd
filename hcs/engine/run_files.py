"""Which files of a run folder hcs wrote, and removing a run without touching anything else.

hcs deletes only what it can prove it wrote. A run folder is hcs's when its ``run.json`` is one
:func:`hcs.engine.run.run_plate` wrote (a JSON object with ``hcs_version`` and
``plate_metadata_sha256``), or when it holds nothing but a run lock and temporary files (a run
killed before it wrote ``run.json``). Inside it, only the files named as hcs names them
(:func:`is_run_file`) are removed; any other file makes :func:`remove_run` refuse, naming it, and
nothing is deleted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hcs.errors import InputError

__all__ = ["is_run_file", "check_run_removable", "remove_run"]

#: Files hcs writes at the top of a run folder (``run.json``, the lock, the tables).
TOP_FILES = frozenset({"run.json", "run.lock", "failures.parquet", "wells.parquet",
                       "stats.parquet", "embeddings.parquet", "fields.parquet",
                       "domain.json", "domain.parquet"})
# what follows ``.<name>.`` in a temporary file of an atomic write: ``<host>-<pid>.<random>.tmp``
# (hcs.atomic; the host name may hold dots and dashes), ``<random>.tmp`` (older hcs.atomic) or
# ``<pid>.tmp`` (hcs.engine.run's run.json)
_TMP_TAIL = re.compile(r"^(?:[^/]+-\d+\.)?[A-Za-z0-9_]+\.tmp$")
_CELLS = re.compile(r"^[0-9]+\.parquet$")


def _own_name(name: str, allowed: re.Pattern[str] | frozenset[str]) -> bool:
    def ok(n: str) -> bool:
        return n in allowed if isinstance(allowed, frozenset) else bool(allowed.match(n))

    if ok(name):
        return True
    if not name.startswith("."):
        return False
    body = name[1:]  # ``<name>.<tail>``: try every split at a dot
    return any(c == "." and ok(body[:i]) and bool(_TMP_TAIL.match(body[i + 1:]))
               for i, c in enumerate(body))


def is_run_file(rel: str | Path) -> bool:
    """Whether ``rel`` (relative to a run folder) is a name hcs gives a file it writes there.

    Examples
    --------
    >>> [is_run_file(p) for p in ("run.json", "cells/B03/2.parquet",
    ...                           "cells/B03/.2.parquet.k3j_x9.tmp", "notes.txt",
    ...                           "cells/B03/notes.parquet",
    ...                           "cells/B03/.2.parquet.vm-23440._jt6.tmp",
    ...                           ".run.json.n1.lab.org-7.a_1.tmp", ".run.json.812.tmp",
    ...                           "cells/B03/.notes.vm-1.x.tmp")]
    [True, True, True, False, False, True, True, True, False]
    """
    parts = Path(rel).parts
    if len(parts) == 1:
        return _own_name(parts[0], TOP_FILES)
    if len(parts) == 3 and parts[0] == "cells" and _is_well(parts[1]):
        return _own_name(parts[2], _CELLS)
    return False


def _is_well(name: str) -> bool:
    from hcs.plate import parse_well, well_name

    try:
        return well_name(*parse_well(name)) == name
    except (InputError, ValueError):
        return False


def _is_hcs_run_json(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "hcs_version" in data and "plate_metadata_sha256" in data


def check_run_removable(run_dir: str | Path) -> list[Path]:
    """The files :func:`remove_run` would delete; raise if the folder holds anything else.

    Raises
    ------
    InputError
        One line naming the first file hcs did not write (or the folder, when it is not an
        hcs run folder at all).
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return []
    if run_dir.is_symlink() or not run_dir.is_dir():
        raise InputError(f"{run_dir}: not a run folder written by hcs (not a plain folder); "
                         "move it away or choose another --out")
    files: list[Path] = []
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if p.is_symlink() or (p.is_file() and not is_run_file(rel)) or not (
                p.is_file() or p.is_dir()):
            raise InputError(f"{p}: not a file hcs wrote; hcs removes a previous run only when "
                             f"every file in {run_dir} is its own. Move the file away (or choose "
                             "another --out) and run again")
        if p.is_dir() and not (rel.parts[0] == "cells" and (len(rel.parts) == 1 or (
                len(rel.parts) == 2 and _is_well(rel.parts[1])))):
            raise InputError(f"{p}: not a folder hcs wrote; move it away (or choose another "
                             "--out) and run again")
        if p.is_file():
            files.append(p)
    names = {f.relative_to(run_dir).as_posix() for f in files}
    only_lock = names <= {"run.lock"} | {n for n in names if n.startswith(".")}
    if not only_lock and not _is_hcs_run_json(run_dir / "run.json"):
        raise InputError(f"{run_dir}: no run.json written by hcs, so hcs cannot prove it wrote "
                         "this folder; move it away (or choose another --out) and run again")
    return files


def remove_run(run_dir: str | Path) -> int:
    """Delete a previous run in ``run_dir``: its own files and its empty folders, nothing else.

    Every file is checked first (:func:`check_run_removable`), so a folder holding any other
    file is left exactly as it was. Returns the number of files removed.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "run"
    >>> (d / "cells" / "B03").mkdir(parents=True)
    >>> _ = (d / "run.json").write_text('{"hcs_version": "0", "plate_metadata_sha256": "x"}')
    >>> _ = (d / "cells" / "B03" / "0.parquet").write_bytes(b"")
    >>> remove_run(d), d.exists()
    (2, False)
    """
    run_dir = Path(run_dir)
    files = check_run_removable(run_dir)
    # run.json last: a removal interrupted half-way still leaves a folder provably ours
    files.sort(key=lambda p: p.name == "run.json")
    for f in files:
        f.unlink(missing_ok=True)
    for d in sorted((p for p in run_dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        d.rmdir()
    if run_dir.exists():
        run_dir.rmdir()
    return len(files)
