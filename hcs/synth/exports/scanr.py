"""Write planes as a scanR export (used by the simulator and as test fixtures).

Two metadata styles, both read back by :func:`hcs.io.scanr.read_scanr`:

- ``metadata="ome"``: scanR 3.3 style, ``out/data/metadata.ome.xml`` (one OME ``Image`` per
  well position, ``TiffData`` per plane, ``Plane`` with stage positions in um and ``DeltaT``).
- ``metadata="descriptor"``: older scanR, ``out/experiment_descriptor.xml`` (LabVIEW-flattened
  XML, ISO-8859-1 without an encoding declaration, as scanR writes it) and
  ``out/AcquisitionLog.dat`` (tab-separated per-image positions). No public descriptor sample
  exists; the keys follow FORMATS.md 2.4 (the ones Bio-Formats' ``ScanrReader`` reads). Its
  channel list also holds an ``Autofocus`` entry and an idle slot, which readers must drop.

Images go to ``out/data/<prefix>--W%05d--P%05d--Z%05d--T%05d--<channel>.tif``, one 2-D TIFF per
plane (deflate). Stage coordinates are written Cartesian (``PositionY = -y``), as scanR does:
a field at image-orientation offset (x, y) from its well centre lies at
``(well_x + x, -(well_y + y))``, with well centres on the SBS footprint (A1 at 14.38, 11.24 mm
on a 96-well plate). Output bytes depend only on the inputs. Everything is written into a
temporary sibling folder that is renamed into place at the end, so a failure leaves nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from hcs.atomic import atomic_dir
from hcs.errors import InputError, OutputExistsError
from hcs.io.acquisition import Channel, default_field_positions
from hcs.plate import PlateGeometry, row_name
from hcs.synth.exports import export_not_ours

__all__ = ["write_scanr_export", "well_center_um", "default_field_positions"]

_OME_TYPES = {
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "int8": "int8",
    "int16": "int16", "int32": "int32", "float32": "float", "float64": "double",
}
_SBS_UM = (127760.0, 85480.0)  # ANSI/SBS plate footprint, x by y


def well_center_um(geometry: PlateGeometry, row: int, col: int) -> tuple[float, float]:
    """(x, y) centre of a well in um, image orientation, wells centred on the SBS footprint.

    Examples
    --------
    >>> well_center_um(PlateGeometry.from_format(96), 0, 0)
    (14380.0, 11240.0)
    """
    pitch = 9000.0 * 8 / geometry.rows
    x0 = (_SBS_UM[0] - (geometry.columns - 1) * pitch) / 2
    y0 = (_SBS_UM[1] - (geometry.rows - 1) * pitch) / 2
    return x0 + col * pitch, y0 + row * pitch


def _check_channel_names(channels: Sequence[Channel], metadata: str) -> list[str]:
    names = [c.name for c in channels]
    if not names:
        raise InputError("write_scanr_export: no channels given")
    for n in names:
        if not n or any(ch in n for ch in "/\\\0") or n in (".", ".."):
            raise InputError(f"channel name {n!r} cannot be part of a file name")
        if metadata == "descriptor" and n == "Autofocus":
            raise InputError("channel name 'Autofocus' is reserved in experiment_descriptor.xml")
    if len(set(names)) != len(names):
        raise InputError(f"duplicate channel names: {names}")
    return names


def write_scanr_export(
    out: str | Path,
    planes: Iterable[tuple[tuple[int, int, int, int, int, int], np.ndarray]],
    *,
    channels: Sequence[Channel],
    geometry: PlateGeometry,
    pixel_size_um: float | tuple[float, float],
    plate_name: str = "SIMPLATE",
    field_positions_um: Sequence[tuple[float, float]] | None = None,
    z_step_um: float = 1.0,
    time_step_s: float = 0.0,
    metadata: str = "ome",
    prefix: str = "well",
    overwrite: bool = False,
) -> Path:
    """Write planes as a scanR export folder.

    Parameters
    ----------
    out
        Export folder to create (images in ``out/data/``).
    planes
        Iterable of ``((row, col, field, z, channel, t), plane)``, 0-based keys, 2-D arrays of
        one shape and dtype. Consumed lazily: each plane is written as it arrives, only its key
        is kept.
    channels
        Channel metadata, indexed by the ``channel`` key. Names may contain spaces, ``#`` and
        hyphens (``"405 nm #1"``, ``"nucleus-dapi"``).
    geometry
        Plate geometry (sets the ``W`` well numbers).
    pixel_size_um
        Pixel size in um, one value or (y, x).
    plate_name
        Plate name (descriptor ``plate name``; the OME-XML has no plate element).
    field_positions_um
        (x, y) offset of each field from its well centre in um, image orientation (y down);
        default: abutting fields on a square grid (:func:`default_field_positions`).
    z_step_um, time_step_s
        Z spacing and time-point interval.
    metadata
        ``"ome"`` (scanR 3.3 ``data/metadata.ome.xml``) or ``"descriptor"``
        (``experiment_descriptor.xml`` + ``AcquisitionLog.dat``).
    prefix
        ``"well"``: file names start with the well name (``B2--W00014--...``); ``""``: no prefix
        (``--W00014--...``); any other text is used as it is.
    overwrite
        Replace an existing non-empty ``out``.

    Returns
    -------
    Path
        The metadata file written (``metadata.ome.xml`` or ``experiment_descriptor.xml``).

    Examples
    --------
    >>> import tempfile
    >>> g = PlateGeometry.from_format(96)
    >>> planes = [((1, 1, 0, 0, 0, 0), np.zeros((4, 6), np.uint16))]
    >>> out = Path(tempfile.mkdtemp()) / "exp"
    >>> write_scanr_export(out, planes, channels=[Channel("405 nm #1")], geometry=g,
    ...                    pixel_size_um=0.325).name
    'metadata.ome.xml'
    >>> sorted(p.name for p in (out / "data").iterdir())
    ['B2--W00014--P00001--Z00000--T00000--405 nm #1.tif', 'metadata.ome.xml']
    """
    import tifffile

    if metadata not in ("ome", "descriptor"):
        raise InputError(f"metadata must be 'ome' or 'descriptor', got {metadata!r}")
    if "--" in prefix or any(ch in prefix for ch in "/\\\0"):
        raise InputError(f"file prefix {prefix!r} may not contain '--' or path separators")
    names = _check_channel_names(channels, metadata)
    psize = (
        (float(pixel_size_um), float(pixel_size_um))
        if np.isscalar(pixel_size_um)
        else (float(pixel_size_um[0]), float(pixel_size_um[1]))  # type: ignore[index]
    )
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise OutputExistsError(f"{out} exists and is not empty (pass overwrite to replace it)")
    with atomic_dir(out, overwrite=overwrite or out.is_dir(), not_ours=export_not_ours) as tmp:
        (tmp / "data").mkdir()
        files: dict[tuple[int, ...], str] = {}
        shape: tuple[int, int] | None = None
        dtype: np.dtype | None = None
        for key, plane in planes:
            k = _check_key(key, geometry, len(names))
            arr = np.asarray(plane)
            if arr.ndim != 2:
                raise InputError(f"plane {k}: expected a 2-D array, got shape {arr.shape}")
            if shape is None:
                shape, dtype = arr.shape, arr.dtype
                if dtype.name not in _OME_TYPES:
                    raise InputError(f"plane {k}: unsupported dtype {dtype}")
            elif arr.shape != shape or arr.dtype != dtype:
                raise InputError(
                    f"plane {k}: {arr.shape} {arr.dtype} differs from the first plane's "
                    f"{shape} {dtype}"
                )
            if k in files:
                raise InputError(f"duplicate plane key {k} (row, col, field, z, channel, t)")
            row, col, fld, z, c, t = k
            w = row * geometry.columns + col + 1
            pre = f"{row_name(row)}{col + 1}" if prefix == "well" else prefix
            fname = f"{pre}--W{w:05d}--P{fld + 1:05d}--Z{z:05d}--T{t:05d}--{names[c]}.tif"
            tifffile.imwrite(
                tmp / "data" / fname, arr, photometric="minisblack", metadata=None,
                compression="zlib", compressionargs={"level": 1},
            )
            files[k] = fname
        if not files or shape is None:
            raise InputError("write_scanr_export: no planes given")
        n_fields = max(k[2] for k in files) + 1
        offsets = (
            [(float(x), float(y)) for x, y in field_positions_um]
            if field_positions_um is not None
            else default_field_positions(n_fields, shape, psize)
        )
        if len(offsets) < n_fields:
            raise InputError(
                f"field_positions_um has {len(offsets)} entries, but field {n_fields - 1} "
                "was written"
            )
        ctx = ScanrContext(geometry, channels, psize, shape, dtype, offsets, z_step_um, time_step_s,
                       plate_name, files)
        if metadata == "ome":
            meta = tmp / "data" / "metadata.ome.xml"
            meta.write_bytes(_ome_xml(ctx).encode("utf-8"))
        else:
            from hcs.synth.exports.scanr_descriptor import acquisition_log, descriptor_xml

            meta = tmp / "experiment_descriptor.xml"
            meta.write_bytes(descriptor_xml(ctx, prefix).encode("latin-1", "xmlcharrefreplace"))
            (tmp / "AcquisitionLog.dat").write_bytes(acquisition_log(ctx).encode("ascii"))
        rel = meta.relative_to(tmp)
    return out / rel


def _check_key(key: Any, geometry: PlateGeometry, n_channels: int) -> tuple[int, ...]:
    try:
        k = tuple(int(v) for v in key)
    except (TypeError, ValueError):
        raise InputError(f"plane key {key!r} is not (row, col, field, z, channel, t)") from None
    if len(k) != 6 or min(k) < 0:
        raise InputError(f"plane key {key!r} is not 6 non-negative ints (row, col, field, z, c, t)")
    if not geometry.contains(k[0], k[1]):
        raise InputError(
            f"plane key {k}: well outside the {geometry.rows} x {geometry.columns} plate"
        )
    if k[4] >= n_channels:
        raise InputError(f"plane key {k}: channel {k[4]} but only {n_channels} channels given")
    return k


class ScanrContext:
    """What the metadata writers need, gathered once all planes are written."""

    def __init__(
        self,
        geometry: PlateGeometry,
        channels: Sequence[Channel],
        psize: tuple[float, float],
        shape: tuple[int, int],
        dtype: np.dtype,
        offsets: list[tuple[float, float]],
        z_step: float,
        t_step: float,
        plate_name: str,
        files: dict[tuple[int, ...], str],
    ) -> None:
        self.geometry, self.channels, self.psize = geometry, channels, psize
        self.shape, self.dtype, self.offsets = shape, dtype, offsets
        self.z_step, self.t_step, self.plate_name = float(z_step), float(t_step), plate_name
        self.files = dict(sorted(files.items(), key=lambda kv: _order(kv[0], geometry)))
        self.size_z = max(k[3] for k in files) + 1
        self.size_t = max(k[5] for k in files) + 1

    def well_number(self, row: int, col: int) -> int:
        return row * self.geometry.columns + col + 1

    def stage(self, row: int, col: int, fld: int, z: int) -> tuple[float, float, float]:
        """Cartesian stage (x, y, z) in um of a plane."""
        cx, cy = well_center_um(self.geometry, row, col)
        ox, oy = self.offsets[fld]
        return cx + ox, -(cy + oy), z * self.z_step


def _order(k: tuple[int, ...], g: PlateGeometry) -> tuple[int, ...]:
    row, col, fld, z, c, t = k
    return (row * g.columns + col, fld, t, z, c)


def _f(v: float) -> str:
    return f"{v:.6f}"


def _uuid(ctx: ScanrContext, name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'hcs-scanr/{ctx.plate_name}/{name}')}"


def _ome_xml(ctx: ScanrContext) -> str:
    from hcs import __version__

    ns = "http://www.openmicroscopy.org/Schemas/OME/2013-06"
    lines = [
        '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>',
        f'<OME Creator="hcs {__version__}, scanR 3.3 layout" UUID="{_uuid(ctx, "OME")}" '
        f'xmlns="{ns}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xsi:schemaLocation="{ns} {ns}/ome.xsd">',
        "",
        '  <Instrument ID="Instrument:0">',
        '    <Microscope Manufacturer="hcs" Model="simulated" Type="Inverted"/>',
        '    <Detector ID="Detector:0" Manufacturer="hcs" Model="simulated" Type="CMOS"/>',
        "  </Instrument>",
        "",
    ]
    by_image: dict[tuple[int, int, int], list[tuple[tuple[int, ...], str]]] = {}
    for k, fname in ctx.files.items():
        by_image.setdefault(k[:3], []).append((k, fname))
    bits = ctx.dtype.itemsize * 8
    for (row, col, fld), items in by_image.items():
        w, p = ctx.well_number(row, col), fld + 1
        iid = f"W{w}P{p}"
        lines += [
            f'  <Image ID="Image:{iid}" Name="Well {w}, Position {p} '
            f'({row_name(row)}{col + 1})">',
            '    <InstrumentRef ID="Instrument:0"/>',
            f'    <Pixels DimensionOrder="XYCTZ" ID="Pixels:{iid}" Interleaved="false" '
            f'PhysicalSizeX="{_f(ctx.psize[1])}" PhysicalSizeY="{_f(ctx.psize[0])}" '
            f'SignificantBits="{bits}" SizeC="{len(ctx.channels)}" SizeT="{ctx.size_t}" '
            f'SizeX="{ctx.shape[1]}" SizeY="{ctx.shape[0]}" SizeZ="{ctx.size_z}" '
            f'Type="{_OME_TYPES[ctx.dtype.name]}">',
        ]
        for ci, ch in enumerate(ctx.channels):
            lines += [f"      <Channel {_channel_attrs(ch, f'Channel:{iid}:{ci}')}>",
                      '        <DetectorSettings Binning="1x1" ID="Detector:0"/>',
                      "      </Channel>"]
        for (_, _, _, z, c, t), fname in items:
            lines += [f'      <TiffData FirstC="{c}" FirstT="{t}" FirstZ="{z}">',
                      f"        <UUID FileName={quoteattr(fname)}>{_uuid(ctx, fname)}</UUID>",
                      "      </TiffData>"]
        for (_, _, _, z, c, t), _fname in items:
            x, y, zz = ctx.stage(row, col, fld, z)
            exp = ctx.channels[c].metadata.get("exposure_s")
            exp_attr = f'ExposureTime="{_f(float(exp))}" ' if exp is not None else ""
            lines.append(
                f'      <Plane DeltaT="{_f(t * ctx.t_step)}" {exp_attr}PositionX="{_f(x)}" '
                f'PositionY="{_f(y)}" PositionZ="{_f(zz)}" TheC="{c}" TheT="{t}" TheZ="{z}"/>'
            )
        lines += ["    </Pixels>", "  </Image>", ""]
    lines += ["</OME>", ""]
    return "\n".join(lines)


def _channel_attrs(ch: Channel, cid: str) -> str:
    mode = ch.metadata.get("acquisition_mode", "WideField")
    illum = "Epifluorescence" if ch.channel_type == "fluorescence" else "Transmitted"
    attrs = [f"AcquisitionMode={quoteattr(str(mode))}"]
    if ch.channel_type == "phase":
        attrs.append('ContrastMethod="Phase"')
    if ch.emission_nm:
        attrs.append(f'EmissionWavelength="{_f(ch.emission_nm)}"')
    if ch.excitation_nm:
        attrs.append(f'ExcitationWavelength="{_f(ch.excitation_nm)}"')
    attrs += [f'ID="{cid}"', f'IlluminationType="{illum}"', f"Name={quoteattr(ch.name)}"]
    return " ".join(attrs)
