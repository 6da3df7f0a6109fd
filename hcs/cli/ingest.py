"""``hcs convert``, ``hcs info`` and ``hcs simulate``: exports in, plates and simulations out."""

from __future__ import annotations

import typer

from hcs.cli.app import app, user_errors
from hcs.cli.options import with_params
from hcs.params import ConvertParams

# --- convert / info (issue 2) ---


@app.command()
@user_errors
@with_params(ConvertParams)
def convert(
    src: str = typer.Argument(..., help="Instrument export folder (or its index file)."),
    out: str = typer.Argument(..., help="Output plate, e.g. plate.ome.zarr."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing OUT (only a plate hcs wrote)."
    ),
    params: ConvertParams = ConvertParams(),
) -> None:
    """Convert an instrument export into an OME-Zarr HCS plate."""
    from hcs.atomic import check_replaceable
    from hcs.io import open_export
    from hcs.io.convert import write_plate
    from hcs.io.omezarr import open_plate

    check_replaceable(out, inputs=[src], overwrite=overwrite)
    acq = open_export(src, **params.open_export_kwargs())
    path = write_plate(
        acq, out, ngff=params.ngff, overwrite=overwrite, strict=params.strict,
        workers=params.workers, progress=True, dtype=params.dtype, inputs=[src],
    )
    stats = open_plate(path).attrs.get("stats", {})
    typer.echo(
        f"wrote {path}: {stats.get('wells')} wells, {stats.get('fields')} fields, "
        f"{acq.size_c} channels, {stats.get('planes')} planes, {stats.get('missing')} missing, "
        f"{stats.get('bytes', 0) / 1e6:.1f} MB in {stats.get('seconds', 0):.1f} s "
        f"({stats.get('mb_per_s', 0):.1f} MB/s)"
    )


@app.command()
@user_errors
def info(
    path: str = typer.Argument(..., help="An OME-Zarr plate or an instrument export."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    fmt: str = typer.Option("auto", "--format", help="Export format for a raw export."),
    pattern: str | None = typer.Option(None, "--pattern", help="TIFF-folder file-name pattern."),
    plate_format: int | None = typer.Option(None, "--plate-format", help="Plate format."),
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="Let the metadata reference files outside the export."
    ),
    pixel_size: float | None = typer.Option(
        None, "--pixel-size", help="Pixel size in um (x and y) where the export lacks it."
    ),
    z_step: float | None = typer.Option(None, "--z-step", help="Z step in um."),
    channel_names: str | None = typer.Option(
        None, "--channel-names", help="Channel names, comma-separated, in channel order."
    ),
    override_metadata: bool = typer.Option(
        False, "--override-metadata", help="Let the three options above replace the metadata."
    ),
) -> None:
    """Summarise a plate or an export: wells, fields, channels, pixel size (and where each came
    from), missing planes."""
    import json

    from hcs.io.info import plate_info, render_info

    result = plate_info(
        path, fmt=fmt, pattern=pattern, plate_format=plate_format, allow_outside=allow_outside,
        pixel_size_um=pixel_size, z_step_um=z_step, channel_names=channel_names,
        override_metadata=override_metadata,
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        from rich.console import Console

        Console().print(render_info(result))

# --- simulate (issue 3) ---


@app.command("simulate")
@user_errors
def simulate_cmd(
    out: str = typer.Argument(..., help="Output folder: export/ (instrument export) + truth/."),
    layout: str = typer.Option(..., "--layout", "-l", help="Plate layout CSV (sim_* columns)."),
    assay: str = typer.Option(..., "--assay", "-a", help="cic | livedead | mitosis | cancer"),
    fmt: str = typer.Option("harmony", "--format", "-f", help="harmony | scanr"),
    wells_per_condition: int | None = typer.Option(
        None, "--wells-per-condition", help="Simulate only the first N wells of each condition."
    ),
    fields: int = typer.Option(4, "--fields", help="Fields per well."),
    size: int = typer.Option(1080, "--size", help="Field size in pixels (square)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same bytes."),
    pixel_size: float = typer.Option(0.598, "--pixel-size", help="Pixel size in um."),
    schema: str = typer.Option("v5", "--schema", help="Harmony index schema: v5 | v7."),
    z_planes: int = typer.Option(1, "--z-planes", help="Planes per z-stack."),
    z_step: float = typer.Option(1.0, "--z-step", help="Z step in um."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    plate_format: int | None = typer.Option(
        None, "--plate-format", help="Plate format (default 96, larger if the layout needs)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Rendering processes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Simulate a screen with known ground truth, written as a real Harmony or ScanR export."""
    from hcs.synth import simulate_plate

    res = simulate_plate(
        out, layout, assay, fmt=fmt, fields=fields, size=size, seed=seed,
        wells_per_condition=wells_per_condition, pixel_size_um=pixel_size, schema=schema,
        overwrite=overwrite, progress=not quiet, z_planes=z_planes, z_step_um=z_step,
        workers=workers, plate_format=plate_format,
    )
    typer.echo(
        f"simulated {res.n_wells} wells x {fields} fields ({res.n_objects} objects, "
        f"{res.n_planes} planes) in {res.seconds:.1f} s\n"
        f"export: {res.index_file}\ntruth:  {res.cells.parent}"
    )
