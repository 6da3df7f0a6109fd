"""Which stages of ``hcs analyze`` are current: fingerprints and a stage manifest.

A stage is *current* when its output exists and is the one it recorded, and it was made from the
same inputs with the same parameters as now. ``DIR/analyze.json`` records, for every stage that
finished, the fingerprints of its inputs, its parameters and the fingerprint of its output. A
stage's output fingerprint is an input of the next stage, so a stage that re-runs and changes its
output makes every later stage re-run; one that re-runs and writes the same bytes does not.

Fingerprints are cheap: the sha256 of a small file (a layout, a model card, ``wells.parquet``,
the plate's ``zarr.json``, which holds the conversion's provenance and time), or, for a folder of
many files (an instrument export, a run's ``cells/``), the sha256 of the sorted listing of its
files with their sizes and modification times. Every output of every stage is written
atomically, so an output that exists is complete.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcs.atomic import atomic_write_text
from hcs.errors import InputError
from hcs.records import sha256_file, utc_timestamp

__all__ = ["MANIFEST", "Pipeline", "file_sha256", "json_normal", "tree_fingerprint"]

#: The manifest file inside an analysis folder.
MANIFEST = "analyze.json"


def file_sha256(path: str | Path) -> str | None:
    """sha256 of a file's bytes, or None when it does not exist.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.txt"
    >>> file_sha256(p) is None
    True
    >>> _ = p.write_text("abc")
    >>> file_sha256(p)[:12]
    'ba7816bf8f01'
    """
    path = Path(path)
    return sha256_file(path) if path.is_file() else None


def tree_fingerprint(folder: str | Path, pattern: str = "**/*") -> str | None:
    """sha256 of the sorted ``(relative path, size, mtime)`` listing of the files under
    ``folder`` matching ``pattern`` (hidden temporary files ignored); None when there is none.

    A file added, removed, rewritten or touched changes it; reading the bytes is not needed, so
    an export of 100,000 images is fingerprinted in about a second.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    rows = []
    for p in folder.glob(pattern):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        st = p.stat()
        rows.append(f"{rel.as_posix()}\t{st.st_size}\t{st.st_mtime_ns}")
    if not rows:
        return None
    return hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()


def json_normal(obj: Any) -> Any:
    """JSON-normal form (tuples -> lists, paths -> str) so recorded and current compare equal."""
    return json.loads(json.dumps(obj, default=str, sort_keys=True))


@dataclass
class StageOutcome:
    """What one stage did: ``ran`` (False: it was current and skipped), why, and how long."""

    name: str
    ran: bool
    reason: str
    seconds: float = 0.0


@dataclass
class Pipeline:
    """The stages of one analysis folder and their manifest (``DIR/analyze.json``).

    ``step`` runs a stage unless it is current (see the module docstring) and records it.
    """

    folder: Path
    log: Callable[[str], None] = print
    force: bool = False
    outcomes: list[StageOutcome] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)
    #: more top-level entries of the manifest (a screen's ``plates``)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)
        path = self.folder / MANIFEST
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.records = dict(data.get("stages", {}))
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
                raise InputError(f"{path}: not a valid stage manifest ({exc}); delete it to "
                                 "re-run every stage") from None

    def record(self, name: str) -> dict[str, Any] | None:
        """The manifest entry of a stage (None if it never finished or started)."""
        return self.records.get(name)

    def why_stale(self, name: str, inputs: dict[str, Any], params: dict[str, Any],
                  output: str | None) -> str | None:
        """None if the stage is current, else the reason it must run."""
        rec = self.records.get(name)
        if self.force:
            return "forced"
        if rec is None:
            return "no output yet" if output is None else "not recorded before"
        if rec.get("status") != "done":
            return "not finished before" if rec.get("status") == "running" else rec["status"]
        if output is None:
            return "output missing"
        if rec.get("params") != json_normal(params):
            changed = sorted(k for k in set(rec.get("params", {})) | set(json_normal(params))
                             if rec.get("params", {}).get(k) != json_normal(params).get(k))
            return f"parameters changed ({', '.join(changed)})"
        if rec.get("inputs") != json_normal(inputs):
            changed = sorted(k for k in set(rec.get("inputs", {})) | set(json_normal(inputs))
                             if rec.get("inputs", {}).get(k) != json_normal(inputs).get(k))
            return f"inputs changed ({', '.join(changed)})"
        if rec.get("output") != output:
            return "output changed since it was written"
        return None

    def step(self, name: str, inputs: dict[str, Any], params: dict[str, Any],
             output: Callable[[], str | None], action: Callable[[], Any]) -> StageOutcome:
        """Run ``action`` unless stage ``name`` is current; record it; return what happened.

        ``inputs`` maps input names to fingerprints, ``params`` holds the parameters that
        change the output, ``output()`` fingerprints the output (None when absent). The entry
        is written as ``running`` before the action and ``done`` after it, so a crashed stage
        is re-run (the run stage resumes) next time.
        """
        reason = self.begin(name, inputs, params, output())
        if reason is None:
            return self.outcomes[-1]
        t0 = time.perf_counter()
        action()
        return self.finish(name, output(), reason, time.perf_counter() - t0)

    def begin(self, name: str, inputs: dict[str, Any], params: dict[str, Any],
              output: str | None) -> str | None:
        """The first half of :meth:`step`: None (logged and counted as skipped) when the stage
        is current, else the reason it runs, with its entry recorded as ``running``. A caller
        that runs several folders' stages as one piece of work (the run stage of a screen)
        calls :meth:`finish` for each after it."""
        reason = self.why_stale(name, inputs, params, output)
        n = len(self.outcomes) + 1
        if reason is None:
            self.log(f"[{n}] {name}: current, skipped")
            self.outcomes.append(StageOutcome(name, False, "current"))
            return None
        self.log(f"[{n}] {name}: running ({reason})")
        self.records[name] = {"status": "running", "inputs": json_normal(inputs),
                              "params": json_normal(params), "started": utc_timestamp()}
        self.save()
        return reason

    def finish(self, name: str, output: str | None, reason: str,
               seconds: float) -> StageOutcome:
        """Record a stage begun with :meth:`begin` as done with ``output``."""
        self.records[name].update(status="done", output=output, finished=utc_timestamp(),
                                  seconds=round(seconds, 2))
        self.save()
        n = len(self.outcomes) + 1
        self.log(f"[{n}] {name}: done in {seconds:.1f} s")
        outcome = StageOutcome(name, True, reason, seconds)
        self.outcomes.append(outcome)
        return outcome

    def mark_incomplete(self, name: str, why: str) -> None:
        """Keep a finished stage's record but make it stale (e.g. a run with failed fields)."""
        if name in self.records:
            self.records[name]["status"] = f"incomplete: {why}"
            self.save()

    def save(self) -> None:
        from hcs import __version__

        data = {"hcs_version": __version__, "updated": utc_timestamp(), **self.extra,
                "stages": self.records}
        atomic_write_text(self.folder / MANIFEST, json.dumps(data, indent=2, default=str))

