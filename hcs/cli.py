"""The ``hcs`` command line: every command is a thin wrapper over one library function."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from hcs.errors import HcsError

app = typer.Typer(
    name="hcs",
    help="High-content-screening plate analyzer: export -> OME-Zarr -> cells -> wells -> stats"
    " -> report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Print :class:`HcsError` as one line on stderr and exit 2, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HcsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(code=130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", help="Print the hcs version and exit."),
) -> None:
    """hcs: instrument exports in, defensible statistics and a report out."""
    if version:
        from hcs import __version__

        typer.echo(__version__)
        raise typer.Exit()


# --- convert / info (issue 2) ---


@app.command()
@user_errors
def convert(
    src: str = typer.Argument(..., help="Instrument export folder (or its index file)."),
    out: str = typer.Argument(..., help="Output plate, e.g. plate.ome.zarr."),
    fmt: str = typer.Option(
        "auto", "--format", help="Export format: auto, harmony, scanr or tiff-folder."
    ),
    pattern: str | None = typer.Option(
        None, "--pattern", help="File-name pattern for a TIFF-folder export."
    ),
    plate_format: int | None = typer.Option(
        None, "--plate-format", help="Plate format (96, 384, 1536) when the export omits it."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    strict: bool = typer.Option(False, "--strict", help="Fail when any plane is missing."),
    allow_outside: bool = typer.Option(
        False, "--allow-outside", help="Let the metadata reference files outside SRC."
    ),
    ngff: str = typer.Option("0.5", "--ngff", help="NGFF version: 0.5 (zarr v3) or 0.4 (zarr v2)."),
    workers: int | None = typer.Option(
        None, "--workers", help="Parallel fields (default: number of CPUs)."
    ),
) -> None:
    """Convert an instrument export into an OME-Zarr HCS plate."""
    from pathlib import Path

    from hcs.errors import OutputExistsError
    from hcs.io import open_export
    from hcs.io.omezarr import open_plate, write_plate

    if Path(out).exists() and not overwrite:
        raise OutputExistsError(f"{out} exists; pass --overwrite to replace it")
    acq = open_export(
        src, fmt=fmt, pattern=pattern, plate_format=plate_format, allow_outside=allow_outside
    )
    path = write_plate(
        acq, out, ngff=ngff, overwrite=overwrite, strict=strict, workers=workers,
        progress=sys.stderr.isatty(),
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
) -> None:
    """Summarise a plate or an export: wells, fields, channels, pixel size, missing planes."""
    import json

    from hcs.io.info import plate_info, render_info

    result = plate_info(path, fmt=fmt, pattern=pattern, plate_format=plate_format)
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
    workers: int | None = typer.Option(None, "--workers", help="Rendering processes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Simulate a screen with known ground truth, written as a real Harmony or ScanR export."""
    from hcs.synth import simulate_plate

    res = simulate_plate(
        out, layout, assay, fmt=fmt, fields=fields, size=size, seed=seed,
        wells_per_condition=wells_per_condition, pixel_size_um=pixel_size, schema=schema,
        overwrite=overwrite, progress=not quiet, z_planes=z_planes, z_step_um=z_step,
        workers=workers,
    )
    typer.echo(
        f"simulated {res.n_wells} wells x {fields} fields ({res.n_objects} objects, "
        f"{res.n_planes} planes) in {res.seconds:.1f} s\n"
        f"export: {res.index_file}\ntruth:  {res.cells.parent}"
    )


# --- stats (issue 7) ---


@app.command("stats")
@user_errors
def stats_cmd(
    source: str = typer.Argument(..., help="Run folder with wells.parquet, or a wells file."),
    layout: str = typer.Option(None, "--layout", "-l", help="Plate layout (CSV, grid, XML)."),
    reference: str = typer.Option(
        None, "--reference", "-r", help="Reference condition (default: the negative control)."
    ),
    test: str = typer.Option("student", "--test", help="student | welch"),
    correction: str = typer.Option(
        "fdr_bh", "--correction", help="fdr_bh | holm | bonferroni | none"
    ),
    transform: str = typer.Option("none", "--transform", help="none | logit"),
    blocks: str = typer.Option(
        "model", "--blocks", help="Several plates: model (plate factor) | normalise"
    ),
    readout: list[str] = typer.Option(
        None, "--readout", help="Readouts to test (default: all freq_ columns)."
    ),
    plate_format: int = typer.Option(None, "--plate-format", help="Wells of the plate."),
    out: str = typer.Option(
        None, "--out", "-o", help="Output (default: stats.parquet next to the wells)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    max_rows: int = typer.Option(40, "--max-rows", help="Rows per table on the terminal."),
) -> None:
    """Per-condition statistics (t-tests, dose-response, plate QC) -> stats.parquet."""
    from hcs.stats.run import stats_for_run
    from hcs.stats.show import print_stats

    stats, path = stats_for_run(
        source, out, layout, plate_format, overwrite, reference=reference, test=test,
        correction=correction, transform=transform, blocks=blocks, readouts=readout or None,
    )
    print_stats(stats, max_rows=max_rows)
    comp = stats[stats["kind"] == "comparison"]
    if len(comp) and (comp["status"] == "reference_missing").all():
        typer.echo(f"warning: reference {comp['reference'].iloc[0]!r} has no well", err=True)
    typer.echo(f"wrote {path} ({len(stats)} rows)")


layout_app = typer.Typer(help="Plate layouts: check a layout file.", no_args_is_help=True)
app.add_typer(layout_app, name="layout")


@layout_app.command("check")
@user_errors
def layout_check_cmd(
    path: str = typer.Argument(..., help="Layout file (tidy CSV, grid CSV, Harmony XML)."),
    plate_format: int = typer.Option(None, "--plate-format", help="Wells of the plate."),
    require_controls: bool = typer.Option(
        False, "--require-controls", help="Fail without negative and positive controls."
    ),
) -> None:
    """Validate a layout against the plate and print its conditions."""
    from hcs.layouts import layout_summary

    typer.echo(layout_summary(path, plate_format, require_controls))


def run() -> None:  # pragma: no cover - console entry for `python -m hcs`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run())
