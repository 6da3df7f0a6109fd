"""The four simulated assays: classes, channels (with camera levels) and object generators.

Channel *roles* tie the rendering to the instrument channels: ``nucleus`` (Hoechst / DAPI),
``membrane`` (E-cadherin-like or CellMask), ``brightfield``, ``dead`` (propidium iodide),
``cyto_red`` / ``cyto_green`` (cytoplasmic tracker dyes of the cancer assay). Camera levels are
fitted to the real Opera Phenix field in ``../shared/data/harmony-phenix-v5`` (Hoechst background
~440 counts with ~13 counts noise, nuclei 1-3 x 10^4 counts; brightfield ~21,000 counts with ~95
counts noise; see docs/simulation.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import hcs.synth.cancer as cancer
import hcs.synth.cic as cic
import hcs.synth.livedead as livedead
import hcs.synth.mitosis as mitosis
from hcs.assays import get_assay as registry_assay
from hcs.errors import InputError
from hcs.io.acquisition import Channel
from hcs.synth.build import Builder
from hcs.synth.objects import SimObject


@dataclass(frozen=True)
class ChannelSpec:
    """One simulated channel: instrument metadata plus the camera model.

    ``level`` is the signal (counts, before vignetting) of amplitude 1 (a typical nucleus for
    ``nucleus``; for ``brightfield`` the lamp level, modulated by relative contrast);
    ``background`` the fluorescence background; raw = ``offset`` + gain * Poisson(photons) +
    Normal(0, ``read_noise``).
    """

    name: str
    role: str
    channel_type: str
    excitation_nm: float
    emission_nm: float
    level: float
    background: float = 0.0
    gain: float = 4.5
    read_noise: float = 8.0
    offset: float = 100.0

    def channel(self) -> Channel:
        return Channel(self.name, self.channel_type, self.excitation_nm, self.emission_nm)


# Camera: the real Phenix sample has background noise of ~12.6 counts (Hoechst, at ~440) and
# ~95 counts (brightfield, at ~21,000) (robust sd of pixel differences, docs/simulation.md);
# gain 0.4 counts/photon-equivalent with 5 counts read noise reproduces both.
_G, _R = 0.4, 5.0
HOECHST = ChannelSpec("HOECHST 33342", "nucleus", "fluorescence", 375, 456, 16000, 340, _G, _R)
BRIGHTFIELD = ChannelSpec("Brightfield", "brightfield", "brightfield", 740, 0, 21000, 0, 0.43, _R)
ECAD = ChannelSpec("Alexa 568", "membrane", "fluorescence", 561, 600, 7000, 700, _G, _R)
CELLMASK = ChannelSpec("CellMask Deep Red", "membrane", "fluorescence", 640, 668, 6000, 500, _G, _R)
PI = ChannelSpec("PI", "dead", "fluorescence", 561, 617, 12000, 300, _G, _R)
CYTO_RED = ChannelSpec("Cytosinker Deep Red", "cyto_red", "fluorescence", 640, 668, 4000, 400, _G,
                       _R)
CYTO_GREEN = ChannelSpec("Cytosinker Green", "cyto_green", "fluorescence", 488, 522, 4000, 450, _G,
                         _R)


@dataclass(frozen=True)
class AssaySim:
    """What :func:`hcs.synth.simulate_plate` needs to know about one assay."""

    name: str
    channels: list[ChannelSpec]
    generators: dict[str, Callable[[Builder], SimObject]]
    default_density_per_mm2: float
    default_freq: dict[str, float]

    def __post_init__(self) -> None:
        missing = [c for c in self.classes if c not in self.generators]
        if missing or set(self.default_freq) != set(self.classes):
            raise ValueError(f"simulated assay {self.name}: generators/frequencies do not match "
                             f"the classes of hcs.assays ({self.classes})")

    @property
    def classes(self) -> list[str]:
        """The assay's classes (:mod:`hcs.assays`) in the simulator's draw order.

        The draw order is the declared order with the rule's fallback class (cic ``non_cic``,
        the cells that are none of the subtypes) first, as the simulator has always drawn them:
        the same seed then gives the same screen as the one the shipped ``*-sim`` models were
        trained and documented on.
        """
        declared = registry_assay(self.name)
        first = [declared.rule.fallback] if declared.rule.fallback else []
        return first + [c for c in declared.classes if c not in first]

    @property
    def excluded(self) -> list[str]:
        """Classes left out of the analysed count (:mod:`hcs.assays`)."""
        return list(registry_assay(self.name).excluded)

    @property
    def roles(self) -> list[str]:
        return [c.role for c in self.channels]


ASSAYS: dict[str, AssaySim] = {
    "cic": AssaySim(
        "cic", [ECAD, HOECHST, BRIGHTFIELD], cic.GENERATORS, 350.0,
        {"non_cic": 0.72, "partial": 0.06, "one_in_one": 0.09, "two_in_one": 0.03,
         "in_turn": 0.03, "complicated": 0.02, "f_category": 0.05},
    ),
    "livedead": AssaySim(
        "livedead", [BRIGHTFIELD, HOECHST, PI],
        livedead.GENERATORS, 500.0, {"live": 0.82, "dead": 0.18},
    ),
    "mitosis": AssaySim(
        "mitosis", [CELLMASK, HOECHST, BRIGHTFIELD],
        mitosis.GENERATORS, 900.0,
        {"non_mitotic": 0.85, "prophase": 0.02, "early_prometaphase": 0.02,
         "prometaphase_metaphase": 0.05, "anaphase_telophase_cytokinesis": 0.06},
    ),
    "cancer": AssaySim(
        "cancer", [BRIGHTFIELD, HOECHST, CYTO_RED, CYTO_GREEN],
        cancer.GENERATORS, 500.0, {"cancer": 0.4, "normal": 0.4, "unknown": 0.2},
    ),
}


def get_assay(name: str) -> AssaySim:
    """The simulated assay called ``name`` (cic, livedead, mitosis or cancer)."""
    try:
        return ASSAYS[name]
    except KeyError:
        raise InputError(f"unknown assay {name!r}; choose one of {sorted(ASSAYS)}") from None
