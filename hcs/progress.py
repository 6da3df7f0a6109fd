"""Progress for long work: a rich bar on a terminal, periodic plain lines otherwise.

On a cluster or in CI, stderr is a log file and an animated bar prints nothing useful, so
:class:`LineProgress` writes one line every ``every`` seconds (and at the end) with the count,
the rate, the extra fields (cells/s, failures ...) and the estimated time left. It offers the
small part of :class:`rich.progress.Progress` that hcs uses (``add_task``, ``update``,
``start``/``stop`` and the context manager), so callers build either with :func:`make_progress`.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO


class LineProgress:
    """Periodic progress lines: ``label: 12/96 (12%), 3.1/s, failed 0, 40 s, ETA 271 s``.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with LineProgress("fields", every=0, file=out) as p:
    ...     t = p.add_task("fields", total=2, failed=0)
    ...     p.update(t, advance=2, failed=1)
    >>> out.getvalue().splitlines()[-1].startswith("fields: 2/2 (100%)")
    True
    """

    def __init__(self, label: str, every: float = 10.0, file: TextIO | None = None) -> None:
        self.label, self.every = label, every
        self.file = file if file is not None else sys.stderr
        self.total: float | None = None
        self.completed = 0.0
        self.fields: dict[str, Any] = {}
        self.start_t = self.last = time.perf_counter()
        self.lock = threading.Lock()

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        self.total, self.fields = total, dict(fields)
        return 0

    def update(self, task: int = 0, advance: float = 0, **fields: Any) -> None:
        with self.lock:
            self.completed += advance
            self.fields.update(fields)
            if time.perf_counter() - self.last >= self.every:
                self._line()

    def start(self) -> None:
        self.start_t = self.last = time.perf_counter()

    def stop(self) -> None:
        self._line()

    def __enter__(self) -> LineProgress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _line(self) -> None:
        self.last = time.perf_counter()
        el = max(self.last - self.start_t, 1e-9)
        done = f"{self.completed:g}"
        if self.total:
            done += f"/{self.total:g} ({100 * self.completed / self.total:.0f}%)"
        parts = [f"{self.label}: {done}", f"{self.completed / el:.2f}/s"]
        for k, v in self.fields.items():
            parts.append(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}")
        parts.append(f"{el:.0f} s")
        if self.total and 0 < self.completed < self.total:
            parts.append(f"ETA {el * (self.total - self.completed) / self.completed:.0f} s")
        print(", ".join(parts), file=self.file, flush=True)


def make_progress(label: str, rich_columns: list[Any], enabled: bool = True) -> Any:
    """A rich ``Progress`` with ``rich_columns`` on a terminal, else a :class:`LineProgress`.

    Disabled progress is a rich ``Progress(disable=True)``, which prints nothing.
    """
    from rich.console import Console
    from rich.progress import Progress

    if enabled and not sys.stderr.isatty():
        return LineProgress(label)
    return Progress(*rich_columns, console=Console(stderr=True), disable=not enabled,
                    transient=False)
