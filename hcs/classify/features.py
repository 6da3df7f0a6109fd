"""Feature models: a gradient-boosted classifier on a cell's measurements (``kind: features``).

A features model folder holds ``model.yaml`` (a :class:`FeaturesCard`: classes, input channel
roles, the measurement features in order, the estimator's settings and the scikit-learn version
it was fitted with, held-out figures, domain statistics) and ``model.npz``: the fitted
:class:`sklearn.ensemble.HistGradientBoostingClassifier` as plain arrays (every tree's nodes:
feature, threshold, missing-value direction, children, leaf value; and the baseline). Nothing is
pickled: the file is read with ``numpy.load(allow_pickle=False)``, so a model folder cannot run
code when it is loaded, and prediction does not depend on the scikit-learn version
(:func:`predict_trees` walks the trees as scikit-learn's ``TreePredictor`` does;
:func:`export_trees` checks the two agree on the training data before a folder is written).

The card's ``sha256`` is that of ``model.npz`` and its ``card_sha256`` covers the classes, the
channels, the features and the estimator (:func:`hcs.classify.models.card_checksum`), verified
on every load as for the other model folders.

Feature columns are the run's cell-table columns (:mod:`hcs.measure`): a feature with a
``channel`` role reads ``<name>_<plate channel>`` where the plate channel is the one playing the
role (the run's ``--channels`` map first, then by name), so a model
trained on ``--channels dna=DAPI`` runs on a plate whose DNA channel is called ``Hoechst``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from hcs.classify.models import CARD, ChannelCard
from hcs.errors import InputError

__all__ = ["FEATURES_FILE", "FeatureRef", "FeaturesCard", "FeaturesModel", "export_trees",
           "feature_refs", "is_features_folder", "load_features_model", "predict_trees",
           "read_features_card", "save_features_model"]

FEATURES_FILE = "model.npz"
_TREE_KEYS = ("feature", "threshold", "missing_left", "left", "right", "leaf", "value",
              "tree_class", "roots", "baseline")
#: measurement groups measured per channel (CellProfiler scheme, :mod:`hcs.measure`)
_PER_CHANNEL = re.compile(r"^(Nuclei|Cells|Cytoplasm)_(Intensity|Texture)_")
_SHAPE = re.compile(r"^(Nuclei|Cells|Cytoplasm)_AreaShape_")
_POSITION = re.compile(r"_(Center_X|Center_Y)$")


class FeatureRef(BaseModel):
    """One model input: a measurement ``name`` and, for a per-channel one, the channel role."""

    model_config = ConfigDict(extra="forbid")
    name: str
    channel: str | None = None

    def column(self, plate_channel: str | None) -> str:
        """The cell-table column of this feature when its role is played by ``plate_channel``."""
        from hcs.measure import safe_name

        return self.name if self.channel is None else f"{self.name}_{safe_name(plate_channel)}"


class FeaturesCard(BaseModel):
    """The content of a features model's ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str
    kind: Literal["features"] = "features"
    assay: str
    classes: list[str]
    architecture: str = "HistGradientBoostingClassifier"
    channels: list[ChannelCard] = Field(default_factory=list)
    features: list[FeatureRef]
    estimator: dict[str, Any] = Field(default_factory=dict)
    thresholds: dict[str, Any] = Field(default_factory=lambda: {"rule": "argmax"})
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    domain: dict[str, Any] = Field(default_factory=dict)
    sha256: str = ""
    card_sha256: str = ""
    hcs_version: str = ""

    def model_post_init(self, __context: Any) -> None:
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"classes must be >= 2 distinct names, got {self.classes}")
        roles = {c.name for c in self.channels}
        bad = [f.channel for f in self.features if f.channel is not None and f.channel
               not in roles]
        if bad:
            raise ValueError(f"feature channel role {bad[0]!r} is not one of the channels")
        if not self.features:
            raise ValueError("a features model needs at least one feature")

    def columns(self, role_channels: dict[str, str]) -> list[str]:
        """The cell-table columns of the features, in model order, when each channel role is
        played by the plate channel ``role_channels[role]`` (the engine matches them with
        :func:`hcs.engine.model.plate_channel_for`)."""
        missing = [c.name for c in self.channels if c.name not in role_channels]
        if missing:
            raise InputError(f"model {self.name}: no plate channel for role {missing[0]!r}")
        return [f.column(role_channels[f.channel] if f.channel else None) for f in self.features]


def feature_refs(columns: list[str], channels: dict[str, str]) -> list[FeatureRef]:
    """The model inputs among cell-table ``columns``: every shape feature (``*_AreaShape_*``
    but the object's position) and the per-channel intensity / texture features of the plate
    channels ``channels`` (role -> plate channel name) only, so a model can be kept blind to a
    marker.

    Examples
    --------
    >>> cols = ["x", "Nuclei_AreaShape_Area", "Nuclei_AreaShape_Center_X",
    ...         "Nuclei_Intensity_MeanIntensity_DAPI", "Nuclei_Intensity_MeanIntensity_PH3"]
    >>> [(f.name, f.channel) for f in feature_refs(cols, {"dna": "DAPI"})]
    [('Nuclei_AreaShape_Area', None), ('Nuclei_Intensity_MeanIntensity', 'dna')]
    """
    from hcs.measure import safe_name

    suffix = {"_" + safe_name(ch): role for role, ch in channels.items()}
    out = []
    for c in columns:
        if _SHAPE.match(c) and not _POSITION.search(c):
            out.append(FeatureRef(name=c))
        elif _PER_CHANNEL.match(c):
            for suf, role in suffix.items():
                if c.endswith(suf):
                    out.append(FeatureRef(name=c[: -len(suf)], channel=role))
                    break
    return out


def export_trees(clf: Any, check: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A fitted ``HistGradientBoostingClassifier`` as plain arrays (see :func:`predict_trees`).

    Numeric features only (no categorical splits). With ``check`` (rows of features), the
    arrays' probabilities are compared with scikit-learn's and a difference raises.
    """
    feats, thr, miss, left, right, leaf, value, tree_class, roots = ([] for _ in range(9))
    offset = 0
    for iteration in clf._predictors:  # noqa: SLF001 - the fitted trees, documented attrs
        for k, pred in enumerate(iteration):
            nodes = pred.nodes
            if nodes["is_categorical"].any():
                raise InputError("categorical splits are not supported in a features model")
            roots.append(offset)
            tree_class.append(k)
            feats.append(nodes["feature_idx"].astype(np.int32))
            thr.append(nodes["num_threshold"].astype(np.float64))
            miss.append(nodes["missing_go_to_left"].astype(bool))
            left.append(nodes["left"].astype(np.int64) + offset)
            right.append(nodes["right"].astype(np.int64) + offset)
            leaf.append(nodes["is_leaf"].astype(bool))
            value.append(nodes["value"].astype(np.float64))
            offset += len(nodes)
    arrays = {
        "feature": np.concatenate(feats), "threshold": np.concatenate(thr),
        "missing_left": np.concatenate(miss), "left": np.concatenate(left),
        "right": np.concatenate(right), "leaf": np.concatenate(leaf),
        "value": np.concatenate(value), "tree_class": np.asarray(tree_class, np.int32),
        "roots": np.asarray(roots, np.int64),
        "baseline": np.asarray(clf._baseline_prediction, np.float64).ravel(),  # noqa: SLF001
    }
    if check is not None and len(check):
        ours = predict_trees(arrays, check)
        theirs = clf.predict_proba(check)
        if not np.allclose(ours, theirs, atol=1e-6):
            raise RuntimeError("exported trees disagree with scikit-learn (max |diff| "
                               f"{np.abs(ours - theirs).max():.3g})")
    return arrays


def predict_trees(arrays: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Class probabilities of rows ``x`` from :func:`export_trees` arrays.

    Each tree is walked from its root: a missing value goes the way the split sends missing
    values, else ``value <= threshold`` goes left; the leaves' values are summed per class onto
    the baseline; two classes: the logistic function, more: softmax (scikit-learn's binary and
    multinomial log-losses).
    """
    x = np.asarray(x, np.float64)
    n = len(x)
    k = len(arrays["baseline"])
    roots = arrays["roots"]
    node = np.broadcast_to(roots, (n, len(roots))).copy()
    rows = np.arange(n)[:, None]
    leaf = arrays["leaf"]
    for _ in range(256):  # deeper than any tree
        done = leaf[node]
        if done.all():
            break
        v = x[rows, arrays["feature"][node]]
        go_left = np.where(np.isnan(v), arrays["missing_left"][node],
                           v <= arrays["threshold"][node])
        node = np.where(done, node, np.where(go_left, arrays["left"][node],
                                             arrays["right"][node]))
    raw = np.tile(arrays["baseline"], (n, 1))
    vals = arrays["value"][node]
    for c in range(k):
        raw[:, c] += vals[:, arrays["tree_class"] == c].sum(axis=1)
    if k == 1:
        p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        return np.stack([1 - p, p], axis=1)
    raw -= raw.max(axis=1, keepdims=True)
    e = np.exp(raw)
    return e / e.sum(axis=1, keepdims=True)


class FeaturesModel:
    """A loaded features model: its card, folder and tree arrays."""

    kind = "features"

    def __init__(self, card: FeaturesCard, folder: Path, arrays: dict[str, np.ndarray]) -> None:
        self.card = card
        self.folder = folder
        self.arrays = arrays

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities (card class order) of feature rows ``x`` (columns in card order)."""
        if x.ndim != 2 or x.shape[1] != len(self.card.features):
            raise InputError(f"model {self.card.name}: expected {len(self.card.features)} "
                             f"features per cell, got {x.shape}")
        if not len(x):
            return np.zeros((0, len(self.card.classes)), np.float32)
        return predict_trees(self.arrays, x).astype(np.float32)

    def __repr__(self) -> str:
        return f"FeaturesModel({self.card.name!r}, classes={self.card.classes})"


def is_features_folder(folder: str | Path) -> bool:
    """True when ``folder/model.yaml`` is a features model's card (``kind: features``)."""
    path = Path(folder) / CARD
    if not path.is_file():
        return False
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and data.get("kind") == "features"


def read_features_card(folder: str | Path, verify: bool = True) -> FeaturesCard:
    """Parse and validate ``folder/model.yaml`` of a features model and verify its
    ``card_sha256`` (:func:`hcs.classify.models.verify_card`)."""
    from hcs.classify.models import read_yaml, validate_card, verify_card

    path = Path(folder) / CARD
    if not path.is_file():
        raise InputError(f"{path}: model card not found ({Path(folder)} is not a model folder)")
    card = validate_card(path, FeaturesCard, read_yaml(path))
    return verify_card(path, card) if verify else card


def features_folder_not_ours(path: str | Path) -> str | None:
    """Why ``path`` is not a features model folder hcs wrote (``None``: it is one)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return "not a folder"
    if not is_features_folder(path) or not (path / FEATURES_FILE).is_file():
        from hcs.classify.models import model_folder_not_ours

        return model_folder_not_ours(path)  # a cnn folder may be replaced by a features one
    foreign = sorted(p.name for p in path.iterdir()
                     if p.name not in {CARD, FEATURES_FILE, "README.md", "cv.json"})
    return f"holds {foreign[0]!r}, which hcs did not write" if foreign else None


def save_features_model(folder: str | Path, card: FeaturesCard, arrays: dict[str, np.ndarray],
                        overwrite: bool = False, extra_files: dict[str, str] | None = None
                        ) -> Path:
    """Write ``model.npz`` + ``model.yaml`` (with the arrays' sha256 and the ``card_sha256``)
    atomically (:func:`hcs.atomic.atomic_dir`)."""
    from hcs.atomic import atomic_dir
    from hcs.classify.models import card_checksum
    from hcs.records import sha256_file

    folder = Path(folder)
    with atomic_dir(folder, overwrite=overwrite, not_ours=features_folder_not_ours) as tmp:
        with open(tmp / FEATURES_FILE, "wb") as fh:
            np.savez(fh, **{k: arrays[k] for k in _TREE_KEYS})
        card = card.model_copy(update={"sha256": sha256_file(tmp / FEATURES_FILE)})
        card = card.model_copy(update={"card_sha256": card_checksum(card)})
        (tmp / CARD).write_text(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return folder


def load_features_model(folder: str | Path) -> FeaturesModel:
    """Load a features model folder: the card (checksum verified), then ``model.npz`` after
    checking its sha256 against the card, read without unpickling."""
    from hcs.records import sha256_file

    folder = Path(folder)
    card = read_features_card(folder)
    path = folder / FEATURES_FILE
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    digest = sha256_file(path)
    if digest != card.sha256:
        raise InputError(f"{path}: sha256 {digest[:12]}... does not match model.yaml "
                         f"({card.sha256[:12] or 'missing'}...); the model or the card changed")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _TREE_KEYS}
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: not a features model file ({exc})") from None
    if int(arrays["feature"].max(initial=0)) >= len(card.features):
        raise InputError(f"{path}: trees read feature {int(arrays['feature'].max())} but the "
                         f"card lists {len(card.features)} features")
    width = len(arrays["baseline"])
    if not (width == len(card.classes) or (width == 1 and len(card.classes) == 2)):
        raise InputError(f"{path}: {width} tree outputs for {len(card.classes)} classes")
    return FeaturesModel(card, folder, arrays)
