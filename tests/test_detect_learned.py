"""Learned detectors (hcs.detect.learned): architectures, widened first conv, tiling, folders,
bad input, and the shipped ldc-detector on real LDC test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hcs.detect import Detections, detect
from hcs.detect.evaluate import evaluate_detections
from hcs.detect.learned import (
    ARCHITECTURES,
    DetectorCard,
    LearnedDetector,
    build_detector,
    is_detector_folder,
    load_detector,
    save_detector,
    widen_first_conv,
)
from hcs.detect.learned.tiles import detect_tiled, owner_bounds, tile_starts
from hcs.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "ldc-detector"


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_architecture_builds_and_runs_for_1_3_4_6_channels(arch):
    torch.manual_seed(0)
    for c in (1, 3, 4, 6):
        m = build_detector(arch, in_chans=c, num_classes=2)
        conv = m.backbone.body.conv1
        assert tuple(conv.weight.shape) == (64, c, 7, 7)
        with torch.inference_mode():
            out = m([torch.rand(c, 48, 56)])[0]
        assert out["boxes"].shape[1] == 4
        assert out["boxes"].shape[0] == out["scores"].shape[0] == out["labels"].shape[0]
        # 0 is background (only FCOS / RetinaNet score it; LearnedDetector drops it)
        assert set(out["labels"].tolist()) <= {0, 1, 2}
        with pytest.raises(RuntimeError):  # a wrong channel count fails in torch (see below)
            m([torch.rand(c + 1, 32, 32)])


def test_widened_first_conv_follows_the_rule():
    torch.manual_seed(1)
    w = torch.randn(64, 3, 7, 7)
    one = widen_first_conv(w, 1)
    assert torch.allclose(one[:, 0], w.sum(1))
    four = widen_first_conv(w, 4)
    assert torch.allclose(four[:, :3], w * 0.75) and torch.allclose(four[:, 3], w[:, 0] * 0.75)
    six = widen_first_conv(w, 6)
    assert torch.allclose(six, torch.cat([w, w], 1) * 0.5)
    # a constant image gives the same first-layer response whatever the channel count
    x3, x6 = torch.full((1, 3, 9, 9), 0.7), torch.full((1, 6, 9, 9), 0.7)
    r3 = torch.nn.functional.conv2d(x3, w)
    assert torch.allclose(torch.nn.functional.conv2d(x6, six), r3, atol=1e-5)
    assert torch.allclose(torch.nn.functional.conv2d(x3[:, :1], one), r3, atol=1e-5)


def test_pretrained_backbone_is_widened_on_load(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(2)
    ref = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    m = build_detector("fasterrcnn_resnet18_fpn", in_chans=6, pretrained=path)
    got = m.backbone.body.conv1.weight.detach()
    assert torch.allclose(got, widen_first_conv(ref.conv1.weight.detach(), 6))
    assert torch.equal(m.backbone.body.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    with pytest.raises(InputError, match="never downloads"):
        build_detector("fasterrcnn_resnet18_fpn", pretrained=tmp_path / "absent.pth")


def test_tile_starts_cover_with_overlap_and_owners_partition():
    for length, size, overlap in [(2160, 540, 64), (2560, 640, 64), (1000, 256, 50)]:
        s = tile_starts(length, size, overlap)
        assert s[0] == 0 and s[-1] + size == length
        assert all(s[i] + size - s[i + 1] >= overlap for i in range(len(s) - 1))
        own = owner_bounds(s, size)
        for (lo, hi), (lo2, _) in zip(own, own[1:], strict=False):
            assert hi == lo2 and lo < hi
    # AIM-CICs 4 x 4 grid: a 2160 x 2560 field in tiles of 600 x 700 with overlap
    assert len(tile_starts(2160, 600, 64)) == 4 and len(tile_starts(2560, 700, 64)) == 4


class _BlobNet(torch.nn.Module):
    """A deterministic, local "detector": 12-px box around each local maximum above 0.5."""

    def forward(self, xs):
        out = []
        for x in xs:
            g = torch.nn.functional.avg_pool2d(x[:1][None], 5, 1, 2)[0, 0]
            peak = (g == torch.nn.functional.max_pool2d(g[None, None], 9, 1, 4)[0, 0]) & (g > 0.5)
            r, c = torch.nonzero(peak, as_tuple=True)
            b = torch.stack([c - 6.0, r - 6.0, c + 6.0, r + 6.0], 1).float()
            out.append({"boxes": b, "scores": g[r, c], "labels": torch.ones(len(r), dtype=int)})
        return out


def _blob_card(tile: int = 128, overlap: int = 48) -> DetectorCard:
    return DetectorCard(name="blob", architecture="fasterrcnn_resnet18_fpn", in_chans=1,
                        channels=["nuclei"], mean=[0.5], std=[0.25],
                        tile={"size": tile, "overlap": overlap})


def test_tiled_detection_equals_untiled_for_a_local_model():
    rng = np.random.default_rng(3)
    img = np.zeros((300, 420), np.float32)
    yy, xx = np.mgrid[:300, :420]
    for _ in range(60):
        cy, cx = rng.uniform(0, 300), rng.uniform(0, 420)
        img += 250 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.5**2))
    img = np.clip(img, 0, 255)
    det = LearnedDetector(_BlobNet(), _blob_card())
    whole = det.detect(img, score_threshold=0.0, tile=False)
    tiled = det.detect(img, score_threshold=0.0, tile=True)
    assert len(whole) > 40
    key = lambda d: np.array(sorted(map(tuple, d.boxes.round(3).tolist())))  # noqa: E731
    assert len(tiled) == len(whole)
    np.testing.assert_allclose(key(tiled), key(whole), atol=1e-3)
    # an image no larger than a tile takes the same path either way
    small = img[:100, :120]
    a, b = det.detect(small, 0.0, tile=True), det.detect(small, 0.0, tile=False)
    np.testing.assert_allclose(key(a), key(b), atol=1e-3)


def test_detect_tiled_merges_duplicates_with_nms():
    img = np.zeros((64, 200, 1), np.float32)

    def predict(tiles):  # each tile reports one box at the same image place, shifted by 1 px
        return [(np.array([[10.0 - k, 10, 40 - k, 40]], np.float32), np.array([0.9 - k / 10]),
                 np.zeros(1, np.int64)) for k, _ in enumerate(tiles)]

    boxes, scores, _ = detect_tiled(img, predict, size=64, overlap=32)
    assert len(boxes) >= 1 and scores[0] == pytest.approx(0.9)


def _tiny(tmp_path: Path, arch: str = "fasterrcnn_resnet18_fpn", c: int = 1) -> Path:
    torch.manual_seed(0)
    m = build_detector(arch, in_chans=c)
    return save_detector(m, tmp_path / "tiny", architecture=arch,
                         channels=[f"ch{i}" for i in range(c)], score_threshold=0.0)


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    folder = _tiny(tmp_path)
    assert is_detector_folder(folder) and not is_detector_folder(tmp_path)
    card = yaml.safe_load((folder / "model.yaml").read_text())
    assert card["kind"] == "detector" and len(card["sha256"]) == 64
    img = np.random.default_rng(0).uniform(0, 255, (96, 80)).astype(np.float32)
    a = load_detector(folder).detect(img, 0.0)
    b = load_detector(folder).detect(img, 0.0)
    assert len(a) > 0
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    d = load_detector(folder)
    assert d.card.channels == ["ch0"] and d.card.in_chans == 1 and d.card.classes == ["cell"]
    assert d.card.tile.size == 512 and d.card.sha256 == card["sha256"]
    # the generic dispatcher reaches the learned detector too
    c = detect(img, method="learned", model=folder, score_threshold=0.0)
    np.testing.assert_array_equal(c.boxes, a.boxes)


def test_sha256_mismatch_and_wrong_folders_are_input_errors(tmp_path):
    folder = _tiny(tmp_path)
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card["sha256"] = "0" * 64
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(InputError, match="sha256"):
        load_detector(folder)
    with pytest.raises(InputError, match="not a detector card"):
        load_detector(REPO / "models" / "livedead-ldc")
    with pytest.raises(InputError, match="model card not found"):
        load_detector(tmp_path / "nothing")


def test_bad_images_give_clear_errors_or_no_detections(tmp_path):
    det = load_detector(_tiny(tmp_path, c=3))
    with pytest.raises(InputError, match="expects 3 channel"):
        det.detect(np.zeros((32, 32)))
    with pytest.raises(InputError, match="expects 3 channel"):
        det.detect(np.zeros((32, 32, 4)))
    nan = np.full((32, 32, 3), 10.0, np.float32)
    nan[3, 4, 1] = np.nan
    with pytest.raises(InputError, match="1 of 3072 values are NaN"):
        det.detect(nan)
    with pytest.raises(InputError, match="empty image"):
        det.detect(np.zeros((0, 5, 3)))
    with pytest.raises(InputError, match="numeric"):
        det.detect(np.array([["a"]]))
    assert len(det.detect(np.zeros((64, 64, 3)), 0.0)) == 0  # all zero
    assert len(det.detect(np.full((700, 600, 3), 255.0), 0.0)) == 0  # saturated, tiled size
    with pytest.raises(InputError, match="score_threshold"):
        det.detect(np.ones((8, 8, 3)), 1.5)


def _shipped() -> LearnedDetector:
    if not (SHIPPED / "model.yaml").is_file():
        pytest.skip("models/ldc-detector is not built yet")
    return load_detector(SHIPPED)


def test_shipped_detector_card_and_size():
    det = _shipped()
    c = det.card
    assert c.channels == ["brightfield"] and c.in_chans == 1 and c.classes == ["cell"]
    assert (SHIPPED / "model.safetensors").stat().st_size < 25e6
    assert c.training["data"]["licence"] == "MIT"
    assert c.metrics["test"]["ap50"] > 0.5
    split = json.loads((SHIPPED / "split.json").read_text())
    ref = json.loads((REPO / "models" / "livedead-ldc" / "split.json").read_text())
    assert split["test"] == ref["test"]  # detector and classifier share the held-out images


def test_shipped_detector_finds_cells_on_real_ldc_test_images(livedead_ldc):
    from hcs.train.detector_data import read_detection_set

    det = _shipped()
    test = json.loads((SHIPPED / "split.json").read_text())["test"][:20]
    data = read_detection_set(livedead_ldc, "voc", 1, only=test).subset(test)
    assert len(data) == 20
    preds = [det.detect(img) for img in data.images]  # the card's operating point
    m = evaluate_detections(preds, data.boxes)
    print(m)
    assert m["recall_iou50"] > 0.8 and m["precision_iou50"] > 0.7, m
    # an RGB image is a wrong channel count for this grey model: one clear error
    with pytest.raises(InputError, match="expects 1 channel"):
        det.detect(np.repeat(data.images[0], 3, axis=2))


def test_shipped_detector_tiled_agrees_with_untiled_on_a_real_mosaic(livedead_ldc):
    from hcs.train.detector_data import read_detection_set

    det = _shipped()
    test = json.loads((SHIPPED / "split.json").read_text())["test"][:9]
    ims = read_detection_set(livedead_ldc, "voc", 1, only=test).subset(test).images
    h, w = min(i.shape[0] for i in ims), min(i.shape[1] for i in ims)
    ims = [i[:h, :w] for i in ims]
    mosaic = np.concatenate([np.concatenate(ims[k:k + 3], 1) for k in (0, 3, 6)], 0)
    card = det.card.model_copy(update={"tile": det.card.tile.model_copy(
        update={"size": 256, "overlap": 64})})
    small_tiles = LearnedDetector(det.module, card)
    whole = det.detect(mosaic, tile=False)
    tiled = small_tiles.detect(mosaic, tile=True)
    assert len(whole) >= 10
    agree = evaluate_detections([tiled], [whole.boxes])
    print(len(whole), len(tiled), agree["f1_iou50"])
    assert agree["f1_iou50"] > 0.8, agree


def test_detections_type_is_the_shared_one(tmp_path):
    det = load_detector(_tiny(tmp_path))
    out = det.detect(np.random.default_rng(1).uniform(0, 255, (40, 40)), 0.0)
    assert isinstance(out, Detections) and out.class_ids is None
    assert out.boxes.dtype == np.float32 and np.all(out.boxes[:, 2] <= 40)
