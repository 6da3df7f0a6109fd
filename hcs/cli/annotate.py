"""``hcs annotate``: label cells of a run in the browser (or export / import them)."""

from __future__ import annotations

from typing import Any

import typer

from hcs.cli.app import app, user_errors


@app.command("annotate")
@user_errors
def annotate_cmd(
    run_dir: str = typer.Argument(None, help="Run folder whose cells are labelled (not needed "
                                  "with --import, or to continue an existing --out)."),
    out: str = typer.Option(..., "--out", "-o", help="Annotation folder (labels.csv, images); "
                            "an existing one is continued."),
    classes: str = typer.Option(None, "--classes", help="Classes to label: a,b,c (model "
                                "output order; keys 1-9)."),
    assay: str = typer.Option(None, "--assay", help="A built-in assay whose classes are "
                              "labelled (cic, livedead, cancer, mitosis)."),
    assay_file: str = typer.Option(None, "--assay-file", help="assay.yaml: classes, input "
                                   "channel roles, excluded classes, composite readouts."),
    n: int = typer.Option(None, "--n", help="Cells to draw in this round [default: 200, or "
                          "as the folder's last round]."),
    strategy: str = typer.Option(None, "--strategy", help="spread (over conditions, wells, "
                                 "fields) or uncertain (smallest margin of --model) [default: "
                                 "spread, or as the last round]."),
    model: str = typer.Option(None, "--model", help="Model folder: its crop is shown, its "
                              "margins rank the cells for --strategy uncertain; its classes "
                              "are labelled when none are named."),
    channels: str = typer.Option(None, "--channels", help="Input role -> plate channel: "
                                 "nucleus=DAPI,membrane=WGA (over the run's map)."),
    seed: int = typer.Option(None, "--seed", help="Random seed of the sampling [default: 0, "
                             "or as the last round]."),
    plate: str = typer.Option(None, "--plate", help="The run's plate, if run.json's path is "
                              "not valid here."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8765, "--port", help="Port (0: any free port)."),
    annotator: str = typer.Option(None, "--annotator", help="Name written with each label "
                                  "(default: your login name)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser."),
    export: str = typer.Option(None, "--export", help="Write the sample's crops for another "
                               "tool (folders | via) instead of serving the page."),
    import_: str = typer.Option(None, "--import", help="Read labels from a folder of class "
                                "subfolders or a VIA JSON file into --out's labels.csv."),
) -> None:
    """Label cells of a run in the browser: a sample of cells, each crop as the model sees it
    beside its context, keys 1-9 per class; every label saved at once to OUT/labels.csv."""
    from pathlib import Path

    from hcs.annotate.session import check_out, check_sampling, prepare_session, read_session
    from hcs.engine.lock import RunLock
    from hcs.errors import InputError
    from hcs.params import parse_channel_map

    # every refusal before the lock creates the folder: a refused command leaves nothing
    have = (Path(out) / "annotate.json").is_file()
    given = [x for x in (classes, assay, assay_file) if x]
    if len(given) > 1:
        raise InputError("give the classes once: --classes, --assay or --assay-file")
    if export is not None and export not in ("folders", "via"):
        raise InputError(f"--export {export}: expected folders or via")
    a = None
    if import_ is not None:
        read_session(out)  # the one error: not an annotation folder
    elif run_dir is None:
        if given or not have:
            raise InputError(f"give the RUN folder whose cells are labelled ({out} "
                             + ("is not an annotation folder yet)" if not have else
                                "has its classes already)"))
    else:
        from hcs.assays import assay_from_classes, assay_from_dict, get_assay, load_assay_file

        check_out(out, run_dir, plate)
        check_sampling(1 if n is None else n, strategy or "spread",
                       model or ("last round's" if have else None) if strategy == "uncertain"
                       else model)
        cmap = parse_channel_map(channels)
        if classes:
            a = assay_from_classes(classes, channels=list(cmap) or None)
        elif assay_file:
            a = load_assay_file(assay_file)
        elif assay:
            a = get_assay(assay)
        elif have:
            a = assay_from_dict(read_session(out).meta["assay"], f"{out}/annotate.json")
        elif model:  # the model's classes (a new round for the model just trained)
            from hcs.engine.model import card_assay, model_card

            a = card_assay(None, model_card(model)[1])
        else:
            raise InputError("name the classes: --classes a,b,c, --assay NAME, --assay-file "
                             "assay.yaml or --model M (its classes)")
    existed = Path(out).exists()
    try:
        with RunLock(out):  # one hcs annotate per folder: two would overwrite each other
            if import_ is not None:
                from hcs.annotate.exchange import import_labels

                counts = import_labels(import_, out, annotator)
                typer.echo(f"imported {sum(counts.values())} labels into "
                           f"{Path(out) / 'labels.csv'}: "
                           + ", ".join(f"{k} {v}" for k, v in counts.items()))
                return
            if a is None:
                session = read_session(out)
            else:
                session = prepare_session(run_dir, out, a, n=n, strategy=strategy, model=model,
                                          channels=parse_channel_map(channels), seed=seed,
                                          plate=plate)
            _serve_or_export(session, out, export, host, port, annotator, no_browser)
    except BaseException:
        if not existed and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()  # the empty folder the lock made
        raise


def _serve_or_export(session: Any, out: str, export: str | None, host: str, port: int,
                     annotator: str | None, no_browser: bool) -> None:
    from pathlib import Path

    from hcs.annotate.session import read_session

    typer.echo(f"{out}: {len(session.sample)} cells, {len(session.store.labels)} labelled, "
               f"{len(session.store.skipped)} skipped; classes {', '.join(session.classes)}")
    if export is not None:
        from hcs.annotate.exchange import export_session

        folder = export_session(out, export)
        typer.echo(f"wrote {folder} ({len(session.sample)} crops; see README.txt there)")
        return
    from hcs.annotate.server import serve

    try:
        serve(out, host=host, port=port, annotator=annotator, open_browser=not no_browser)
    except KeyboardInterrupt:
        final = read_session(out)
        typer.echo(f"stopped; {len(final.store.labels)} labels in {Path(out) / 'labels.csv'}")
