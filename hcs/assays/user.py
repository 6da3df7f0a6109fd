"""User-defined assays: the same :class:`~hcs.assays.registry.Assay` declaration as the built-in
ones, from ``--classes a,b,c`` (:func:`assay_from_classes`) or a small YAML file
(:func:`load_assay_file`), written into ``annotate.json`` / a run's ``run.json`` as a plain dict
(:func:`assay_to_dict`, :func:`assay_from_dict`) so that aggregation, statistics and the report
find the classes of an assay the registry does not know (:func:`run_assay`).

An assay file::

    name: mitosis-dna          # required
    classes: [non_mitotic, mitotic, artefact]   # required, model output order
    excluded: [artefact]       # detected but not analysed (frequencies leave them out)
    composites: {}             # readout name -> classes summed into it
    channels: [nucleus]        # input channel roles (or {name, rescale, meaning} mappings)
    crop_size: 64
    margin: 0.25
    description: DNA-stain mitosis, labelled by hand
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hcs.assays.inputs import InputChannel
from hcs.assays.registry import ASSAYS, Assay, get_assay
from hcs.errors import InputError

__all__ = ["assay_from_card", "assay_from_classes", "assay_from_dict", "assay_to_dict",
           "load_assay_file", "run_assay"]


class _Channel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    rescale: Literal["percentile", "none"] = "percentile"
    meaning: str = ""


class _AssayFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    classes: list[str] = Field(min_length=2)
    excluded: list[str] = Field(default_factory=list)
    composites: dict[str, list[str]] = Field(default_factory=dict)
    channels: list[_Channel | str] = Field(default_factory=lambda: ["nucleus"], min_length=1)
    crop_size: int = Field(64, ge=8, le=1024)
    margin: float = Field(0.25, ge=0, le=4)
    description: str = ""

    @field_validator("classes")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        import re

        bad = [c for c in v if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", str(c))]
        if bad:
            raise ValueError(f"class names are letters, digits, _ and - (got {bad})")
        return v


def _assay(data: dict[str, Any], where: str) -> Assay:
    try:
        spec = _AssayFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]  # not the union members' type names
                       if not (isinstance(p, str) and (p[:1] == "_" or p == "str")))
        raise InputError(f"{where}: field {loc or '(top level)'!r}: {err['msg']}") from None
    if spec.name.lower() in ASSAYS:
        raise InputError(f"{where}: field 'name': {spec.name!r} is a built-in assay; choose "
                         "another name")
    channels = tuple(InputChannel(c, "", "percentile") if isinstance(c, str)
                     else InputChannel(c.name, c.meaning, c.rescale) for c in spec.channels)
    try:
        return Assay(spec.name, tuple(spec.classes), excluded=tuple(spec.excluded),
                     composites={k: tuple(v) for k, v in spec.composites.items()},
                     description=spec.description, channels=channels,
                     crop_size=spec.crop_size, margin=spec.margin)
    except ValueError as exc:  # the declaration's own checks (unknown / duplicated classes)
        field = ("classes" if "duplicated" in str(exc) else "composites" if "composite" in
                 str(exc) else "excluded / composites")
        raise InputError(f"{where}: field {field!r}: {exc}") from None


def load_assay_file(path: str | Path) -> Assay:
    """The :class:`Assay` declared by a YAML file (format in the module docstring).

    Raises
    ------
    InputError
        One line naming the file and the field at fault.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "assay.yaml"
    >>> _ = p.write_text("name: dna\\nclasses: [a, b, junk]\\nexcluded: [junk]\\n")
    >>> load_assay_file(p).analysed_classes
    ('a', 'b')
    >>> _ = p.write_text("name: dna\\nclasses: [a]\\n")
    >>> load_assay_file(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: ...assay.yaml: field 'classes': List should have at least 2 items...
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: assay file not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: not a readable YAML file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping (name:, classes:, ...)")
    return _assay(data, str(path))


def assay_from_classes(classes: str | list[str], name: str = "custom",
                       channels: list[str] | None = None) -> Assay:
    """An assay from ``--classes a,b,c`` (and the input channel roles, default ``nucleus``).

    Examples
    --------
    >>> a = assay_from_classes("mitotic, non_mitotic", channels=["dna"])
    >>> a.classes, a.inputs.channel_names
    (('mitotic', 'non_mitotic'), ('dna',))
    """
    names = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else list(
        classes)
    data: dict[str, Any] = {"name": name, "classes": [c for c in names if c]}
    if channels:
        data["channels"] = list(channels)
    return _assay(data, "--classes")


def assay_to_dict(assay: Assay) -> dict[str, Any]:
    """The declaration of a user-defined assay as plain data (JSON / YAML), the inverse of
    :func:`assay_from_dict`."""
    return {"name": assay.name, "classes": list(assay.classes), "excluded": list(assay.excluded),
            "composites": {k: list(v) for k, v in assay.composites.items()},
            "channels": [{"name": c.name, "rescale": c.rescale, "meaning": c.meaning}
                         for c in assay.channels],
            "crop_size": assay.crop_size, "margin": assay.margin,
            "description": assay.description}


def assay_from_dict(data: dict[str, Any], where: str = "assay definition") -> Assay:
    """The :class:`Assay` of :func:`assay_to_dict` output (a built-in name: the registry's).

    Examples
    --------
    >>> a = assay_from_classes("x,y")
    >>> assay_from_dict(assay_to_dict(a)) == a
    True
    """
    if isinstance(data, str):
        return get_assay(data)
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping, got {type(data).__name__}")
    return _assay(data, where)


def assay_from_card(card: Any, where: str = "model card") -> Assay:
    """The assay of a model card (a :class:`~hcs.classify.models.ModelCard` or its dict): the
    registry's for a built-in name; else the card's ``assay_definition`` (top level or in
    ``training``), else an assay of the card's classes and channel roles.

    Examples
    --------
    >>> assay_from_card({"assay": "mine", "classes": ["x", "y"], "channels": [{"name": "dna"}]}
    ...                 ).classes
    ('x', 'y')
    """
    if not isinstance(card, dict):
        card = card.model_dump(mode="json") if hasattr(card, "model_dump") else dict(card)
    name = str(card.get("assay") or "")
    if name.lower() in ASSAYS:
        return get_assay(name)
    defn = card.get("assay_definition") or (card.get("training") or {}).get("assay_definition")
    if isinstance(defn, dict):
        return assay_from_dict(defn, f"{where} assay_definition")
    if not card.get("classes"):
        raise InputError(f"{where}: no classes for assay {name!r}")
    roles = [c["name"] if isinstance(c, dict) else str(c) for c in card.get("channels") or []]
    return assay_from_dict({"name": name or "custom", "classes": list(card["classes"]),
                            "channels": roles or ["nucleus"]}, where)


def run_assay(run: dict[str, Any], name: str | None = None) -> Assay | None:
    """The assay of a run: ``name`` or ``run.json``'s ``assay``; a built-in one from the registry,
    else ``run.json``'s ``assay_definition``, else the model card named by ``model_path``
    (its ``assay_definition``, or its classes and channels). ``None`` for a detection-only run.

    Raises
    ------
    InputError
        An assay name that is neither built in nor defined by the run or its model.
    """
    name = name or run.get("assay")
    name = name.get("name") if isinstance(name, dict) else name
    if not name:
        return None
    if str(name).lower() in ASSAYS:
        return get_assay(str(name))
    if isinstance(run.get("assay_definition"), dict):
        return assay_from_dict(run["assay_definition"], "run.json assay_definition")
    card_path = Path(str(run.get("model_path") or "")) / "model.yaml"
    if run.get("model_path") and card_path.is_file():
        try:
            card = yaml.safe_load(card_path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise InputError(f"{card_path}: not a readable model card ({exc})") from None
        if isinstance(card, dict) and card.get("assay") == name:
            return assay_from_card(card, str(card_path))
    raise InputError(f"assay {name!r} is neither built in ({', '.join(ASSAYS)}) nor defined by "
                     "the run (run.json assay_definition) or its model card")
