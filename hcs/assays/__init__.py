"""Assays as data: :func:`get_assay` returns a frozen :class:`Assay` (classes, exclusions)."""

from hcs.assays.registry import ASSAYS, Assay, get_assay

__all__ = ["ASSAYS", "Assay", "get_assay"]
