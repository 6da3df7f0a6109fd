"""Assays as data: one declaration per assay, the accessors the engine uses, rules on hand-made
probability vectors, and the labelling of detected nuclei for training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcs.assays import (
    ASSAYS,
    Assay,
    DecisionRule,
    InputChannel,
    apply_rule,
    counted,
    get_assay,
    get_input_spec,
    get_rule,
)
from hcs.errors import InputError


def test_one_declaration_carries_channels_crop_and_rule() -> None:
    for name, a in ASSAYS.items():
        # the accessors are views of the same declaration, not a second source of truth
        assert get_input_spec(name) == a.inputs and get_rule(name) is a.rule
        assert a.rule.assay == name and a.rule.excluded == a.excluded
        assert a.inputs.crop_size == a.crop_size and a.inputs.channels == a.channels
    cic = get_assay("cic")
    assert [c.name for c in cic.channels] == ["membrane", "brightfield", "nucleus"]
    assert {c.rescale for c in cic.channels} == {"percentile"}
    assert (cic.crop_size, cic.margin, cic.square) == (224, 0.0, True)  # AIM-CICs
    assert (cic.rule.min_confidence, cic.rule.fallback) == (0.2, "non_cic")
    assert get_rule("cancer").fusion_weight == 0.7
    assert get_assay("livedead").label_map["Living Cell"] == "live"
    assert get_assay("mitosis").rule.mitotic_threshold == 0.5
    assert get_assay(" CIC ") is cic and get_assay(cic) is cic
    with pytest.raises(InputError, match="unknown assay 'ph'; known: cic, livedead"):
        get_input_spec("ph")


def test_cic_rule_on_hand_made_vectors_and_f_category_not_counted() -> None:
    cls = get_assay("cic").classes
    assert cls == ("partial", "one_in_one", "two_in_one", "in_turn", "complicated",
                   "f_category", "non_cic")
    p = np.array([
        [0.1, 0.18, 0.12, 0.15, 0.15, 0.13, 0.17],  # the example: top 0.18 < 0.2
        [0.05, 0.05, 0.05, 0.05, 0.05, 0.70, 0.05],  # F-category: detected, not counted
        [0.20, 0.19, 0.11, 0.15, 0.15, 0.10, 0.10],  # top exactly 0.2 is kept
        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
    ])
    labels = apply_rule(p, cls, "cic")
    assert labels.tolist() == ["non_cic", "f_category", "partial", "complicated"]
    assert counted(labels, "cic").tolist() == [True, False, True, True]
    # livedead has no low-confidence rule: a 0.51 call stays
    assert apply_rule([[0.49, 0.51]], ("live", "dead"), "livedead").tolist() == ["dead"]


def test_declarations_are_validated() -> None:
    ch = (InputChannel("nucleus"),)
    with pytest.raises(ValueError, match="unknown classes"):
        Assay("x", classes=("a", "b"), excluded=("c",), channels=ch)
    with pytest.raises(ValueError, match="unknown classes"):
        Assay("x", classes=("a", "b"), channels=ch,
              rule=DecisionRule(min_confidence=0.3, fallback="z"))
    with pytest.raises(ValueError, match="extra_nucleus_class must be an excluded class"):
        Assay("x", classes=("a", "b"), channels=ch, extra_nucleus_class="a")
    with pytest.raises(ValueError, match="no input channel"):
        Assay("x", classes=("a", "b"))
    with pytest.raises(ValueError, match="needs a fallback"):
        DecisionRule(min_confidence=0.2)
    a = Assay("x", classes=("a", "b", "junk"), excluded=("junk",), channels=ch,
              extra_nucleus_class="junk")
    assert a.analysed_classes == ("a", "b") and a.rule.excluded == ("junk",)


def test_detected_nuclei_are_labelled_by_their_object() -> None:
    """A CIC structure (host + 2 internalised cells) gives 3 detections: the one on the host
    nucleus carries the class; the others get the assay's extra-nucleus class."""
    from hcs.train.detected import label_detections

    objects = pd.DataFrame({
        "cell_id": [7, 8], "bbox_x0": [0.0, 60.0], "bbox_y0": [0.0, 0.0],
        "bbox_x1": [50.0, 80.0], "bbox_y1": [50.0, 20.0],
        "nucleus_x": [10.0, 70.0], "nucleus_y": [25.0, 10.0]})
    members = pd.DataFrame({"cell_id": [7, 7, 7, 8], "nucleus_x": [10.0, 30.0, 35.0, 70.0],
                            "nucleus_y": [25.0, 15.0, 35.0, 10.0]})
    centres = np.array([[31.0, 16.0], [11.0, 24.0], [34.0, 36.0], [69.0, 11.0], [55.0, 5.0],
                        [70.0, 40.0]])
    obj, primary = label_detections(np.zeros((6, 4)), centres, objects, members)
    assert obj.tolist() == [0, 0, 0, 1, -1, -1]  # x=55 lies between the boxes; y=40 below #8
    assert primary.tolist() == [False, True, False, True, False, False]
    # a detection inside two boxes goes to the object owning the nearest member nucleus
    objects2 = objects.assign(bbox_x0=[0.0, 20.0], bbox_x1=[50.0, 80.0], bbox_y1=[50.0, 50.0])
    members2 = members.assign(nucleus_x=[10.0, 30.0, 35.0, 40.0], nucleus_y=[25, 15, 35, 5.0])
    obj, primary = label_detections(np.zeros((1, 4)), np.array([[39.0, 6.0]]), objects2,
                                    members2)
    assert obj.tolist() == [1] and primary.tolist() == [True]
