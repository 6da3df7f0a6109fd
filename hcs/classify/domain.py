"""A model's domain: what its training cells looked like, and how far a plate's fields are from it.

At training (:func:`domain_stats`) the card's ``domain`` records, per measurement feature the
domain is watched on (the nuclear area in pixels and the mean nuclear intensity of each input
channel), the training cells' median, SD and 5/95% quantiles, and the 5% quantile of the
max-probability of held-out (cross-validated) cells.

After a run (:func:`field_domain`) each field gets, per feature, the shift of its median in
training-SD units and the fraction of its cells whose max-probability is below the held-out 5%
quantile (about 5% on the model's own domain). A field is off the domain when a shift exceeds
:data:`MAX_SHIFT_SD` or that fraction exceeds :data:`MAX_LOW_CONFIDENCE`; the plate
(:func:`domain_verdict`) when more than :data:`MAX_FIELDS_OFF` of its fields are. A model trained
on simulated cells (``training_data: simulated`` in its domain, or ``hcs simulate`` as its data
source) is off the domain of any plate that is not simulated, by design.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["HINT", "MAX_FIELDS_OFF", "MAX_LOW_CONFIDENCE", "MAX_SHIFT_SD", "card_domain",
           "domain_features", "domain_stats", "domain_verdict", "field_domain",
           "plate_is_simulated", "trained_on_simulation"]

MAX_SHIFT_SD = 2.0
MAX_LOW_CONFIDENCE = 0.25
MAX_FIELDS_OFF = 0.25
HINT = ("label your own cells: hcs annotate RUN --out ANN --classes ... then hcs train "
        "classifier --labels ANN/labels.csv --run RUN --kind features|cnn --out MODEL")


def domain_features(roles: dict[str, str], columns: list[str]) -> dict[str, str]:
    """Domain feature key -> cell-table column: the nuclear area (pixels, as the crops see it;
    else µm²) and the mean nuclear intensity of each input role's plate channel (``roles``:
    role -> plate channel), those present in ``columns``.

    Examples
    --------
    >>> domain_features({"dna": "DAPI"}, ["Nuclei_AreaShape_AreaUm2",
    ...                 "Nuclei_Intensity_MeanIntensity_DAPI"])
    {'area': 'Nuclei_AreaShape_AreaUm2', 'intensity[dna]': 'Nuclei_Intensity_MeanIntensity_DAPI'}
    """
    from hcs.measure import safe_name

    out: dict[str, str] = {}
    for col in ("Nuclei_AreaShape_Area", "Nuclei_AreaShape_AreaUm2"):  # pixels: as crops see it
        if col in columns:
            out["area"] = col
            break
    for role, ch in roles.items():
        col = f"Nuclei_Intensity_MeanIntensity_{safe_name(ch)}"
        if col in columns:
            out[f"intensity[{role}]"] = col
    return out


def domain_stats(values: pd.DataFrame, max_prob: np.ndarray | None,
                 training_data: str = "real") -> dict[str, Any]:
    """The card's ``domain``: per column of ``values`` (training cells, one column per domain
    feature key) median, SD, 5/95% quantiles; the held-out max-probability quantiles."""
    feats = {}
    for key in values.columns:
        v = pd.to_numeric(values[key], errors="coerce").to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v) < 2:
            continue
        q05, med, q95 = np.quantile(v, [0.05, 0.5, 0.95])
        feats[str(key)] = {"median": float(med), "sd": float(v.std(ddof=1)) or 1.0,
                           "q05": float(q05), "q95": float(q95)}
    out: dict[str, Any] = {"training_data": training_data, "n_cells": int(len(values)),
                           "features": feats}
    if max_prob is not None and len(max_prob):
        mp = np.asarray(max_prob, float)
        out["max_prob"] = {"q05": float(np.quantile(mp, 0.05)),
                           "median": float(np.median(mp)), "n": int(len(mp))}
    return out


def trained_on_simulation(card: Any) -> bool:
    """True when the card says its training cells were simulated."""
    dom = getattr(card, "domain", None) or {}
    if isinstance(dom, dict) and dom.get("training_data") == "simulated":
        return True
    training = getattr(card, "training", None) or {}
    data = training.get("data") if isinstance(training, dict) else None
    return isinstance(data, dict) and str(data.get("source", "")).strip().lower() == \
        "hcs simulate"


def plate_is_simulated(attrs: dict[str, Any]) -> bool:
    """True when a plate's ``hcs`` provenance says it was converted from an ``hcs simulate``
    output (its export lies in a folder with ``truth/``, or the instrument is ``hcs``'s
    simulated one)."""
    source = attrs.get("source")
    if source and (Path(str(source)).parent / "truth").is_dir():
        return True
    text = json.dumps([attrs.get("instrument"), attrs.get("attrs")], default=str).lower()
    return "hcs simulated" in text or '"simulated"' in text


def card_domain(card: Any) -> dict[str, Any]:
    """The card's domain statistics (``{}`` when it has none)."""
    return dict(getattr(card, "domain", None) or {})


def field_domain(cells: pd.DataFrame, domain: dict[str, Any], columns: dict[str, str]
                 ) -> pd.DataFrame:
    """One row per field: ``well, field, n_cells``, ``shift_<key>`` (field median minus training
    median, in training SDs) per domain feature (``columns``: key -> cell-table column),
    ``max_abs_shift``, ``low_confidence`` (fraction of cells with ``confidence`` below the
    held-out 5% quantile; NaN without), ``off`` and ``reason``."""
    feats = domain.get("features", {})
    q05 = (domain.get("max_prob") or {}).get("q05")
    rows = []
    for (well, field), g in cells.groupby(["well", "field"], sort=True):
        row: dict[str, Any] = {"well": str(well), "field": int(field), "n_cells": int(len(g))}
        shifts = {}
        for key, col in columns.items():
            st = feats.get(key)
            if st is None or col not in g:
                continue
            v = pd.to_numeric(g[col], errors="coerce").to_numpy(float)
            v = v[np.isfinite(v)]
            s = (float(np.median(v)) - st["median"]) / st["sd"] if len(v) else float("nan")
            shifts[key] = s
            row[f"shift_{key}"] = s
        finite = {k: abs(s) for k, s in shifts.items() if np.isfinite(s)}
        row["max_abs_shift"] = max(finite.values()) if finite else float("nan")
        row["worst_feature"] = max(finite, key=finite.get) if finite else ""  # type: ignore[arg-type]
        low = float("nan")
        if q05 is not None and "confidence" in g and len(g):
            low = float((g["confidence"].to_numpy(float) < q05).mean())
        row["low_confidence"] = low
        reasons = []
        if finite and row["max_abs_shift"] > MAX_SHIFT_SD:
            reasons.append(f"{row['worst_feature']} shifted {shifts[row['worst_feature']]:+.1f} SD")
        if np.isfinite(low) and low > MAX_LOW_CONFIDENCE:
            reasons.append(f"{low:.0%} of cells below the held-out 5% confidence")
        row["off"] = bool(reasons)
        row["reason"] = "; ".join(reasons)
        rows.append(row)
    return pd.DataFrame(rows)


def domain_verdict(model: str, fields: pd.DataFrame, domain: dict[str, Any],
                   simulated_model: bool, simulated_plate: bool) -> dict[str, Any]:
    """``domain.json``: ``model``, ``status`` (``in_domain`` / ``off_domain`` / ``unknown``),
    a one-sentence ``summary`` with the numbers, ``fields``, ``fields_off``, ``evidence`` and
    ``hint``."""
    n = int(len(fields))
    n_off = int(fields["off"].sum()) if n and "off" in fields else 0
    evidence: dict[str, Any] = {"simulated_model": simulated_model,
                                "simulated_plate": simulated_plate,
                                "thresholds": {"max_shift_sd": MAX_SHIFT_SD,
                                               "max_low_confidence": MAX_LOW_CONFIDENCE,
                                               "max_fields_off": MAX_FIELDS_OFF}}
    if n:
        for c in [c for c in fields.columns if c.startswith("shift_")]:
            evidence[f"median_{c}"] = float(np.nanmedian(fields[c].to_numpy(float)))
        if fields["low_confidence"].notna().any():
            evidence["median_low_confidence"] = float(np.nanmedian(fields["low_confidence"]))
        evidence["training_max_prob_q05"] = (domain.get("max_prob") or {}).get("q05")
    parts = []
    if simulated_model and not simulated_plate:
        status = "off_domain"
        parts.append(f"model {model} was trained on simulated cells only and this plate is not "
                     "simulated")
    elif not domain.get("features") and not domain.get("max_prob"):
        status = "unknown"
        parts.append(f"model {model} records no statistics of its training cells")
    elif n == 0:
        status = "unknown"
        parts.append("no field with cells")
    else:
        status = "off_domain" if n_off / n > MAX_FIELDS_OFF else "in_domain"
    if n and status != "unknown" or (n and simulated_model and not simulated_plate):
        worst = fields.loc[fields["max_abs_shift"].fillna(-1).idxmax()] if \
            fields["max_abs_shift"].notna().any() else None
        txt = f"{n_off} of {n} fields off the model's domain"
        if worst is not None:
            txt += (f" (largest shift: {worst['worst_feature']} {worst['max_abs_shift']:.1f} SD "
                    f"in {worst['well']} field {worst['field']}")
            if "median_low_confidence" in evidence:
                txt += (f"; median {evidence['median_low_confidence']:.0%} of a field's cells "
                        "below the held-out 5% confidence, 5% expected")
            txt += ")"
        parts.append(txt)
    return {"model": model, "status": status, "summary": "; ".join(parts) + ".",
            "fields": n, "fields_off": n_off, "evidence": evidence, "hint": HINT}
