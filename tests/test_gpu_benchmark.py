"""benchmarks/gpu.py runs (tiny sizes, on the CPU with --cpu) so the GPU benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("gpu_bench", REPO / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_exits_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_benchmark().main([]) == 0
    out = capsys.readouterr().out
    assert "no CUDA device found" in out and "crops/s" not in out


def test_cpu_run_measures_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load_benchmark()
    assert bench.main(["--cpu", "--crops", "24", "--batch-sizes", "4,16", "--tiles", "1",
                       "--tile-size", "128", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+(4|16)\s+(\d+)$", out, re.M)
    assert [r[0] for r in rows] == ["4", "16"] and all(int(r[1]) > 0 for r in rows)
    # the same crops on the same device: the same probabilities (up to the float rounding of
    # another batch size / thread count) and identical labels
    agree = re.search(r"AMP off: max \|dp\| (\S+), labels identical for (\S+)% of crops", out)
    assert agree is not None and float(agree.group(1)) < 1e-5 and agree.group(2) == "100.00"
    assert re.search(r"^\s+1\s+\d+\.\d\d$", out, re.M)  # tiles/s at 1 tile per call
    # the detector: the same module on the same tile gives the same boxes, scores included
    det = re.findall(r"agreement with the CPU \((all raw outputs|score >= [\d.]+)\): (\d+) "
                     r"detections on the CPU, (\d+) on cpu; (\S+) .* \(max \|score difference\| "
                     r"(\S+)\)", out)
    assert len(det) == 2
    for _, n_cpu, n_dev, frac, dscore in det:
        assert n_cpu == n_dev and float(dscore) == 0.0
        assert frac == ("100.0%" if int(n_dev) else "-")
