"""Assays as data: ONE frozen :class:`Assay` declaration per assay of DESIGN.md ("The assays").

A declaration holds everything the rest of ``hcs`` needs to know about an assay: the class names
(model output order), which classes are left out of the analysed count (the AIM-CICs F-category)
and which sums of classes are readouts of their own; the classifier input (channels with their
composition / rescale mode, crop size, context margin, square padding, annotation label map);
and the decision rule turning probabilities into labels. :func:`get_input_spec` and
:func:`hcs.assays.rules.get_rule` are thin accessors over these declarations.
``default_model`` names the shipped model (under ``models/``) that ``hcs analyze`` and
``hcs demo`` use when no ``--model`` is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hcs.assays.inputs import InputChannel, InputSpec
from hcs.errors import InputError


@dataclass(frozen=True)
class DecisionRule:
    """How probabilities become a label (part of an assay's registry declaration).

    Parameters
    ----------
    assay
        Registry name (filled in by the :class:`~hcs.assays.registry.Assay` holding the rule).
    min_confidence
        A cell whose top probability is below this gets ``fallback`` (0 disables).
    fallback
        Class given to low-confidence cells.
    excluded
        Classes detected but left out of the analysed count (the assay's ``excluded``).
    fusion_weight
        ``w`` of the fused score ``(1 - w) S_det + w S_cls`` (``None``: no fusion).
    mitotic_threshold
        Probability of "mitotic" above which a stage is assigned (hierarchical rule).
    """

    assay: str = ""
    min_confidence: float = 0.0
    fallback: str | None = None
    excluded: tuple[str, ...] = ()
    fusion_weight: float | None = None
    mitotic_threshold: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"rule {self.assay}: min_confidence must be in [0, 1]")
        if self.min_confidence > 0 and self.fallback is None:
            raise ValueError(f"rule {self.assay}: min_confidence needs a fallback class")
        if self.fusion_weight is not None and not 0 <= self.fusion_weight <= 1:
            raise ValueError(f"rule {self.assay}: fusion weight must be in [0, 1]")


@dataclass(frozen=True)
class Assay:
    """One assay, described by data.

    Parameters
    ----------
    name
        Registry name (``cic``, ``livedead``, ``cancer``, ``mitosis``).
    classes
        Class names, in model output order; ``label`` values of the cell table.
    excluded
        Classes counted as detected but not analysed (frequencies exclude them).
    composites
        Readout name -> classes summed into it (``n_<name>``, ``freq_<name>``).
    description
        One line for reports.
    extra_nucleus_class
        Class given, in training labels made from detected nuclei
        (:mod:`hcs.train.detected`), to every nucleus of an object other than its host's
        nucleus, so that a multi-nucleus object (a cell-in-cell structure) is counted once.
        Must be an excluded class; ``None``: every nucleus keeps its object's class.
    channels
        Classifier input channels in tensor order, each with its rescale mode
        (:class:`~hcs.assays.inputs.InputChannel`).
    optional_channels
        Channels a model may add (e.g. Hoechst next to brightfield).
    crop_size, margin, square, pad_mode
        The default crop (:func:`hcs.classify.crops.crop_box`); a model card may record another
        one, and the card is what inference uses.
    label_map
        Annotation names -> class names (e.g. LDC ``Living Cell`` -> ``live``).
    rule
        The :class:`DecisionRule`; its ``assay`` and ``excluded`` are filled
        in from this declaration.
    paired_class, pair_max_um
        A class whose cells are often detected as two objects (mitosis: an anaphase-to-
        cytokinesis cell has two chromatin masses, each a detected nucleus): two detections of
        that class in one field that are each other's nearest such detection and at most
        ``pair_max_um`` apart are one cell, counted once (:func:`hcs.assays.rules.pair_partners`;
        the Allen Cell team merged such pairs by hand).
    default_model
        Shipped model folder (a name under ``models/``) used when no ``--model`` is given;
        ``None``: the assay has no default model (``--model`` is required).
    levels
        For a two-stage call (mitosis: mitotic vs not, then the stage): level name -> the
        classes of the model of that level. A level class is an assay class or a composite
        (``mitotic``); see :meth:`level_labels`.

    Examples
    --------
    >>> a = get_assay("cic")
    >>> a.analysed_classes[:2], a.composites["completed_cic"]
    (('partial', 'one_in_one'), ('one_in_one', 'two_in_one', 'in_turn', 'complicated'))
    >>> a.inputs.channel_names, a.crop_size, a.rule.min_confidence, a.rule.excluded
    (('membrane', 'brightfield', 'nucleus'), 224, 0.2, ('f_category',))
    """

    name: str
    classes: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    composites: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    description: str = ""
    extra_nucleus_class: str | None = None
    channels: tuple[InputChannel, ...] = ()
    optional_channels: tuple[InputChannel, ...] = ()
    crop_size: int = 64
    margin: float = 0.0
    square: bool = True
    pad_mode: str = "constant"
    label_map: dict[str, str] = field(default_factory=dict, hash=False)
    rule: DecisionRule = field(default_factory=DecisionRule)
    levels: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    paired_class: str | None = None
    pair_max_um: float = 0.0
    default_model: str | None = None

    def __post_init__(self) -> None:
        known = set(self.classes)
        if len(known) != len(self.classes):
            raise ValueError(f"assay {self.name}: duplicated class names {self.classes}")
        bad = [c for c in self.excluded if c not in known] + [
            c for parts in self.composites.values() for c in parts if c not in known
        ] + [c for c in self.label_map.values() if c not in known]
        if self.rule.fallback is not None and self.rule.fallback not in known:
            bad.append(self.rule.fallback)
        if self.paired_class is not None and self.paired_class not in known:
            bad.append(self.paired_class)
        if bad:
            raise ValueError(f"assay {self.name}: unknown classes {bad}")
        if self.extra_nucleus_class is not None and self.extra_nucleus_class not in self.excluded:
            raise ValueError(f"assay {self.name}: extra_nucleus_class must be an excluded class")
        clash = known & set(self.composites)
        if clash:
            raise ValueError(f"assay {self.name}: composite names clash with classes {clash}")
        bad_levels = [c for parts in self.levels.values() for c in parts
                      if c not in known and c not in self.composites]
        if bad_levels:
            raise ValueError(f"assay {self.name}: level classes {bad_levels} are neither classes "
                             "nor composites")
        if not self.channels:
            raise ValueError(f"assay {self.name}: no input channel declared")
        if self.crop_size < 1 or self.margin < 0:
            raise ValueError(f"assay {self.name}: bad crop {self.crop_size} / margin {self.margin}")
        # the rule belongs to this assay: its name and exclusions are the declaration's
        object.__setattr__(self, "rule", dataclasses.replace(
            self.rule, assay=self.name, excluded=self.excluded))

    @property
    def analysed_classes(self) -> tuple[str, ...]:
        """Classes that count towards ``n_analysed``."""
        return tuple(c for c in self.classes if c not in self.excluded)

    @property
    def readouts(self) -> tuple[str, ...]:
        """Frequency readouts: every analysed class, then every composite."""
        return self.analysed_classes + tuple(self.composites)

    def level_labels(self, level: str, labels: Sequence[str]) -> np.ndarray:
        """Training labels of one level: each assay label mapped to that level's class.

        A label that is a class of the level stays; a label inside a composite the level names
        becomes the composite; any other label is not part of the level and becomes ``""``
        (e.g. ``non_mitotic`` cells for the stage model).

        Examples
        --------
        >>> m = get_assay("mitosis")
        >>> m.level_labels("mitotic", ["prophase", "non_mitotic"]).tolist()
        ['mitotic', 'non_mitotic']
        >>> m.level_labels("stage", ["prophase", "non_mitotic"]).tolist()
        ['prophase', '']
        """
        if level not in self.levels:
            known = ", ".join(self.levels) or "none"
            raise InputError(f"assay {self.name} has no level {level!r} (levels: {known})")
        parts = self.levels[level]
        lookup: dict[str, str] = {}
        for c in parts:
            for member in self.composites.get(c, (c,)):
                lookup[member] = c
        return np.asarray([lookup.get(str(v), "") for v in labels], dtype=object)

    @property
    def inputs(self) -> InputSpec:
        """The classifier input part of the declaration."""
        return InputSpec(self.name, self.channels, self.crop_size, self.margin, self.square,
                         self.pad_mode, dict(self.label_map), self.optional_channels)


_CIC_SUBTYPES = ("partial", "one_in_one", "two_in_one", "in_turn", "complicated")
_MITOTIC_STAGES = (
    "prophase",
    "early_prometaphase",
    "prometaphase_metaphase",
    "anaphase_telophase_cytokinesis",
)
_HOECHST = InputChannel("hoechst", "Hoechst nuclear stain", "percentile")

ASSAYS: dict[str, Assay] = {
    a.name: a
    for a in (
        # AIM-CICs (papers/000): RGB composite, membrane red, brightfield green, nucleus blue,
        # each rescaled to 0-255; the detected box padded to a square and resized to 224
        # (ResNet-101 input); argmax, but a top probability below 0.2 counts as non_cic.
        Assay(
            "cic",
            classes=(*_CIC_SUBTYPES, "f_category", "non_cic"),
            excluded=("f_category",),
            composites={
                "all_cic": _CIC_SUBTYPES,
                # AIM-CICs: "completed form (including all CICs subtypes except for the partial)"
                "completed_cic": _CIC_SUBTYPES[1:],
            },
            description="AIM-CICs cell-in-cell subtypes (F-category excluded from counting)",
            extra_nucleus_class="f_category",
            channels=(
                InputChannel("membrane", "membrane stain, red plane of the composite",
                             "percentile"),
                InputChannel("brightfield", "brightfield, green plane", "percentile"),
                InputChannel("nucleus", "nuclear stain, blue plane", "percentile"),
            ),
            crop_size=224,
            margin=0.0,
            rule=DecisionRule(min_confidence=0.2, fallback="non_cic"),
            default_model="cic-sim",
        ),
        # Stain-free live/dead (papers/002): brightfield only (optionally + Hoechst); 8-bit
        # images are used as they are; argmax.
        Assay(
            "livedead",
            classes=("live", "dead"),
            description="stain-free live vs dead",
            channels=(InputChannel(
                "brightfield", "brightfield, 8-bit grey (RGB images converted with ITU-R 601 "
                "luma weights; an image with R = G = B keeps its values)", "none"),),
            optional_channels=(_HOECHST,),
            crop_size=48,
            margin=0.25,
            label_map={"Living Cell": "live", "Dead Cell": "dead", "live": "live",
                       "dead": "dead"},
            default_model="livedead-sim",
        ),
        # Label-free tumour cells (papers/001): brightfield (+ Hoechst); the fused score
        # S = (1 - w) S_det + w S_cls with w = 0.7, then argmax.
        Assay(
            "cancer",
            classes=("cancer", "normal", "unknown"),
            description="label-free tumour vs normal cells",
            channels=(InputChannel("brightfield", "brightfield", "percentile"),),
            optional_channels=(_HOECHST,),
            crop_size=96,
            margin=0.25,
            rule=DecisionRule(fusion_weight=0.7),
        ),
        # Allen Cell mitotic annotation (papers/004): DNA stain; mitotic vs not, then 4 stages;
        # x/y/z max projections, the least-entropy prediction wins.
        Assay(
            "mitosis",
            classes=("non_mitotic", *_MITOTIC_STAGES),
            composites={"mitotic": _MITOTIC_STAGES},
            description="non-mitotic vs four mitotic stages",
            channels=(InputChannel("nucleus", "DNA stain (max projection for z-stacks)",
                                   "percentile"),),
            optional_channels=(InputChannel("membrane", "membrane stain (cell shape)",
                                            "percentile"),),
            crop_size=64,
            margin=0.25,
            rule=DecisionRule(mitotic_threshold=0.5),
            levels={"mitotic": ("non_mitotic", "mitotic"), "stage": _MITOTIC_STAGES},
            paired_class="anaphase_telophase_cytokinesis",
            pair_max_um=15.0,
            default_model="mitosis-sim-xyz",
        ),
    )
}


def get_assay(name: str | Assay) -> Assay:
    """The registered :class:`Assay` called ``name`` (an :class:`Assay` is returned as is).

    Examples
    --------
    >>> get_assay("livedead").classes
    ('live', 'dead')
    >>> get_assay("pH")
    Traceback (most recent call last):
    ...
    hcs.errors.InputError: unknown assay 'pH'; known: cic, livedead, cancer, mitosis
    """
    if isinstance(name, Assay):
        return name
    try:
        return ASSAYS[str(name).strip().lower()]
    except KeyError:
        raise InputError(f"unknown assay {name!r}; known: {', '.join(ASSAYS)}") from None


def get_input_spec(assay: str) -> InputSpec:
    """The :class:`InputSpec` of ``assay`` (the input part of its registry declaration).

    Examples
    --------
    >>> get_input_spec("livedead").label_map["Dead Cell"]
    'dead'
    """
    return get_assay(assay).inputs
