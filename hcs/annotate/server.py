"""The labelling page of an annotation folder, served on 127.0.0.1 by tornado.

Tornado is the web server of Dask's own dashboard and scheduler, so it is installed with hcs
already (no new dependency to keep) and is a mature, well-kept asynchronous server.

Security, as Jupyter does it: a random token (:func:`secrets.token_urlsafe`) is part of the
printed URL; every request without it (``?token=`` or the ``X-HCS-Token`` header) is answered
403, so other users of the machine can neither read the images nor write labels. The server binds
``127.0.0.1`` unless told otherwise and serves only the page and the PNG files of its own
``ANN/img`` folder (any other path, ``..`` included: 403). The page is one HTML file with inline
CSS and JavaScript: it works offline.

Routes: ``GET /`` the page; ``GET /api/state`` classes, sample, labels, skips, counts;
``POST /api/label`` ``{"cell": STEM, "label": CLASS | null, "skip": bool}`` (one change, saved
before the answer); ``GET /img/NAME.png``.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
from pathlib import Path
from typing import Any

from hcs.annotate.session import Session, context_window, read_session
from hcs.errors import InputError

__all__ = ["make_app", "serve"]

_PAGE = Path(__file__).with_name("page.html")
_IMG = re.compile(r"^[A-Za-z0-9_.-]+\.png$")


def _state(session: Session) -> dict[str, Any]:
    cells = []
    for r in session.sample.itertuples(index=False):
        box = (r.bbox_x0, r.bbox_y0, r.bbox_x1, r.bbox_y1)
        ax, ay, side = context_window(box)
        cells.append({
            "cell": r.stem, "well": r.well, "field": int(r.field), "cell_id": int(r.cell_id),
            "condition": r.condition, "prediction": r.prediction,
            "confidence": None if r.confidence != r.confidence else float(r.confidence),
            "round": int(r.round), "box_side": side,
            "box": [box[0] - ax, box[1] - ay, box[2] - ax, box[3] - ay]})
    return {"classes": session.classes, "cells": cells,
            "labels": {k: str(v["label"]) for k, v in session.store.labels.items()},
            "skipped": sorted(session.store.skipped),
            "counts": session.store.counts(session.classes),
            "meta": {k: session.meta.get(k) for k in ("plate_name", "channels", "plate_channels",
                                                       "channel_colours", "crop", "context",
                                                       "strategy", "model", "run")}}


def make_app(ann_dir: str | Path, token: str, annotator: str) -> Any:
    """The tornado application serving ``ann_dir`` to holders of ``token``."""
    import tornado.web

    session = read_session(ann_dir)
    img_dir = (Path(ann_dir) / "img").resolve()
    stems = set(session.sample["stem"])

    class Base(tornado.web.RequestHandler):
        def prepare(self) -> None:
            given = self.get_query_argument("token", "") or self.request.headers.get(
                "X-HCS-Token", "")
            if not secrets.compare_digest(str(given), token):
                raise tornado.web.HTTPError(403)
            self.set_header("Cache-Control", "no-store")
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Referrer-Policy", "no-referrer")

        def check_xsrf_cookie(self) -> None:  # the token is in a header: no cookie involved
            return None

    class Page(Base):
        def get(self) -> None:
            cfg = json.dumps({"token": token, "annotator": annotator}).replace("</", "<\\/")
            self.set_header("Content-Type", "text/html; charset=utf-8")
            self.set_header("Content-Security-Policy",
                            "default-src 'none'; img-src 'self' data:; connect-src 'self'; "
                            "style-src 'unsafe-inline'; script-src 'unsafe-inline'")
            self.write(_PAGE.read_text(encoding="utf-8").replace("/*CONFIG*/null", cfg))

    class State(Base):
        def get(self) -> None:
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps(_state(session)))

    class Label(Base):
        def post(self) -> None:
            try:
                body = json.loads(self.request.body or b"{}")
                cell, label, skip = body["cell"], body.get("label"), bool(body.get("skip"))
            except (ValueError, KeyError, TypeError):
                raise tornado.web.HTTPError(400, "expected {cell, label, skip}") from None
            if cell not in stems:
                raise tornado.web.HTTPError(400, f"{cell!r} is not a cell of the sample")
            if label is not None and label not in session.classes:
                raise tornado.web.HTTPError(400, f"{label!r} is not a class")
            session.store.set(cell, label, annotator, skip=skip)
            self.set_header("Content-Type", "application/json")
            self.write(json.dumps({"ok": True, "counts": session.store.counts(session.classes),
                                   "labelled": len(session.store.labels),
                                   "skipped": len(session.store.skipped)}))

    class Image(Base):
        def get(self, name: str) -> None:
            path = (img_dir / name).resolve()
            if not _IMG.match(name) or path.parent != img_dir or not path.is_file():
                raise tornado.web.HTTPError(403 if not _IMG.match(name) else 404)
            self.set_header("Content-Type", "image/png")
            self.write(path.read_bytes())

    class Refuse(Base):
        def get(self, *args: Any) -> None:
            raise tornado.web.HTTPError(403)

    return tornado.web.Application([
        (r"/", Page), (r"/api/state", State), (r"/api/label", Label),
        (r"/img/([^/]+)", Image), (r"/(.*)", Refuse),
    ], xsrf_cookies=False, compress_response=True)


def serve(ann_dir: str | Path, host: str = "127.0.0.1", port: int = 8765,
          annotator: str | None = None, open_browser: bool = True,
          token: str | None = None) -> None:
    """Serve the labelling page of ``ann_dir`` until Ctrl-C; print its URL (with the token).

    Parameters
    ----------
    ann_dir
        An annotation folder (:func:`hcs.annotate.session.prepare_session`).
    host, port
        Where to listen (``port`` 0: a free port, shown in the URL).
    annotator
        Name written with every label (default: the login name).
    open_browser
        Open the URL in the default browser.
    token
        The access token (default: a new random one).
    """
    import asyncio
    import getpass

    import tornado.httpserver
    import tornado.netutil

    annotator = annotator or getpass.getuser()
    token = token or secrets.token_urlsafe(24)
    app = make_app(ann_dir, token, annotator)
    try:
        sockets = tornado.netutil.bind_sockets(int(port), address=host, family=socket.AF_INET)
    except OSError as exc:
        raise InputError(f"--host {host} --port {port}: cannot listen ({exc.strerror}); choose "
                         "another --port") from None
    bound = sockets[0].getsockname()[1]
    url = f"http://{host}:{bound}/?token={token}"
    if not sockets[0].getsockname()[0].startswith("127."):
        import warnings

        warnings.warn(f"listening on {host}, not only this machine: anyone who can reach it "
                      "and has the URL (plain HTTP, token included) can label", stacklevel=2)
    print(f"labelling {Path(ann_dir)} at {url}", flush=True)
    print("labels are saved at once to "
          f"{Path(ann_dir) / 'labels.csv'}; stop with Ctrl-C", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)

    async def run() -> None:
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets(sockets)
        try:
            await asyncio.Event().wait()  # until Ctrl-C / SIGTERM
        finally:
            server.stop()

    asyncio.run(run())
