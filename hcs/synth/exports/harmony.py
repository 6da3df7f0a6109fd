"""Write planes as a Harmony export (Opera Phenix / Operetta), for the simulator and as fixtures.

The layout is the one Harmony's "export with images" writes (FORMATS.md 1.1-1.5):

- ``schema="v5"``: ``out/Images/Index.idx.xml``, namespace
  ``http://www.perkinelmer.com/PEHH/HarmonyV5``, ``Version="1"``, every ``Image`` carrying the
  full channel metadata, ``TimepointID`` 0-based (as Harmony 4.x writes it);
- ``schema="v7"``: ``out/Images/Index.xml``, namespace
  ``43B2A954-E3C3-47E1-B392-6635266B0DD3/HarmonyV7``, ``Version="2"``, channel metadata once per
  channel in ``Maps/Map/Entry``, ``SequenceID``/``GroupID`` per ``Image``, ``TimepointID``
  1-based.

One TIFF per plane, ``r{RR}c{CC}f{FF}p{PP}-ch{C}sk{T+1}fk1fl1.tiff`` (all 1-based), LZW like real
exports. Units as Harmony writes them: ``ImageResolutionX/Y`` and ``PositionX/Y/Z`` in metres,
positions relative to the well centre with stage Y pointing **up** (``PositionY = -y`` for an
image-orientation offset ``y``). Planes are consumed lazily and each TIFF is written as it
arrives; only the small per-plane metadata is kept until the index is written at the end.
Everything goes into a temporary sibling folder renamed into place on success, so a failure
leaves nothing behind. Output bytes depend only on the arguments (no clock, fixed timestamps).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from hcs.atomic import atomic_dir
from hcs.errors import InputError, OutputExistsError
from hcs.io.acquisition import Channel, default_field_positions
from hcs.plate import PlateGeometry
from hcs.synth.exports import export_not_ours

__all__ = ["write_harmony_export", "harmony_file_name", "default_field_positions"]

NAMESPACES = {
    "v5": "http://www.perkinelmer.com/PEHH/HarmonyV5",
    "v7": "43B2A954-E3C3-47E1-B392-6635266B0DD3/HarmonyV7",
}
_INDEX_NAME = {"v5": "Index.idx.xml", "v7": "Index.xml"}
_VERSION = {"v5": "1", "v7": "2"}
_CHANNEL_TYPE = {"fluorescence": "Fluorescence", "brightfield": "Brightfield", "phase": "Phase"}
_START = datetime(2024, 1, 15, 9, 0, 0, tzinfo=UTC)  # fixed: output is reproducible
_UUID_NS = uuid.UUID("5f0b6c1e-9a51-4d36-8a0c-4b6c2f1c8e11")

Key = tuple[int, int, int, int, int, int]
#: V5 Images list the first fields of :func:`_channel_fields` (ChannelName .. CameraType) before
#: the positions and the rest (wavelengths, objective, exposure, matrix) after, as Harmony does.
_N_BEFORE_POSITIONS = 13


def harmony_file_name(row: int, col: int, field: int, z: int, channel: int, t: int) -> str:
    """Harmony TIFF name of a plane, from 0-based indices.

    Examples
    --------
    >>> harmony_file_name(2, 2, 0, 0, 0, 0)
    'r03c03f01p01-ch1sk1fk1fl1.tiff'
    """
    return (
        f"r{row + 1:02d}c{col + 1:02d}f{field + 1:02d}p{z + 1:02d}"
        f"-ch{channel + 1}sk{t + 1}fk1fl1.tiff"
    )


def _num(v: float | int) -> str:
    """Shortest text that reads back as the same float (``repr``), ints without a point."""
    if isinstance(v, (int, np.integer)) or float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _el(name: str, value: Any, unit: str | None = None) -> str:
    attr = f" Unit={quoteattr(unit)}" if unit is not None else ""
    text = _num(value) if isinstance(value, (int, float, np.number)) else escape(str(value))
    return f"<{name}{attr}>{text}</{name}>"


def _channel_fields(
    ch: Channel, schema: str, shape: tuple[int, int], pixel_um: tuple[float, float], dtype: Any
) -> list[str]:
    md = ch.metadata
    transmitted = ch.channel_type != "fluorescence"
    binning = md.get("binning", (1, 1))
    dt = np.dtype(dtype)
    max_int = md.get("max_intensity_hint", np.iinfo(dt).max if dt.kind in "ui" else 1)
    out = [
        _el("ChannelName", ch.name),
        _el("ImageType", md.get("image_type", "Signal")),
        _el("AcquisitionType", md.get("acquisition_type", "NonConfocal")),
        _el(
            "IlluminationType",
            md.get("illumination_type", "Transmitted" if transmitted else "Epifluorescence"),
        ),
        _el("ChannelType", _CHANNEL_TYPE[ch.channel_type]),
        _el("ImageResolutionX", pixel_um[1] * 1e-6, "m"),
        _el("ImageResolutionY", pixel_um[0] * 1e-6, "m"),
        _el("ImageSizeX", shape[1]),
        _el("ImageSizeY", shape[0]),
        _el("BinningX", int(binning[0])),
        _el("BinningY", int(binning[1])),
        _el("MaxIntensity", max_int),
        _el("CameraType", md.get("camera", "AndorZylaCam")),
    ]
    if ch.excitation_nm is not None:
        out.append(_el("MainExcitationWavelength", ch.excitation_nm, "nm"))
    if ch.emission_nm is not None:
        out.append(_el("MainEmissionWavelength", ch.emission_nm, "nm"))
    out += [
        _el("ObjectiveMagnification", md.get("objective_magnification", 20), ""),
        _el("ObjectiveNA", md.get("objective_na", 1), ""),
        _el("ExposureTime", md.get("exposure_s", 0.01), "s"),
    ]
    if schema == "v7":
        out.append(_el("ExcitationPower", md.get("excitation_power_percent", 20), "Percent"))
    out.append(
        _el("OrientationMatrix", md.get("orientation_matrix", "[[1,0,0,0],[0,-1,0,0],[0,0,1,0]]"))
    )
    return out


def _write_index(
    fh: TextIO,
    records: list[tuple[Key, str]],
    *,
    schema: str,
    channels: Sequence[Channel],
    geometry: PlateGeometry,
    pixel_um: tuple[float, float],
    shape: tuple[int, int],
    dtype: Any,
    plate_name: str,
    instrument: str,
    positions: Sequence[tuple[float, float]],
    z_step_um: float,
    time_step_s: float,
    flatfield: dict[int, str] | None,
) -> None:
    def image_id(k: Key) -> str:
        r, c, f, z, ch, t = k
        return f"{r + 1:02d}{c + 1:02d}K{t + 1}F{f + 1}P{z + 1}R{ch + 1}"

    measurement = uuid.uuid5(_UUID_NS, f"{plate_name}|{schema}|{instrument}|{geometry}")
    w = fh.write
    w('<?xml version="1.0" encoding="utf-8"?>\n')
    w(
        '<EvaluationInputData xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'Version="{_VERSION[schema]}" xmlns="{NAMESPACES[schema]}">\n'
    )
    w(f"  <User>hcs</User>\n  {_el('InstrumentType', instrument)}\n  <Plates>\n    <Plate>\n")
    for line in (
        _el("PlateID", plate_name),
        _el("MeasurementID", str(measurement)),
        _el("MeasurementStartTime", _START.isoformat()),
        _el("Name", plate_name),
        _el("PlateTypeName", f"{geometry.n_wells} hcs simulated plate"),
        _el("PlateRows", geometry.rows),
        _el("PlateColumns", geometry.columns),
    ):
        w(f"      {line}\n")
    wells: dict[tuple[int, int], list[str]] = {}
    for k, _ in records:
        wells.setdefault((k[0], k[1]), []).append(image_id(k))
    for r, c in wells:
        w(f'      <Well id="{r + 1:02d}{c + 1:02d}" />\n')
    w("    </Plate>\n  </Plates>\n  <Wells>\n")
    for (r, c), ids in wells.items():
        w(f"    <Well>\n      <id>{r + 1:02d}{c + 1:02d}</id>")
        w(f"<Row>{r + 1}</Row><Col>{c + 1}</Col>\n")
        for i in ids:
            w(f'      <Image id="{i}" />\n')
        w("    </Well>\n")
    w("  </Wells>\n  <Maps>\n")
    if flatfield:
        w("    <Map>\n")
        for ci in sorted(flatfield):
            entry = _el("FlatfieldProfile", flatfield[ci])
            w(f'      <Entry ChannelID="{ci + 1}">{entry}</Entry>\n')
        w("    </Map>\n")
    per_channel = [_channel_fields(ch, schema, shape, pixel_um, dtype) for ch in channels]
    if schema == "v7":
        w("    <Map>\n")
        for ci, fields in enumerate(per_channel):
            w(f'      <Entry ChannelID="{ci + 1}">\n')
            w("".join(f"        {x}\n" for x in fields))
            w("      </Entry>\n")
        w("    </Map>\n")
    w("  </Maps>\n  <Images>\n")
    for k, name in records:
        r, c, f, z, ch, t = k
        x_um, y_um = positions[f]
        offset = t * time_step_s
        lines = [
            _el("id", image_id(k)),
            _el("State", "Ok"),
            _el("URL", name),
            _el("Row", r + 1),
            _el("Col", c + 1),
            _el("FieldID", f + 1),
            _el("PlaneID", z + 1),
            _el("TimepointID", t if schema == "v5" else t + 1),
        ]
        if schema == "v7":
            lines += [_el("SequenceID", 1), _el("GroupID", 1)]
        lines += [_el("ChannelID", ch + 1), _el("FlimID", 1)]
        if schema == "v5":
            lines += per_channel[ch][:_N_BEFORE_POSITIONS]
        lines += [
            _el("PositionX", x_um * 1e-6, "m"),
            _el("PositionY", -y_um * 1e-6, "m"),  # stage Y points up
            _el("PositionZ", z * z_step_um * 1e-6, "m"),
            _el("AbsPositionZ", 0.1346 + z * z_step_um * 1e-6, "m"),
            _el("MeasurementTimeOffset", offset, "s"),
            _el("AbsTime", (_START + timedelta(seconds=offset)).isoformat()),
        ]
        if schema == "v5":
            lines += per_channel[ch][_N_BEFORE_POSITIONS:]
        w('    <Image Version="1">\n')
        w("".join(f"      {x}\n" for x in lines))
        w("    </Image>\n")
    w("  </Images>\n</EvaluationInputData>\n")


def write_harmony_export(
    out: str | Path,
    planes: Iterable[tuple[Key, np.ndarray]],
    *,
    channels: Sequence[Channel],
    geometry: PlateGeometry,
    pixel_size_um: float | tuple[float, float],
    plate_name: str = "SIMPLATE",
    schema: str = "v5",
    instrument: str = "Phenix",
    field_positions_um: Sequence[tuple[float, float]] | None = None,
    z_step_um: float = 1.0,
    time_step_s: float = 0.0,
    flatfield: dict[int, str] | None = None,
    compression: str | None = "lzw",
    overwrite: bool = False,
) -> Path:
    """Write planes as a Harmony export and return the path of its index.

    Parameters
    ----------
    out
        Export folder to create (the "measurement folder"); images and index go to
        ``out/Images``.
    planes
        Iterable of ``((row, col, field, z, channel, t), 2-D array)`` with 0-based indices;
        consumed lazily, one TIFF written per item.
    channels
        One :class:`Channel` per channel index (name, type, wavelengths, ``metadata`` keys as
        :func:`hcs.io.harmony.read_harmony` returns them: ``exposure_s``, ``binning`` ...).
    geometry
        Plate rows x columns.
    pixel_size_um
        Pixel size in um, one number or (y, x).
    plate_name, instrument
        ``Plate/Name`` and ``PlateID``; ``InstrumentType`` (``Phenix``, ``Sonata`` ...).
    schema
        ``"v5"`` (``Index.idx.xml``) or ``"v7"`` (``Index.xml``).
    field_positions_um
        Well-relative (x, y) per field in um, image orientation; default a centred square grid
        one image apart (:func:`default_field_positions`).
    z_step_um, time_step_s
        ``PositionZ`` = z * step; ``MeasurementTimeOffset`` = t * step.
    flatfield
        ``{channel_index: FlatfieldProfile text}`` written into a ``Map/Entry``.
    compression
        TIFF compression (``"lzw"`` like real exports, ``None`` for speed).
    overwrite
        Replace an existing non-empty ``out``.

    Returns
    -------
    Path
        The index file.

    Raises
    ------
    OutputExistsError
        ``out`` exists, is not empty, and ``overwrite`` is False.
    InputError
        Bad keys (outside the plate, unknown channel, duplicate), mixed shapes or dtypes.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "export"
    >>> img = np.arange(12, dtype=np.uint16).reshape(3, 4)
    >>> idx = write_harmony_export(d, [((0, 0, 0, 0, 0, 0), img)], channels=[Channel("DAPI")],
    ...     geometry=PlateGeometry.from_format(96), pixel_size_um=0.5)
    >>> idx.relative_to(d).as_posix(), sorted(p.name for p in idx.parent.iterdir())
    ('Images/Index.idx.xml', ['Index.idx.xml', 'r01c01f01p01-ch1sk1fk1fl1.tiff'])
    """
    import tifffile

    schema = schema.lower()
    if schema not in NAMESPACES:
        raise InputError(f"schema must be 'v5' or 'v7', got {schema!r}")
    if not channels:
        raise InputError("write_harmony_export needs at least one channel")
    pixel_um = (
        (float(pixel_size_um), float(pixel_size_um))
        if np.isscalar(pixel_size_um)
        else (float(pixel_size_um[0]), float(pixel_size_um[1]))  # type: ignore[index]
    )
    if min(pixel_um) <= 0:
        raise InputError(f"pixel size must be positive, got {pixel_size_um}")
    for ci in flatfield or {}:
        if not 0 <= ci < len(channels):
            raise InputError(f"flatfield given for channel {ci}, but there are {len(channels)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(f"{out} exists and is not empty (pass overwrite=True)")

    with atomic_dir(out, overwrite=overwrite or out.is_dir(), not_ours=export_not_ours) as tmp:
        images = tmp / "Images"
        images.mkdir()
        records: list[tuple[Key, str]] = []
        seen: set[Key] = set()
        shape: tuple[int, int] | None = None
        dtype = None
        for key, arr in planes:
            k = tuple(int(v) for v in key)
            if len(k) != 6 or min(k) < 0:
                raise InputError(f"plane key {key!r}: expected 6 indices >= 0")
            r, c, _, _, ch, _ = k
            if not geometry.contains(r, c):
                raise InputError(
                    f"plane {k}: well outside the {geometry.rows} x {geometry.columns} plate"
                )
            if ch >= len(channels):
                raise InputError(f"plane {k}: channel {ch} but only {len(channels)} channels given")
            if k in seen:
                raise InputError(f"plane {k} given twice")
            a = np.asarray(arr)
            if a.ndim != 2:
                raise InputError(f"plane {k}: expected a 2-D array, got shape {a.shape}")
            if shape is None:
                shape, dtype = (int(a.shape[0]), int(a.shape[1])), a.dtype
            elif a.shape != shape or a.dtype != dtype:
                raise InputError(
                    f"plane {k}: {a.shape} {a.dtype}, but earlier planes are {shape} {dtype}"
                )
            name = harmony_file_name(*k)
            tifffile.imwrite(
                images / name, a, compression=compression, photometric="minisblack", metadata=None
            )
            seen.add(k)
            records.append((k, name))  # type: ignore[arg-type]
        if shape is None:
            raise InputError("write_harmony_export: no planes given")
        n_fields = max(k[2] for k, _ in records) + 1
        positions = (
            list(field_positions_um)
            if field_positions_um is not None
            else default_field_positions(n_fields, shape, pixel_um)
        )
        if len(positions) < n_fields:
            raise InputError(f"{len(positions)} field positions given for {n_fields} fields")
        records.sort(key=lambda kr: (kr[0][0], kr[0][1], kr[0][5], kr[0][2], kr[0][3], kr[0][4]))
        index = images / _INDEX_NAME[schema]
        with open(index, "w", encoding="utf-8", newline="\n") as fh:
            _write_index(
                fh, records, schema=schema, channels=channels, geometry=geometry,
                pixel_um=pixel_um, shape=shape, dtype=dtype, plate_name=plate_name,
                instrument=instrument, positions=positions, z_step_um=z_step_um,
                time_step_s=time_step_s, flatfield=flatfield,
            )  # fmt: skip
    return out / "Images" / _INDEX_NAME[schema]
