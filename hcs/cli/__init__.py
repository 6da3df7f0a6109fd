"""The ``hcs`` command line: every command is a thin wrapper over one library function.

Commands live in one module per stage (:mod:`hcs.cli.ingest`, :mod:`hcs.cli.stats`,
:mod:`hcs.cli.models`, :mod:`hcs.cli.runs`); importing this package registers them all on
:data:`app`. The options of the stage commands (convert, run, aggregate, stats, report, analyze)
are built by :mod:`hcs.cli.options` from the parameter models of :mod:`hcs.params`.
"""

from __future__ import annotations

import importlib
import sys

from hcs.cli.app import app, user_errors

# importing a module registers its commands; `hcs --help` lists them in pipeline order
for _module in ("ingest", "stats", "models", "runs", "annotate", "export"):
    importlib.import_module(f"hcs.cli.{_module}")

__all__ = ["app", "user_errors", "run"]


def run() -> None:  # pragma: no cover - console entry for `python -m hcs`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())

