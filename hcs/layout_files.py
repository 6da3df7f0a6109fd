"""Reading plate layout files into per-well records (the four formats of :mod:`hcs.layouts`).

Each reader returns one dict per well with canonical column names and ``_line`` (the line, or
the Harmony layer, it came from); :func:`hcs.layouts.read_layout` validates and tidies them.
"""

from __future__ import annotations

import csv
import io
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from hcs.errors import InputError
from hcs.plate import PlateGeometry, row_index, well_name

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


def norm_name(name: str) -> str:
    """A header or role name lower-cased, with spaces, dashes and dots as ``_``.

    Examples
    --------
    >>> norm_name(" Well-Type ")
    'well_type'
    """
    return re.sub(r"[\s\-.]+", "_", name.strip().lstrip("\ufeff").lower())


def canonical_column(name: str) -> tuple[str, str | None]:
    """Layout column meant by a header cell, and a unit written in it.

    Examples
    --------
    >>> canonical_column("Concentration [uM]")
    ('dose', 'uM')
    """
    unit = None
    m = _UNIT_IN_NAME.match(name.strip())
    if m:
        name, unit = m.group("name"), m.group("unit").strip()
    key = norm_name(name)
    return _COLUMN_ALIASES.get(key, key), unit


def is_blank(value: object) -> bool:
    """Whether a cell is empty (``None``, NaN, or one of ``"", NA, NaN, nan, null``).

    Examples
    --------
    >>> is_blank(" NA "), is_blank("0")
    (True, False)
    """
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and value.strip() in ("", "NA", "NaN", "nan", "null")
    )


def csv_lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank, non-comment CSV lines with their 1-based line numbers ('' marks a blank line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"layout file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raw = path.read_bytes()
        if raw[:4] == b"PK\x03\x04" or raw[:4] == b"\xd0\xcf\x11\xe0":
            raise InputError(f"{path}: an Excel workbook, not a CSV; save the sheet as "
                             "'CSV UTF-8' and give that file") from None
        line = raw[:exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: byte 0x{raw[exc.start]:02x} is not UTF-8 text "
                         "(a CSV saved in a Windows encoding?); save the layout as 'CSV UTF-8'"
                         ) from None
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
    header = next((cells for _, cells in csv_lines(path) if cells), None)
    if header is None:
        raise InputError(f"{path}: layout file is empty")
    names = {canonical_column(c)[0] for c in header}
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


def report(errors: list[str] | None, message: str) -> None:
    """Add an error of one line or well to ``errors`` (so that every one is reported at once),
    or raise it when there is no list.

    Examples
    --------
    >>> errs = []
    >>> report(errs, "layout.csv:3: bad")
    >>> errs
    ['layout.csv:3: bad']
    """
    if errors is None:
        raise InputError(message)
    errors.append(message)


def records_tidy(path: Path, rows: list[tuple[int, list[str]]], rowcol: bool,
                 errors: list[str] | None = None) -> list[dict]:
    """Per-well records of a tidy (``well``) or row/col CSV from its :func:`csv_lines`; a bad
    line is added to ``errors`` (see :func:`report`) and left out."""
    body = [(n, c) for n, c in rows if c]
    (hline, header), data = body[0], body[1:]
    names, units = zip(*(canonical_column(c) for c in header), strict=True)
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            raise InputError(f"{path}:{hline}: column {header[i]!r} given twice (as {n!r})")
        seen[n] = i
    header_unit = next((u for n, u in zip(names, units, strict=True) if n == "dose" and u), None)
    out = []
    for line, cells in data:
        if len(cells) != len(names):
            report(errors, f"{path}:{line}: {len(cells)} fields, but the header (line {hline})"
                   f" has {len(names)}")
            continue
        rec = {n: (None if is_blank(v) else v) for n, v in zip(names, cells, strict=True)}
        if rowcol:
            r, c = rec.pop("row"), rec.pop("col")
            if r is None or c is None:
                report(errors, f"{path}:{line}: row and col are both required")
                continue
            try:
                rr = int(r) - 1 if r.isdigit() else row_index(r)
                cc = int(c) - 1
            except (InputError, ValueError):
                report(errors, f"{path}:{line}: not a row/column: {r!r}, {c!r}")
                continue
            if rr < 0 or cc < 0:
                report(errors, f"{path}:{line}: rows and columns start at 1 (A), got {r}, {c}")
                continue
            rec["well"] = well_name(rr, cc)
        if header_unit and rec.get("dose") is not None and rec.get("dose_unit") is None:
            rec["dose_unit"] = header_unit
        rec["_line"] = line
        out.append(rec)
    return out


def records_grid(path: Path, rows: list[tuple[int, list[str]]],
                 errors: list[str] | None = None) -> list[dict]:
    """Per-well records of a plate-map grid CSV from its :func:`csv_lines`; a bad line or well
    is added to ``errors`` (see :func:`report`)."""
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
            variable, unit = canonical_column(cells[0])
            columns = [int(c) - 1 if c else None for c in cells[1:]]
            continue
        try:
            r = row_index(cells[0])
        except InputError:
            report(errors, f"{path}:{line}: expected a row letter (A, B, ..), got {cells[0]!r}")
            continue
        if len(cells) - 1 > len(columns):
            report(errors, f"{path}:{line}: more values than columns in the grid header")
            continue
        for c, value in zip(columns, cells[1:], strict=False):
            if c is None or is_blank(value):
                continue
            w = well_name(r, c)
            rec = by_well.setdefault(w, {"well": w, "_line": line})
            if variable in rec:
                report(errors, f"{path}:{line}: well {w} given twice for {variable!r}")
                continue
            rec[variable] = value
            if variable == "dose" and unit and "dose_unit" not in rec:
                rec["dose_unit"] = unit
    return list(by_well.values())


def records_harmony(path: Path, errors: list[str] | None = None
                    ) -> tuple[list[dict], PlateGeometry]:
    """Per-well records and the plate geometry of a Harmony assay layout XML; a bad well is
    added to ``errors`` (see :func:`report`)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise InputError(f"layout file not found: {path}") from None
    except ET.ParseError as exc:
        raise InputError(f"{path}: not valid XML ({exc})") from None
    if not root.tag.endswith("AssayLayout"):
        raise InputError(f"{path}: not a Harmony assay layout (root <{root.tag}>)")
    try:
        n_rows, n_cols = int(root.findtext("{*}PlateRows")), int(root.findtext("{*}PlateCols"))
    except (TypeError, ValueError):
        raise InputError(f"{path}: PlateRows/PlateCols missing or not integers") from None
    try:
        geom = PlateGeometry(n_rows, n_cols)
    except InputError as exc:
        raise InputError(f"{path}: PlateRows={n_rows}, PlateCols={n_cols}: {exc}") from None
    by_well: dict[str, dict] = {}
    for layer in root.iterfind("{*}Layer"):
        lname = (layer.findtext("{*}Name") or "").strip()
        variable, unit = canonical_column(lname)
        unit = unit or (layer.findtext("{*}Unit") or "").strip() or None
        for wel in layer.iterfind("{*}Well"):
            try:
                r, c = int(wel.findtext("{*}Row")) - 1, int(wel.findtext("{*}Col")) - 1
            except (TypeError, ValueError):
                report(errors, f"{path}: layer {lname!r}: a Well without integer Row/Col")
                continue
            w = well_name(r, c) if r >= 0 and c >= 0 else f"R{r + 1}C{c + 1}"
            if not geom.contains(r, c):
                report(errors, f"{path}: layer {lname!r}: well {w} is outside the"
                       f" {geom.rows} x {geom.columns} plate")
                continue
            value = wel.findtext("{*}Value")
            rec = by_well.setdefault(w, {"well": w, "_line": f"layer {lname!r}"})
            if variable in rec:
                report(errors, f"{path}: layer {lname!r}: well {w} listed twice")
                continue
            rec[variable] = None if is_blank(value) else value.strip()
            if variable == "dose" and unit and rec[variable] is not None:
                rec.setdefault("dose_unit", unit)
    return list(by_well.values()), geom
