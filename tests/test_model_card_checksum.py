"""Issue 15 item 9: the class order of a model card is verified on load and is part of the
resume key of ``hcs run --resume`` (``hcs analyze`` re-runs on a changed card, see
tests/test_analyze.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

pytest.importorskip("torch")

from hcs.classify.seal import seal_card  # noqa: E402
from hcs.engine.run import run_plate  # noqa: E402
from hcs.synth.fixtures import (  # noqa: E402
    save_random_ensemble,
    save_random_model,
    write_disc_plate,  # noqa: E402
)


def _hcs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcs", *args], capture_output=True, text=True,
                          timeout=300)


def _swap_classes(folder) -> None:
    path = folder / "model.yaml"
    card = yaml.safe_load(path.read_text())
    card["classes"] = card["classes"][::-1]
    path.write_text(yaml.safe_dump(card, sort_keys=False))


def test_swapped_card_refused_and_resume_never_mixes(tmp_path, scheduler):
    plate, _ = write_disc_plate(tmp_path / "p", ["A01", "A02"], fields=1, size=128, seed=1)
    model = save_random_model(tmp_path / "m", "livedead", ["brightfield"])
    out = tmp_path / "run"
    s = run_plate(plate, "livedead", model, out, scheduler=scheduler, gpus="0", progress=False,
                  wells=["A01"])
    assert s.ok and s.fields_done == 1
    record = json.loads((out / "run.json").read_text())
    card = yaml.safe_load((model / "model.yaml").read_text())
    assert record["model_card_sha256"] == card["card_sha256"]
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    # two classes swapped after the card was written: refused before any work, one line
    _swap_classes(model)
    args = ["run", str(plate), "--assay", "livedead", "--model", str(model), "--gpus", "0",
            "-q", "--scheduler", "tcp://127.0.0.1:1"]  # never reached: the card is refused first
    res = _hcs(*args, "--out", str(tmp_path / "fresh"))
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"error: {model / 'model.yaml'}: ")
    assert "class order" in line and not (tmp_path / "fresh").exists()

    # the lab seals the swap on purpose: a new checksum, so the old run cannot be resumed with it
    res = _hcs("seal", str(model))
    new = yaml.safe_load((model / "model.yaml").read_text())["card_sha256"]
    assert res.returncode == 0
    assert res.stdout.strip() == f"{model / 'model.yaml'}: card_sha256 {new}"
    assert new != record["model_card_sha256"]
    res = _hcs("seal", str(tmp_path / "p"))  # not a model folder: one line, exit 2
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    res = _hcs(*args, "--out", str(out), "--resume", "--wells", "A01,A02")
    assert res.returncode == 2, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "cannot resume" in res.stderr and "model_card_sha256" in res.stderr
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing mixed in
    cells = pd.read_parquet(out / "cells" / "A01" / "0.parquet")
    assert set(cells["label"]) <= {"live", "dead"}


def test_ensemble_member_with_swapped_classes_is_refused(tmp_path):
    from hcs.engine.model import model_card

    ens = save_random_ensemble(tmp_path / "e", ["nucleus"], views=("z",))
    _, card = model_card(ens)
    _swap_classes(ens / "stage-z")
    from hcs.errors import InputError

    with pytest.raises(InputError, match=r"stage-z/model.yaml: card_sha256"):
        model_card(ens)
    seal_card(ens / "stage-z")
    assert model_card(ens)[1].card_sha256 != card.card_sha256  # the ensemble's key follows


def test_detector_card_edit_is_refused(tmp_path):
    from hcs.detect.learned import save_detector
    from hcs.detect.learned.arch import build_detector
    from hcs.engine.detector import detector_info
    from hcs.errors import InputError

    det = build_detector("fasterrcnn_resnet18_fpn", in_chans=1)
    folder = save_detector(det, tmp_path / "d", architecture="fasterrcnn_resnet18_fpn",
                           channels=["brightfield"])
    info = detector_info(str(folder))
    path = folder / "model.yaml"
    card = yaml.safe_load(path.read_text())
    card["score_threshold"] = 0.1
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    with pytest.raises(InputError, match=r"model.yaml: card_sha256"):
        detector_info(str(folder))
    seal_card(folder)
    assert detector_info(str(folder))["card_sha256"] != info["card_sha256"]
