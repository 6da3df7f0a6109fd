"""The shipped live/dead model scores what its card says on its held-out LDC images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

MODEL = Path(__file__).resolve().parents[1] / "models" / "livedead-ldc"


def test_shipped_livedead_model_on_held_out_images(livedead_ldc: Path) -> None:
    from hcs.classify.models import load_model
    from hcs.train.pipeline import evaluate_model

    split = json.loads((MODEL / "split.json").read_text())
    assert not set(split["test"]) & set(split["train"])
    assert not set(split["test"]) & set(split["val"])
    m, cs, proba = evaluate_model(MODEL, voc=livedead_ldc, split_file=MODEL / "split.json",
                                  part="test", device="cpu", n_boot=200)
    assert set(cs.table["source"]) <= set(split["test"])
    assert m["n"] > 1000
    assert m["auc"] >= 0.95
    assert m["balanced_accuracy"] >= 0.88
    # the card's held-out figures are what evaluation reproduces
    card = load_model(MODEL).card
    held = card.metrics["held_out_test"]
    assert m["n"] == held["n"]
    assert m["auc"] == pytest.approx(held["auc"], abs=1e-4)
    assert m["confusion"] == held["confusion"]
    assert np.allclose(proba.sum(1), 1, atol=1e-5)
