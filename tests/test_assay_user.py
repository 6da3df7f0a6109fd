"""User-defined assays (--classes, assay.yaml): one clear error naming the field at fault, and
aggregation, statistics and the report working on them unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from hcs.assays import (
    assay_from_classes,
    assay_from_dict,
    assay_to_dict,
    load_assay_file,
    run_assay,
)
from hcs.errors import InputError


@pytest.mark.parametrize("text, field", [
    ("name: x\nclasses: [a, a]\n", "classes"),
    ("name: x\nclasses: [a, b]\nexcluded: [c]\n", "excluded / composites"),
    ("name: x\nclasses: [a, b]\ncomposites: {ab: [a, z]}\n", "excluded / composites"),
    ("name: x\nclasses: [a, b]\ncrop_size: 2\n", "crop_size"),
    ("name: x\nclasses: [a, b]\nchannels: [{name: dna, rescale: log}]\n", "channels.0.rescale"),
    ("name: x\nclasses: [a, 'b c']\n", "classes"),
    ("classes: [a, b]\n", "name"),
    ("name: livedead\nclasses: [a, b]\n", "name"),
    ("name: x\nclasses: [a, b]\ncolour: red\n", "colour"),
])
def test_assay_file_errors_name_the_field(tmp_path, text, field):
    p = tmp_path / "assay.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as exc:
        load_assay_file(p)
    msg = str(exc.value)
    assert "\n" not in msg and str(p) in msg and f"field {field!r}" in msg


def test_assay_file_and_round_trip(tmp_path):
    p = tmp_path / "assay.yaml"
    p.write_text("name: dna-mitosis\nclasses: [pro, meta, inter, junk]\nexcluded: [junk]\n"
                 "composites: {mitotic: [pro, meta]}\nchannels: [dna, {name: bf, rescale: none}]"
                 "\ncrop_size: 48\nmargin: 0.5\n")
    a = load_assay_file(p)
    assert a.analysed_classes == ("pro", "meta", "inter")
    assert a.readouts == ("pro", "meta", "inter", "mitotic")
    assert [(c.name, c.rescale) for c in a.channels] == [("dna", "percentile"), ("bf", "none")]
    assert (a.crop_size, a.margin) == (48, 0.5)
    assert assay_from_dict(json.loads(json.dumps(assay_to_dict(a)))) == a
    assert run_assay({"assay": "dna-mitosis", "assay_definition": assay_to_dict(a)}) == a
    with pytest.raises(InputError, match="neither built in"):
        run_assay({"assay": "dna-mitosis"})
    assert run_assay({"assay": "livedead"}).classes == ("live", "dead")


def test_run_assay_from_model_card(tmp_path):
    """A run whose model card names a user assay: its classes come from the card."""
    (tmp_path / "model.yaml").write_text(
        "name: m\nassay: mine\nclasses: [mit, non]\nchannels: [{name: dna}]\n")
    a = run_assay({"assay": "mine", "model_path": str(tmp_path)})
    assert a.classes == ("mit", "non") and a.inputs.channel_names == ("dna",)


def test_aggregate_stats_report_on_user_assay(tmp_path):
    """A run labelled with user classes: hcs aggregate / stats / report take the classes from
    run.json's definition; the frequencies are the true ones."""
    a = assay_from_classes("alpha,beta,junk")
    a = assay_from_dict({**assay_to_dict(a), "name": "mine", "excluded": ["junk"]})
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    expected = {}
    for i, well in enumerate(["A01", "A02", "B01", "B02"]):
        n_alpha, n_beta, n_junk = 10 + 5 * i, 20, 3
        labels = ["alpha"] * n_alpha + ["beta"] * n_beta + ["junk"] * n_junk
        rng.shuffle(labels)
        n = len(labels)
        t = pd.DataFrame({"plate": "P", "well": well, "row": 1 + i // 2, "col": 1 + i % 2,
                          "field": 0, "cell_id": np.arange(1, n + 1), "label": labels,
                          "x": 1.0, "y": 1.0})
        (run / "cells" / well).mkdir(parents=True)
        t.to_parquet(run / "cells" / well / "0.parquet")
        expected[well] = n_alpha / (n_alpha + n_beta)
    (run / "run.json").write_text(json.dumps({"assay": "mine",
                                              "assay_definition": assay_to_dict(a)}))
    layout = tmp_path / "layout.csv"
    layout.write_text("well,condition,role\nA01,ctrl,negative_control\nA02,ctrl,"
                      "negative_control\nB01,drug,sample\nB02,drug,sample\n")
    py = [sys.executable, "-m", "hcs"]
    for cmd in (["aggregate", str(run), "--layout", str(layout)], ["stats", str(run)],
                ["report", str(run), "--out", str(tmp_path / "r.html"), "--no-gallery"]):
        r = subprocess.run(py + cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    wells = pd.read_parquet(run / "wells.parquet").set_index("well")
    for w, f in expected.items():
        assert wells.loc[w, "freq_alpha"] == pytest.approx(f)
        assert wells.loc[w, "n_analysed"] == wells.loc[w, "n_alpha"] + wells.loc[w, "n_beta"]
    assert "freq_junk" not in wells
    html = (tmp_path / "r.html").read_text()
    assert "alpha" in html and "beta" in html
