"""hcs annotate: sampling, the labelling server (token, 127.0.0.1, only its own images), labels
saved at every change and surviving a SIGKILL, export / import round trips."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from cli_checks import one_line_error

from hcs.annotate.cells import CropSpec, cell_crops, read_run_cells
from hcs.annotate.session import margins, prepare_session, read_session
from hcs.assays import assay_from_classes, get_assay
from hcs.engine import aggregate_run, process_field
from hcs.engine.processor import EngineParams
from hcs.synth.fixtures import save_random_model, write_disc_plate

WELLS = ["A01", "A02", "B01", "B02"]
CONDITION = {"A01": "ctrl", "A02": "ctrl", "B01": "drug", "B02": "drug"}
PY = [sys.executable, "-m", "hcs"]


def _run(root: Path, plate: Path, model: Path, name: str) -> Path:
    out = root / name
    params = EngineParams(plate=str(plate.resolve()), assay="livedead", model=str(model))
    for w in WELLS:
        for f in range(2):
            process_field(params, str(out), w, f)
    (out / "run.json").write_text(json.dumps({
        "plate": str(plate.resolve()), "timepoint": 0, "assay": "livedead",
        "model_path": str(model)}))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A 4-well plate (two conditions), a run with model m1 (aggregated with the layout) and a
    run of the same plate with model m2 (the engine's probabilities of m2 for every cell)."""
    root = tmp_path_factory.mktemp("annotate")
    plate, _ = write_disc_plate(root / "p", WELLS, fields=2, size=128, nuclei=5)
    m1 = save_random_model(root / "m1", "livedead", ["brightfield", "hoechst"], crop_size=24)
    m2 = save_random_model(root / "m2", "livedead", ["brightfield", "hoechst"], crop_size=24,
                           seed=7)
    run = _run(root, plate, m1, "run")
    layout = root / "layout.csv"
    layout.write_text("well,condition\n" + "".join(f"{w},{c}\n" for w, c in CONDITION.items()))
    aggregate_run(run, layout=layout)
    return {"root": root, "plate": plate, "m1": m1, "m2": m2, "run": run,
            "run2": _run(root, plate, m2, "run2")}


# ------------------------------------------------------------------------------- sampling


def test_spread_covers_conditions_wells_fields(world, tmp_path):
    s = prepare_session(world["run"], tmp_path / "ann", get_assay("livedead"), n=16, seed=3)
    assert len(s.sample) == 16
    assert s.sample["condition"].value_counts().to_dict() == {"ctrl": 8, "drug": 8}
    assert s.sample["well"].value_counts().to_dict() == dict.fromkeys(WELLS, 4)
    assert s.sample.groupby(["well", "field"]).size().tolist() == [2] * 8
    assert not s.sample.duplicated(["well", "field", "cell_id"]).any()
    # seeded: the same seed gives the same sample, another seed another one
    again = prepare_session(world["run"], tmp_path / "ann2", get_assay("livedead"), n=16, seed=3)
    other = prepare_session(world["run"], tmp_path / "ann3", get_assay("livedead"), n=16, seed=4)
    assert again.sample["stem"].tolist() == s.sample["stem"].tolist()
    assert other.sample["stem"].tolist() != s.sample["stem"].tolist()
    # images: the model crop and one context view per plate channel, for every cell
    for stem in s.sample["stem"]:
        assert all((tmp_path / "ann" / "img" / f"{stem}{x}.png").is_file()
                   for x in ("", "_c0", "_c1", "_c2"))


def test_uncertain_smallest_margins_and_no_redraw(world, tmp_path):
    """Round 2 (uncertain, model m2 run on the crops by hcs annotate) picks the cells whose
    margin under m2, as `hcs run` computes it (run2's p_* columns), is smallest among the cells
    not drawn in round 1."""
    ann = tmp_path / "ann"
    first = prepare_session(world["run"], ann, get_assay("livedead"), n=10, seed=1)
    labelled = set(first.sample["stem"])
    s = prepare_session(world["run"], ann, get_assay("livedead"), n=8, strategy="uncertain",
                        model=str(world["m2"]))
    new = s.sample[s.sample["round"] == 1]
    assert len(new) == 8 and not set(new["stem"]) & labelled
    ref = read_run_cells(world["run2"])
    ref["stem"] = [f"{w}_f{f}_c{c}" for w, f, c in ref[["well", "field", "cell_id"]].to_numpy()]
    ref = ref[~ref["stem"].isin(labelled)]
    ref["margin"] = margins(ref[["p_live", "p_dead"]].to_numpy())
    expected = ref.nsmallest(8, "margin")
    assert set(new["stem"]) == set(expected["stem"])
    np.testing.assert_allclose(np.sort(new["margin"].to_numpy()),
                               np.sort(expected["margin"].to_numpy()), atol=1e-5)
    # the run made with m2: its p_* columns are used as they are, same choice
    s2 = prepare_session(world["run2"], tmp_path / "ann2", get_assay("livedead"), n=8,
                         strategy="uncertain", model=str(world["m2"]))
    all2 = read_run_cells(world["run2"])
    all2["margin"] = margins(all2[["p_live", "p_dead"]].to_numpy())
    assert sorted(s2.sample["margin"].round(5)) == sorted(all2.nsmallest(8, "margin")[
        "margin"].round(5))
    # the same options again, or none: the round is continued, not drawn anew
    assert len(prepare_session(world["run"], ann, get_assay("livedead"), n=8,
                               strategy="uncertain", model=str(world["m2"])).sample) == 18
    assert len(prepare_session(world["run"], ann, get_assay("livedead")).sample) == 18
    # one option changed (--n): a new round, the others as the last round's (uncertain, m2)
    s3 = prepare_session(world["run"], ann, get_assay("livedead"), n=3)
    assert s3.sample["round"].tolist()[-3:] == [2, 2, 2]
    assert s3.meta["rounds"][-1]["options"] == {"strategy": "uncertain",
                                                "model": str(world["m2"].resolve()), "n": 3,
                                                "seed": 1}  # round 1 inherited round 0s


# ------------------------------------------------------------------------------- server


class Server:
    """``hcs annotate ... --port 0 --no-browser`` as a subprocess; its URL parsed."""

    def __init__(self, run: Path, ann: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*PY, "annotate", str(run), "--out", str(ann), "--port", "0", "--no-browser",
             "--annotator", "tester", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        deadline = time.time() + 120
        line = ""
        while time.time() < deadline:
            line = self.proc.stdout.readline()  # type: ignore[union-attr]
            if "http://" in line or self.proc.poll() is not None:
                break
        m = re.search(r"http://([\d.]+):(\d+)/\?token=(\S+)", line)
        assert m, (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.host, self.port, self.token = m.group(1), int(m.group(2)), m.group(3)
        self.url = m.group(0)

    def request(self, method: str, path: str, body: Any = None, token: bool = True,
                ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"X-HCS-Token": self.token} if token else {}
        data = None if body is None else json.dumps(body)
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        out = r.status, r.read()
        conn.close()
        return out

    def label(self, cell: str, label: str | None, skip: bool = False) -> int:
        return self.request("POST", "/api/label", {"cell": cell, "label": label,
                                                   "skip": skip})[0]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()  # type: ignore[union-attr]


def _labels(ann: Path) -> pd.DataFrame:
    return pd.read_csv(ann / "labels.csv", dtype={"well": str, "label": str})


def test_token_bind_and_only_own_files(world, tmp_path):
    import psutil

    ann = tmp_path / "ann"
    srv = Server(world["run"], ann, "--classes", "live,dead", "--n", "6")
    try:
        assert srv.host == "127.0.0.1"
        listening = [c.laddr for c in psutil.Process(srv.proc.pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", srv.port)]
        stem = read_session(ann).sample["stem"].iloc[0]
        for path in ("/", "/api/state", f"/img/{stem}.png", "/annotate.json"):
            assert srv.request("GET", path, token=False)[0] == 403, path
            assert srv.request("GET", path + "?token=wrong", token=False)[0] == 403, path
        status, _ = srv.request("POST", "/api/label", {"cell": stem, "label": "live"},
                                token=False)
        assert status == 403 and not (ann / "labels.csv").exists()
        status, page = srv.request("GET", f"/?token={srv.token}", token=False)
        # offline: inline script and style, nothing fetched from elsewhere
        assert status == 200 and b"<script>" in page and b"<style>" in page
        assert b"http://" not in page and b"https://" not in page and b"src=\"//" not in page
        assert srv.request("GET", f"/img/{stem}.png")[0] == 200
        # path traversal and any other file of ANN or outside: refused, never served
        secret = (ann / "annotate.json").read_bytes()
        for path in ("/img/..%2fannotate.json", "/img/../annotate.json",
                     "/img/%2e%2e/annotate.json", "/img/..%2F..%2Frun%2Frun.json",
                     "/annotate.json", "/labels.csv", "/img/", "/etc/passwd",
                     f"/img/{stem}.png/../../annotate.json"):
            status, body = srv.request("GET", path)
            assert status in (403, 404) and secret not in body, (path, status)
    finally:
        srv.kill()


def test_labels_saved_at_once_and_survive_sigkill(world, tmp_path):
    ann = tmp_path / "ann"
    srv = Server(world["run"], ann, "--classes", "live,dead", "--n", "8")
    stems = read_session(ann).sample["stem"].tolist()
    try:
        assert srv.label(stems[0], "live") == 200
        assert srv.label(stems[1], "dead") == 200
        assert srv.label(stems[0], "dead") == 200  # relabel replaces the row
        assert srv.label(stems[2], None, skip=True) == 200
        assert srv.label(stems[3], "live") == 200
        assert srv.label(stems[3], None) == 200  # undo removes it
        assert srv.label(stems[4], "maybe") == 400
        assert srv.label("Z99_f0_c1", "live") == 400
        lab = _labels(ann)
        assert list(lab.columns) == ["plate", "well", "field", "cell_id", "label", "annotator",
                                     "time"]
        assert [f"{w}_f{f}_c{c}" for w, f, c in lab[["well", "field", "cell_id"]].to_numpy()
                ] == stems[:2]
        assert lab["label"].tolist() == ["dead", "dead"] and set(lab["annotator"]) == {"tester"}
        assert (ann / "skipped.csv").read_text().count("\n") == 2
        # a second hcs annotate on the same folder is refused (two servers would overwrite
        # each other's labels)
        r = subprocess.run([*PY, "annotate", str(world["run"]), "--out", str(ann), "--classes",
                            "live,dead", "--n", "8", "--port", "0", "--no-browser"],
                           capture_output=True, text=True, timeout=120)
        one_line_error(r, "in use", str(srv.proc.pid))
        srv.kill()  # no chance to flush anything
        srv = Server(world["run"], ann, "--classes", "live,dead", "--n", "8")
        state = json.loads(srv.request("GET", "/api/state")[1])
        assert state["labels"] == {stems[0]: "dead", stems[1]: "dead"}
        assert state["skipped"] == [stems[2]]
        assert [c["cell"] for c in state["cells"]] == stems  # the same sample, continued
        assert srv.label(stems[4], "live") == 200
        assert len(_labels(ann)) == 3
    finally:
        srv.kill()


def test_cli_refusals(world, tmp_path):
    r = subprocess.run([*PY, "annotate", str(world["run"]), "--out", str(tmp_path / "a"),
                        "--classes", "a,b", "--assay", "livedead"], capture_output=True,
                       text=True)
    one_line_error(r, "--classes")
    r = subprocess.run([*PY, "annotate", str(world["run"]), "--out",
                        str(world["run"] / "ann"), "--classes", "a,b"], capture_output=True,
                       text=True)
    one_line_error(r, "inside the run folder")
    assert not (world["run"] / "ann").exists()
    r = subprocess.run([*PY, "annotate", str(world["run"]), "--out", str(tmp_path / "b"),
                        "--classes", "a,a"], capture_output=True, text=True)
    one_line_error(r, "--classes", "classes")
    r = subprocess.run([*PY, "annotate", str(world["run"]), "--out", str(tmp_path / "c"),
                        "--classes", "a,b", "--strategy", "uncertain"], capture_output=True,
                       text=True)
    one_line_error(r, "--model")
    r = subprocess.run([*PY, "annotate", "--out", str(tmp_path / "d")], capture_output=True,
                       text=True)
    one_line_error(r, "RUN")
    # a refused command leaves nothing behind
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- exchange


def test_export_import_round_trip(world, tmp_path):
    from PIL import Image

    ann = tmp_path / "ann"
    r = subprocess.run([*PY, "annotate", str(world["run"]), "--out", str(ann), "--classes",
                        "even,odd", "--n", "12", "--export", "folders", "--channels",
                        "nucleus=HOECHST 33342"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    folder = ann / "export" / "folders"
    files = sorted(folder.glob("*.png"))
    s = read_session(ann)
    assert sorted(f.stem for f in files) == sorted(s.sample["stem"])
    # the exported crop is the model input (one nucleus channel, 8 bit)
    crops = cell_crops(world["run"], s.sample.head(1), CropSpec(("nucleus",), ("percentile",),
                                                                64, 0.25),
                       {"nucleus": "HOECHST 33342"})
    got = np.asarray(Image.open(folder / f"{s.sample['stem'].iloc[0]}.png"))
    np.testing.assert_array_equal(got, np.clip(np.rint(crops[0, :, :, 0]), 0, 255))
    # the user sorts them by class (cell_id parity); one left unsorted
    sorted_dir = tmp_path / "sorted"
    truth = {}
    for f in files[1:]:
        cls = "odd" if int(f.stem.rsplit("_c", 1)[1]) % 2 else "even"
        (sorted_dir / cls).mkdir(parents=True, exist_ok=True)
        (sorted_dir / cls / f.name).write_bytes(f.read_bytes())
        truth[f.stem] = cls
    r = subprocess.run([*PY, "annotate", "--import", str(sorted_dir), "--out", str(ann)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lab = _labels(ann)
    assert dict(zip([f"{w}_f{f}_c{c}" for w, f, c in lab[["well", "field", "cell_id"]]
                     .to_numpy()], lab["label"], strict=True)) == truth
    # a class folder that is not a class: refused, naming it; labels.csv unchanged
    (sorted_dir / "weird").mkdir()
    (sorted_dir / "weird" / files[0].name).write_bytes(files[0].read_bytes())
    before = (ann / "labels.csv").read_text()
    r = subprocess.run([*PY, "annotate", "--import", str(sorted_dir), "--out", str(ann)],
                       capture_output=True, text=True)
    one_line_error(r, "'weird' is not a class")
    assert (ann / "labels.csv").read_text() == before


def test_via_round_trip(world, tmp_path):
    ann = tmp_path / "ann"
    prepare_session(world["run"], ann, assay_from_classes("a,b,c"), n=9)
    from hcs.annotate.exchange import export_session, import_labels

    out = export_session(ann, "via")
    project = json.loads((out / "via_project.json").read_text())
    assert project["_via_attributes"]["file"]["class"]["options"] == {"a": "", "b": "", "c": ""}
    meta = project["_via_img_metadata"]
    assert len(meta) == 9 and all((out / e["filename"]).is_file() for e in meta.values())
    truth = {}
    for i, e in enumerate(meta.values()):
        if i == 0:
            continue  # left unlabelled in VIA
        cls = "abc"[i % 3]
        e["file_attributes"]["class"] = cls if i % 2 else {cls: True}  # radio or checkbox
        truth[Path(e["filename"]).stem] = cls
    saved = tmp_path / "via_saved.json"
    saved.write_text(json.dumps(project))
    assert import_labels(saved, ann) == {"a": 2, "b": 3, "c": 3}  # i = 1..8: b c a b c a b c
    lab = _labels(ann)
    assert dict(zip([f"{w}_f{f}_c{c}" for w, f, c in lab[["well", "field", "cell_id"]]
                     .to_numpy()], lab["label"], strict=True)) == truth
    assert set(lab["annotator"]) == {"import:via_saved.json"}
    # a second export replaces the first (hcs wrote it); a foreign folder is refused
    export_session(ann, "via")
    os.remove(out / "hcs-export.json")
    from hcs.errors import InputError

    with pytest.raises(InputError):
        export_session(ann, "via")


@pytest.mark.slow  # four hcs processes (about 10 s of CPU; 45 s on a loaded machine)
def test_readme_annotate_commands(world, tmp_path):
    """The README's hcs annotate commands: --classes with --channels and --n (served), a second
    round from an --assay-file with --strategy uncertain --model, --export then --import."""
    ann = tmp_path / "ann"
    srv = Server(world["run"], ann, "--classes", "live,dead", "--channels",
                 "nucleus=HOECHST 33342", "--n", "6")
    try:
        state = json.loads(srv.request("GET", "/api/state")[1])
        assert len(state["cells"]) == 6 and state["meta"]["channels"] == {
            "nucleus": "HOECHST 33342"}
        assert srv.label(state["cells"][0]["cell"], "dead") == 200
    finally:
        srv.kill()
    assay_file = tmp_path / "assay.yaml"
    assay_file.write_text("name: ld-own\nclasses: [live, dead]\nchannels: [brightfield, "
                          "hoechst]\n")
    r = subprocess.run([*PY, "annotate", str(world["run"]), "--out", str(ann), "--assay-file",
                        str(assay_file), "--strategy", "uncertain", "--model", str(world["m2"]),
                        "--n", "4", "--export", "folders"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr  # the same classes: a second round of the folder
    s = read_session(ann)
    assert s.sample["round"].tolist() == [0] * 6 + [1] * 4
    # the model's two input channels: 2-channel TIFF crops
    assert len(list((ann / "export" / "folders").glob("*.tif"))) == 10
    sorted_dir = tmp_path / "sorted"
    (sorted_dir / "live").mkdir(parents=True)
    for f in sorted((ann / "export" / "folders").glob("*.tif"))[:3]:
        (sorted_dir / "live" / f.name).write_bytes(f.read_bytes())
    r = subprocess.run([*PY, "annotate", "--import", str(sorted_dir), "--out", str(ann)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "imported 3 labels" in r.stdout, r.stderr
    assert len(_labels(ann)) == 4 - (state["cells"][0]["cell"] in
                                     [f.stem for f in sorted((ann / "export" / "folders")
                                                             .glob("*.tif"))[:3]])


def test_detection_only_run(world, tmp_path):
    """A run without a model (detection + measurements only): cells are drawn and cut; no
    prediction is shown."""
    out = tmp_path / "run"
    params = EngineParams(plate=str(world["plate"].resolve()))
    for w in WELLS[:2]:
        process_field(params, str(out), w, 0)
    (out / "run.json").write_text(json.dumps({"plate": str(world["plate"].resolve())}))
    assert not any(c.startswith("p_") or c == "label" for c in read_run_cells(out))
    s = prepare_session(out, tmp_path / "ann", assay_from_classes("mitotic,other"), n=5,
                        channels={"nucleus": "HOECHST 33342"})
    assert len(s.sample) == 5 and set(s.sample["prediction"]) == {""}
    assert s.meta["channels"] == {"nucleus": "HOECHST 33342"}
    assert sorted(s.sample["well"].value_counts().tolist()) == [2, 3]
