"""Projection ensembles: one model per view (x, y, z max projections) and per level.

The Allen Cell mitotic annotation (``papers/004``) trains three independent models on the x, y
and z max-intensity projections of each cell and keeps, per cell, the prediction with the least
entropy; it calls mitotic vs not first and the mitotic stage second. An ensemble folder holds
``ensemble.yaml`` and one ordinary model folder (``model.safetensors`` + ``model.yaml``, each
verified on load) per member::

    name: mitosis-sim-xyz
    assay: mitosis
    levels:                      # level -> view -> member folder (relative)
      mitotic: {z: mitotic-z, y: mitotic-y, x: mitotic-x}
      stage:   {z: stage-z,   y: stage-y,   x: stage-x}

A level is one of the assay's :attr:`hcs.assays.Assay.levels` (mitosis: ``mitotic`` with classes
``non_mitotic, mitotic``; ``stage`` with the 4 stages), or ``all`` (one flat model per view on
all assay classes). Per cell and level the views compete by entropy
(:func:`hcs.assays.rules.least_entropy`); two levels combine into the assay's classes as
``P(non_mitotic) = 1 - P(mitotic)`` and ``P(stage) = P(mitotic) * P(stage | mitotic)``, which the
assay's hierarchical rule (:func:`hcs.assays.rules.apply_rule`) turns into labels: a stage when
``P(mitotic) >= 0.5``. A plate with fewer than :data:`~hcs.classify.projections.MIN_PLANES`
z planes has no side views: only the z-view members are used.

All members read the same input channels and give crops of one size; the members of one view
cut the same crop (each view may have its own context margin: side views of a thin stack are
short, so a narrower window keeps the cell large in them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from hcs.errors import InputError

__all__ = ["ENSEMBLE", "Ensemble", "LoadedEnsemble", "is_ensemble", "load_ensemble",
           "read_ensemble", "write_ensemble"]

ENSEMBLE = "ensemble.yaml"


class EnsembleSpec(BaseModel):
    """The content of ``ensemble.yaml``."""

    model_config = ConfigDict(extra="forbid")
    name: str
    assay: str
    levels: dict[str, dict[str, str]]
    description: str = ""
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    hcs_version: str = ""


def is_ensemble(folder: str | Path) -> bool:
    """Whether ``folder`` is an ensemble folder (holds ``ensemble.yaml``)."""
    return (Path(folder) / ENSEMBLE).is_file()


class Ensemble:
    """A validated ensemble folder: its spec and the cards of its members.

    Behaves like a :class:`~hcs.classify.models.ModelCard` where the engine needs one: ``name``,
    ``assay``, ``classes`` (the assay's), ``channels``, ``in_chans``, ``crop`` (the members'
    shared crop), ``architecture`` and ``sha256`` = ``card_sha256`` (a digest of
    ``ensemble.yaml`` and every member's ``card_sha256``, which covers its class order and its
    weights).
    """

    def __init__(self, folder: Path, spec: EnsembleSpec, members: dict[str, dict[str, Any]]
                 ) -> None:
        from hcs.assays import get_assay

        self.folder = folder
        self.spec = spec
        self.members = members  # level -> view -> ModelCard
        self.assay_decl = get_assay(spec.assay)
        first = next(iter(next(iter(members.values())).values()))
        self.name = spec.name
        self.assay = spec.assay
        self.classes = list(self.assay_decl.classes)
        self.channels = first.channels
        self.in_chans = first.in_chans
        self.crop = first.crop.model_copy(update={"view": "z"})
        self.architecture = "ensemble of " + ", ".join(sorted(
            {c.architecture for lv in members.values() for c in lv.values()}))
        digest = hashlib.sha256((folder / ENSEMBLE).read_bytes())
        for level in sorted(members):
            for view in sorted(members[level]):
                digest.update(members[level][view].card_sha256.encode())
        self.sha256 = self.card_sha256 = digest.hexdigest()

    @property
    def levels(self) -> list[str]:
        return list(self.members)

    def crop_for(self, view: str) -> Any:
        """The :class:`~hcs.classify.models.CropCard` of the members of ``view``."""
        return next(lv[view].crop for lv in self.members.values() if view in lv)

    def views(self, n_planes: int) -> list[str]:
        """Views used on a plate with ``n_planes`` z planes (z first; side views need a stack).

        Examples
        --------
        >>> e = object.__new__(Ensemble); e.members = {"all": {"x": 0, "z": 0, "y": 0}}
        >>> e.views(16), e.views(1)
        (['z', 'y', 'x'], ['z'])
        """
        from hcs.classify.projections import MIN_PLANES, VIEWS

        have = set.intersection(*(set(v) for v in self.members.values()))
        return [v for v in VIEWS if v in have and (v == "z" or n_planes >= MIN_PLANES)]


def read_ensemble(folder: str | Path) -> Ensemble:
    """Parse ``folder/ensemble.yaml`` and check every member against it and each other."""
    from hcs.assays import get_assay
    from hcs.classify.models import read_card, read_yaml, validate_card

    folder = Path(folder)
    path = folder / ENSEMBLE
    if not path.is_file():
        raise InputError(f"{path}: not found ({folder} is not an ensemble folder)")
    spec = validate_card(path, EnsembleSpec, read_yaml(path))
    assay = get_assay(spec.assay)
    known = set(assay.levels) | {"all"}
    if not spec.levels or set(spec.levels) - known:
        raise InputError(f"{path}: levels {sorted(spec.levels)}; assay {assay.name} knows "
                         f"{sorted(known)}")
    if "all" in spec.levels and len(spec.levels) > 1:
        raise InputError(f"{path}: level 'all' cannot be combined with other levels")
    if "all" not in spec.levels and set(spec.levels) != set(assay.levels):
        raise InputError(f"{path}: a two-stage ensemble needs every level of {assay.name}: "
                         f"{sorted(assay.levels)}")
    if "all" not in spec.levels:
        top, sub = list(assay.levels)
        if set(assay.composites.get(assay.levels[top][1], ())) != set(assay.levels[sub]):
            raise InputError(f"assay {assay.name}: level {sub} must hold the classes of "
                             f"{assay.levels[top][1]}")
    members: dict[str, dict[str, Any]] = {}
    crops: dict[str, dict[str, Any]] = {}
    ref = None
    for level, views in spec.levels.items():
        want = list(assay.classes) if level == "all" else list(assay.levels[level])
        if "z" not in views:
            raise InputError(f"{path}: level {level} has no z-view member (needed for 2-D plates)")
        members[level] = {}
        for view, rel in views.items():
            sub = (folder / rel).resolve()
            if not sub.is_relative_to(folder.resolve()):
                raise InputError(f"{path}: member {rel!r} lies outside the ensemble folder")
            card = read_card(sub)
            where = f"{path}: {level}/{view} member {rel}"
            if card.assay != assay.name or sorted(card.classes) != sorted(want):
                raise InputError(f"{where} is a {card.assay} model of {card.classes}; "
                                 f"expected {assay.name} classes {want}")
            if card.crop.view != view:
                raise InputError(f"{where} was trained on the {card.crop.view} view, not {view}")
            shape = ([c.name for c in card.channels], card.crop.size)
            if ref is not None and shape != ref:
                raise InputError(f"{where}: channels and crop size {shape} differ from the "
                                 f"other members' {ref}")
            ref = shape
            crop = card.crop.model_dump()
            if view in crops and crops[view] != crop:
                raise InputError(f"{where}: its crop {crop} differs from the crop of the other "
                                 f"{view}-view member {crops[view]}")
            crops[view] = crop
            members[level][view] = card
    return Ensemble(folder.resolve(), spec, members)


class LoadedEnsemble:
    """An ensemble with every member loaded (:func:`load_ensemble`)."""

    def __init__(self, card: Ensemble, models: dict[str, dict[str, Any]]) -> None:
        self.card = card
        self.models = models
        self.folder = card.folder

    def __repr__(self) -> str:
        return f"LoadedEnsemble({self.card.name!r}, levels={self.card.levels})"

    def predict(self, crops: np.ndarray, views: list[str], batch_size: int = 128,
                device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
        """Assay-class probabilities and the winning view of every level.

        Parameters
        ----------
        crops
            ``N x V x S x S x C``, the crops of each cell in ``views`` order
            (:func:`hcs.classify.projections.view_crops`).
        views
            The views of axis 1.

        Returns
        -------
        (proba, winner)
            ``N x K`` probabilities in assay class order, and ``N x L`` indices into ``views``
            of the view whose prediction won each level (levels in ``card.levels`` order).
        """
        from hcs.assays.rules import least_entropy
        from hcs.classify.infer import predict_proba

        if crops.ndim != 5 or crops.shape[1] != len(views):
            raise InputError(f"ensemble {self.card.name}: crops of shape {crops.shape}, expected "
                             f"(N, {len(views)} views, S, S, C)")
        per_level, winners = {}, []
        for level in self.card.levels:
            outs = []
            for j, v in enumerate(views):
                m = self.models[level][v]
                p = predict_proba(m, np.ascontiguousarray(crops[:, j]), batch_size, device)
                order = [list(m.card.classes).index(c) for c in self._classes(level)]
                outs.append(p[:, order])
            per_level[level], win = least_entropy(outs)
            winners.append(win)
        return self._combine(per_level), np.stack(winners, axis=1)

    def _classes(self, level: str) -> list[str]:
        a = self.card.assay_decl
        return list(a.classes) if level == "all" else list(a.levels[level])

    def _combine(self, per_level: dict[str, np.ndarray]) -> np.ndarray:
        if "all" in per_level:
            return per_level["all"].astype(np.float32)
        a = self.card.assay_decl
        top, sub = list(a.levels)  # e.g. mitotic (negative, composite), stage (its members)
        neg = a.levels[top][0]
        p_top, p_sub = per_level[top], per_level[sub]
        out = np.zeros((len(p_top), len(a.classes)), np.float32)
        out[:, list(a.classes).index(neg)] = p_top[:, 0]
        for k, c in enumerate(a.levels[sub]):
            out[:, list(a.classes).index(c)] = p_top[:, 1] * p_sub[:, k]
        return out


def load_ensemble(folder: str | Path) -> LoadedEnsemble:
    """Read and load every member of an ensemble folder (weights checked against the cards)."""
    from hcs.classify.models import load_model

    card = read_ensemble(folder)
    models = {level: {view: load_model(card.folder / card.spec.levels[level][view])
                      for view in views} for level, views in card.members.items()}
    return LoadedEnsemble(card, models)


def write_ensemble(folder: str | Path, spec: dict[str, Any]) -> Ensemble:
    """Write ``folder/ensemble.yaml`` from ``spec`` and return the validated ensemble.

    The members must already be in ``folder``; a spec that does not validate leaves no file.
    """
    from hcs.atomic import atomic_write_text
    from hcs.classify.models import validate_card

    folder = Path(folder)
    validate_card(folder / ENSEMBLE, EnsembleSpec, spec)
    atomic_write_text(folder / ENSEMBLE, yaml.safe_dump(spec, sort_keys=False))
    try:
        return read_ensemble(folder)
    except InputError:
        (folder / ENSEMBLE).unlink(missing_ok=True)
        raise
