"""After a run: how far each field is from the model's domain (``RUN/domain.parquet``, one row
per field, and ``RUN/domain.json``, the verdict; :mod:`hcs.classify.domain`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["write_domain"]


def _read_cells(run_dir: Path, columns: list[str]) -> pd.DataFrame:
    import pyarrow.parquet as pq

    parts = []
    for f in sorted((run_dir / "cells").glob("*/*.parquet")):
        if f.name.startswith("."):
            continue
        have = set(pq.read_schema(f).names)
        parts.append(pd.read_parquet(f, columns=[c for c in columns if c in have]))
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def write_domain(run_dir: str | Path, card: Any, plate_attrs: dict[str, Any],
                 plate_channels: list[str], mapping: dict[str, str] | None = None
                 ) -> dict[str, Any]:
    """Compare the run's fields with the domain of ``card``; write and return ``domain.json``.

    ``plate_attrs`` is the plate's ``hcs`` provenance (is it simulated?), ``plate_channels``
    its channel names and ``mapping`` the run's ``--channels`` (role -> plate channel).
    """
    import pyarrow.parquet as pq

    from hcs.atomic import atomic_write_text
    from hcs.classify.domain import (
        domain_features,
        domain_verdict,
        field_domain,
        plate_is_simulated,
        trained_on_simulation,
    )
    from hcs.engine.model import plate_channel_for

    run_dir = Path(run_dir)
    domain = dict(getattr(card, "domain", None) or {})
    roles = {}
    for c in getattr(card, "channels", []) or []:
        role = c if isinstance(c, str) else c.name
        try:
            roles[role] = plate_channels[plate_channel_for(role, plate_channels, mapping)]
        except Exception:  # noqa: BLE001 - a role the run did not map: no intensity feature
            continue
    files = sorted((run_dir / "cells").glob("*/*.parquet"))
    names = list(pq.read_schema(files[0]).names) if files else []
    columns = domain_features(roles, names)
    cells = _read_cells(run_dir, ["well", "field", "confidence", *columns.values()])
    fields = field_domain(cells, domain, columns)
    if fields.empty:
        fields = pd.DataFrame({"well": pd.Series(dtype="string"),
                               "field": pd.Series(dtype="int64"),
                               "off": pd.Series(dtype=bool)})
    verdict = domain_verdict(str(card.name), fields, domain, trained_on_simulation(card),
                             plate_is_simulated(plate_attrs))
    from hcs.engine.tasks import atomic_write_parquet

    atomic_write_parquet(fields, run_dir / "domain.parquet")
    atomic_write_text(run_dir / "domain.json", json.dumps(verdict, indent=1, default=float) + "\n")
    return verdict
