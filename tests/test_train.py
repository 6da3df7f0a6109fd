"""Training: GMM labels, splits, sampling, metrics, a toy training run, checkpoint/resume, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage.io import imsave

from hcs.errors import InputError
from hcs.train.datasets import CropSet, inverse_frequency_weights, split_by_image
from hcs.train.labels import GmmThresholds, fit_gmm_thresholds, gmm_labels
from hcs.train.metrics import classification_metrics

torch = pytest.importorskip("torch")

from hcs.train.loop import TrainConfig, train_classifier  # noqa: E402


def test_gmm_recovers_known_thresholds() -> None:
    rng = np.random.default_rng(1)
    # the paper's fit: live 224.51 +- 34.46, dead 550.44 +- 153.55
    x = np.r_[rng.normal(224.51, 34.46, 20000), rng.normal(550.44, 153.55, 8000)]
    t = fit_gmm_thresholds(x)
    assert t.live_below == pytest.approx(224.51 + 34.46, abs=3)
    assert t.dead_above == pytest.approx(550.44 - 153.55, abs=8)
    labels, _ = gmm_labels(np.array([100.0, 300.0, 700.0]), t)
    assert labels.tolist() == ["live", None, "dead"]
    # order of components does not matter: the lower mean is "live"
    t2 = fit_gmm_thresholds(-x + 1000)
    assert t2.mu_live == pytest.approx(1000 - 550.44, abs=5)
    with pytest.raises(InputError, match=">= 10 finite"):
        fit_gmm_thresholds(np.array([1.0, 2.0]))


def test_gmm_overlapping_thresholds_discard() -> None:
    # thresholds cross (live_below > dead_above): the ambiguous overlap is discarded
    t = GmmThresholds(100.0, 80.0, 200.0, 50.0)
    assert gmm_labels(np.array([120.0, 160.0, 190.0]), t)[0].tolist() == ["live", None, "dead"]


def test_split_by_image_is_disjoint_and_reproducible() -> None:
    src = [f"img ({k}).png" for k in range(50)] * 3
    a = split_by_image(src, {"test": 0.2, "val": 0.1}, seed=3)
    b = split_by_image(src, {"test": 0.2, "val": 0.1}, seed=3)
    assert a == b
    assert (len(a["test"]), len(a["val"]), len(a["train"])) == (10, 5, 35)
    assert not (set(a["test"]) & set(a["train"])) and not (set(a["val"]) & set(a["train"]))
    assert split_by_image(src, {"test": 0.2}, seed=4)["test"] != a["test"]


def test_weighted_sampling_balances_classes() -> None:
    y = np.array([0] * 900 + [1] * 100)
    w = torch.from_numpy(inverse_frequency_weights(y, 2))
    idx = torch.multinomial(w, 20000, True, generator=torch.Generator().manual_seed(0))
    share = (y[idx.numpy()] == 1).mean()
    assert 0.47 < share < 0.53
    with pytest.raises(InputError, match="no training example"):
        inverse_frequency_weights(np.array([0, 0]), 2)


def test_metrics_against_hand_computed_values() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(80, int), np.ones(20, int)]
    s = np.r_[rng.normal(0, 1, 80), rng.normal(1.5, 1, 20)]
    p = np.c_[1 - 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-s))]
    m = classification_metrics(y, p, ["live", "dead"], n_boot=500)
    # AUC = P(score of a dead cell > score of a live cell) (Mann-Whitney)
    auc = (s[y == 1][:, None] > s[y == 0][None, :]).mean()
    assert m["auc"] == pytest.approx(auc)
    pred = (s > 0).astype(int)
    bacc = ((pred[y == 0] == 0).mean() + (pred[y == 1] == 1).mean()) / 2
    assert m["balanced_accuracy"] == pytest.approx(bacc)
    lo, hi = m["balanced_accuracy_ci"]
    assert lo < bacc < hi and hi - lo < 0.3
    tn, fp = int(((pred == 0) & (y == 0)).sum()), int(((pred == 1) & (y == 0)).sum())
    assert m["confusion"][0] == [tn, fp]
    assert m["per_class"]["dead"]["recall"] == pytest.approx((pred[y == 1] == 1).mean())
    assert set(m) >= {"n", "auc", "balanced_accuracy", "balanced_accuracy_ci", "per_class",
                      "confusion"}


def _toy(n: int, seed: int) -> CropSet:
    """Separable toy crops: dead cells are a blue disk, live cells a grey disk, with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:16, :16]
    disk = (yy - 7.5) ** 2 + (xx - 7.5) ** 2 < 25
    y = (rng.random(n) < 0.3).astype(int)
    crops = rng.normal(120, 25, (n, 16, 16, 3))
    crops[:, disk] += np.where(y[:, None, None] == 1, [-60, -40, 60], [40, 40, 40])
    crops = np.clip(crops, 0, 255).astype(np.uint8)
    return CropSet(crops, y, ["live", "dead"], pd.DataFrame({"source": np.arange(n)}))


def _config(**kw) -> TrainConfig:
    base = dict(architecture="test_efficientnet", epochs=3, batch_size=16, lr=3e-3, threads=1,
                seed=0)
    return TrainConfig(**(base | kw))


def test_tiny_model_beats_chance_on_separable_toy_set() -> None:
    train, val = _toy(160, 0), _toy(80, 1)
    mean, std = [0.47] * 3, [0.15] * 3
    lines: list[str] = []
    net, hist = train_classifier(train, val, _config(), mean, std, log=lines.append)
    assert len(hist) == 3 and lines[0].startswith("epoch   1/3  loss")
    from hcs.classify.infer import to_tensor

    with torch.inference_mode():
        p = torch.softmax(net(to_tensor(val.crops, mean, std, 1 / 255)), 1).numpy()
    m = classification_metrics(val.y, p, val.classes, n_boot=0)
    assert m["balanced_accuracy"] > 0.8 and m["auc"] > 0.9  # chance: 0.5


def test_checkpoint_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    train, val = _toy(64, 0), _toy(32, 1)
    mean, std = [0.47] * 3, [0.15] * 3
    cfg = _config(epochs=2, patience=5, monitor="balanced_accuracy")
    full, _ = train_classifier(train, val, cfg, mean, std, log=lambda s: None)

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch   1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(train, val, cfg, mean, std, checkpoint_dir=tmp_path,
                         log=stop_after_first_epoch)
    lines: list[str] = []
    resumed, hist = train_classifier(train, val, cfg, mean, std, checkpoint_dir=tmp_path,
                                     resume=True, log=lines.append)
    assert lines[0].startswith("resumed") and len(hist) == 2
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    with pytest.raises(InputError, match="other training settings"):
        train_classifier(train, val, _config(epochs=2, lr=0.1), mean, std,
                         checkpoint_dir=tmp_path, resume=True)


def _voc_folder(root: Path, n_images: int, seed: int) -> None:
    """A tiny VOC set: grey 'live' disks and blue 'dead' disks on a noisy background."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    yy, xx = np.mgrid[:48, :48]
    for i in range(n_images):
        img = rng.normal(120, 10, (48, 48, 3))
        objs = []
        for k, (cx, cy) in enumerate([(12, 12), (36, 34)]):
            dead = (i + k) % 3 == 0
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 36] += [-60, -40, 60] if dead else [40, 40, 40]
            objs.append(
                f"<object><name>{'Dead Cell' if dead else 'Living Cell'}</name><bndbox>"
                f"<xmin>{cx - 7}</xmin><ymin>{cy - 7}</ymin><xmax>{cx + 7}</xmax>"
                f"<ymax>{cy + 7}</ymax></bndbox></object>"
            )
        name = f"c ({i})"
        imsave(root / f"{name}.png", np.clip(img, 0, 255).astype(np.uint8), check_contrast=False)
        (root / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename>{''.join(objs)}</annotation>"
        )


def test_cli_train_and_evaluate_voc(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hcs.cli import app

    _voc_folder(tmp_path / "voc", 30, 0)
    out = tmp_path / "model"
    runner = CliRunner()
    r = runner.invoke(app, [
        "train", "classifier", "--annotations", str(tmp_path / "voc"), "--out", str(out),
        "--arch", "test_efficientnet", "--crop-size", "16", "--epochs", "4", "--batch-size", "8",
        "--lr", "0.003", "--threads", "1", "--data-licence", "CC0", "--n-boot", "200",
    ])
    assert r.exit_code == 0, r.output
    assert "held-out test (6 images, 12 crops)" in r.output
    split = json.loads((out / "split.json").read_text())
    assert len(split["test"]) == 6 and not set(split["test"]) & set(split["train"])
    r = runner.invoke(app, ["evaluate", "classifier", "--model", str(out), "--voc",
                            str(tmp_path / "voc"), "--split", str(out / "split.json"),
                            "--device", "cpu", "--json", "--n-boot", "200"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    assert {"n", "auc", "balanced_accuracy", "balanced_accuracy_ci", "per_class",
            "confusion"} <= set(m)
    assert m["n"] == 12 and m["auc"] > 0.9
    card = (out / "model.yaml").read_text()
    assert "licence: CC0" in card and "held_out_test" in card
    r = runner.invoke(app, ["train", "classifier", "--voc", str(tmp_path / "voc"),
                            "--out", str(out)])
    assert r.exit_code == 2 and "exists" in r.output


def test_cli_empty_class_folder_is_clear(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hcs.cli import app

    for c in ("live", "dead"):
        (tmp_path / "f" / c).mkdir(parents=True)
    imsave(tmp_path / "f" / "live" / "a.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    r = CliRunner().invoke(app, ["train", "classifier", "--folders", str(tmp_path / "f"),
                                 "--out", str(tmp_path / "m")])
    assert r.exit_code == 2
    assert "class folder 'dead' holds no image" in r.output
    assert not (tmp_path / "m").exists()


def test_bootstrap_uses_the_sklearn_definition() -> None:
    from sklearn.metrics import balanced_accuracy_score

    from hcs.train.metrics import balanced_accuracy_ci

    rng = np.random.default_rng(2)
    y, pred = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    pred[:150] = y[:150]
    # one resample by hand, same generator draws as balanced_accuracy_ci
    idx = np.random.default_rng(7).integers(0, 300, 300)
    lo, hi = balanced_accuracy_ci(y, pred, n_boot=1, seed=7, level=0.0)
    assert lo == pytest.approx(balanced_accuracy_score(y[idx], pred[idx]))
    lo, hi = balanced_accuracy_ci(y, pred, n_boot=2000, seed=0)
    assert lo < balanced_accuracy_score(y, pred) < hi
