"""A short, JSON-ready summary of a converted plate or a raw instrument export (``hcs info``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hcs.errors import InputError
from hcs.io.plate_meta import missing_records, to_json_safe
from hcs.plate import well_name

_USER_KEYS = ("pixel_size_um", "z_step_um", "channel_names", "override_metadata")

#: Keys of :func:`plate_info`'s result, in order.
INFO_KEYS = (
    "plate",
    "rows",
    "columns",
    "wells",
    "fields",
    "channels",
    "pixel_size_um",
    "z_step_um",
    "sources",
    "dtype",
    "size_z",
    "size_t",
    "missing_planes",
)


def plate_info(path_or_export: str | Path, **reader_kwargs: Any) -> dict[str, Any]:
    """Summarise an OME-Zarr plate written by hcs, or a raw export (read via ``open_export``).

    Parameters
    ----------
    path_or_export
        A ``.ome.zarr`` plate folder, or an export folder (Harmony, ScanR, TIFF folder).
    **reader_kwargs
        Passed to :func:`hcs.io.open_export` for raw exports (``fmt``, ``pattern``,
        ``plate_format``, ``allow_outside``, ``pixel_size_um``, ``z_step_um``,
        ``channel_names``, ``override_metadata``); the last four are refused for a plate
        (convert it again to change them).

    Returns
    -------
    dict
        Keys :data:`INFO_KEYS`: ``plate`` (name), ``rows``/``columns`` (plate geometry),
        ``wells`` (names of wells with images), ``fields`` (``{well: number of fields}`` for
        every well: always per well, so sparse or uneven plates read the same way),
        ``channels`` (``[{name, type, excitation_nm, emission_nm}]``), ``pixel_size_um``
        (``[y, x]`` or ``None``), ``z_step_um``, ``sources`` (where the pixel size, z step
        and channel names came from, see :mod:`hcs.io.physical`; ``{}`` for a plate written
        before hcs recorded them), ``dtype``, ``size_z``, ``size_t``, ``missing_planes``
        (``[{well, field, t, c, z, path, reason}]``).
    """
    from hcs.io.omezarr import is_plate, open_plate

    if is_plate(path_or_export):
        given = [k for k in _USER_KEYS if reader_kwargs.get(k) not in (None, False)]
        if given:
            option = "--" + given[0].removesuffix("_um").replace("_", "-")
            raise InputError(f"{path_or_export} is a converted plate: {option} applies to an "
                             "export (convert it again to change it)")
        plate = open_plate(path_or_export)
        hcs = plate.attrs
        ch_meta = {c.get("name"): c for c in hcs.get("channels", [])}
        t, _, z, _, _ = plate.shape
        info = {
            "plate": plate.name,
            "rows": plate.geometry.rows,
            "columns": plate.geometry.columns,
            "wells": plate.wells,
            "fields": {w: len(plate.fields(w)) for w in plate.wells},
            "channels": [
                {
                    "name": name,
                    "type": ch_meta.get(name, {}).get("type"),
                    "excitation_nm": ch_meta.get(name, {}).get("excitation_nm"),
                    "emission_nm": ch_meta.get(name, {}).get("emission_nm"),
                }
                for name in plate.channels
            ],
            "pixel_size_um": list(plate.pixel_size_um) if plate.pixel_size_um else None,
            "z_step_um": plate.z_step_um if z > 1 else hcs.get("z_step_um"),
            "sources": hcs.get("sources", {}),
            "dtype": str(plate.dtype),
            "size_z": z,
            "size_t": t,
            "missing_planes": hcs.get("missing_planes", []),
        }
        return to_json_safe(info)

    from hcs.io import open_export

    acq = open_export(path_or_export, **reader_kwargs)
    dtype = acq.dtype
    if dtype is None:
        from hcs.io.acquisition import probe_tiff

        present = acq.planes.dropna(subset=["path"])
        for rec in present.itertuples(index=False):
            if Path(rec.path).is_file():
                dtype = probe_tiff(rec.path, int(rec.page))[1]
                break
    info = {
        "plate": acq.plate_name,
        "rows": acq.geometry.rows,
        "columns": acq.geometry.columns,
        "wells": acq.well_names(),
        "fields": {well_name(r, c): len(acq.fields_of(r, c)) for r, c in acq.wells()},
        "channels": [
            {
                "name": ch.name,
                "type": ch.channel_type,
                "excitation_nm": ch.excitation_nm,
                "emission_nm": ch.emission_nm,
            }
            for ch in acq.channels
        ],
        "pixel_size_um": list(acq.pixel_size_um) if acq.pixel_size_um else None,
        "z_step_um": acq.z_step_um,
        "sources": dict(acq.sources),
        "dtype": str(dtype) if dtype is not None else None,
        "size_z": acq.size_z,
        "size_t": acq.size_t,
        "missing_planes": missing_records(acq.missing_planes()),
    }
    return to_json_safe(info)


def render_info(info: dict[str, Any]) -> Any:
    """A rich table of :func:`plate_info`'s result (for ``hcs info`` without ``--json``)."""
    from rich.table import Table

    table = Table(title=f"plate {info['plate']}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    counts = sorted(set(info["fields"].values()))
    fields = (
        f"{counts[0]} per well" if len(counts) == 1 else f"{counts[0]}..{counts[-1]} per well"
    ) if counts else "none"
    wells = info["wells"]
    shown = ", ".join(wells[:12]) + (f", ... ({len(wells)} in all)" if len(wells) > 12 else "")
    px = info["pixel_size_um"]
    n_wells = info["rows"] * info["columns"]
    table.add_row("plate", f"{info['rows']} x {info['columns']} ({n_wells} wells)")
    table.add_row("wells", f"{len(wells)}: {shown}")
    table.add_row("fields", fields)
    for ch in info["channels"]:
        wl = "/".join(
            f"{ch[k]:g}" if ch[k] is not None else "?" for k in ("excitation_nm", "emission_nm")
        )
        table.add_row("channel", f"{ch['name']} ({ch['type']}, ex/em {wl} nm)")
    src = info.get("sources") or {}

    def origin(key: str) -> str:
        return f" ({src[key]})" if src.get(key) else ""

    if px:
        table.add_row("pixel size", f"{px[0]:g} x {px[1]:g} um{origin('pixel_size_um')}")
    else:
        why = src.get("pixel_size_um", "").removeprefix("unknown").lstrip(": ")
        table.add_row("pixel size", "unknown" + (f" ({why})" if why else "")
                      + "; give it with --pixel-size UM")
    if info.get("z_step_um") is not None or info["size_z"] > 1:
        z = info.get("z_step_um")
        table.add_row("z step", (f"{z:g} um" if z is not None else "unknown")
                      + origin("z_step_um"))
    if src.get("channel_names"):
        table.add_row("channel names from", src["channel_names"])
    table.add_row("dtype", str(info["dtype"]))
    table.add_row("z, t", f"{info['size_z']}, {info['size_t']}")
    miss = info["missing_planes"]
    table.add_row(
        "missing planes",
        str(len(miss))
        + (f" (first: well {miss[0]['well']} field {miss[0]['field']}: {miss[0]['reason']})"
           if miss else ""),
    )
    return table
