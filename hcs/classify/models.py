"""Classifier factory (any timm architecture) and the model folder: weights + model card.

A model folder holds ``model.safetensors`` (the weights) and ``model.yaml`` (the card of
DESIGN.md, "Models": assay, classes, architecture, input channels and their meaning, crop, input
normalisation, decision thresholds, training data with licence, held-out metrics, the sha256
of the weights and ``card_sha256``, a checksum over the card's decisive content and the weights'
sha256, :func:`card_checksum`). Reading a card verifies ``card_sha256``, so a card whose class
order, channels, crop, normalisation or decision rule changed after it was written is refused;
its documentation (name, training, metrics, channel meanings) may be edited freely. A deliberate
change of decisive content is recorded with :func:`hcs.classify.seal.seal_card`
(``hcs seal FOLDER``). Loading
checks the weights' checksum and that the card describes the weights, and never touches the
network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hcs.errors import InputError
from hcs.records import sha256_file

WEIGHTS = "model.safetensors"
CARD = "model.yaml"


class ChannelCard(BaseModel):
    """One input channel: its role and what it means."""

    model_config = ConfigDict(extra="forbid")
    name: str
    meaning: str = ""


class CropCard(BaseModel):
    """How a crop is cut (see :func:`hcs.classify.crops.crop_box`).

    ``view`` is the max-intensity projection of a z-stack the crop is cut from
    (:mod:`hcs.classify.projections`): ``z`` (over z, the usual top view; a 2-D field is its
    own z view), ``y`` or ``x`` (side views, image rows are z).
    """

    model_config = ConfigDict(extra="forbid")
    size: int = Field(gt=0)
    margin: float = Field(0.0, ge=0)
    square: bool = True
    pad_mode: str = "constant"
    view: Literal["z", "y", "x"] = "z"


class Normalisation(BaseModel):
    """``x = (pixel * scale - mean[c]) / std[c]`` per channel."""

    model_config = ConfigDict(extra="forbid")
    scale: float = 1.0 / 255.0
    mean: list[float]
    std: list[float]


class ModelCard(BaseModel):
    """The content of ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: str
    assay: str
    classes: list[str]
    level: str | None = None
    architecture: str
    drop_rate: float = 0.25
    in_chans: int = Field(gt=0)
    channels: list[ChannelCard]
    crop: CropCard
    normalisation: Normalisation
    thresholds: dict[str, Any] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    domain: dict[str, Any] = Field(default_factory=dict)
    sha256: str = ""
    card_sha256: str = ""
    hcs_version: str = ""

    def model_post_init(self, __context: Any) -> None:
        n = self.in_chans
        if len(self.channels) != n:
            raise ValueError(f"in_chans is {n} but {len(self.channels)} channels are described")
        if len(self.normalisation.mean) != n or len(self.normalisation.std) != n:
            raise ValueError(f"normalisation mean/std must have {n} values (in_chans)")
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"classes must be >= 2 distinct names, got {self.classes}")


#: card fields that document a model without changing what it outputs (free to edit)
DOC_FIELDS = frozenset({"name", "description", "training", "metrics", "hcs_version",
                        "card_sha256", "channel_meaning", "domain"})


def card_checksum(card: BaseModel) -> str:
    """sha256 over what decides a model's outputs: every card field except documentation.

    Covered: the weights' ``sha256``, the classes **in order** (output index -> name), the
    input channels (roles, in order), crop, normalisation, decision thresholds, architecture
    (and for detectors tiling, scale and score cut-offs). Not covered: :data:`DOC_FIELDS` and
    each channel's ``meaning``. Fields left at their default count as absent, so a card that
    writes a default out has the checksum of one that omits it.

    Examples
    --------
    >>> c = ModelCard(name="m", assay="livedead", classes=["live", "dead"], architecture="a",
    ...               in_chans=1, channels=[{"name": "brightfield"}], crop={"size": 8},
    ...               normalisation={"mean": [0.5], "std": [0.25]}, sha256="ab")
    >>> swapped = c.model_copy(update={"classes": ["dead", "live"]})
    >>> card_checksum(c) == card_checksum(swapped)
    False
    >>> card_checksum(c) == card_checksum(c.model_copy(update={"metrics": {"auc": 0.9}}))
    True
    """
    data = card.model_dump(mode="json", exclude_defaults=True, exclude=set(DOC_FIELDS))
    for ch in data.get("channels", []):
        if isinstance(ch, dict):
            ch.pop("meaning", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def verify_card(path: Path, card: Any) -> Any:
    """``card`` after checking its ``card_sha256`` (:func:`card_checksum`); ``path`` names it.

    Raises
    ------
    InputError
        One line naming the card: the checksum is missing, or the decisive content (classes and
        their order, channels, crop, normalisation, thresholds, weights' sha256) changed.
    """
    folder = path.parent
    if not card.card_sha256:
        raise InputError(f"{path}: no card_sha256 (the checksum of its classes, channels, crop, "
                         f"normalisation and weights); check the card, then record it with "
                         f"`hcs seal {folder}`")
    digest = card_checksum(card)
    if digest != card.card_sha256:
        raise InputError(f"{path}: card_sha256 {card.card_sha256[:12]}... does not match the "
                         f"card's content ({digest[:12]}...): its classes, class order, "
                         f"channels, crop, normalisation, thresholds or weights' sha256 were "
                         f"changed after it was written; if that was deliberate, record it "
                         f"with `hcs seal {folder}`")
    return card


def _pretrained_file(architecture: str, pretrained: str | Path | bool) -> str:
    """A local weight file for ``pretrained``: the given path, or the populated HF cache."""
    if pretrained is True:
        import timm
        from huggingface_hub import try_to_load_from_cache

        cfg = timm.models.get_pretrained_cfg(architecture)
        repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        for fname in ("model.safetensors", "pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, fname) if repo else None
            if isinstance(hit, str):
                return hit
        raise InputError(
            f"no pretrained weights for {architecture!r} in the local Hugging Face cache "
            f"({repo or 'no hub id'}); hcs never downloads: pass a weight file instead"
        )
    p = Path(pretrained)
    if not p.is_file():
        raise InputError(f"pretrained weight file {p} not found")
    return str(p)


def create_classifier(
    architecture: str,
    n_classes: int,
    in_chans: int = 3,
    drop_rate: float = 0.25,
    pretrained: str | Path | bool = False,
) -> Any:
    """A timm classifier with ``drop_rate`` dropout before the head (AIM-CICs: 0.25).

    Parameters
    ----------
    architecture
        Any timm model name (``resnet18``, ``resnet10t``, ``efficientnet_b0`` ...) or hcs's own
        ``hcs_smallcnn`` (:mod:`hcs.classify.smallcnn`, registered with timm here, so every
        load of a model folder, on a Dask worker too, knows it).
    n_classes, in_chans
        Output classes and input channels (timm adapts the first convolution).
    drop_rate
        Dropout applied to the pooled features before the final linear layer.
    pretrained
        ``False``; a local weight file; or ``True`` for the already-populated Hugging Face cache.
        Never downloads.

    Examples
    --------
    >>> m = create_classifier("resnet10t", n_classes=2, in_chans=1)
    >>> m.num_classes, m.drop_rate, m.conv1[0].in_channels
    (2, 0.25, 1)
    """
    import timm

    import hcs.classify.smallcnn  # noqa: F401  (registers hcs_smallcnn with timm)

    if architecture not in timm.list_models() and not timm.is_model(architecture):
        raise InputError(f"unknown timm architecture {architecture!r}")
    kw: dict[str, Any] = dict(num_classes=n_classes, in_chans=in_chans, drop_rate=drop_rate)
    if pretrained is not False and pretrained is not None:
        kw["pretrained"] = True
        kw["pretrained_cfg_overlay"] = dict(file=_pretrained_file(architecture, pretrained))
    return timm.create_model(architecture, **kw)


#: Files a model folder holds (card, weights, split list, metrics, its README).
MODEL_FOLDER_FILES = {CARD, WEIGHTS, "README.md", "split.json", "test_metrics.json"}


def model_folder_not_ours(path: str | Path) -> str | None:
    """Why ``path`` is not a model folder hcs wrote (``None`` when it is one): ``model.yaml``
    with an ``architecture`` and the weights' ``sha256``, ``model.safetensors``, and nothing
    else but :data:`MODEL_FOLDER_FILES`. ``--overwrite`` replaces nothing else
    (:func:`hcs.atomic.check_replaceable`)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return "not a folder"
    try:
        card = yaml.safe_load((path / CARD).read_text())
    except (OSError, yaml.YAMLError):
        card = None
    if not isinstance(card, dict) or not {"architecture", "sha256"} <= set(card) \
            or not (path / WEIGHTS).is_file():
        return f"not an hcs model folder (no {CARD} card with weights)"
    foreign = sorted(p.name for p in path.iterdir() if p.name not in MODEL_FOLDER_FILES)
    if foreign:
        return f"holds {foreign[0]!r}, which hcs did not write"
    return None


def write_model_folder(
    folder: str | Path, tensors: dict[str, Any], card: Any, overwrite: bool = False,
    extra_files: dict[str, str] | None = None, metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``model.yaml`` (the card with the weights' sha256 and its
    ``card_sha256``) and ``extra_files`` (name -> text) into ``folder``, atomically
    (:func:`hcs.atomic.atomic_dir`: built next to its final place and renamed, so a failure
    leaves nothing half-written). ``overwrite`` replaces only a model folder hcs wrote
    (:func:`model_folder_not_ours`). Used for classifier and detector folders alike."""
    from safetensors.torch import save_file

    from hcs.atomic import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder, overwrite=overwrite, not_ours=model_folder_not_ours) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(state, str(tmp / WEIGHTS),
                  metadata={"architecture": card.architecture, **(metadata or {})})
        card = card.model_copy(update={"sha256": sha256_file(tmp / WEIGHTS)})
        card = card.model_copy(update={"card_sha256": card_checksum(card)})
        (tmp / CARD).write_text(yaml.safe_dump(card.model_dump(), sort_keys=False))
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
    return folder


def save_model(
    model: Any, card: ModelCard, folder: str | Path, overwrite: bool = False,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Write ``model.safetensors`` + ``model.yaml`` (with the weights' sha256) into ``folder``.

    The folder is written next to its final place and renamed, so a failure leaves nothing
    half-written (:func:`write_model_folder`). ``extra_files`` (name -> text) are written
    alongside (split list, README).
    """
    return write_model_folder(folder, model.state_dict(), card, overwrite, extra_files)


def read_yaml(path: Path) -> Any:
    """The YAML content of a card file (one clear error naming the file)."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None


def validate_card(path: Path, schema: type[BaseModel], data: Any) -> Any:
    """``schema`` validated from ``data`` read from ``path``; an error names the field."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "(card)"
        raise InputError(f"{path}: field {loc}: {err['msg']}") from None


def read_card(folder: str | Path, verify: bool = True) -> ModelCard:
    """Parse and validate ``folder/model.yaml`` and verify its ``card_sha256``
    (:func:`verify_card`; ``verify=False`` only for :func:`hcs.classify.seal.seal_card`)."""
    path = Path(folder) / CARD
    if not path.is_file():
        raise InputError(f"{path}: model card not found ({Path(folder)} is not a model folder)")
    card = validate_card(path, ModelCard, read_yaml(path))
    return verify_card(path, card) if verify else card


class LoadedModel:
    """A loaded classifier: the torch module (eval mode, CPU) and its :class:`ModelCard`."""

    def __init__(self, module: Any, card: ModelCard, folder: Path) -> None:
        self.module = module
        self.card = card
        self.folder = folder

    def __repr__(self) -> str:
        c = self.card
        return f"LoadedModel({c.name!r}, {c.architecture}, classes={c.classes})"


def verify_weights(folder: str | Path, sha256: str) -> Path:
    """``folder/model.safetensors``, after checking its sha256 against the card's ``sha256``
    (cheap: no torch; :func:`read_verified_weights` then reads it).

    Raises
    ------
    InputError
        The weights file is missing or its digest differs from the card's.
    """
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise InputError(f"{weights}: weights file not found")
    digest = sha256_file(weights)
    if digest != sha256:
        raise InputError(
            f"{weights}: sha256 {digest[:12]}... does not match model.yaml "
            f"({sha256[:12] or 'missing'}...); the weights or the card were changed"
        )
    return weights


def read_verified_weights(folder: str | Path, sha256: str) -> dict[str, Any]:
    """The tensors of ``folder/model.safetensors`` after checking its sha256 against the card's.

    Parameters
    ----------
    folder
        A model folder (classifier or detector).
    sha256
        The digest ``model.yaml`` records (empty when missing).

    Returns
    -------
    dict
        Tensor name -> ``torch.Tensor``.

    Raises
    ------
    InputError
        The weights file is missing, unreadable, or its digest differs from the card's.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = verify_weights(folder, sha256)
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"{weights}: cannot read safetensors ({exc})") from None


def load_model(folder: str | Path) -> LoadedModel:
    """Load a model folder, verifying the sha256 and that ``model.yaml`` matches the weights.

    Raises
    ------
    InputError
        Missing files, a checksum mismatch (weights changed or card edited), or weights whose
        tensors do not fit the architecture / classes / channels the card declares.
    """
    folder = Path(folder)
    card = read_card(folder)
    state = read_verified_weights(folder, card.sha256)
    module = create_classifier(
        card.architecture, len(card.classes), card.in_chans, card.drop_rate, pretrained=False
    )
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong:
        detail = (
            f"shape of {wrong[0]}: weights {tuple(state[wrong[0]].shape)} vs card "
            f"{tuple(expected[wrong[0]].shape)}" if wrong
            else f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        )
        raise InputError(
            f"{folder / CARD} does not match {WEIGHTS} ({card.architecture}, "
            f"{len(card.classes)} classes, {card.in_chans} channels): {detail}"
        )
    module.load_state_dict(state)
    module.eval()
    return LoadedModel(module, card, folder)
