"""Export writers for the simulator and the test fixtures: planes out as a real Harmony export
(:mod:`hcs.synth.exports.harmony`) or a real ScanR data folder (:mod:`hcs.synth.exports.scanr`,
:mod:`hcs.synth.exports.scanr_descriptor`), in the layouts that :mod:`hcs.io` reads.

They live here, not in :mod:`hcs.io`, because hcs itself never writes an instrument export:
``hcs.io`` reads exports and reads and writes plates.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["export_not_ours"]

_SCANR_TOP = {"data", "experiment_descriptor.xml", "AcquisitionLog.dat"}


def export_not_ours(path: Path) -> str | None:
    """Why ``path`` is not an export these writers made (``None`` when it is one), so that
    ``overwrite=True`` replaces only such an export (:func:`hcs.atomic.check_replaceable`).

    A Harmony export written here has ``Images/Index*.xml`` with ``<User>hcs</User>`` and
    nothing but ``Images/`` at the top; a ScanR one has ``data/`` (with a ``metadata.ome.xml``
    whose ``Creator`` is hcs) or the older ``experiment_descriptor.xml`` + ``AcquisitionLog.dat``
    and nothing else at the top.
    """
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return "not a folder"
    top = {p.name for p in path.iterdir()}
    if top == {"Images"}:
        for index in (path / "Images").glob("Index*.xml"):
            with open(index, encoding="utf-8", errors="replace") as fh:
                if "<User>hcs</User>" in fh.read(4096):
                    return None
        return "not a Harmony export written by hcs (no hcs index in Images/)"
    if top and top <= _SCANR_TOP:
        ome = path / "data" / "metadata.ome.xml"
        if ome.is_file():
            with open(ome, encoding="utf-8", errors="replace") as fh:
                if 'Creator="hcs ' in fh.read(4096):
                    return None
        elif (path / "experiment_descriptor.xml").is_file() and \
                (path / "AcquisitionLog.dat").is_file():
            return None
        return "not a ScanR export written by hcs"
    return "not an export written by hcs"
