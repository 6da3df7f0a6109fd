"""The older scanR metadata files of a written export: ``experiment_descriptor.xml``
(LabVIEW-flattened XML) and ``AcquisitionLog.dat``
(:func:`hcs.synth.exports.scanr.write_scanr_export` with ``metadata="descriptor"``; keys as
FORMATS.md 2.4)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from hcs.plate import row_name

if TYPE_CHECKING:
    from hcs.synth.exports.scanr import ScanrContext


def _f(v: float) -> str:
    return f"{v:.6f}"  # as the OME writer of hcs.synth.exports.scanr formats numbers


def _lv(kind: str, name: str, val: Any) -> str:
    """One LabVIEW-flattened leaf: ``<I32><Name>..</Name><Val>..</Val></I32>``."""
    return f"<{kind}>\n<Name>{escape(name)}</Name>\n<Val>{escape(str(val))}</Val>\n</{kind}>"


def descriptor_xml(ctx: ScanrContext, prefix: str) -> str:
    """The ``experiment_descriptor.xml`` text of an export.

    Parameters
    ----------
    ctx
        The writer's context (geometry, channels, pixel size, files written).
    prefix
        The file-name prefix; ``"well"`` labels each well by its name (``B2``).

    Returns
    -------
    str
        LabVIEW-flattened XML without an encoding declaration (scanR writes ISO-8859-1).
    """
    g = ctx.geometry
    wells = sorted({(k[0], k[1]) for k in ctx.files})
    n_fields = max(k[2] for k in ctx.files) + 1
    ncol_f = math.ceil(math.sqrt(n_fields))
    parts = [
        "<?xml version='1.0' standalone='yes' ?>",
        '<LVData xmlns="http://www.ni.com/LVData">',
        "<Version>8.6.1</Version>",
        "<Cluster>",
        "<Name>experiment descriptor</Name>",
        "<NumElts>11</NumElts>",
        _lv("String", "plate name", ctx.plate_name),
        "<Cluster>\n<Name>format typedef</Name>\n<NumElts>2</NumElts>",
        _lv("I32", "Rows", g.rows),
        _lv("I32", "Columns", g.columns),
        "</Cluster>",
        f"<Array>\n<Name>well selection table + cDNA</Name>\n<Dimsize>{len(wells)}</Dimsize>"
        "\n<Dimsize>2</Dimsize>",
    ]
    for row, col in wells:
        label = f"{row_name(row)}{col + 1}" if prefix == "well" else prefix
        parts += [_lv("String", "", ctx.well_number(row, col)), _lv("String", "", label)]
    parts += [
        "</Array>",
        _lv("DBL", "conversion factor um/pixel", _f(ctx.psize[1])),
        f"<Array>\n<Name>channels</Name>\n<Dimsize>{len(ctx.channels) + 2}</Dimsize>",
    ]
    slots = [("Autofocus", 0, 10.0)]
    slots += [(c.name, 0, 1000.0 * float(c.metadata.get("exposure_s") or 0.1))
              for c in ctx.channels]
    slots.append(("idle slot", 1, 100.0))
    for name, idle, exp_ms in slots:
        parts += ["<Cluster>\n<Name>channel</Name>\n<NumElts>3</NumElts>",
                  _lv("String", "name", name), _lv("U8", "idle", idle),
                  _lv("DBL", "exposure time", _f(exp_ms)), "</Cluster>"]
    parts += [
        "</Array>",
        _lv("I32", "# slices", ctx.size_z),
        _lv("DBL", "slices distance", _f(ctx.z_step)),
        _lv("I32", "timeloop real", ctx.size_t),
        _lv("I32", "timeloop delay [ms]", int(round(ctx.t_step * 1000))),
        _lv("I32", "rows/well", math.ceil(n_fields / ncol_f)),
        _lv("I32", "columns/well", ncol_f),
        f"<Array>\n<Name>subposition list</Name>\n<Dimsize>{n_fields}</Dimsize>",
    ]
    for x, y in ctx.offsets[:n_fields]:
        parts += ["<Cluster>\n<Name>subposition</Name>\n<NumElts>2</NumElts>",
                  _lv("DBL", "X", _f(x)), _lv("DBL", "Y", _f(-y)), "</Cluster>"]
    parts += ["</Array>", "</Cluster>", "</LVData>", ""]
    return "\n".join(parts)


def acquisition_log(ctx: ScanrContext) -> str:
    """The ``AcquisitionLog.dat`` text: one tab-separated line of stage position and time per
    (well, position, timepoint, z), Cartesian coordinates in um as scanR writes them.

    Parameters
    ----------
    ctx
        The writer's context.

    Returns
    -------
    str
        The file's text, lines in acquisition order.
    """
    lines = []
    seen = set()
    for row, col, fld, z, _c, t in ctx.files:
        key = (ctx.well_number(row, col), fld + 1, t, z)
        if key in seen:
            continue
        seen.add(key)
        x, y, zz = ctx.stage(row, col, fld, z)
        lines.append(f"W={key[0]}\tP={key[1]}\tT={t}\tZ={z}\tX={_f(x)}\tY={_f(y)}\tZ={_f(zz)}"
                     f"\tT={_f(t * ctx.t_step)}")
    return "\n".join(sorted(lines, key=_log_order)) + "\n"


def _log_order(line: str) -> tuple[int, ...]:
    return tuple(int(f.split("=")[1]) for f in line.split("\t")[:4])
