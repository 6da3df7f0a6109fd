"""``hcs_smallcnn``: the small plain CNN registered with timm, the default of ``hcs train
classifier --labels --kind cnn`` (issue 17: minutes, not half an hour, on a CPU)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_train_labels import invoke

REPO = Path(__file__).resolve().parents[1]
DNA = "nucleus=HOECHST 33342"


def _card(classes: list[str], in_chans: int = 1, size: int = 32) -> object:
    from hcs.classify.models import ModelCard

    return ModelCard(name="t", assay="t", classes=classes, architecture="hcs_smallcnn",
                     in_chans=in_chans, channels=[{"name": f"c{i}"} for i in range(in_chans)],
                     crop={"size": size}, normalisation={"mean": [0.5] * in_chans,
                                                         "std": [0.25] * in_chans})


def test_registered_and_timm_conventions() -> None:
    import timm
    import torch

    from hcs.classify.explain import grad_cam
    from hcs.classify.models import LoadedModel, create_classifier

    net = create_classifier("hcs_smallcnn", 3, in_chans=2, drop_rate=0.1)
    assert timm.is_model("hcs_smallcnn") and "hcs_smallcnn" in timm.list_models("hcs_*")
    assert (net.num_classes, net.in_chans, net.drop_rate) == (3, 2, 0.1)
    assert net.pretrained_cfg["classifier"] == "fc" and net.get_classifier() is net.fc
    x = torch.randn(5, 2, 48, 48)
    net.eval()
    assert net(x).shape == (5, 3)
    assert net.forward_features(x).shape == (5, 64, 3, 3)
    assert net.forward_head(net.forward_features(x), pre_logits=True).shape == (5, 64)
    assert sum(p.numel() for p in net.parameters()) < 100_000
    crop = np.random.default_rng(0).integers(0, 255, (48, 48, 2), dtype=np.uint8)
    cam = grad_cam(LoadedModel(net, _card(["a", "b", "c"], 2, 48), Path(".")), crop)
    assert cam.shape == (48, 48) and 0 <= cam.min() and cam.max() <= 1
    from hcs.errors import InputError

    with pytest.raises(InputError, match="no pretrained weights"):
        create_classifier("hcs_smallcnn", 2, 1, pretrained=True)


def test_save_load_in_a_fresh_process_and_head_swap(tmp_path) -> None:
    """A saved folder loads where only ``hcs.classify.models`` is imported (a Dask worker) with
    the same outputs; ``--from`` with other classes keeps every tensor but the head."""
    import torch

    from hcs.classify.models import create_classifier, load_model, save_model
    from hcs.train.datasets import CropSet
    from hcs.train.loop import TrainConfig, train_classifier

    torch.manual_seed(0)
    net = create_classifier("hcs_smallcnn", 2, 1).eval()
    save_model(net, _card(["a", "b"]), tmp_path / "m")
    x = torch.randn(4, 1, 32, 32)
    loaded = load_model(tmp_path / "m")
    assert torch.equal(loaded.module(x), net(x))
    code = ("import sys, torch; from hcs.classify.models import load_model; "
            "m = load_model(sys.argv[1]); torch.manual_seed(1); "
            "print(m.module.__class__.__name__, m.module(torch.ones(1, 1, 32, 32)).shape)")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m")], cwd=REPO,
                         capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
                              "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["SmallCNN", "torch.Size([1,", "2])"]

    # --from with 3 classes (hcs.train.own._CnnFitter drops pretrained_cfg["classifier"])
    state = loaded.module.state_dict()
    head = loaded.module.pretrained_cfg["classifier"]
    init = {k: v for k, v in state.items() if not k.startswith(head + ".")}
    crops = np.random.default_rng(0).integers(0, 255, (24, 32, 32, 1), dtype=np.uint8)
    cs = CropSet(crops, np.arange(24) % 3, ["x", "y", "z"], pd.DataFrame(index=range(24)))
    logs: list[str] = []
    cfg = TrainConfig(architecture="hcs_smallcnn", epochs=1, batch_size=8, lr=1e-12,
                      weight_decay=0, threads=1, augment=False)
    new, _ = train_classifier(cs, None, cfg, [0.5], [0.25], log=logs.append, init_state=init)
    assert any("new head" in s for s in logs)
    assert new.fc.weight.shape == (3, 64) and state["fc.weight"].shape == (2, 64)
    w = new.state_dict()["features.0.weight"]
    assert torch.allclose(w, state["features.0.weight"], atol=1e-6)  # lr ~0: kept as loaded


@pytest.fixture(scope="module")
def mitosis(tmp_path_factory, scheduler) -> dict[str, Path]:
    """A small simulated mitosis plate (4 wells x 2 fields), its run and binary truth labels
    (mitotic: any of the four stages)."""
    from hcs.synth import simulate_plate
    from hcs.train.own import truth_labels

    root = tmp_path_factory.mktemp("smallcnn")
    (root / "layout.csv").write_text(
        "well,condition,role,sim_density,sim_freq_non_mitotic,sim_freq_prophase,"
        "sim_freq_early_prometaphase,sim_freq_prometaphase_metaphase,"
        "sim_freq_anaphase_telophase_cytokinesis\n"
        + "".join(f"{w},c,sample,1500,0.6,0.1,0.1,0.1,0.1\n" for w in
                  ("B02", "B03", "C02", "C03")))
    simulate_plate(root / "sim", root / "layout.csv", "mitosis", fields=2, size=320, seed=4,
                   progress=False, workers=1)
    invoke("convert", root / "sim", root / "plate.ome.zarr")
    invoke("run", root / "plate.ome.zarr", "--out", root / "run", "--scheduler", scheduler,
           "--no-labels", "-q")
    lab = truth_labels(root / "sim", root / "run")
    lab["label"] = lab["label"].where(lab["label"] == "non_mitotic", "mitotic")
    (root / "ann").mkdir()
    lab.sample(min(200, len(lab)), random_state=0).to_csv(root / "ann" / "labels.csv",
                                                          index=False)
    lab.to_csv(root / "truth.csv", index=False)
    return {"root": root, "run": root / "run", "plate": root / "plate.ome.zarr",
            "labels": root / "ann" / "labels.csv", "truth": root / "truth.csv",
            "scheduler": scheduler}


def test_cli_default_is_the_small_cnn_and_runs(mitosis) -> None:
    """``hcs train classifier --labels --kind cnn`` without --arch/--epochs: the small CNN on
    the labels path's schedule (recorded in the card), seconds of CPU; then ``hcs run --model``
    on the plate: mitotic probability AUC against the truth of every cell > 0.93."""
    from sklearn.metrics import roc_auc_score

    out = mitosis["root"] / "m"
    t0 = time.process_time()
    invoke("train", "classifier", "--labels", mitosis["labels"], "--run", mitosis["run"],
           "--kind", "cnn", "--channels", DNA, "--folds", "3", "--n-boot", "50", "--out", out)
    cpu = time.process_time() - t0
    card = yaml.safe_load((out / "model.yaml").read_text())
    s = card["training"]["settings"]
    assert card["architecture"] == "hcs_smallcnn" == s["architecture"]
    assert (s["epochs"], s["threads"], s["batch_size"], s["optimizer"]) == (20, 1, 32, "adam")
    assert card["training"]["epochs_run"] == 20
    assert card["metrics"]["cross_validated"]["auc"] > 0.9
    assert cpu < 120, cpu  # 3 folds x 4 fractions + the final model (measured: ~35 CPU-s)
    run = mitosis["root"] / "run_m"
    invoke("run", mitosis["plate"], "--model", out, "--channels", DNA, "--out", run,
           "--scheduler", mitosis["scheduler"], "--no-labels", "-q")
    from hcs.annotate.cells import read_run_cells

    truth = pd.read_csv(mitosis["truth"], dtype={"well": str})
    cells = read_run_cells(run).merge(truth, on=["well", "field", "cell_id"],
                                      suffixes=("_run", ""))
    assert len(cells) == len(truth)
    assert roc_auc_score(cells["label"] == "mitotic", cells["p_mitotic"]) > 0.93


def test_cli_arch_and_other_path_keep_their_defaults(mitosis, monkeypatch) -> None:
    """--arch/--epochs still pick any timm model on the labels path; the other sources
    (--truth, --annotations, --folders) keep TrainConfig's defaults (resnet10t, 30 epochs)."""
    import hcs.train.pipeline
    from hcs.train.own import LABELS_CNN_SETTINGS

    out = mitosis["root"] / "m_lcnet"
    invoke("train", "classifier", "--labels", mitosis["labels"], "--run", mitosis["run"],
           "--kind", "cnn", "--channels", DNA, "--folds", "2", "--n-boot", "20", "--arch",
           "lcnet_050", "--epochs", "1", "--out", out)
    s = yaml.safe_load((out / "model.yaml").read_text())["training"]["settings"]
    assert (s["architecture"], s["epochs"], s["threads"]) == ("lcnet_050", 1,
                                                               LABELS_CNN_SETTINGS["threads"])
    seen = {}
    monkeypatch.setattr(hcs.train.pipeline, "train_model",
                        lambda out, **kw: seen.update(kw["config"].model_dump()))
    invoke("train", "classifier", "--truth", mitosis["root"] / "sim", "--assay", "mitosis",
           "--out", mitosis["root"] / "unused")
    assert (seen["architecture"], seen["epochs"], seen["batch_size"], seen["threads"]) == (
        "resnet10t", 30, 64, 2)
