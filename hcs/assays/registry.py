"""Declarative assay definitions: class names, exclusions and composite readouts.

Each assay of DESIGN.md ("The assays") is one frozen :class:`Assay`. Statistics only need the
facts here: which classes a cell can be labelled with, which classes are left out of the analysed
count (the AIM-CICs F-category), and which sums of classes are readouts of their own (all CICs,
completed CICs). Channels, crops and decision rules are added by the classification issue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hcs.errors import InputError


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

    Examples
    --------
    >>> a = get_assay("cic")
    >>> a.analysed_classes[:2], a.composites["completed_cic"]
    (('partial', 'one_in_one'), ('one_in_one', 'two_in_one', 'in_turn', 'complicated'))
    """

    name: str
    classes: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    composites: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    description: str = ""

    def __post_init__(self) -> None:
        known = set(self.classes)
        if len(known) != len(self.classes):
            raise ValueError(f"assay {self.name}: duplicated class names {self.classes}")
        bad = [c for c in self.excluded if c not in known] + [
            c for parts in self.composites.values() for c in parts if c not in known
        ]
        if bad:
            raise ValueError(f"assay {self.name}: unknown classes {bad}")
        clash = known & set(self.composites)
        if clash:
            raise ValueError(f"assay {self.name}: composite names clash with classes {clash}")

    @property
    def analysed_classes(self) -> tuple[str, ...]:
        """Classes that count towards ``n_analysed``."""
        return tuple(c for c in self.classes if c not in self.excluded)

    @property
    def readouts(self) -> tuple[str, ...]:
        """Frequency readouts: every analysed class, then every composite."""
        return self.analysed_classes + tuple(self.composites)


_CIC_SUBTYPES = ("partial", "one_in_one", "two_in_one", "in_turn", "complicated")
_MITOTIC_STAGES = (
    "prophase",
    "early_prometaphase",
    "prometaphase_metaphase",
    "anaphase_telophase_cytokinesis",
)

ASSAYS: dict[str, Assay] = {
    a.name: a
    for a in (
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
        ),
        Assay("livedead", classes=("live", "dead"), description="stain-free live vs dead"),
        Assay(
            "cancer",
            classes=("cancer", "normal", "unknown"),
            description="label-free tumour vs normal cells",
        ),
        Assay(
            "mitosis",
            classes=("non_mitotic", *_MITOTIC_STAGES),
            composites={"mitotic": _MITOTIC_STAGES},
            description="non-mitotic vs four mitotic stages",
        ),
    )
}


def get_assay(name: str | Assay) -> Assay:
    """The registered :class:`Assay` called ``name`` (an :class:`Assay` is returned as is).

    Examples
    --------
    >>> get_assay("livedead").classes
    ('live', 'dead')
    """
    if isinstance(name, Assay):
        return name
    try:
        return ASSAYS[str(name).strip().lower()]
    except KeyError:
        raise InputError(f"unknown assay {name!r}; known: {', '.join(ASSAYS)}") from None
