"""Plate layout files -> one tidy table, one row per well, validated against the plate geometry.

Four formats are read (the format is detected from the content, see :func:`read_layout`):

- **tidy CSV**: one row per well, ``well, condition, construct, dose, dose_unit, replicate, role``
  (only ``well`` is required; other columns are kept as extra layout columns; an optional ``plate``
  column makes one file describe several plates);
- **grid CSV** (plate map): one grid per variable, the top-left cell names the variable, the
  header row lists the columns ``1..N`` and each following line starts with a row letter;
  grids are separated by blank lines;
- **Harmony assay layout XML** (``Assaylayout/*.xml``): one ``Layer`` per variable;
- **row/col CSV** such as operetta-compose's ``drug_layout.csv``
  (``row;col;drug;concentration;unit``).

Every error names the file and line (or the layer and well for XML) at fault; the errors of
single lines or wells are collected and raised together, so one run lists them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from hcs.errors import InputError
from hcs.layout_files import (
    csv_lines,
    detect_format,
    norm_name,
    records_grid,
    records_harmony,
    records_tidy,
)
from hcs.plate import PlateGeometry, parse_well, well_name

#: Columns every layout table has, in this order (extra columns follow).
LAYOUT_COLUMNS: list[str] = [
    "well", "row", "col", "condition", "construct", "dose", "dose_unit", "replicate", "role",
]
#: Allowed well roles.
ROLES: tuple[str, ...] = ("sample", "negative_control", "positive_control", "empty")

_ROLE_ALIASES = {
    "sample": "sample", "treatment": "sample", "test": "sample",
    "negative_control": "negative_control", "negative": "negative_control",
    "neg": "negative_control", "neg_control": "negative_control", "nc": "negative_control",
    "positive_control": "positive_control", "positive": "positive_control",
    "pos": "positive_control", "pos_control": "positive_control", "pc": "positive_control",
    "empty": "empty", "blank": "empty", "none": "empty", "unused": "empty",
}


def _where(path: Path, line: object) -> str:
    return f"{path}:{line}" if isinstance(line, int) else f"{path}: {line}"


def _tidy(records: list[dict], path: Path, geometry: PlateGeometry | None,
          errors: list[str]) -> pd.DataFrame:
    """The layout table; every bad record is added to ``errors`` (all are raised at once)."""
    if not records and not errors:
        raise InputError(f"{path}: the layout lists no wells")
    seen: dict[tuple, object] = {}
    good, coords = [], []
    for rec in records:
        where = _where(path, rec["_line"])
        if rec.get("well") is None:
            errors.append(f"{where}: the well is empty")
            continue
        try:
            r, c = parse_well(rec["well"])
        except InputError as exc:
            errors.append(f"{where}: {exc}")
            continue
        rec["well"] = well_name(r, c)
        key = (rec.get("plate"), rec["well"])
        if key in seen:
            errors.append(f"{where}: well {rec['well']} is listed twice"
                          f" (first at {_where(path, seen[key])})")
            continue
        seen[key] = rec["_line"]
        good.append(rec)
        coords.append((r, c))
    if geometry is None and coords:
        try:
            geometry = PlateGeometry.smallest_fitting(max(r for r, _ in coords),
                                                      max(c for _, c in coords))
        except InputError:  # the largest plate made; each well beyond it is named below
            geometry = PlateGeometry.from_format(1536)
    records = []
    for rec, (r, c) in zip(good, coords, strict=True):
        if not geometry.contains(r, c):
            errors.append(f"{_where(path, rec['_line'])}: well {rec['well']} is outside the"
                          f" {geometry.rows} x {geometry.columns} plate")
            continue
        rec["row"], rec["col"] = r, c
        problems = _check_values(rec, path)
        errors.extend(problems)
        if not problems:
            records.append(rec)
    raise_all(path, errors)
    df = pd.DataFrame.from_records(records)
    for col in LAYOUT_COLUMNS:
        if col not in df:
            df[col] = None
    lines = df.pop("_line").tolist()
    if df["condition"].isna().all() and df["construct"].notna().any():
        df["condition"] = [_condition_name(*v) for v in
                           zip(df["construct"], df["dose"], df["dose_unit"], strict=True)]
    df["role"] = [r if not pd.isna(r) else ("sample" if not pd.isna(c) else "empty")
                  for r, c in zip(df["role"], df["condition"], strict=True)]
    # a sample or control without a condition would silently drop out of every comparison
    raise_all(path, [f"{_where(path, ln)}: well {w} has role {r} but no condition (leave the "
                     "role empty, or write 'empty', for an unused well)"
                     for w, r, c, ln in zip(df["well"], df["role"], df["condition"], lines,
                                            strict=True)
                     if pd.isna(c) and r != "empty"])
    # one condition, one role: else the reference's wells and a condition's would mix silently
    first_role: dict[object, tuple[object, object]] = {}
    mixed = []
    for w, r, c, ln in zip(df["well"], df["role"], df["condition"], lines, strict=True):
        if pd.isna(c):
            continue
        r0, ln0 = first_role.setdefault(c, (r, ln))
        if r != r0:
            mixed.append(f"{_where(path, ln)}: well {w} gives condition {c!r} the role {r}, "
                         f"but {_where(path, ln0)} gives it {r0}")
    raise_all(path, mixed)
    df["dose"] = pd.to_numeric(df["dose"]).astype("float64")
    if df["replicate"].isna().all():
        keys = ["plate", "condition"] if "plate" in df else ["condition"]
        order = df.sort_values(["row", "col"]).groupby(keys, dropna=False).cumcount() + 1
        df["replicate"] = order.where(df["condition"].notna())
    df["replicate"] = pd.to_numeric(df["replicate"]).astype("Int64")
    df["row"] = df["row"].astype("int64")
    df["col"] = df["col"].astype("int64")
    for col in ("condition", "construct", "dose_unit", "role"):
        df[col] = df[col].astype("string")
    lead = (["plate"] if "plate" in df else []) + LAYOUT_COLUMNS
    df = df[lead + [c for c in df.columns if c not in lead]]
    df["_line"] = lines
    df = df.sort_values((["plate"] if "plate" in df else []) + ["row", "col"], kind="stable")
    keys = df["well"] if "plate" not in df else df["plate"].astype(str) + ":" + df["well"]
    line_of = dict(zip(keys, df.pop("_line"), strict=True))
    df = df.reset_index(drop=True)
    df.attrs.update(source=str(path), geometry=(geometry.rows, geometry.columns), lines=line_of)
    return df


def _check_values(rec: dict, path: Path) -> list[str]:
    """Check and normalise a record's role, dose and replicate; the problems found."""
    where = _where(path, rec["_line"])
    problems = []
    role = rec.get("role")
    if role is not None:
        canon = _ROLE_ALIASES.get(norm_name(role))
        if canon is None:
            problems.append(f"{where}: unknown role {role!r} for well {rec['well']};"
                            f" use one of {', '.join(ROLES)}")
        rec["role"] = canon
    dose = rec.get("dose")
    if dose is not None:
        try:
            value = float(str(dose).replace(",", "."))
        except ValueError:
            problems.append(f"{where}: dose {dose!r} of well {rec['well']} is not a number")
        else:
            if not math.isfinite(value) or value < 0:
                problems.append(f"{where}: dose {dose!r} of well {rec['well']} must be a "
                                "finite number >= 0")
            elif rec.get("dose_unit") is None:
                problems.append(f"{where}: well {rec['well']} has a dose ({dose}) but no "
                                "dose_unit")
            rec["dose"] = value
    rep = rec.get("replicate")
    if rep is not None and not str(rep).isdigit():
        problems.append(f"{where}: replicate {rep!r} of well {rec['well']} is not an integer")
    return problems


def raise_all(path: str | Path, errors: list[str]) -> None:
    """Raise the errors found in a layout, all at once: one as it is, several as a list.

    Examples
    --------
    >>> raise_all("l.csv", ["l.csv:2: a", "l.csv:5: b"])
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: l.csv: 2 errors in the layout:
      l.csv:2: a
      l.csv:5: b
    """
    if len(errors) == 1:
        raise InputError(errors[0])
    line = re.compile(re.escape(str(path)) + r":(\d+):")
    errors = sorted(errors, key=lambda e: int(m.group(1)) if (m := line.match(e)) else 0)
    if errors:
        raise InputError(f"{path}: {len(errors)} errors in the layout:\n  " + "\n  ".join(errors))


def _condition_name(construct: object, dose: object, unit: object) -> str | None:
    """Condition name derived from construct and dose: ``"DMSO 0.125 %"``."""
    if pd.isna(construct):
        return None
    if pd.isna(dose):
        return str(construct)
    return f"{construct} {float(dose):g} {unit}"


def read_layout(path: str | Path, geometry: PlateGeometry | None = None) -> pd.DataFrame:
    """Read a plate layout file into a tidy table, one row per well.

    Parameters
    ----------
    path
        Tidy CSV, plate-map grid CSV, Harmony ``Assaylayout/*.xml`` or a row/col CSV such as
        ``drug_layout.csv``; the format is detected from the content (:func:`detect_format`).
    geometry
        Plate the layout must fit. ``None`` takes the XML's own geometry, or the smallest
        standard plate that holds every listed well.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LAYOUT_COLUMNS` (``row``/``col`` 0-based, ``dose`` float, ``replicate``
        Int64, missing text as ``<NA>``), an optional leading ``plate`` column, then any extra
        columns of the file. Without a ``condition`` column, the condition is derived from
        construct and dose (``"DMSO 0.125 %"``); without ``role``, wells with a condition are
        ``sample`` and the others ``empty``; without ``replicate``, wells are numbered 1..n per
        condition in row-major order. ``df.attrs`` holds ``source``, ``format``, ``geometry`` and
        ``lines`` (well, or ``plate:well``, -> line of the file) so later checks can name it.

    Raises
    ------
    InputError
        Naming the file and line: unknown or duplicated wells, wells outside the plate,
        unknown roles, a dose that is not a number or has no unit; every such error of the
        file at once (:func:`raise_all`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "layout.csv"
    >>> _ = p.write_text("well,condition,dose,dose_unit,role\\n"
    ...                  "A01,control,,,negative_control\\nA2,drug,1.5,uM,\\n")
    >>> df = read_layout(p)
    >>> df[["well", "row", "col", "condition", "dose", "role"]].to_dict("records")[1]
    {'well': 'A02', 'row': 0, 'col': 1, 'condition': 'drug', 'dose': 1.5, 'role': 'sample'}
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"layout file not found: {path}")
    fmt = detect_format(path)
    errors: list[str] = []
    if fmt == "harmony_xml":
        records, own = records_harmony(path, errors)
        if geometry is not None and (geometry.rows, geometry.columns) != (own.rows, own.columns):
            raise InputError(f"{path}: layout is for a {own.rows} x {own.columns} plate, the"
                             f" plate is {geometry.rows} x {geometry.columns}")
        geometry = own
    elif fmt == "grid":
        records = records_grid(path, csv_lines(path), errors)
    else:
        records = records_tidy(path, csv_lines(path), rowcol=fmt == "rowcol", errors=errors)
    df = _tidy(records, path, geometry, errors)
    df.attrs["format"] = fmt
    return df


def check_layout_on_plate(
    layout: pd.DataFrame,
    plate_wells: Iterable[str],
    geometry: PlateGeometry | None = None,
    plate: str | Path = "the plate",
) -> None:
    """Check that a layout fits the plate it is joined to (before anything is written).

    Parameters
    ----------
    layout
        Tidy layout from :func:`read_layout` (its ``attrs`` name the file and lines).
    plate_wells
        Wells of the plate or run (``A01`` style or any form :func:`hcs.plate.parse_well`
        reads).
    geometry
        Rows x columns of the plate, when known.
    plate
        How to name the plate in messages.

    Raises
    ------
    InputError
        A layout well lies outside ``geometry`` (naming the file, line and well: ``P24`` on a
        96-well plate), or the layout shares no well with ``plate_wells`` (nothing could be
        compared: probably the layout of another plate).

    Examples
    --------
    >>> lay = pd.DataFrame({"well": ["A01", "P24"], "row": [0, 15], "col": [0, 23]})
    >>> lay.attrs.update(source="layout.csv", lines={"A01": 2, "P24": 3})
    >>> check_layout_on_plate(lay, ["A01"], PlateGeometry(8, 12), "plate.ome.zarr")
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: layout.csv:3: well P24 is outside the 8 x 12 plate plate.ome.zarr
    >>> check_layout_on_plate(lay.iloc[:1], ["B02"])
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: layout.csv: the layout shares no well with the plate (layout: 1 ...
    """
    src = layout.attrs.get("source", "layout")
    lines = layout.attrs.get("lines", {})
    if geometry is not None:
        for rec in layout.itertuples(index=False):
            r, c = int(rec.row), int(rec.col)
            if not geometry.contains(r, c):
                key = f"{rec.plate}:{rec.well}" if "plate" in layout else rec.well
                line = lines.get(key)
                where = _where(Path(src), line) if line is not None else src
                raise InputError(f"{where}: well {rec.well} is outside the {geometry.rows} x "
                                 f"{geometry.columns} plate {plate}")
    have = sorted({well_name(*parse_well(str(w))) for w in plate_wells}, key=parse_well)
    listed = sorted(set(layout["well"].astype(str)), key=parse_well)
    if have and not set(have) & set(listed):
        def span(ws: list[str]) -> str:
            return f"{len(ws)} wells, " + (ws[0] if len(ws) == 1 else f"{ws[0]}..{ws[-1]}")

        raise InputError(f"{src}: the layout shares no well with {plate} (layout: "
                         f"{span(listed)}; plate: {span(have)}); nothing could be compared: is "
                         f"it the layout of another plate?")


def plate_geometry(plate: str | Path | None) -> PlateGeometry | None:
    """Rows x columns of an OME-Zarr plate, or None when it is not there (moved, deleted).

    A run or wells table records its plate's path; the layout checks use its geometry when the
    plate can still be read.
    """
    if not plate:
        return None
    from hcs.io.omezarr import is_plate, open_plate

    try:
        return open_plate(plate).geometry if is_plate(plate) else None
    except (InputError, OSError, ValueError, KeyError):
        return None


def require_roles(layout: pd.DataFrame, roles: Iterable[str], purpose: str) -> None:
    """Raise if the layout has no well with one of ``roles``, which ``purpose`` needs.

    Examples
    --------
    >>> df = pd.DataFrame({"well": ["A01"], "role": ["sample"]})
    >>> require_roles(df, ["negative_control"], "Z'-factor")
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: layout: Z'-factor needs wells with role negative_control; none found
    """
    have = set(layout["role"].dropna()) if "role" in layout else set()
    missing = [r for r in roles if r not in have]
    if missing:
        src = layout.attrs.get("source", "layout")
        raise InputError(f"{src}: {purpose} needs wells with role {', '.join(missing)};"
                         " none found")


def layout_summary(path: str | Path, plate_format: int | None = None,
                   require_controls: bool = False) -> str:
    """Read and validate a layout; a short text summary (format, wells, conditions and roles)."""
    geometry = PlateGeometry.from_format(plate_format) if plate_format else None
    df = read_layout(path, geometry)
    if require_controls:
        require_roles(df, ["negative_control", "positive_control"], "plate QC (Z'-factor)")
    rows, cols = df.attrs["geometry"]
    lines = [f"{path}: {df.attrs['format']} layout, {len(df)} wells on a {rows} x {cols} plate"]
    used = df[df["condition"].notna()].sort_values(["construct", "dose", "condition"])
    for (cond, role), grp in used.groupby(["condition", "role"], sort=False):
        dose = ""
        if grp["dose"].notna().any():
            lo, hi = grp["dose"].min(), grp["dose"].max()
            span = f"{lo:g}" if lo == hi else f"{lo:g}..{hi:g}"
            dose = f", dose {span} {grp['dose_unit'].iloc[0]}"
        lines.append(f"  {cond} ({role}): {len(grp)} wells{dose}")
    n_empty = int((df["role"] == "empty").sum())
    if n_empty:
        lines.append(f"  empty: {n_empty} wells")
    return "\n".join(lines)
