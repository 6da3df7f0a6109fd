"""hcs.timing: per-stage seconds of a field when switched on, nothing recorded when off."""

from __future__ import annotations

import numpy as np
import pytest

from hcs import timing
from hcs.detect.threshold import detect_nuclei
from hcs.synth.fixtures import nuclei_field


@pytest.fixture
def stage_times():
    was = timing.enabled()
    timing.reset()
    yield timing
    timing.enable(was)
    timing.reset()


def test_detector_stages_are_timed_when_on(stage_times):
    img, truth = nuclei_field((256, 256), 15, seed=2)
    stage_times.enable(True)
    det = detect_nuclei(img, 0.598)
    detect_nuclei(img, 0.598)
    got = stage_times.totals()
    assert len(det) >= 0.8 * len(truth)
    assert list(got) == ["background/threshold", "seeds/watershed"]  # STAGES order
    for name in got:
        assert got[name]["calls"] == 2
        assert 0 < got[name]["cpu"] < 10 and 0 < got[name]["wall"] < 10


def test_nothing_is_recorded_when_off(stage_times):
    stage_times.enable(False)
    detect_nuclei(nuclei_field((128, 128), 5, seed=1)[0], 0.598)
    with stage_times.stage("read"):
        np.zeros(10).sum()
    assert stage_times.totals() == {}
    assert stage_times.stage("read") is stage_times.stage("write")  # one shared no-op
