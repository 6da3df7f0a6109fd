"""scanR well numbers and labels: the plate format, and labels checked against it.

scanR numbers wells ``W`` 1-based, row-major over the full plate; file prefixes and OME image
names may carry well labels (``B2``). These helpers pick the plate geometry and refuse a label
that contradicts it (:mod:`hcs.io.scanr`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hcs.errors import InputError
from hcs.io.scanr_descriptor import Descriptor
from hcs.plate import MAX_ROWS, PLATE_FORMATS, PlateGeometry, parse_well, well_name


def add_prefix_labels(labels: dict[int, str], names: list[Any]) -> None:
    """Add file-name prefixes to ``labels`` (W number -> label) when they are well names.

    Parameters
    ----------
    labels
        Labels so far, updated in place; an existing label wins.
    names
        Parsed scanR names (``ScanrName`` or ``None``).

    Notes
    -----
    File prefixes are user labels (cDNA) in general: they are used as well labels only when
    every prefix looks like a well name.
    """
    prefixes = {p.well: p.prefix for p in names if p is not None}
    if prefixes and all(_is_well_name(x) for x in prefixes.values()):
        for w, x in prefixes.items():
            labels.setdefault(w, x)


def _is_well_name(text: str) -> bool:
    try:
        parse_well(text)
    except InputError:
        return False
    return True


def _implied_formats(labels: dict[int, str]) -> list[int]:
    """Plate formats under which every (W number, well label) pair agrees."""
    out = []
    for n, (rows, cols) in sorted(PLATE_FORMATS.items()):
        g = PlateGeometry(rows, cols)
        if all(_label_agrees(g, w, lab) for w, lab in labels.items()):
            out.append(n)
    return out


def _label_agrees(g: PlateGeometry, w: int, label: str) -> bool:
    if not _is_well_name(label):
        return True
    if not 1 <= w <= g.n_wells:
        return False
    return g.well_from_index(w) == parse_well(label)


def plate_geometry(
    desc: Descriptor | None, plate_format: int | None, labels: dict[int, str], where: Path
) -> PlateGeometry:
    """The plate geometry: from the descriptor, else ``plate_format``, else an error.

    Parameters
    ----------
    desc
        Parsed ``experiment_descriptor.xml`` or ``None``.
    plate_format
        Wells per plate given by the user (``--plate-format``) or ``None``.
    labels
        W number -> label, used to suggest a format in the error.
    where
        The export folder, named in the error.

    Returns
    -------
    PlateGeometry
        Rows x columns.
    """
    if desc is not None and desc.rows and desc.columns:
        try:
            g = PlateGeometry(desc.rows, desc.columns)
        except InputError as exc:
            bad = "Rows" if not 1 <= desc.rows <= MAX_ROWS else "Columns"
            raise InputError(f"{desc.path}: format {bad}={getattr(desc, bad.lower())}: "
                             f"{exc}") from None
        if plate_format is not None and PlateGeometry.from_format(plate_format) != g:
            raise InputError(
                f"{desc.path}: the descriptor says {g.rows} x {g.columns} wells, but "
                f"--plate-format {plate_format} was given"
            )
        return g
    if plate_format is not None:
        return PlateGeometry.from_format(plate_format)
    hint = ""
    implied = _implied_formats({w: lab for w, lab in labels.items() if _is_well_name(lab)})
    if labels and implied and len(implied) < len(PLATE_FORMATS):
        hint = f"; the well labels fit {' or '.join(str(n) for n in implied)} wells"
    raise InputError(
        f"{where}: the scanR metadata does not state the plate format; pass --plate-format "
        f"(e.g. 96 or 384){hint}"
    )


def check_labels(
    labels: dict[int, str], g: PlateGeometry, plate_format: int | None, where: Path
) -> None:
    """Raise :class:`~hcs.errors.InputError` when a well label contradicts the geometry.

    Parameters
    ----------
    labels
        W number -> label; labels that are not well names are not checked.
    g
        The chosen plate geometry.
    plate_format
        The user's ``--plate-format`` (named in the error) or ``None``.
    where
        The export folder, named in the error.
    """
    for w, lab in sorted(labels.items()):
        if _is_well_name(lab) and not _label_agrees(g, w, lab):
            on = (well_name(*g.well_from_index(w)) if 1 <= w <= g.n_wells else "outside the plate")
            implied = _implied_formats({w: lab})
            raise InputError(
                f"{where}: well W{w:05d} is labelled {lab}, but on a "
                f"{g.rows} x {g.columns} plate it is {on}; the plate format "
                f"({plate_format or 'from the descriptor'}) contradicts the labels"
                + (f" (they fit {' or '.join(map(str, implied))} wells)" if implied else "")
            )
