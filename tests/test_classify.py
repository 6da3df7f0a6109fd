"""Crops, decision rules, model folders (save/load, checksums) and inference."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from hcs.assays import get_assay
from hcs.assays.rules import apply_rule, counted, fuse_scores, least_entropy, mitosis_labels
from hcs.classify.crops import compose_channels, crop_box, crop_window
from hcs.errors import InputError

torch = pytest.importorskip("torch")

from hcs.classify.infer import predict_proba, select_device  # noqa: E402
from hcs.classify.models import (  # noqa: E402
    LoadedModel,
    ModelCard,
    card_checksum,
    create_classifier,
    load_model,
    read_card,
    save_model,
)
from hcs.classify.seal import seal_card  # noqa: E402

CIC = get_assay("cic").classes


# --- decision rules on hand-made probability vectors ---


def test_cic_low_confidence_is_non_cic() -> None:
    p = np.array([
        [0.1, 0.18, 0.12, 0.15, 0.15, 0.13, 0.17],  # AIM-CICs example: top 0.18 < 0.2
        [0.1, 0.21, 0.12, 0.15, 0.15, 0.10, 0.17],  # top 0.21: argmax kept
        [0.02, 0.02, 0.02, 0.02, 0.02, 0.88, 0.02],
    ])
    labels = apply_rule(p, CIC, "cic")
    assert labels.tolist() == ["non_cic", "one_in_one", "f_category"]
    assert counted(labels, "cic").tolist() == [True, True, False]


def test_livedead_argmax_and_wrong_width() -> None:
    assert apply_rule([[0.3, 0.7], [0.9, 0.1]], ("live", "dead"), "livedead").tolist() == [
        "dead", "live"
    ]
    with pytest.raises(InputError, match="3 columns but 2 classes"):
        apply_rule([[0.3, 0.3, 0.4]], ("live", "dead"), "livedead")


def test_fusion_and_least_entropy() -> None:
    s = fuse_scores(np.array([0.2, 1.0]), np.array([[0.9, 0.1, 0.0], [0.1, 0.1, 0.8]]), 0.7)
    assert np.allclose(s, [[0.3 * 0.2 + 0.63, 0.06 + 0.07, 0.06], [0.37, 0.37, 0.86]])
    views = [np.array([[0.4, 0.6]]), np.array([[0.99, 0.01]]), np.array([[0.2, 0.8]])]
    p, v = least_entropy(views)
    assert v.tolist() == [1] and p.tolist() == [[0.99, 0.01]]
    st = get_assay("mitosis").classes[1:]
    lab = mitosis_labels(np.array([0.49, 0.51]), np.eye(4)[[0, 2]], st)
    assert lab.tolist() == ["non_mitotic", "prometaphase_metaphase"]


# --- crops ---


def test_crop_at_border_is_padded_not_failing() -> None:
    img = np.arange(20 * 30, dtype=np.uint8).reshape(20, 30, 1)
    c = crop_box(img, (0, 0, 6, 6), size=10, margin=1 / 3)  # window (-2,-2)-(8,8)
    assert c.shape == (10, 10, 1)
    assert (c[:2] == 0).all() and (c[:, :2] == 0).all()  # padded rows / columns
    assert np.array_equal(c[2:, 2:, 0], img[:8, :8, 0])  # no resize needed: exact pixels
    c = crop_box(img, (25, 15, 30, 20), size=8, margin=0.5, pad_mode="edge")
    assert c.shape == (8, 8, 1) and c[-1, -1, 0] == img[-1, -1, 0]
    with pytest.raises(InputError, match="outside"):
        crop_box(img, (40, 40, 50, 50), size=8)


def test_crop_window_square_and_whole_image() -> None:
    assert crop_window((10, 10, 20, 40), 0.0) == (0, 10, 30, 40)
    assert crop_window((10, 10, 20, 40), 0.0, square=False) == (10, 10, 20, 40)
    img = np.ones((6, 4, 3), np.uint8)
    assert crop_box(img, None, size=12).shape == (12, 12, 3)  # class-folder crops: whole image


def test_compose_aim_cics_rgb() -> None:
    rng = np.random.default_rng(0)
    mem, bf, nuc = (rng.integers(100, 4000, (16, 16)).astype(np.uint16) for _ in range(3))
    rgb = compose_channels([mem, bf, nuc])
    assert rgb.shape == (16, 16, 3)
    assert rgb.min() == 0 and rgb.max() == 255
    assert np.argmax(rgb[..., 0]) == np.argmax(mem)  # red is the membrane plane


# --- model folders ---


def _card(in_chans: int = 3, size: int = 16) -> ModelCard:
    return ModelCard(
        name="toy", assay="livedead", classes=["live", "dead"], architecture="lcnet_050",
        in_chans=in_chans, channels=[{"name": f"c{i}"} for i in range(in_chans)],
        crop=dict(size=size), normalisation=dict(mean=[0.5] * in_chans, std=[0.25] * in_chans),
    )


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = create_classifier("lcnet_050", 2, 3).eval()
    folder = save_model(net, _card(), tmp_path / "m")
    return folder, net


def test_save_load_round_trip_identical(saved) -> None:
    folder, net = saved
    crops = np.random.default_rng(1).integers(0, 255, (5, 16, 16, 3)).astype(np.uint8)
    before = predict_proba(LoadedModel(net, _card(), folder), crops, device="cpu")
    m = load_model(folder)
    after = predict_proba(m, crops, batch_size=2, device="cpu")
    assert np.array_equal(before, after)
    assert np.allclose(after.sum(1), 1, atol=1e-6)
    card = yaml.safe_load((folder / "model.yaml").read_text())
    assert len(card["sha256"]) == 64 and card["drop_rate"] == 0.25
    assert m.module.drop_rate == 0.25


def test_sha256_mismatch_is_clear(saved) -> None:
    folder, _ = saved
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256 .* does not match model.yaml"):
        load_model(folder)


def test_card_not_matching_weights_is_clear(saved) -> None:
    folder, _ = saved
    card = yaml.safe_load((folder / "model.yaml").read_text())
    card["classes"] = ["a", "b", "c"]
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(InputError, match="card_sha256 .* does not match the card's content"):
        load_model(folder)
    seal_card(folder)  # a deliberate edit, recorded: now the weights say it cannot be
    with pytest.raises(InputError, match="does not match model.safetensors .*3 classes"):
        load_model(folder)
    card["in_chans"] = 2
    (folder / "model.yaml").write_text(yaml.safe_dump(card))
    with pytest.raises(InputError, match="field .*channels are described"):
        load_model(folder)


def test_card_checksum_covers_class_order_not_documentation(saved) -> None:
    """Issue 15 item 9: two classes swapped in model.yaml (weights untouched) are refused on
    load, naming the card; documentation edits are not; sealing records a deliberate edit."""
    folder, _ = saved
    path = folder / "model.yaml"
    original = path.read_text()
    card = yaml.safe_load(original)
    assert card["card_sha256"] == card_checksum(read_card(folder))
    card["metrics"] = {"auc": 0.5}
    card["channels"][0]["meaning"] = "nuclear stain"
    card["name"] = "renamed"
    path.write_text(yaml.safe_dump(card))
    assert load_model(folder).card.name == "renamed"  # documentation: free to edit
    for key, value in (("classes", ["dead", "live"]), ("crop", {"size": 16, "margin": 1.0}),
                       ("normalisation", {"mean": [0.5] * 3, "std": [0.5] * 3}),
                       ("thresholds", {"rule": "max"}), ("card_sha256", None)):
        edited = dict(card)
        if value is None:
            edited.pop(key)
        else:
            edited[key] = value
        path.write_text(yaml.safe_dump(edited))
        with pytest.raises(InputError) as err:
            load_model(folder)
        msg = str(err.value)
        assert msg.startswith(f"{path}: ") and "\n" not in msg and f"hcs seal {folder}" in msg
    # the swapped card, sealed on purpose: loads, and its outputs are the swapped columns
    path.write_text(original)
    crops = np.random.default_rng(2).integers(0, 255, (4, 16, 16, 3)).astype(np.uint8)
    before = predict_proba(load_model(folder), crops, device="cpu")
    card = yaml.safe_load(original)
    card["classes"] = ["dead", "live"]
    path.write_text(yaml.safe_dump(card))
    new = seal_card(folder)
    assert new != card_checksum(read_card(folder, verify=False).model_copy(
        update={"classes": ["live", "dead"]}))
    m = load_model(folder)
    assert m.card.classes == ["dead", "live"] and m.card.card_sha256 == new
    assert np.array_equal(predict_proba(m, crops, device="cpu"), before)
    # sealing never blesses other weights
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(InputError, match="sha256 .* does not match model.yaml"):
        seal_card(folder)
    assert yaml.safe_load(path.read_text())["card_sha256"] == new


def test_wrong_channel_count_is_clear(saved) -> None:
    m = load_model(saved[0])
    with pytest.raises(InputError, match="1 channel.*expects 3"):
        predict_proba(m, np.zeros((2, 16, 16, 1), np.uint8), device="cpu")
    with pytest.raises(InputError, match="expects 16x16"):
        predict_proba(m, np.zeros((2, 20, 20, 3), np.uint8), device="cpu")


def test_devices_and_pretrained_never_download(tmp_path, monkeypatch) -> None:
    assert select_device("auto").type in ("cpu", "cuda")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            select_device("cuda:0")
    with pytest.raises(InputError, match="expected auto"):
        select_device("tpu")
    with pytest.raises(InputError, match="not found"):
        create_classifier("resnet10t", 2, pretrained=tmp_path / "missing.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="never downloads"):
        create_classifier("resnet10t", 2, pretrained=True)
    # a local weight file is used as given
    net = create_classifier("lcnet_050", 2)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "w.safetensors")
    net2 = create_classifier("lcnet_050", 2, pretrained=tmp_path / "w.safetensors")
    head = net.pretrained_cfg["classifier"]
    body = [k for k in net.state_dict() if not k.startswith(head)]
    assert len(body) > 10
    for k in body:  # the backbone comes from the file (timm re-initialises the head)
        assert torch.equal(net.state_dict()[k], net2.state_dict()[k])


def test_grad_cam_and_embedding_figure(saved) -> None:
    from hcs.classify.explain import embedding_figure, grad_cam

    m = load_model(saved[0])
    crop = np.full((16, 16, 3), 128, np.uint8)
    cam = grad_cam(m, crop, class_index=1)
    assert cam.shape == (16, 16) and cam.min() >= 0 and cam.max() <= 1
    with pytest.raises(InputError, match="class index 5"):
        grad_cam(m, crop, class_index=5)
    rng = np.random.default_rng(0)
    feats = np.r_[rng.normal(0, 1, (20, 8)), rng.normal(6, 1, (20, 8))]
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    fig = embedding_figure(feats, y, y, ["live", "dead"])
    assert len(fig.data) == 4 and sum(len(t.x) for t in fig.data) == 80


def test_crops_from_real_ldc_mixed_png_modes(livedead_ldc) -> None:
    """The LDC share mixes 8-bit grey, 16-bit grey, palette, RGBA and RGB PNGs."""
    from hcs.classify.crops import crops_from_table, read_image
    from hcs.io.annotations import read_voc

    names = ["image1132", "image1552", "c (5)", "d (100)", "b (1829)"]  # L, I;16, P, RGBA, RGB
    import pandas as pd

    table = pd.concat([read_voc(livedead_ldc / f"{n}.xml") for n in names], ignore_index=True)
    assert table["source"].nunique() == 5
    rgb = crops_from_table(table, 24, 0.25)
    grey = crops_from_table(table, 24, 0.25, channels=1)
    assert rgb.shape == (len(table), 24, 24, 3) and rgb.dtype == np.uint8
    assert grey.shape == (len(table), 24, 24, 1)
    # these images are grey in every mode: R = G = B, and grey crops equal each plane (+-1 rounding)
    assert (rgb[..., 0] == rgb[..., 2]).all()
    assert np.abs(grey[..., 0].astype(int) - rgb[..., 0]).max() <= 1
    img16 = read_image(livedead_ldc / "image1552.png")
    assert img16.dtype == np.uint16  # mapped to 8 bits by the full 16-bit range
    assert rgb[table["source"] == "image1552.png"].max() == 255
