"""``hcs stats`` and ``hcs layout check``: plate layouts and condition statistics."""

from __future__ import annotations

import typer

from hcs.cli.app import app, user_errors
from hcs.cli.options import with_params
from hcs.params import StatsParams

# --- stats (issue 7) ---


@app.command("stats")
@user_errors
@with_params(StatsParams)
def stats_cmd(
    source: str = typer.Argument(..., help="Run folder with wells.parquet, or a wells file."),
    out: str = typer.Option(
        None, "--out", "-o", help="Output (default: stats.parquet next to the wells)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    max_rows: int = typer.Option(40, "--max-rows", help="Rows per table on the terminal."),
    params: StatsParams = StatsParams(),
) -> None:
    """Per-condition statistics (t-tests, dose-response, plate QC) -> stats.parquet."""
    from hcs.stats.run import stats_for_run
    from hcs.stats.show import print_stats

    stats, path = stats_for_run(source, out, params.layout, params.plate_format, overwrite,
                                **params.run_stats_kwargs())
    print_stats(stats, max_rows=max_rows)
    for readout, bad in stats.attrs.get("nonfinite", {}).items():
        typer.echo(f"warning: {len(bad)} usable well(s) have a NaN or infinite {readout}, left "
                   f"out of the tests (n_nonfinite, nonfinite_wells): {', '.join(bad[:20])}",
                   err=True)
    comp = stats[stats["kind"] == "comparison"]
    if len(comp) and (comp["status"] == "reference_missing").all():
        typer.echo(f"warning: reference {comp['reference'].iloc[0]!r} has no well", err=True)
    typer.echo(f"wrote {path} ({len(stats)} rows)")
    flagged = stats_wells_missing_planes(source)
    if flagged:
        how = ("included (--include-missing-planes)" if params.include_missing_planes
               else "left out")
        typer.echo(f"warning: wells with planes missing at convert, {how}: "
                   f"{', '.join(flagged)}", err=True)


def stats_wells_missing_planes(source: str) -> list[str]:
    """Wells of the wells table flagged ``qc_missing_planes`` (``plate/well`` names)."""
    from hcs.stats.run import load_wells

    wells = load_wells(source)
    if "qc_missing_planes" not in wells:
        return []
    sel = wells[wells["qc_missing_planes"].astype(bool)]
    return [f"{p}/{w}" for p, w in zip(sel["plate"], sel["well"], strict=True)]


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
