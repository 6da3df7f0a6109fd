"""The labelling page of hcs annotate in a real headless Chromium (playwright driving Debian's
``chromium``, as tests/test_report_browser.py): label cells by keyboard, reload and go on, kill
the server mid-way and restart it: labels.csv holds every label given, once."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from test_annotate import Server

from hcs.engine import process_field
from hcs.engine.processor import EngineParams
from hcs.synth.fixtures import save_random_model, write_disc_plate

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium browser installed (apt-get install"
                       " chromium); .ci/run installs it"),
]
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed"
                                     " (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("annot-browser")
    plate, _ = write_disc_plate(root / "p", ["A01", "B01"], fields=2, size=128, nuclei=6)
    model = save_random_model(root / "m", "livedead", ["brightfield", "hoechst"], crop_size=24)
    out = root / "run"
    params = EngineParams(plate=str(plate.resolve()), assay="livedead", model=str(model))
    for w in ("A01", "B01"):
        for f in range(2):
            process_field(params, str(out), w, f)
    (out / "run.json").write_text(json.dumps({"plate": str(plate.resolve()), "timepoint": 0,
                                              "assay": "livedead", "model_path": str(model)}))
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=ARGS,
            viewport={"width": 1200, "height": 900},
            bypass_csp=True)  # wait_for_function evaluates strings; the page forbids eval
        yield ctx
        ctx.close()


def _open(page: Any, url: str, problems: list[str]) -> None:
    page.goto(url)
    page.wait_for_function("window.hcsAnnotate && window.hcsAnnotate.ready", timeout=60_000)
    assert not problems, problems


def _current(page: Any) -> str:
    return page.evaluate("window.hcsAnnotate.cells[window.hcsAnnotate.pos].cell")


def _settle(page: Any) -> None:
    page.wait_for_function("window.hcsAnnotate.pending === 0", timeout=30_000)


def _press(page: Any, key: str, given: dict[str, str], classes: list[str]) -> None:
    cell = _current(page)
    page.keyboard.press(key)
    given[cell] = classes[int(key) - 1]


def _csv(ann: Path) -> dict[str, str]:
    lab = pd.read_csv(ann / "labels.csv", dtype={"well": str, "label": str})
    keys = [f"{w}_f{f}_c{c}" for w, f, c in lab[["well", "field", "cell_id"]].to_numpy()]
    assert len(set(keys)) == len(keys), "a cell is in labels.csv twice"
    return dict(zip(keys, lab["label"], strict=True))


def test_label_by_keyboard_reload_kill_restart(browser: Any, run: Path, tmp_path: Path) -> None:
    ann = tmp_path / "ann"
    classes = ["live", "dead", "debris"]
    srv = Server(run, ann, "--classes", ",".join(classes), "--n", "20")
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    try:
        _open(page, srv.url, problems)
        # the crop as the model sees it (64 px) and a drawn context view with channel toggles
        page.wait_for_function("document.getElementById('crop').naturalWidth === 64")
        page.wait_for_function("document.getElementById('ctx').width > 0")
        lit = ("(() => { const c = document.getElementById('ctx'); const d = c.getContext('2d')"
               ".getImageData(0, 0, c.width, c.height).data; let s = 0; for (let i = 0; "
               "i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2]; return s; })()")
        all_on = page.evaluate(lit)
        page.click("#chan-1")  # Hoechst off: the nuclei go dark
        assert 0 < page.evaluate(lit) < all_on
        page.click("#chan-1")
        assert page.evaluate(lit) == all_on
        assert page.inner_text("#info-well") .startswith(_current(page).split("_")[0])

        given: dict[str, str] = {}
        keys = ["1", "2", "3", "1", "2", "1", "1", "2", "3", "1"]
        for i, key in enumerate(keys):
            if i == 4:  # skip one, undo the skip: the same cell comes back
                cell = _current(page)
                page.keyboard.press("s")
                assert _current(page) != cell
                page.keyboard.press("u")
                assert _current(page) == cell
            _press(page, key, given, classes)
        # back, relabel the last one: replaced, not added
        page.keyboard.press("b")
        last = _current(page)
        assert last in given
        _press(page, "3", given, classes)
        _settle(page)
        assert _csv(ann) == given and len(given) == 10
        counts = page.inner_text("#counts")
        for c in classes:
            assert f"{c}: {sum(v == c for v in given.values())}" in counts

        page.reload()  # the page continues with the first cell not labelled yet
        _open(page, srv.url, problems)
        assert _current(page) not in given
        for key in ("2", "1", "3"):
            _press(page, key, given, classes)
        _settle(page)
        srv.kill()  # SIGKILL mid-way
        lost = _current(page)
        page.keyboard.press("1")  # not saved: the page says so, labels.csv does not have it
        page.wait_for_function("window.hcsAnnotate.errors.length > 0", timeout=30_000)
        assert "NOT SAVED" in page.inner_text("#status")
        assert _csv(ann) == given and lost not in _csv(ann)

        srv = Server(run, ann, "--classes", ",".join(classes), "--n", "20")  # a new token
        problems.clear()
        _open(page, srv.url, problems)
        assert _current(page) == lost  # continues where it stopped
        for key in ("1", "2"):
            _press(page, key, given, classes)
        _settle(page)
        assert _csv(ann) == given and len(given) == 15
        assert page.evaluate("window.hcsAnnotate.errors") == []
        assert not problems, problems
    finally:
        page.close()
        srv.kill()
