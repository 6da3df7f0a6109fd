"""The classifier as the engine sees it: a model folder loaded once per worker, its input
channels matched to the plate's channels.

Model folders (``model.safetensors`` + ``model.yaml``) are read and verified by
:func:`hcs.classify.models.load_model`; :func:`load_classifier` keeps one per (folder, weights
card_sha256) in each worker process, so a worker loads a model once however many fields it runs.
A card names its input channels by role (``brightfield``, ``nucleus``, ``membrane`` ...);
:func:`plate_channel_for` finds the plate channel playing each role.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from hcs.errors import InputError

__all__ = ["card_assay", "load_classifier", "model_card", "plate_channel_for", "run_assay"]

# role -> pattern of plate channel names playing it
_ROLE_PATTERNS: dict[str, str] = {
    "nucleus": r"hoechst|dapi|nucle|draq|sytox|h2b|dna",
    "hoechst": r"hoechst|dapi",
    "brightfield": r"bright|^bf$|trans|phase",
    "membrane": r"membrane|cellmask|wga|cadherin|568",
    "dead": r"\bpi\b|propidium|sytox|dead",
    "red": r"bright|^bf$|trans",  # RGB brightfield models get the grey brightfield replicated
    "green": r"bright|^bf$|trans",
    "blue": r"bright|^bf$|trans",
}

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
LOADS: list[str] = []  # model folders this process loaded, in order (tests check "once")


def _folder(model: str | Path) -> Path:
    p = Path(model)
    if p.name in ("model.yaml", "model.safetensors", "ensemble.yaml"):
        p = p.parent
    if not p.exists() and not p.is_absolute():
        shipped = Path(__file__).resolve().parents[2] / "models" / p
        if shipped.is_dir():
            p = shipped
    if not (p / "model.yaml").is_file() and not (p / "ensemble.yaml").is_file():
        raise InputError(f"{model}: not a model folder (no model.yaml or ensemble.yaml; see "
                         "models/)")
    return p.resolve()


def model_card(model: str | Path) -> tuple[Path, Any]:
    """``(folder, card)`` of a model folder (or a name under the repository's ``models/``).

    For an ensemble folder (:mod:`hcs.classify.ensemble`) the card is the validated
    :class:`~hcs.classify.ensemble.Ensemble`.
    """
    from hcs.classify.ensemble import is_ensemble, read_ensemble
    from hcs.classify.features import is_features_folder, read_features_card
    from hcs.classify.models import read_card

    folder = _folder(model)
    if is_features_folder(folder):
        return folder, read_features_card(folder)
    return folder, read_ensemble(folder) if is_ensemble(folder) else read_card(folder)


def load_classifier(folder: str | Path, sha256: str) -> Any:
    """The :class:`hcs.classify.models.LoadedModel` (or
    :class:`~hcs.classify.ensemble.LoadedEnsemble`) of ``folder``, loaded once per process and
    ``sha256`` (pass the card's ``card_sha256``, so an edited card is never served from the
    cache)."""
    from hcs.classify.ensemble import is_ensemble, load_ensemble
    from hcs.classify.features import is_features_folder, load_features_model
    from hcs.classify.models import load_model

    key = (str(folder), sha256)
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = (load_features_model(folder) if is_features_folder(folder)
                           else load_ensemble(folder) if is_ensemble(folder)
                           else load_model(folder))
            LOADS.append(key[0])
        return _CACHE[key]


def plate_channel_for(role: str, channels: list[str], mapping: dict[str, str] | None = None
                      ) -> int:
    """Index of the plate channel playing ``role``.

    An explicit ``mapping`` (role -> plate channel name or index) wins; then a channel named
    like the role; then the usual stain names of the role.

    Examples
    --------
    >>> plate_channel_for("brightfield", ["HOECHST 33342", "Brightfield"])
    1
    >>> plate_channel_for("nucleus", ["Alexa 488", "DAPI"])
    1
    >>> plate_channel_for("membrane", ["a", "b"], {"membrane": "b"})
    1
    """
    low = [c.lower() for c in channels]
    if mapping and role in mapping:
        want = str(mapping[role])
        if want.isdigit() and int(want) < len(channels):
            return int(want)
        if want.lower() in low:
            return low.index(want.lower())
        raise InputError(f"channel map {role}={want}: no such plate channel ({channels})")
    if role.lower() in low:
        return low.index(role.lower())
    pattern = _ROLE_PATTERNS.get(role.lower())
    if pattern:
        for i, c in enumerate(channels):
            if re.search(pattern, c, re.IGNORECASE):
                return i
    raise InputError(f"the model needs a {role!r} channel; none of the plate channels "
                     f"{channels} looks like one (map it with --channels {role}=NAME)")


def card_roles(card: Any) -> list[str]:
    """The input channel roles of a model card (or detector card), in order.

    Examples
    --------
    >>> card_roles(type("Card", (), {"channels": ["nucleus", "membrane"]})())
    ['nucleus', 'membrane']
    """
    return [c if isinstance(c, str) else c.name for c in card.channels]


def trained_channel_map(card: Any, channels: list[str],
                        mapping: dict[str, str] | None = None) -> dict[str, str]:
    """``mapping`` completed with the plate channels a model was trained on.

    A model trained on labels (``hcs train classifier --labels``) records in its card which
    plate channel played each of its input roles (``training.data.channels``, e.g.
    ``dna: HOECHST 33342``). A role the user did not map, whose training channel this plate
    has (by name, ignoring case), is mapped to it, so the plate it was trained on, and other
    plates of the screen with the same channel names, need no ``--channels`` again. An explicit
    mapping always wins; a plate without that channel falls back to the usual matching
    (:func:`plate_channel_for`).

    Examples
    --------
    >>> class Card:
    ...     channels = [type("C", (), {"name": "dna"})()]
    ...     training = {"data": {"channels": {"dna": "HOECHST 33342"}}}
    >>> trained_channel_map(Card(), ["PH3", "Hoechst 33342"])
    {'dna': 'Hoechst 33342'}
    >>> trained_channel_map(Card(), ["PH3", "Hoechst 33342"], {"dna": "PH3"})
    {'dna': 'PH3'}
    >>> trained_channel_map(Card(), ["DAPI"])
    {}
    """
    out = {str(k): str(v) for k, v in (mapping or {}).items()}
    if card is None:
        return out
    data = (getattr(card, "training", None) or {}).get("data") or {}
    trained = data.get("channels") if isinstance(data, dict) else None
    if not isinstance(trained, dict):
        return out
    roles = set(card_roles(card))
    low = [str(c).lower() for c in channels]
    for role, name in trained.items():
        if role in roles and role not in out and str(name).lower() in low:
            out[str(role)] = str(channels[low.index(str(name).lower())])
    return out


def card_assay(name: str | None, card: Any) -> Any:
    """The :class:`~hcs.assays.Assay` of a run with model ``card``: the built-in assay ``name``
    (default: the card's), else the user-defined assay the card declares (its
    ``training.assay_definition``, or its classes and channel roles).

    Raises
    ------
    InputError
        An assay name that is neither built in nor the card's own.
    """
    from hcs.assays import ASSAYS, assay_from_dict, get_assay

    name = name or card.assay
    if str(name).lower() in ASSAYS:
        return get_assay(name)
    if name != card.assay:
        raise InputError(f"assay {name!r} is not built in ({', '.join(ASSAYS)}) and not the "
                         f"assay of model {card.name} ({card.assay})")
    defn = (getattr(card, "training", None) or {}).get("assay_definition")
    if isinstance(defn, dict):
        return assay_from_dict(defn, f"model {card.name} assay_definition")
    return assay_from_dict({"name": card.assay, "classes": list(card.classes),
                            "channels": [c.name for c in card.channels] or ["nucleus"]},
                           f"model {card.name}")


def run_assay(name: str | None, card: Any) -> Any:
    """:func:`card_assay`, refused unless the model classifies exactly that assay's classes.

    Raises
    ------
    InputError
        An unknown assay, or a model of another assay.
    """
    assay = card_assay(name, card)
    if card.assay != assay.name or set(card.classes) != set(assay.classes):
        raise InputError(f"model {card.name} ({card.assay}: {card.classes}) is not a model "
                         f"of assay {assay.name} ({list(assay.classes)})")
    return assay
