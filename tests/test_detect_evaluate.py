"""Detection metrics against hand-computed values and an independent reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hcs.detect import Detections
from hcs.detect.evaluate import (
    average_precision,
    best_f1,
    box_iou,
    evaluate_detections,
    mask_f1,
    match_boxes,
    pr_curve,
    precision_recall,
)
from hcs.detect.report import detector_report
from hcs.errors import InputError, OutputExistsError

TRUTH3 = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)


def dets(boxes, scores, labels=None):
    return Detections(np.asarray(boxes, float), np.asarray(scores, float), labels=labels)


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([
        [0, 0, 10, 10],     # identical: 1
        [5, 0, 15, 10],     # half overlap: 50 / 150
        [0, 0, 5, 5],       # inside: 25 / 100
        [10, 0, 20, 10],    # shares an edge only: 0
        [2, 3, 12, 8],      # 8 x 5 = 40 / (100 + 50 - 40)
        [30, 30, 40, 40],   # disjoint: 0
    ])
    np.testing.assert_allclose(box_iou(a, b)[0], [1, 1 / 3, 0.25, 0, 40 / 110, 0])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 6)
    assert box_iou(a, np.zeros((0, 4))).shape == (1, 0)
    # degenerate (zero-area) boxes give 0, not NaN
    assert box_iou(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))[0, 0] == 0


def test_greedy_matching_by_score_one_truth_per_detection():
    truth = np.array([[0, 0, 10, 10]])
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [1, 0, 11, 10]])
    m = match_boxes(pred, np.array([0.2, 0.9, 0.5]), truth, 0.5)
    # the best-scored detection (index 1, IoU 0.9) takes the truth; the others are FPs
    assert m.truth_index.tolist() == [-1, 0, -1]
    assert m.iou[1] == pytest.approx(0.9)
    # a detection picks the unmatched truth it overlaps most
    truths = np.array([[0, 0, 10, 10], [4, 0, 14, 10]])
    m = match_boxes(np.array([[3, 0, 13, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8]), truths, 0.5)
    assert m.truth_index.tolist() == [1, 0]


def test_ap50_and_best_f1_hand_computed():
    # ranked TP, FP, TP, TP against 3 truths: precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1
    d = dets([[0, 0, 10, 10], [60, 0, 70, 10], [20, 0, 30, 10], [40, 0, 50, 10]],
             [0.9, 0.8, 0.7, 0.6])
    # envelope 1, 3/4, 3/4 over recall steps of 1/3: AP = 5/6
    assert average_precision([d], [TRUTH3]) == pytest.approx(5 / 6)
    b = best_f1([d], [TRUTH3])
    # F1 at the four cut-offs: 1/2, 2/5, 2/3, 6/7 -> best 6/7 keeping score >= 0.6
    assert b["f1"] == pytest.approx(6 / 7)
    assert b["score"] == pytest.approx(0.6)
    assert (b["precision"], b["recall"]) == (pytest.approx(0.75), pytest.approx(1.0))
    c = pr_curve([d], [TRUTH3], 0.5)
    np.testing.assert_allclose(c["precision"], [1, 1 / 2, 2 / 3, 3 / 4])
    np.testing.assert_allclose(c["recall"], [1 / 3, 1 / 3, 2 / 3, 1])


def test_ap_pools_images_and_ranks_globally():
    # image 1: TP (0.9), FP (0.3); image 2: FP (0.8), TP (0.4); 2 truths each, one missed per image
    d1 = dets([[0, 0, 10, 10], [60, 0, 70, 10]], [0.9, 0.3])
    d2 = dets([[60, 0, 70, 10], [20, 0, 30, 10]], [0.8, 0.4])
    t = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    # global ranking 0.9 TP, 0.8 FP, 0.4 TP, 0.3 FP; 4 truths
    # precision 1, 1/2, 2/3, 1/2 at recall 1/4, 1/4, 2/4, 2/4 -> AP = 1/4 * 1 + 1/4 * 2/3
    assert average_precision([d1, d2], [t, t]) == pytest.approx(1 / 4 + 1 / 6)
    assert best_f1([d1, d2], [t, t])["f1"] == pytest.approx(2 * 2 / (3 + 4))


def reference_ap(scores, is_tp, n_truth):
    """VOC 2010 all-point AP written from its definition, independently of the library."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tp = fp = 0
    points = []
    for i in order:
        tp, fp = tp + is_tp[i], fp + (not is_tp[i])
        points.append((tp / n_truth, tp / (tp + fp)))
    ap, prev_r = 0.0, 0.0
    for r in sorted({r for r, _ in points}):
        p_interp = max(p for rr, p in points if rr >= r)
        ap += (r - prev_r) * p_interp
        prev_r = r
    return ap


def test_ap_matches_reference_on_random_cases():
    rng = np.random.default_rng(5)
    for _ in range(20):
        n_truth = int(rng.integers(1, 15))
        truth = np.array([[30 * i, 0, 30 * i + 10, 10] for i in range(n_truth)], float)
        n_pred = int(rng.integers(1, 25))
        hits = rng.random(n_pred) < 0.6
        target = rng.integers(0, n_truth, n_pred)
        boxes = np.where(hits[:, None], truth[target], np.array([[-100, -100, -90, -90]]))
        scores = rng.random(n_pred)
        d = dets(boxes, scores)
        m = match_boxes(d.boxes, d.scores, truth, 0.5)
        expected = reference_ap(scores.tolist(), m.is_tp.tolist(), n_truth)
        assert average_precision([d], [truth]) == pytest.approx(expected)


def test_iou_10_versus_50_on_a_loosely_placed_box():
    # one tight box, one box shifted by 6 px (IoU 4/16 = 0.25), one duplicate-free false positive
    d = dets([[0, 0, 10, 10], [26, 0, 36, 10], [100, 100, 110, 110]], [0.9, 0.8, 0.7])
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    at50 = precision_recall([d], [truth], 0.5)
    at10 = precision_recall([d], [truth], 0.1)
    assert (at50["tp"], at50["fp"], at50["fn"]) == (1, 2, 1)
    assert (at10["tp"], at10["fp"], at10["fn"]) == (2, 1, 0)
    assert (at50["precision"], at50["recall"]) == (pytest.approx(1 / 3), 0.5)
    assert (at10["precision"], at10["recall"]) == (pytest.approx(2 / 3), 1.0)


def test_score_cut_off_is_strictly_greater_than_0_1():
    d = dets([[0, 0, 10, 10], [20, 0, 30, 10], [60, 0, 70, 10]], [0.5, 0.1, 0.05])
    truth = TRUTH3[:2]
    r = precision_recall([d], [truth], 0.5)
    # the 0.1 detection (a TP) and the 0.05 one (a FP) are both ignored
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 1)
    # AP uses every detection: 0.5 TP, 0.1 TP, 0.05 FP -> 1
    assert average_precision([d], [truth]) == pytest.approx(1.0)


def test_empty_cases():
    none = Detections.empty()
    assert math.isnan(average_precision([none], [np.zeros((0, 4))]))
    assert average_precision([none], [TRUTH3]) == 0.0
    r = precision_recall([none], [TRUTH3], 0.5)
    assert math.isnan(r["precision"]) and r["recall"] == 0.0
    assert best_f1([none], [TRUTH3])["f1"] == 0.0
    with pytest.raises(InputError, match="2 predicted images but 1 ground-truth"):
        evaluate_detections([none, none], [TRUTH3])
    with pytest.raises(InputError, match="expected Detections"):
        evaluate_detections([TRUTH3], [TRUTH3])
    with pytest.raises(InputError, match=r"\(N, 4\)"):
        evaluate_detections([none], [np.zeros((3, 3))])


def test_mask_f1_hand_case():
    truth = np.zeros((20, 20), int)
    truth[0:4, 0:4] = 1       # 16 px
    truth[10:14, 10:14] = 2   # 16 px
    truth[0:3, 15:18] = 3     # 9 px, missed
    pred = np.zeros((20, 20), int)
    pred[0:4, 0:3] = 7        # IoU 12/16: match
    pred[10:14, 12:16] = 8    # IoU 8/24 = 1/3: no match at 0.5
    r = mask_f1(pred, truth, 0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 2)
    assert r["f1"] == pytest.approx(2 / 5)
    assert mask_f1(pred, truth, 0.3)["tp"] == 2
    with pytest.raises(InputError, match="differ in shape"):
        mask_f1(pred[:10], truth)


def test_evaluate_detections_uses_masks_when_present():
    truth = np.zeros((20, 40), np.int32)
    truth[2:8, 2:8] = 1
    truth[2:8, 20:26] = 2
    pred = np.zeros_like(truth)
    pred[2:8, 2:7] = 1      # mask IoU 30/36, box IoU 30/36
    pred[2:8, 23:29] = 2    # mask IoU 18/54 -> miss
    p = Detections.from_labels(pred, [0.9, 0.8])
    t = Detections.from_labels(truth)
    m = evaluate_detections([p], [t])
    expected_keys = {"precision_iou50", "recall_iou50", "precision_iou10", "recall_iou10",
                     "ap50", "f1_iou50"}
    assert expected_keys <= set(m)
    assert m["f1_iou50_basis"] == "mask"
    assert m["f1_iou50"] == pytest.approx(0.5)
    assert m["precision_iou10"] == 1.0 and m["recall_iou10"] == 1.0
    assert m["ap50"] == pytest.approx(0.5)
    # boxes only: the box basis is used (same numbers here)
    m2 = evaluate_detections([Detections(p.boxes, p.scores)], [t.boxes])
    assert m2["f1_iou50_basis"] == "box" and m2["f1_iou50"] == pytest.approx(0.5)
    # a low-scored object drops out of the mask F1 as well
    m3 = evaluate_detections([Detections.from_labels(pred, [0.9, 0.05])], [t])
    assert m3["f1_iou50"] == pytest.approx(2 / 3)


def test_detector_report_writes_json_and_plot(tmp_path):
    d = dets([[0, 0, 10, 10], [60, 0, 70, 10], [20, 0, 30, 10], [40, 0, 50, 10]],
             [0.9, 0.8, 0.7, 0.6])
    js, html = tmp_path / "m.json", tmp_path / "pr.html"
    report = detector_report([d], [TRUTH3], js, html, extra={"detector": "hand"})
    on_disk = json.loads(js.read_text())
    assert on_disk == report
    assert on_disk["ap50"] == pytest.approx(5 / 6)
    assert on_disk["best_f1"] == pytest.approx(6 / 7)
    assert on_disk["precision_iou50"] == pytest.approx(3 / 4)
    assert on_disk["detector"] == "hand"
    text = html.read_text()
    assert "plotly" in text and "IoU 0.5" in text
    with pytest.raises(OutputExistsError):
        detector_report([d], [TRUTH3], js)
    # NaN metrics become JSON null
    empty = detector_report([Detections.empty()], [TRUTH3], tmp_path / "e.json")
    assert empty["precision_iou50"] is None
    assert json.loads((tmp_path / "e.json").read_text())["recall_iou50"] == 0.0
    with pytest.raises(InputError, match="does not exist"):
        detector_report([d], [TRUTH3], tmp_path / "missing" / "m.json")
    assert not list(tmp_path.glob(".*.tmp"))
