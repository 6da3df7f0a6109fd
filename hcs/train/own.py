"""``hcs train classifier --labels ANN/labels.csv --run RUN --kind features|cnn``: a model of
the user's own labelled cells, with cross-validated figures grouped by well.

The labels (``plate, well, field, cell_id, label, annotator, time``; the last label of a cell
counts) are joined to the run's cell tables (:func:`hcs.annotate.cells.read_run_cells`). The
``features`` kind fits scikit-learn's ``HistGradientBoostingClassifier`` on the cells'
measurements (shape, and the intensity / texture of the ``--channels`` only;
:mod:`hcs.classify.features`); the ``cnn`` kind trains the timm path
(:func:`hcs.train.loop.train_classifier`) on the crops ``hcs run`` cuts
(:func:`hcs.annotate.cells.cell_crops`), optionally starting from a model folder (``--from``).

Figures (:func:`cross_validate`): out-of-fold probabilities of a ``GroupKFold`` by well (by
field when all labels are in one well; by strips of the field, :func:`field_strips`, when all
are in one field), so no well is in a training and a test fold; AUC (binary,
or one-vs-rest macro), balanced accuracy with a 95% CI from a bootstrap over the groups (wells),
confusion; the learning curve repeats the same folds with 25/50/75% of each training fold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hcs.errors import InputError, OutputExistsError

__all__ = ["LABELS_CNN_SETTINGS", "LABEL_COLUMNS", "cross_validate", "field_strips",
           "figures_table", "group_balanced_accuracy_ci", "labels_cnn_config", "read_labels",
           "train_on_labels", "truth_labels"]

LABEL_COLUMNS = ("plate", "well", "field", "cell_id", "label", "annotator", "time")
FRACTIONS = (0.25, 0.5, 0.75, 1.0)

#: the ``cnn`` kind's defaults for 50-300 labels (docs/classification.md): the small plain CNN
#: (:mod:`hcs.classify.smallcnn`), a fixed short schedule, 1 torch thread. Cross-validation
#: and the learning curve fit 4 x folds + 1 models, so one fit must take seconds, not minutes.
LABELS_CNN_SETTINGS: dict[str, Any] = {"architecture": "hcs_smallcnn", "epochs": 20,
                                       "batch_size": 32, "optimizer": "adam", "lr": 1e-3,
                                       "threads": 1}


def labels_cnn_config(**settings: Any) -> Any:
    """The :class:`hcs.train.loop.TrainConfig` of the ``cnn`` kind on labels:
    :data:`LABELS_CNN_SETTINGS` updated with ``settings`` (``None`` values: the default).

    Examples
    --------
    >>> c = labels_cnn_config(epochs=None, architecture="resnet10t")
    >>> c.architecture, c.epochs, c.threads
    ('resnet10t', 20, 1)
    """
    from hcs.train.loop import TrainConfig

    given = {k: v for k, v in settings.items() if v is not None}
    return TrainConfig(**{**LABELS_CNN_SETTINGS, **given})


def read_labels(path: str | Path) -> pd.DataFrame:
    """The labels file: one row per cell (its last label), ``label`` non-empty.

    Raises
    ------
    InputError
        Missing file or columns, or a row whose ``field`` / ``cell_id`` is not an integer
        (named by its line).
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"{path}: labels file not found") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in ("well", "field", "cell_id", "label") if c not in df]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing} (expected "
                         f"{', '.join(LABEL_COLUMNS)})")
    for c in ("field", "cell_id"):
        bad = ~df[c].str.fullmatch(r"\s*\d+\s*")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(f"{path}: line {i + 2}: {c} {df[c].iloc[i]!r} is not an integer")
        df[c] = df[c].astype(int)
    df["label"] = df["label"].str.strip()
    df = df[df["label"] != ""]
    df = df.drop_duplicates(["well", "field", "cell_id"], keep="last").reset_index(drop=True)
    if df.empty:
        raise InputError(f"{path}: no labelled cell")
    return df


def field_strips(x: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Groups for cross-validation within one field: ``n`` parallel strips of the field with
    equal numbers of cells, cut across the axis along which the cells spread most (by rank of
    their centre, ties in the order given), named by number and pixel range, e.g.
    ``"1: x 12-230"``.

    Cells close to each other (neighbours sharing a local background or focus, the two
    daughters of a division) then mostly fall into one fold instead of one training and one
    test fold, as wells do across a plate.

    Examples
    --------
    >>> field_strips(np.array([5., 1, 9, 3, 7, 2]), np.zeros(6), 3).tolist()
    ['2: x 3-5', '1: x 1-2', '3: x 7-9', '2: x 3-5', '3: x 7-9', '1: x 1-2']
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    span = (np.ptp(x) if len(x) else 0.0, np.ptp(y) if len(y) else 0.0)
    axis, v = ("x", x) if span[0] >= span[1] else ("y", y)
    n = max(1, min(int(n), len(v)))
    order = np.argsort(v, kind="stable")
    strip = np.empty(len(v), dtype=int)
    strip[order] = np.arange(len(v)) * n // max(len(v), 1)
    names = {}
    for s in range(n):  # numbered: rounded ranges of narrow strips may coincide
        vs = v[strip == s]
        names[s] = f"{s + 1}: {axis} {vs.min():.0f}-{vs.max():.0f}"
    return np.asarray([names[s] for s in strip])


def group_balanced_accuracy_ci(y: np.ndarray, pred: np.ndarray, groups: np.ndarray, k: int,
                               n_boot: int = 1000, seed: int = 0) -> list[float]:
    """95% CI of the balanced accuracy by a percentile bootstrap over ``groups`` (wells): the
    groups are drawn with replacement, their cells' confusion counts summed.

    Examples
    --------
    >>> y = np.array([0, 1] * 20); g = np.repeat(np.arange(8), 5)
    >>> group_balanced_accuracy_ci(y, y, g, 2)
    [1.0, 1.0]
    """
    names, gi = np.unique(groups, return_inverse=True)
    cm = np.zeros((len(names), k, k))
    np.add.at(cm, (gi, y, pred), 1)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=n_boot)
    boot = np.einsum("bg,gij->bij", counts, cm)
    support = boot.sum(axis=2)
    diag = np.einsum("bii->bi", boot)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, diag / support, np.nan)
    ok = (support > 0).sum(axis=1) >= 2
    stats = np.nanmean(recall[ok], axis=1)
    if not len(stats):
        return [float("nan"), float("nan")]
    lo, hi = np.quantile(stats, [0.025, 0.975])
    return [float(lo), float(hi)]


def _figures(y: np.ndarray, proba: np.ndarray, classes: list[str], groups: np.ndarray,
             n_boot: int) -> dict[str, Any]:
    from hcs.train.metrics import classification_metrics

    m = classification_metrics(y, proba, classes, n_boot=0)
    pred = proba.argmax(axis=1)
    return {"n": m["n"], "auc": m["auc"], "balanced_accuracy": m["balanced_accuracy"],
            "balanced_accuracy_ci": group_balanced_accuracy_ci(y, pred, groups, len(classes),
                                                               n_boot),
            "confusion": m["confusion"],
            "per_class_auc": {c: v["auc"] for c, v in m["per_class"].items()}}


def cross_validate(
    y: np.ndarray, groups: np.ndarray, classes: list[str],
    fit_predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    folds: int = 5, seed: int = 0, n_boot: int = 1000, fractions: tuple[float, ...] = FRACTIONS,
    log: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Cross-validated figures grouped by ``groups``.

    ``fit_predict(train_idx, test_idx)`` fits on the cells ``train_idx`` and returns the
    probabilities of ``test_idx``. Returns the figures (``by``-group ``folds`` with each fold's
    test groups, the 100% figures, ``learning_curve``: one entry per fraction) and the
    out-of-fold probabilities at 100%.
    """
    from sklearn.model_selection import GroupKFold

    names = np.unique(groups)
    n_folds = min(folds, len(names))
    if n_folds < 2:
        raise InputError(f"the labels lie in {len(names)} group(s); cross-validation needs "
                         "labelled cells in at least 2 wells (or fields of one well, or 2 "
                         "cells of one field)")
    splits = list(GroupKFold(n_splits=n_folds).split(np.zeros(len(y)), y, groups))
    rng = np.random.default_rng(seed)
    curve = []
    oof_full = None
    for frac in fractions:
        oof = np.full((len(y), len(classes)), np.nan)
        for train, test in splits:
            if frac < 1:
                keep = []
                for c in np.unique(y[train]):  # stratified: every class keeps its share
                    idx = train[y[train] == c]
                    keep.append(rng.choice(idx, max(1, round(frac * len(idx))), replace=False))
                train = np.sort(np.concatenate(keep))
            if len(np.unique(y[train])) < 2:
                oof[test] = 1.0 / len(classes)
                continue
            oof[test] = fit_predict(train, test)
        fig = _figures(y, oof, classes, groups, n_boot)
        fig["fraction"] = frac
        fig["n_train_labels"] = int(round(frac * len(y) * (n_folds - 1) / n_folds))
        curve.append(fig)
        if log is not None:
            log(f"  {frac:.0%} of the labels: AUC {_fmt(fig['auc'])}, balanced accuracy "
                f"{_fmt(fig['balanced_accuracy'])}")
        if frac == 1.0:
            oof_full = oof
    full = dict(curve[-1])
    full.pop("fraction", None)
    out = {"grouped_by": None, "folds": n_folds, "classes": list(classes),
           "fold_groups": [sorted(map(str, np.unique(groups[t]))) for _, t in splits],
           **full, "learning_curve": [{k: v for k, v in c.items() if k != "confusion"}
                                      for c in curve]}
    return out, oof_full if oof_full is not None else np.full((len(y), len(classes)), np.nan)


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.3f}"


def figures_table(cv: dict[str, Any]) -> str:
    """The cross-validated figures as a short text table (printed at the end of training)."""
    lines = [f"cross-validated ({cv['folds']} folds grouped by {cv['grouped_by']}, "
             f"{cv['n']} labelled cells):",
             "  labels  AUC    bal.acc  95% CI (bootstrap over "
             f"{cv['grouped_by']}s)"]
    for c in cv["learning_curve"]:
        lo, hi = c["balanced_accuracy_ci"]
        lines.append(f"  {c['fraction']:>5.0%}  {_fmt(c['auc']):6} {_fmt(c['balanced_accuracy']):8}"
                     f" {_fmt(lo)}-{_fmt(hi)}")
    lines.append("  confusion (rows true, columns predicted): "
                 + json.dumps(dict(zip(cv["classes"], cv["confusion"], strict=True))))
    return "\n".join(lines)


def _class_order(labels: pd.DataFrame, ann_dir: Path, from_classes: list[str] | None
                 ) -> tuple[list[str], dict[str, Any] | None]:
    """Classes in model output order: ``annotate.json``'s (with its assay definition), else the
    starting model's when the labels use its classes, else sorted."""
    used = list(dict.fromkeys(labels["label"]))
    info = ann_dir / "annotate.json"
    defn = None
    if info.is_file():
        try:
            data = json.loads(info.read_text())
        except (OSError, json.JSONDecodeError):
            data = {}
        a = data.get("assay")
        defn = a if isinstance(a, dict) else data.get("assay_definition")
        classes = (defn or {}).get("classes") or data.get("classes")
        if isinstance(classes, list) and set(used) <= set(classes):
            return [c for c in classes if c in used] if len(set(used)) >= 2 else list(classes), \
                defn if isinstance(defn, dict) else None
    if from_classes and set(used) <= set(from_classes):
        return list(from_classes), None
    from hcs.assays import ASSAYS

    for a in ASSAYS.values():  # the classes of a built-in assay: in its order
        if set(used) == set(a.classes):
            return list(a.classes), None
    return sorted(used), None


def _assay_for(classes: list[str], roles: list[str], name: str,
               defn: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """The assay a model of ``classes`` belongs to: a built-in one with exactly these classes,
    else a user-defined one (its definition goes into the card)."""
    from hcs.assays import ASSAYS, assay_from_dict, assay_to_dict

    for a in ASSAYS.values():
        if list(a.classes) == classes:
            return a.name, None
    data = dict(defn or {})
    data.update(name=data.get("name") or name, classes=classes)
    data.setdefault("channels", roles or ["nucleus"])
    return data["name"], assay_to_dict(assay_from_dict(data, "labels"))


def train_on_labels(
    labels: str | Path,
    run: str | Path,
    out: str | Path,
    kind: str = "features",
    channels: dict[str, str] | None = None,
    from_model: str | Path | None = None,
    config: Any = None,
    folds: int = 5,
    seed: int = 0,
    n_boot: int = 1000,
    name: str | None = None,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    fractions: tuple[float, ...] = FRACTIONS,
) -> tuple[Path, dict[str, Any]]:
    """Train a ``features`` or ``cnn`` model on labelled cells of a run; write the model folder.

    Parameters
    ----------
    labels, run
        ``ANN/labels.csv`` and the run folder its cells come from.
    out
        The model folder to write (``overwrite`` replaces only a model folder hcs wrote).
    kind
        ``features`` (gradient boosting on measurements) or ``cnn`` (timm on crops).
    channels
        ``role -> plate channel`` (``--channels``): the channels the model sees. ``features``:
        only these channels' measurements (shape always); default: every plate channel.
        ``cnn``: the crop's channels; default: the starting model's roles, else the assay's.
    from_model
        ``cnn``: a model folder to fine-tune (a new head when its classes differ).
    config
        ``cnn``: :class:`hcs.train.loop.TrainConfig` (default: :func:`labels_cnn_config`, the
        small CNN on a short schedule).
    folds, seed, n_boot
        Cross-validation folds (grouped by well), seed, bootstrap resamples of the CI.
    fractions
        The learning curve's fractions of the labels (the last must be 1).

    Returns
    -------
    (folder, cv)
        The model folder and its cross-validated figures (as in the card's ``metrics``).
    """
    from hcs import __version__
    from hcs.annotate.cells import read_run_cells, run_channel_map, run_plate
    from hcs.atomic import check_replaceable
    from hcs.classify.domain import domain_features, domain_stats, plate_is_simulated
    from hcs.classify.features import features_folder_not_ours
    from hcs.engine.model import model_card, plate_channel_for
    from hcs.io.omezarr import open_plate
    from hcs.records import sha256_file

    if kind not in ("features", "cnn"):
        raise InputError(f"--kind {kind!r}: expected features or cnn")
    if from_model is not None and kind != "cnn":
        raise InputError("--from fine-tunes a cnn model; the features kind always starts fresh")
    out, labels, run = Path(out), Path(labels), Path(run)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out} exists (use --overwrite to replace it)")
    check_replaceable(out, overwrite=overwrite, not_ours=features_folder_not_ours)
    table = read_labels(labels)
    # a folder or a shipped model's name (resolved as ``hcs run --model`` resolves it)
    from_folder, from_card = model_card(from_model) if from_model is not None else (None, None)
    if from_card is not None and not hasattr(from_card, "normalisation"):
        raise InputError(f"--from {from_model}: not a cnn model folder (an ensemble or a "
                         "features model cannot be fine-tuned)")
    classes, defn = _class_order(table, labels.parent, list(from_card.classes)
                                 if from_card is not None else None)
    if len(set(table["label"])) < 2:
        raise InputError(f"{labels}: labels of {len(set(table['label']))} class(es); a model "
                         "needs at least 2")
    plate_path = run_plate(run)
    pl = open_plate(plate_path)
    plate_channels = [str(c) for c in pl.channels]
    mapping = run_channel_map(run, channels)
    if channels:
        roles = list(channels)
    elif kind == "cnn" and from_card is not None:
        roles = [c.name for c in from_card.channels]
    elif kind == "cnn" and defn and defn.get("channels"):
        roles = [c if isinstance(c, str) else c["name"] for c in defn["channels"]]
    else:
        from hcs.assays import ASSAYS

        builtin = next((a for a in ASSAYS.values() if list(a.classes) == classes), None)
        roles = ([c.name for c in builtin.channels] if kind == "cnn" and builtin is not None
                 else plate_channels)
    role_channels = {r: plate_channels[plate_channel_for(r, plate_channels, mapping)]
                     for r in roles}
    assay, assay_def = _assay_for(classes, roles, name or out.name, defn)

    cells = read_run_cells(run)
    key = ["well", "field", "cell_id"]
    # the run's own columns named like the labels' (its model's ``label``) are not the labels
    cells = cells.drop(columns=[c for c in table.columns if c in cells and c not in key])
    joined = table.merge(cells, on=key, how="left", indicator=True)
    lost = joined[joined["_merge"] == "left_only"]
    if len(lost):
        r = lost.iloc[0]
        raise InputError(f"{labels}: well {r['well']} field {r['field']} cell {r['cell_id']} "
                         f"is not a cell of run {run} ({len(lost)} label(s) without a cell)")
    joined = joined.drop(columns="_merge").reset_index(drop=True)
    unknown = sorted(set(joined["label"]) - set(classes))
    if unknown:
        raise InputError(f"{labels}: label {unknown[0]!r} is not one of the classes {classes}")
    y = np.asarray([classes.index(c) for c in joined["label"]])
    n_fields = joined[["well", "field"]].drop_duplicates().shape[0]
    if joined["well"].nunique() > 1:
        by, groups = "well", joined["well"].astype(str).to_numpy()
    elif n_fields > 1:
        by = "field"
        groups = (joined["well"].astype(str) + ":" + joined["field"].astype(str)).to_numpy()
    else:  # one field: strips of it, so neighbouring (e.g. sister) cells stay in one fold
        by, groups = "region", field_strips(joined["x"].to_numpy(float),
                                            joined["y"].to_numpy(float), folds)
    log(f"{len(joined)} labelled cells of {len(classes)} classes "
        f"({', '.join(f'{c} {int((y == i).sum())}' for i, c in enumerate(classes))}) in "
        f"{joined['well'].nunique()} well(s), {n_fields} field(s); {kind} model on channels "
        f"{role_channels}")

    if kind == "features":
        fitter = _FeaturesFitter(joined, role_channels, seed)
    else:
        fitter = _CnnFitter(joined, run, roles, mapping, classes, assay, assay_def, from_folder,
                            from_card, config, log)
    fitter.y, fitter.k = y, len(classes)
    cv, oof = cross_validate(y, groups, classes, fitter.fit_predict, folds, seed, n_boot,
                             fractions, log=log)
    cv["grouped_by"] = by
    log(figures_table(cv))
    dom_cols = domain_features(role_channels, list(joined.columns))
    dom = domain_stats(joined[list(dom_cols.values())].set_axis(list(dom_cols), axis=1),
                       np.nanmax(oof, axis=1),
                       "simulated" if plate_is_simulated(dict(pl.attrs))
                       else "real")
    training = {
        "data": {"labels": labels.name, "labels_sha256": sha256_file(labels),
                 "run": str(run.resolve()), "plate": str(plate_path.name),
                 "n_labels": int(len(y)),
                 "per_class": {c: int((y == i).sum()) for i, c in enumerate(classes)},
                 "channels": role_channels, "source": "labels (hcs annotate)"},
        "kind": kind,
        **({"assay_definition": assay_def} if assay_def else {}),
        **({"from": str(from_model), "from_sha256": from_card.card_sha256}
           if from_model is not None else {}),
    }
    fitter.save(out, y, name or out.name, assay, classes, training,
                {"cross_validated": cv}, dom, __version__, overwrite)
    log(f"wrote {out}")
    return out, cv


class _FeaturesFitter:
    """Gradient boosting on the labelled cells' measurement features."""

    def __init__(self, cells: pd.DataFrame, role_channels: dict[str, str], seed: int) -> None:
        from hcs.classify.features import feature_refs

        self.refs = feature_refs(list(cells.columns), role_channels)
        if not self.refs:
            raise InputError("no measurement columns in the run's cell tables for the features "
                             "kind: run `hcs run` with --measure basic (or full)")
        self.role_channels = role_channels
        cols = [f.column(role_channels[f.channel] if f.channel else None) for f in self.refs]
        self.x = cells[cols].to_numpy(np.float64)
        self.seed = seed

    def _estimator(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier

        # max_features: each split sees a random half of the features. Without it, a feature
        # that alone separates a few hundred labels makes every tree the same one split, the
        # model a step function of it, and its probabilities two values (held-out AUC of a
        # simulated mitosis field 0.87-0.94 -> 0.99-1.0; docs/classification.md)
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, max_leaf_nodes=15,
                                              min_samples_leaf=5, l2_regularization=1.0,
                                              max_features=0.5, class_weight="balanced",
                                              early_stopping=False, random_state=self.seed)

    def fit_predict(self, train: np.ndarray, test: np.ndarray, y: np.ndarray | None = None
                    ) -> np.ndarray:
        from threadpoolctl import threadpool_limits

        yy = self.y if y is None else y
        with threadpool_limits(1):  # a few hundred cells: OpenMP threads only cost
            clf = self._estimator().fit(self.x[train], yy[train])
            p = np.zeros((len(test), self.k))
            p[:, clf.classes_] = clf.predict_proba(self.x[test])
        return p

    def save(self, out: Path, y: np.ndarray, name: str, assay: str, classes: list[str],
             training: dict[str, Any], metrics: dict[str, Any], domain: dict[str, Any],
             version: str, overwrite: bool) -> None:
        import sklearn
        from threadpoolctl import threadpool_limits

        from hcs.classify.features import FeaturesCard, export_trees, save_features_model

        with threadpool_limits(1):
            clf = self._estimator().fit(self.x, y)
        if list(clf.classes_) != list(range(len(classes))):
            raise InputError("every class needs labelled cells")
        arrays = export_trees(clf, check=self.x)
        params = {k: v for k, v in clf.get_params().items() if k != "class_weight"}
        card = FeaturesCard(
            name=name, assay=assay, classes=classes,
            channels=[{"name": r, "meaning": f"plate channel {c} at training"}
                      for r, c in self.role_channels.items()],
            features=self.refs,
            estimator={"class": "sklearn.ensemble.HistGradientBoostingClassifier",
                       "class_weight": "balanced", "params": json.loads(json.dumps(
                           params, default=str)), "sklearn_version": sklearn.__version__,
                       "n_iter": int(clf.n_iter_), "format": "model.npz: tree arrays, "
                       "no pickle"},
            training=training, metrics=metrics, domain=domain, hcs_version=version)
        save_features_model(out, card, arrays, overwrite=overwrite)

    y: np.ndarray  # labels (class indices) and class count, set by train_on_labels
    k: int


class _CnnFitter:
    """The timm path on the labelled cells' crops, cut as ``hcs run`` cuts them."""

    def __init__(self, cells: pd.DataFrame, run: Path, roles: list[str],
                 mapping: dict[str, str], classes: list[str], assay: str,
                 assay_def: dict[str, Any] | None, from_model: Any, from_card: Any,
                 config: Any, log: Callable[[str], None]) -> None:
        from hcs.annotate.cells import CropSpec, cell_crops

        if from_card is not None:
            spec = CropSpec.from_card(from_card)
            if list(spec.roles) != roles:
                spec = CropSpec(tuple(roles), tuple("percentile" for _ in roles), spec.size,
                                spec.margin, spec.square, spec.pad_mode)
        elif assay_def is None:
            spec = CropSpec.from_assay(assay, roles)
        else:
            from hcs.assays import assay_from_dict

            spec = CropSpec.from_assay(assay_from_dict(assay_def), roles)
        self.spec = spec
        self.crops = cell_crops(run, cells[["well", "field", "cell_id"] + [
            c for c in ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1") if c in cells]],
            spec, mapping)
        self.classes = classes
        self.config = config or labels_cnn_config()
        if from_card is not None:
            self.config = self.config.model_copy(update={"architecture":
                                                         from_card.architecture})
        self.init_state = None
        if from_model is not None:
            from hcs.classify.models import load_model

            module = load_model(from_model).module
            self.init_state = module.state_dict()
            if list(from_card.classes) != list(classes):  # other classes: a new head
                head = str(getattr(module, "pretrained_cfg", {}).get("classifier") or "")
                if head:
                    self.init_state = {k: v for k, v in self.init_state.items()
                                       if not k.startswith(head + ".")}
        self.log = log

    def _train(self, idx: np.ndarray, y: np.ndarray, quiet: bool = True) -> tuple[Any, Any]:
        from hcs.train.datasets import CropSet, channel_stats
        from hcs.train.loop import train_classifier

        mean, std = channel_stats(self.crops[idx])
        cs = CropSet(self.crops[idx], y[idx], self.classes, pd.DataFrame(index=range(len(idx))))
        # a few hundred labels: batches small enough for >= 8 steps per epoch
        config = self.config.model_copy(update={"batch_size": min(
            self.config.batch_size, max(8, len(idx) // 8))})
        net, history = train_classifier(cs, None, config, mean, std,
                                        log=(lambda s: None) if quiet else self.log,
                                        init_state=self.init_state)
        return net, (mean, std, history)

    def _card(self, name: str, assay: str, mean: list[float], std: list[float], **kw: Any
              ) -> Any:
        from hcs.classify.models import ModelCard

        s = self.spec
        return ModelCard(name=name, assay=assay, classes=self.classes,
                         architecture=self.config.architecture,
                         drop_rate=self.config.drop_rate, in_chans=len(s.roles),
                         channels=[{"name": r} for r in s.roles],
                         crop=dict(size=s.size, margin=s.margin, square=s.square,
                                   pad_mode=s.pad_mode),
                         normalisation=dict(scale=1 / 255, mean=mean, std=std),
                         thresholds={"rule": "argmax"}, **kw)

    def fit_predict(self, train: np.ndarray, test: np.ndarray) -> np.ndarray:
        from hcs.classify.infer import predict_proba
        from hcs.classify.models import LoadedModel

        net, (mean, std, _) = self._train(train, self.y)
        card = self._card("cv", "cv", mean, std)
        return predict_proba(LoadedModel(net, card, Path(".")), self.crops[test], device="cpu")

    def save(self, out: Path, y: np.ndarray, name: str, assay: str, classes: list[str],
             training: dict[str, Any], metrics: dict[str, Any], domain: dict[str, Any],
             version: str, overwrite: bool) -> None:
        from hcs.classify.models import save_model

        net, (mean, std, history) = self._train(np.arange(len(y)), y, quiet=False)
        training = dict(training, settings=self.config.model_dump(), epochs_run=len(history))
        card = self._card(name, assay, mean, std, training=training, metrics=metrics,
                          domain=domain, hcs_version=version)
        save_model(net, card, out, overwrite=overwrite)

    y: np.ndarray
    k: int


def truth_labels(sim_dir: str | Path, run: str | Path, annotator: str = "truth") -> pd.DataFrame:
    """Labels of a run's cells from a simulation's truth (a simulated annotator): each detected
    cell gets the class of the truth object it lies in (:func:`hcs.train.detected.
    label_detections`; its primary detection only, so an object is labelled once); cells in no
    object are left out. Columns as ``labels.csv``."""
    from hcs.annotate.cells import read_run_cells
    from hcs.train.detected import MEMBERS_FILE, label_detections
    from hcs.train.truth import read_truth

    truth = read_truth(sim_dir)
    members = pd.read_parquet(Path(sim_dir) / MEMBERS_FILE,
                              columns=["well", "field", "cell_id", "nucleus_x", "nucleus_y"])
    cells = read_run_cells(run, columns=["x", "y", "bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"])
    by_obj = dict(tuple(truth.groupby(["well", "field"], sort=False)))
    by_mem = dict(tuple(members.groupby(["well", "field"], sort=False)))
    rows = []
    for (well, fld), g in cells.groupby(["well", "field"], sort=True):
        objs = by_obj.get((str(well), int(fld)))
        if objs is None:
            continue
        objs = objs.reset_index(drop=True)
        obj, primary = label_detections(
            g[["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(float),
            g[["x", "y"]].to_numpy(float), objs, by_mem.get((str(well), int(fld)),
                                                            members.iloc[:0]))
        m = (obj >= 0) & primary
        rows.append(pd.DataFrame({
            "plate": g["plate"].to_numpy()[m], "well": str(well), "field": int(fld),
            "cell_id": g["cell_id"].to_numpy()[m],
            "label": objs["label"].to_numpy(object)[obj[m]], "annotator": annotator,
            "time": "1970-01-01T00:00:00Z"}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=LABEL_COLUMNS)
