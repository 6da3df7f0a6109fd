"""Detector training and evaluation: data reading, augmentation, loss going down, the CLI
(train with resume, evaluate --json), on tiny synthetic VOC / VIA folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from skimage.io import imsave
from typer.testing import CliRunner

from hcs.cli import app
from hcs.detect.learned import build_detector
from hcs.errors import InputError
from hcs.train.detector_data import augment_sample, read_detection_set, resolve_split
from hcs.train.detector_eval import METRIC_KEYS


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _field(rng: np.random.Generator, size: int = 64, n: int = 3) -> tuple[np.ndarray, list]:
    """An RGB image with ``n`` bright squares on a dark noisy background, and VOC boxes."""
    img = rng.uniform(20, 40, (size, size, 3))
    boxes = []
    for _ in range(n):
        s = int(rng.integers(10, 16))
        y, x = (int(v) for v in rng.integers(2, size - s - 2, 2))
        img[y:y + s, x:x + s] = rng.uniform(180, 220)
        boxes.append((x + 1, y + 1, x + s, y + s))  # VOC: 1-based inclusive
    return img.astype(np.uint8), boxes


def _voc_folder(root: Path, n_images: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(n_images):
        img, boxes = _field(rng)
        name = f"img ({k}).png"
        imsave(root / name, img, check_contrast=False)
        objs = "".join(
            f"<object><name>{'Living Cell' if i % 2 else 'Dead Cell'}</name><bndbox>"
            f"<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax>"
            "</bndbox></object>" for i, b in enumerate(boxes))
        (root / f"img ({k}).xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>64</width><height>64</height>"
            f"</size>{objs}</annotation>")
    return root


def test_voc_boxes_become_0_based_edges_and_rgb_becomes_luma(tmp_path):
    d = _voc_folder(tmp_path / "voc", 2)
    data = read_detection_set(d, "voc", in_chans=1)
    assert data.class_names == ["cell"] and len(data) == 2
    rng = np.random.default_rng(0)
    img, boxes = _field(rng)
    x0, y0, x1, y1 = boxes[0]
    np.testing.assert_array_equal(data.boxes[0][0], [x0 - 1, y0 - 1, x1, y1])
    grey = img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(data.images[0][..., 0], grey, atol=1e-3)
    per = read_detection_set(d, "voc", in_chans=3, class_agnostic=False)
    assert per.class_names == ["Dead Cell", "Living Cell"] and per.images[0].shape[2] == 3
    assert per.classes[0].tolist() == [0, 1, 0]


def test_via_annotations_read_into_the_same_set(tmp_path):
    rng = np.random.default_rng(0)
    img, boxes = _field(rng)
    imsave(tmp_path / "a.png", img, check_contrast=False)
    regions = [{"shape_attributes": {"name": "rect", "x": b[0] - 1, "y": b[1] - 1,
                                     "width": b[2] - b[0] + 1, "height": b[3] - b[1] + 1},
                "region_attributes": {"type": "cell"}} for b in boxes]
    (tmp_path / "via.json").write_text(json.dumps({"a.png1": {"filename": "a.png",
                                                              "regions": regions}}))
    via = read_detection_set(tmp_path, "via", 1)
    voc = read_detection_set(_voc_folder(tmp_path / "voc", 1), "voc", 1)
    np.testing.assert_array_equal(via.boxes[0], voc.boxes[0])
    with pytest.raises(InputError, match="expected voc or via"):
        read_detection_set(tmp_path, "coco", 1)


def test_split_file_and_fraction_split_are_by_image(tmp_path):
    names = [f"i{k}" for k in range(10)]
    parts = resolve_split(names, None, 0.1, 0.2, seed=0)
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (7, 1, 2)
    assert not set(parts["train"]) & set(parts["test"])
    f = tmp_path / "split.json"
    f.write_text(json.dumps({"train": names[:6], "val": names[6:8], "test": names[8:]}))
    assert resolve_split(names, f, 0.1, 0.2, 0)["test"] == ["i8", "i9"]
    f.write_text(json.dumps({"train": names[:6], "val": ["i0"], "test": []}))
    with pytest.raises(InputError, match="in both"):
        resolve_split(names, f, 0.1, 0.2, 0)
    f.write_text(json.dumps({"train": ["zzz"]}))
    with pytest.raises(InputError, match="not in the annotations"):
        resolve_split(names, f, 0.1, 0.2, 0)


def test_augmentation_keeps_boxes_on_their_objects():
    rng = np.random.default_rng(5)
    img, boxes = _field(np.random.default_rng(1))
    grey = img[..., :1].astype(np.float32)
    b = np.array([[x0 - 1, y0 - 1, x1, y1] for x0, y0, x1, y1 in boxes], np.float32)
    for _ in range(20):
        x, bb = augment_sample(grey, b, rng, scale_range=(1.0, 1.0))
        for x0, y0, x1, y1 in bb.round().int().tolist():
            inside = x[0, y0:y1, x0:x1]
            assert inside.numel() > 0 and float(inside.mean()) > 120  # still on a bright square
        assert bb.shape == (3, 4)


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    m = build_detector("fasterrcnn_resnet18_fpn", in_chans=1, anchor_sizes=[8, 16, 32, 64])
    imgs, targets = [], []
    for _ in range(2):
        img, boxes = _field(rng, size=48, n=2)
        imgs.append(torch.from_numpy(img[..., 0].astype(np.float32) / 255)[None])
        b = torch.tensor([[x0 - 1, y0 - 1, x1, y1] for x0, y0, x1, y1 in boxes], dtype=torch.float)
        targets.append({"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64)})
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3)
    m.train()
    losses = []
    for _ in range(12):
        loss = sum(m(imgs, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.6 * np.mean(losses[:3]), losses


def test_cli_train_with_resume_then_evaluate_json(tmp_path):
    d = _voc_folder(tmp_path / "voc", 6)
    out = tmp_path / "models" / "tiny"
    runner = CliRunner()
    args = ["train", "detector", "--annotations", str(d), "--out", str(out), "--epochs", "1",
            "--batch-size", "2", "--max-steps", "2", "--val-fraction", "0.34",
            "--test-fraction", "0", "--anchor-sizes", "8,16,32,64", "--threads", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "epoch 1/1 loss" in r.output and "val AP50" in r.output
    assert (out / "model.safetensors").is_file() and (out / "split.json").is_file()
    assert (tmp_path / "models" / "tiny.ckpt" / "last.pt").is_file()
    r = runner.invoke(app, args)  # OUT exists: a clear error, exit 2
    assert r.exit_code == 2 and "exists" in r.output
    args[args.index("--epochs") + 1] = "2"
    r = runner.invoke(app, args + ["--resume"])
    assert r.exit_code == 0, r.output
    assert "resumed from" in r.output and "epoch 2/2" in r.output and "epoch 1/2" not in r.output
    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["kind"] == "detector" and card["training"]["epochs_run"] == 2
    assert [h["epoch"] for h in card["training"]["history"]] == [1, 2]
    split = json.loads((out / "split.json").read_text())
    assert len(split["val"]) == 2 and len(split["train"]) == 4

    r = runner.invoke(app, ["evaluate", "detector", "--model", str(out), "--annotations", str(d),
                            "--json", "--out-json", str(tmp_path / "m.json"),
                            "--plot", str(tmp_path / "pr.html")])
    assert r.exit_code == 0, r.output
    m = json.loads(r.output)
    for k in METRIC_KEYS:
        assert k in m
    assert m["images"] == 6 and m["n_truth"] == 18
    assert json.loads((tmp_path / "m.json").read_text())["n_truth"] == 18
    assert "plotly" in (tmp_path / "pr.html").read_text()[:100000].lower()
    r = runner.invoke(app, ["evaluate", "detector", "--model", str(out), "--annotations", str(d),
                            "--split", str(out / "split.json"), "--part", "val",
                            "--record", "validation_again"])
    assert r.exit_code == 0 and "2 images, 6 true boxes" in r.output, r.output
    card = yaml.safe_load((out / "model.yaml").read_text())
    assert card["metrics"]["validation_again"]["n_truth"] == 6
    from hcs.detect.learned import load_detector

    load_detector(out)  # recording metrics leaves the weights and their checksum valid
    r = runner.invoke(app, ["evaluate", "detector", "--model", str(tmp_path),
                            "--annotations", str(d)])
    assert r.exit_code == 2 and "model card not found" in r.output
