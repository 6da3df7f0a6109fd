"""What a run folder says about itself: its ``run.json`` and the plate it was made from.

A foundation module (imports only :mod:`hcs.errors`), so the report, the annotation server
and the trainers find a run's plate the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hcs.errors import InputError

__all__ = ["read_run_json", "run_plate_path"]


def read_run_json(run_dir: str | Path) -> dict[str, Any]:
    """``RUN_DIR/run.json`` as a dict (``{}`` when the run has none).

    Raises
    ------
    InputError
        The file is not valid JSON or not a JSON object (one line naming it).
    """
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(run, dict):
        raise InputError(f"{path}: expected a JSON object")
    return run


def run_plate_path(run: dict[str, Any], run_dir: str | Path) -> Path | None:
    """The plate folder a run was made from, or ``None`` when ``run.json`` names none that
    exists.

    ``run["plate"]`` is a path (or a dict with ``path``); a relative path that does not exist
    from the working folder is taken relative to the run folder.

    Examples
    --------
    >>> run_plate_path({}, ".") is None
    True
    >>> run_plate_path({"plate": {"path": "."}}, "/").is_dir()
    True
    """
    p = run.get("plate")
    p = p.get("path") if isinstance(p, dict) else p
    if not p:
        return None
    path = Path(str(p))
    if not path.is_absolute() and not path.exists():
        path = Path(run_dir) / path
    return path if path.is_dir() else None
