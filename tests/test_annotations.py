"""Annotation readers: real LDC Pascal VOC files, VIA JSON and class folders."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imsave

from hcs.errors import InputError
from hcs.io.annotations import ANNOTATION_COLUMNS, read_class_folders, read_via, read_voc

LDC_MAP = {"Living Cell": "live", "Dead Cell": "dead"}


def test_voc_real_ldc_names_with_spaces_and_parentheses(livedead_ldc: Path) -> None:
    xml = livedead_ldc / "b (1829).xml"
    t = read_voc(xml, LDC_MAP)
    assert list(t.columns) == ANNOTATION_COLUMNS
    # b (1829).xml holds one living cell at (77, 21)-(95, 40) in a 225 x 219 image
    assert t[["x0", "y0", "x1", "y1"]].values.tolist() == [[77.0, 21.0, 95.0, 40.0]]
    assert t["label"].tolist() == ["live"]
    assert t["source"].tolist() == ["b (1829).png"]
    assert Path(t["image"].iloc[0]).is_file()
    assert (t["width"].iloc[0], t["height"].iloc[0]) == (225, 219)


def test_voc_real_ldc_folder_counts(livedead_ldc: Path) -> None:
    t = read_voc(livedead_ldc, LDC_MAP)
    # the share documented in shared/data/README.md: 5653 living and 1208 dead boxes
    assert t["label"].value_counts().to_dict() == {"live": 5653, "dead": 1208}
    # compare with a direct count of <object> elements
    n = sum(len(ET.parse(f).getroot().findall("object")) for f in livedead_ldc.glob("*.xml"))
    assert len(t) == n
    assert t["image"].map(lambda p: Path(p).is_file()).all()


def test_voc_unknown_class_names_file(livedead_ldc: Path, tmp_path: Path) -> None:
    shutil.copy(livedead_ldc / "b (1829).xml", tmp_path / "b (1829).xml")
    shutil.copy(livedead_ldc / "b (1829).png", tmp_path / "b (1829).png")
    with pytest.raises(InputError, match=r"b \(1829\)\.xml.*'Living Cell'"):
        read_voc(tmp_path, {"Dead Cell": "dead"})


def test_voc_bad_number_and_missing_image(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"")
    (tmp_path / "x.xml").write_text(
        "<annotation><filename>x.png</filename><object><name>a</name><bndbox><xmin>1</xmin>"
        "<ymin>q</ymin><xmax>5</xmax><ymax>6</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(InputError, match=r"x\.xml: object 0: <bndbox><ymin> is 'q'"):
        read_voc(tmp_path)
    (tmp_path / "x.png").unlink()
    with pytest.raises(InputError, match="not found"):
        read_voc(tmp_path)


def test_via_json_shapes(tmp_path: Path) -> None:
    data = {"_via_img_metadata": {"k": {"filename": "a b.png", "regions": [
        {"shape_attributes": {"name": "rect", "x": 1, "y": 2, "width": 3, "height": 4},
         "region_attributes": {"cls": "partial"}},
        {"shape_attributes": {"name": "polygon", "all_points_x": [5, 9, 7],
                              "all_points_y": [1, 1, 6]},
         "region_attributes": {"cls": "in_turn"}},
        {"shape_attributes": {"name": "circle", "cx": 10, "cy": 10, "r": 2},
         "region_attributes": {"cls": "non_cic"}},
    ]}}}
    (tmp_path / "p.json").write_text(json.dumps(data))
    t = read_via(tmp_path / "p.json")
    assert t[["x0", "y0", "x1", "y1"]].values.tolist() == [
        [1, 2, 4, 6], [5, 1, 10, 7], [8, 8, 12, 12]
    ]
    assert t["label"].tolist() == ["partial", "in_turn", "non_cic"]
    assert t["source"].tolist() == ["a b.png"] * 3


def test_class_folders_and_empty_folder(tmp_path: Path) -> None:
    for c in ("live", "dead"):
        (tmp_path / c).mkdir()
    imsave(tmp_path / "live" / "c 1.png", np.zeros((8, 8), np.uint8), check_contrast=False)
    with pytest.raises(InputError, match=r"dead: class folder 'dead' holds no image"):
        read_class_folders(tmp_path)
    imsave(tmp_path / "dead" / "c (2).png", np.zeros((8, 8), np.uint8), check_contrast=False)
    t = read_class_folders(tmp_path)
    assert sorted(t["label"]) == ["dead", "live"]
    assert t[["x0"]].isna().all().all()
    with pytest.raises(InputError, match="missing"):
        read_class_folders(tmp_path, ["live", "apoptotic"])
