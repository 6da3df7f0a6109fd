"""``hcs export profiles``: a run's cells in the pycytominer / CytoTable convention."""

from __future__ import annotations

import typer

from hcs.cli.app import app, user_errors
from hcs.cli.options import with_params
from hcs.params import ExportParams

export_app = typer.Typer(help="Export a run for other tools.", no_args_is_help=True)
app.add_typer(export_app, name="export")


@export_app.command("profiles")
@user_errors
@with_params(ExportParams)
def profiles_cmd(
    run_dir: str = typer.Argument(..., help="Run folder written by `hcs run`."),
    out: str = typer.Option(..., "--out", "-o", help="Profiles Parquet file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    params: ExportParams = ExportParams(),
) -> None:
    """Per-cell (or per-well) profiles: Metadata_* columns and compartment-prefixed features."""
    from hcs.profiles import export_profiles

    rows, path = export_profiles(run_dir, out, level=params.level, layout=params.layout,
                                 overwrite=overwrite)
    typer.echo(f"wrote {path}: {rows} {params.level} profiles")
