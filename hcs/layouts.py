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

Every error names the file and line (or the layer and well for XML) at fault.
"""

from __future__ import annotations

import csv
import io
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from hcs.errors import InputError
from hcs.plate import PlateGeometry, parse_well, row_index, well_name

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
# Column names as people write them -> the layout column they mean.
_COLUMN_ALIASES = {
    "well": "well", "well_name": "well", "wellname": "well", "well_id": "well",
    "condition": "condition", "treatment": "condition", "group": "condition",
    "construct": "construct", "compound": "construct", "drug": "construct",
    "plasmid": "construct",
    "dose": "dose", "concentration": "dose", "conc": "dose",
    "dose_unit": "dose_unit", "unit": "dose_unit", "concentration_unit": "dose_unit",
    "conc_unit": "dose_unit", "units": "dose_unit",
    "replicate": "replicate", "rep": "replicate",
    "role": "role", "well_role": "role", "well_type": "role", "control_type": "role",
    "plate": "plate", "row": "row", "col": "col", "column": "col",
}
_UNIT_IN_NAME = re.compile(r"^(?P<name>.*?)\s*[\[(](?P<unit>[^\])]+)[\])]\s*$")


def _norm_name(name: str) -> str:
    return re.sub(r"[\s\-.]+", "_", name.strip().lstrip("\ufeff").lower())


def _canonical(name: str) -> tuple[str, str | None]:
    """Layout column meant by a header cell, and a unit written in it (``dose [uM]``)."""
    unit = None
    m = _UNIT_IN_NAME.match(name.strip())
    if m:
        name, unit = m.group("name"), m.group("unit").strip()
    key = _norm_name(name)
    return _COLUMN_ALIASES.get(key, key), unit


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and value.strip() in ("", "NA", "NaN", "nan", "null")
    )


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank, non-comment CSV lines with their 1-based line numbers ('' marks a blank line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"layout file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text layout file ({exc.reason})") from None
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")), "")
    delim = max([",", ";", "\t"], key=first.count)
    rows = []
    for i, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        if not line.strip():
            rows.append((i, []))
            continue
        rows.append((i, [c.strip() for c in next(csv.reader(io.StringIO(line), delimiter=delim))]))
    return rows


def detect_format(path: str | Path) -> str:
    """Layout format of a file: ``harmony_xml``, ``tidy``, ``rowcol`` or ``grid``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "l.csv"
    >>> _ = p.write_text("well,condition\\nA01,ctrl\\n")
    >>> detect_format(p)
    'tidy'
    """
    path = Path(path)
    if path.suffix.lower() == ".xml":
        return "harmony_xml"
    header = next((cells for _, cells in _lines(path) if cells), None)
    if header is None:
        raise InputError(f"{path}: layout file is empty")
    names = {_canonical(c)[0] for c in header}
    if "well" in names:
        return "tidy"
    if {"row", "col"} <= names:
        return "rowcol"
    if len(header) > 1 and all(c.strip().isdigit() for c in header[1:] if c.strip()):
        return "grid"
    raise InputError(
        f"{path}:1: cannot tell the layout format: expected a 'well' column (tidy CSV), 'row' and"
        f" 'col' columns, or a plate-map grid header (variable,1,2,3,..); got {header[:6]}"
    )


def _records_tidy(path: Path, rows: list[tuple[int, list[str]]], rowcol: bool) -> list[dict]:
    body = [(n, c) for n, c in rows if c]
    (hline, header), data = body[0], body[1:]
    names, units = zip(*(_canonical(c) for c in header), strict=True)
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise InputError(f"{path}:{hline}: column {header[i]!r} given twice (as {n!r})")
        seen[n] = i
    header_unit = next((u for n, u in zip(names, units, strict=True) if n == "dose" and u), None)
    out = []
    for line, cells in data:
        if len(cells) != len(names):
            raise InputError(
                f"{path}:{line}: {len(cells)} fields, but the header (line {hline})"
                f" has {len(names)}"
            )
        rec = {n: (None if _blank(v) else v) for n, v in zip(names, cells, strict=True)}
        if rowcol:
            r, c = rec.pop("row"), rec.pop("col")
            if r is None or c is None:
                raise InputError(f"{path}:{line}: row and col are both required")
            try:
                rr = int(r) - 1 if r.isdigit() else row_index(r)
                cc = int(c) - 1
            except (InputError, ValueError):
                raise InputError(f"{path}:{line}: not a row/column: {r!r}, {c!r}") from None
            if rr < 0 or cc < 0:
                raise InputError(f"{path}:{line}: rows and columns start at 1 (A), got {r}, {c}")
            rec["well"] = well_name(rr, cc)
        if header_unit and rec.get("dose") is not None and rec.get("dose_unit") is None:
            rec["dose_unit"] = header_unit
        rec["_line"] = line
        out.append(rec)
    return out


def _records_grid(path: Path, rows: list[tuple[int, list[str]]]) -> list[dict]:
    by_well: dict[str, dict] = {}
    variable: str | None = None
    columns: list[int | None] = []
    for line, cells in rows:
        if not cells:
            variable = None
            continue
        if variable is None:
            if not cells[0] or not all(c.isdigit() for c in cells[1:] if c):
                raise InputError(
                    f"{path}:{line}: a grid starts with a header: variable name, then column"
                    f" numbers 1..N (e.g. 'condition,1,2,3'); got {cells[:4]}"
                )
            variable, unit = _canonical(cells[0])
            columns = [int(c) - 1 if c else None for c in cells[1:]]
            continue
        try:
            r = row_index(cells[0])
        except InputError:
            raise InputError(f"{path}:{line}: expected a row letter (A, B, ..), got {cells[0]!r}"
                             ) from None
        if len(cells) - 1 > len(columns):
            raise InputError(f"{path}:{line}: more values than columns in the grid header")
        for c, value in zip(columns, cells[1:], strict=False):
            if c is None or _blank(value):
                continue
            w = well_name(r, c)
            rec = by_well.setdefault(w, {"well": w, "_line": line})
            if variable in rec:
                raise InputError(f"{path}:{line}: well {w} given twice for {variable!r}")
            rec[variable] = value
            if variable == "dose" and unit and "dose_unit" not in rec:
                rec["dose_unit"] = unit
    return list(by_well.values())


def _records_harmony(path: Path) -> tuple[list[dict], PlateGeometry]:
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise InputError(f"layout file not found: {path}") from None
    except ET.ParseError as exc:
        raise InputError(f"{path}: not valid XML ({exc})") from None
    if not root.tag.endswith("AssayLayout"):
        raise InputError(f"{path}: not a Harmony assay layout (root <{root.tag}>)")
    try:
        geom = PlateGeometry(int(root.findtext("{*}PlateRows")), int(root.findtext("{*}PlateCols")))
    except (TypeError, ValueError):
        raise InputError(f"{path}: PlateRows/PlateCols missing or not integers") from None
    by_well: dict[str, dict] = {}
    for layer in root.iterfind("{*}Layer"):
        lname = (layer.findtext("{*}Name") or "").strip()
        variable, unit = _canonical(lname)
        unit = unit or (layer.findtext("{*}Unit") or "").strip() or None
        for wel in layer.iterfind("{*}Well"):
            try:
                r, c = int(wel.findtext("{*}Row")) - 1, int(wel.findtext("{*}Col")) - 1
            except (TypeError, ValueError):
                raise InputError(f"{path}: layer {lname!r}: a Well without integer Row/Col"
                                 ) from None
            w = well_name(r, c) if r >= 0 and c >= 0 else f"R{r + 1}C{c + 1}"
            if not geom.contains(r, c):
                raise InputError(f"{path}: layer {lname!r}: well {w} is outside the"
                                 f" {geom.rows} x {geom.columns} plate")
            value = wel.findtext("{*}Value")
            rec = by_well.setdefault(w, {"well": w, "_line": f"layer {lname!r}"})
            if variable in rec:
                raise InputError(f"{path}: layer {lname!r}: well {w} listed twice")
            rec[variable] = None if _blank(value) else value.strip()
            if variable == "dose" and unit and rec[variable] is not None:
                rec.setdefault("dose_unit", unit)
    return list(by_well.values()), geom


def _where(path: Path, line: object) -> str:
    return f"{path}:{line}" if isinstance(line, int) else f"{path}: {line}"


def _tidy(records: list[dict], path: Path, geometry: PlateGeometry | None) -> pd.DataFrame:
    if not records:
        raise InputError(f"{path}: the layout lists no wells")
    seen: dict[tuple, object] = {}
    coords = []
    for rec in records:
        where = _where(path, rec["_line"])
        if rec.get("well") is None:
            raise InputError(f"{where}: the well is empty")
        try:
            r, c = parse_well(rec["well"])
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        rec["well"] = well_name(r, c)
        key = (rec.get("plate"), rec["well"])
        if key in seen:
            raise InputError(f"{where}: well {rec['well']} is listed twice"
                             f" (first at {_where(path, seen[key])})")
        seen[key] = rec["_line"]
        coords.append((r, c))
    if geometry is None:
        geometry = PlateGeometry.smallest_fitting(max(r for r, _ in coords),
                                                  max(c for _, c in coords))
    for rec, (r, c) in zip(records, coords, strict=True):
        if not geometry.contains(r, c):
            raise InputError(f"{_where(path, rec['_line'])}: well {rec['well']} is outside the"
                             f" {geometry.rows} x {geometry.columns} plate")
        rec["row"], rec["col"] = r, c
        _check_values(rec, path)
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


def _check_values(rec: dict, path: Path) -> None:
    where = _where(path, rec["_line"])
    role = rec.get("role")
    if role is not None:
        canon = _ROLE_ALIASES.get(_norm_name(role))
        if canon is None:
            raise InputError(f"{where}: unknown role {role!r} for well {rec['well']};"
                             f" use one of {', '.join(ROLES)}")
        rec["role"] = canon
    dose = rec.get("dose")
    if dose is not None:
        try:
            value = float(str(dose).replace(",", "."))
        except ValueError:
            raise InputError(f"{where}: dose {dose!r} of well {rec['well']} is not a number"
                             ) from None
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{where}: dose {dose!r} of well {rec['well']} must be >= 0")
        if rec.get("dose_unit") is None:
            raise InputError(f"{where}: well {rec['well']} has a dose ({dose}) but no dose_unit")
        rec["dose"] = value
    rep = rec.get("replicate")
    if rep is not None and not str(rep).isdigit():
        raise InputError(f"{where}: replicate {rep!r} of well {rec['well']} is not an integer")


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
        unknown roles, a dose that is not a number or has no unit.

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
    if fmt == "harmony_xml":
        records, own = _records_harmony(path)
        if geometry is not None and (geometry.rows, geometry.columns) != (own.rows, own.columns):
            raise InputError(f"{path}: layout is for a {own.rows} x {own.columns} plate, the"
                             f" plate is {geometry.rows} x {geometry.columns}")
        geometry = own
    elif fmt == "grid":
        records = _records_grid(path, _lines(path))
    else:
        records = _records_tidy(path, _lines(path), rowcol=fmt == "rowcol")
    df = _tidy(records, path, geometry)
    df.attrs["format"] = fmt
    return df


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
