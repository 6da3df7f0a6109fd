"""The report's model-domain section: ``RUN/domain.json`` (:mod:`hcs.classify.domain`) as a
warning when the plate is off the model's domain, with the evidence and the fields concerned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["domain_section", "read_domain"]

_TITLES = {"off_domain": "Warning: this plate is off the model's domain",
           "in_domain": "Model domain: the plate is within the model's training domain",
           "unknown": "Model domain: unknown"}


def read_domain(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN/domain.json`` (``None`` when the run has none or it cannot be read)."""
    path = Path(run_dir) / "domain.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) and "status" in data else None


def domain_section(run_dir: str | Path) -> dict[str, Any] | None:
    """Section dict (``id`` ``domain``): status, summary, hint, evidence and the fields off the
    domain (at most 20); ``None`` when the run has no ``domain.json``."""
    dom = read_domain(run_dir)
    if dom is None:
        return None
    status = str(dom.get("status"))
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": f"{status.replace('_', ' ').upper()}: {dom.get('summary', '')}"}]
    if status != "in_domain":
        blocks.append({"type": "text", "text": f"What to do: {dom.get('hint', '')}"})
    ev = dom.get("evidence") or {}
    items = [("model", str(dom.get("model"))), ("fields", str(dom.get("fields"))),
             ("fields off the domain", str(dom.get("fields_off")))]
    for k, v in ev.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a} {b}" for a, b in v.items())
        elif isinstance(v, float):
            v = f"{v:.3g}"
        items.append((k.replace("_", " "), str(v)))
    blocks.append({"type": "kv", "items": items})
    table = Path(run_dir) / "domain.parquet"
    if table.is_file():
        fields = pd.read_parquet(table)
        if "off" in fields and fields["off"].any():
            off = fields[fields["off"]].head(20)
            blocks.append({"type": "text", "text": f"Fields off the domain "
                           f"({int(fields['off'].sum())}; first {len(off)} shown)"})
            cols = {c: c.replace("_", " ") for c in ("well", "field", "n_cells",
                                                     "max_abs_shift", "low_confidence",
                                                     "reason") if c in off}
            blocks.append({"type": "table", "columns": list(cols.values()), "sortable": True,
                           "rows": [[_cell(r[c]) for c in cols] for _, r in off.iterrows()]})
    return {"id": "domain", "title": _TITLES.get(status, "Model domain"), "blocks": blocks,
            "status": status}


def _cell(v: Any) -> dict[str, Any]:
    """A table cell as the template shows it (text and sort key)."""
    if isinstance(v, float):
        return {"text": "" if pd.isna(v) else f"{v:.3g}", "sort": None if pd.isna(v) else v}
    return {"text": str(v), "sort": v if isinstance(v, int) else str(v)}
