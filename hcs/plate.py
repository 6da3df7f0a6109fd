"""Plate geometry: formats from 6 to 1536 wells and well names ``A01`` <-> (row, col).

Rows and columns are 0-based integers everywhere in hcs; well names use letters for rows
(``A``..``Z``, then ``AA``, ``AB``, .. for 1536-well plates) and 1-based, zero-padded column
numbers (``A01``, ``P24``, ``AF48``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hcs.errors import InputError

#: Standard plate formats: number of wells -> (rows, columns).
PLATE_FORMATS: dict[int, tuple[int, int]] = {
    6: (2, 3),
    12: (3, 4),
    24: (4, 6),
    48: (6, 8),
    96: (8, 12),
    384: (16, 24),
    1536: (32, 48),
}

#: The largest plate made (3456 wells, 48 x 72): a geometry beyond it is a metadata error.
MAX_ROWS, MAX_COLUMNS = 48, 72

_WELL_RE = re.compile(r"^\s*([A-Za-z]{1,2})\s*0*(\d{1,3})\s*$")


def row_name(row: int) -> str:
    """Letter name of a 0-based row: 0 -> ``A``, 25 -> ``Z``, 26 -> ``AA``.

    Examples
    --------
    >>> row_name(0), row_name(15), row_name(31)
    ('A', 'P', 'AF')
    """
    if row < 0:
        raise ValueError(f"row must be >= 0, got {row}")
    if row < 26:
        return chr(ord("A") + row)
    return chr(ord("A") + row // 26 - 1) + chr(ord("A") + row % 26)


def row_index(name: str) -> int:
    """0-based row index of a row name (``A`` -> 0, ``AA`` -> 26); inverse of :func:`row_name`."""
    name = name.strip().upper()
    if not re.fullmatch(r"[A-Z]{1,2}", name):
        raise InputError(f"not a row name: {name!r}")
    if len(name) == 1:
        return ord(name) - ord("A")
    return (ord(name[0]) - ord("A") + 1) * 26 + ord(name[1]) - ord("A")


def well_name(row: int, col: int) -> str:
    """Well name of 0-based (row, col): (0, 0) -> ``A01``; (31, 47) -> ``AF48``.

    Examples
    --------
    >>> well_name(1, 2)
    'B03'
    """
    return f"{row_name(row)}{col + 1:02d}"


def parse_well(name: str) -> tuple[int, int]:
    """0-based (row, col) of a well name; accepts ``A1``, ``A01``, ``a01`` and ``AA01``.

    Raises
    ------
    InputError
        If the name is not a well name.

    Examples
    --------
    >>> parse_well("B03"), parse_well("h12")
    ((1, 2), (7, 11))
    """
    m = _WELL_RE.match(str(name))
    if not m:
        raise InputError(f"not a well name: {name!r} (expected e.g. A01, B3, AF48)")
    col = int(m.group(2))
    if col < 1:
        raise InputError(f"not a well name: {name!r} (columns start at 1)")
    return row_index(m.group(1)), col - 1


@dataclass(frozen=True)
class PlateGeometry:
    """Rows x columns of a plate.

    Examples
    --------
    >>> g = PlateGeometry.from_format(384)
    >>> g.rows, g.columns, g.n_wells
    (16, 24, 384)
    >>> g.contains(15, 23), g.contains(16, 0)
    (True, False)
    """

    rows: int
    columns: int

    def __post_init__(self) -> None:
        if self.rows < 1 or self.columns < 1:
            raise InputError(f"plate must have at least one row and column, got {self}")
        for what, n, most in (("rows", self.rows, MAX_ROWS), ("columns", self.columns,
                                                               MAX_COLUMNS)):
            if n > most:
                raise InputError(
                    f"a plate with {n} {what} is beyond the largest plate made ({MAX_ROWS} x "
                    f"{MAX_COLUMNS} wells)"
                )

    @classmethod
    def from_format(cls, n_wells: int | str) -> PlateGeometry:
        """Geometry of a standard format (6, 12, 24, 48, 96, 384 or 1536 wells)."""
        try:
            rows, cols = PLATE_FORMATS[int(n_wells)]
        except (KeyError, ValueError):
            raise InputError(
                f"unknown plate format {n_wells!r}; known: {sorted(PLATE_FORMATS)}"
            ) from None
        return cls(rows, cols)

    @classmethod
    def smallest_fitting(cls, max_row: int, max_col: int) -> PlateGeometry:
        """Smallest standard format containing 0-based (max_row, max_col)."""
        for n in sorted(PLATE_FORMATS):
            r, c = PLATE_FORMATS[n]
            if max_row < r and max_col < c:
                return cls(r, c)
        raise InputError(f"well {well_name(max_row, max_col)} (row {max_row + 1}, column "
                         f"{max_col + 1}) does not fit a 1536-well plate (32 x 48)")

    @property
    def n_wells(self) -> int:
        return self.rows * self.columns

    def contains(self, row: int, col: int) -> bool:
        """Whether 0-based (row, col) lies on the plate."""
        return 0 <= row < self.rows and 0 <= col < self.columns

    def row_names(self) -> list[str]:
        return [row_name(r) for r in range(self.rows)]

    def column_names(self) -> list[str]:
        """Column names as NGFF plate metadata uses them (``"1"``, ``"2"``, ..)."""
        return [str(c + 1) for c in range(self.columns)]

    def wells(self) -> list[str]:
        """All well names, row-major."""
        return [well_name(r, c) for r in range(self.rows) for c in range(self.columns)]

    def well_from_index(self, index: int) -> tuple[int, int]:
        """0-based (row, col) of a 1-based row-major well number (as ScanR's ``W`` numbers)."""
        if not 1 <= index <= self.n_wells:
            raise InputError(
                f"well number {index} does not fit a {self.rows} x {self.columns} plate"
                f" (1..{self.n_wells})"
            )
        return (index - 1) // self.columns, (index - 1) % self.columns

    def check_well(self, name: str, where: str = "") -> tuple[int, int]:
        """Parse a well name and check it lies on this plate; ``where`` names the source."""
        row, col = parse_well(name)
        if not self.contains(row, col):
            prefix = f"{where}: " if where else ""
            raise InputError(
                f"{prefix}well {name} is outside the {self.rows} x {self.columns} plate"
            )
        return row, col
