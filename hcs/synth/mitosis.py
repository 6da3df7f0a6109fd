"""Mitosis objects (hiPSC-like cells with membrane + DNA stains, ``papers/004``).

Cells are 3-D (ellipsoids with a half height), so the x, y and z max projections of a z-stack
differ: interphase cells are flat with flat nuclei; mitotic cells round up. *prophase*: round
nucleus with condensing (granular) chromatin; *early_prometaphase*: envelope gone, chromosomes
scattered as short rods through a round region; *prometaphase_metaphase*: a bright plate (a disc
seen edge-on from above, a bar or a disc in the side projections, by its orientation);
*anaphase_telophase_cytokinesis*: two chromatin masses moving apart in an elongated, pinched
cell.
"""

from __future__ import annotations

import math
from dataclasses import replace

from hcs.synth.build import Builder
from hcs.synth.objects import SimObject
from hcs.synth.shapes import Part


def interphase(b: Builder) -> SimObject:
    r = b.u(6.5, 10.0)
    cell = b.body(0, 0, r, ecc=(0.7, 1.0), irregular=b.u(0.05, 0.12), hz_um=4.0, bf_halo=0.03)
    nuc = b.nucleus(0, 0, b.u(0.5, 0.62) * r, hz_um=2.5, dna=b.u(0.6, 0.9), irregular=0.05)
    return SimObject("non_mitotic", [cell, nuc, *b.nucleoli(nuc, int(b.rng.integers(1, 3)))],
                     radius=b.px(r))


def _round_cell(b: Builder, r: float) -> Part:
    return b.body(0, 0, r, ecc=(0.9, 1.0), irregular=0.02, hz_um=r * 0.9, bf_halo=0.09)


def prophase(b: Builder) -> SimObject:
    r = b.u(8.0, 10.5)
    nuc = b.nucleus(0, 0, b.u(0.55, 0.65) * r, ecc=(0.9, 1.0), hz_um=r * 0.5,
                    dna=b.u(1.0, 1.3), granular=True, texture=0.7)
    return SimObject("prophase", [_round_cell(b, r), nuc], radius=b.px(r))


def early_prometaphase(b: Builder) -> SimObject:
    r = b.u(8.0, 10.5)
    parts: list[Part] = [_round_cell(b, r)]
    spread = b.px(0.55 * r)
    hz = 0.45 * r
    for _ in range(int(b.rng.integers(9, 16))):
        ang, d = b.angle(), spread * math.sqrt(b.u(0, 1))
        length = b.px(b.u(1.2, 2.4))
        p = Part(d * math.sin(ang), d * math.cos(ang), length, b.px(b.u(0.5, 0.8)),
                 theta=b.angle(), zc=b.u(-hz, hz), hz=b.u(1.0, 1.8),
                 fill={"nucleus": b.u(1.3, 1.8)}, edge=b.px(0.5))
        parts.append(p)
    # Nucleus truth: the whole chromosome cloud, as one soft blob of low weight in the image.
    cloud = b.nucleus(0, 0, 0.55 * r, ecc=(0.95, 1.0), hz_um=hz, dna=0.12, bf=0.0)
    parts.append(cloud)
    return SimObject("early_prometaphase", parts, radius=b.px(r))


def prometaphase_metaphase(b: Builder) -> SimObject:
    r = b.u(8.5, 11.0)
    half_len = b.u(4.0, 6.0)
    plate = b.nucleus(0, 0, half_len, ecc=(0.2, 0.3), hz_um=half_len, dna=b.u(1.6, 2.1),
                      granular=True, texture=0.3, irregular=0.02)
    return SimObject("prometaphase_metaphase", [_round_cell(b, r), plate], radius=b.px(r))


def anaphase_telophase_cytokinesis(b: Builder) -> SimObject:
    r = b.u(6.0, 8.0)
    sep = b.px(b.u(0.9, 1.6) * r)
    theta = b.angle()
    uy, ux = math.sin(theta), math.cos(theta)
    tilt = b.u(-2.5, 2.5)
    parts: list[Part] = []
    for m, sgn in enumerate((-1.0, 1.0)):
        cy, cx = sgn * sep / 2 * uy, sgn * sep / 2 * ux
        lobe = b.body(cy, cx, r, member=m, ecc=(0.85, 1.0), irregular=0.03, hz_um=0.8 * r,
                      bf_halo=0.08)
        lobe.zc = sgn * tilt / 2
        parts.append(lobe)
    # Each lobe gives way to the other: one pinched outline, not two crossing rings.
    left, right = parts
    left.holes = [replace(right, holes=[], ring={})]
    right.holes = [replace(left, holes=[], ring={})]
    left.hole_margin = right.hole_margin = -b.px(0.5)
    for m, sgn in enumerate((-1.0, 1.0)):
        d = sep / 2 * b.u(0.6, 0.9)
        mass = b.nucleus(sgn * d * uy, sgn * d * ux, b.u(2.5, 4.0), member=m, ecc=(0.35, 0.55),
                         theta=theta + math.pi / 2, hz_um=b.u(2.0, 3.0), dna=b.u(1.5, 2.0),
                         granular=True, texture=0.25)
        mass.zc = sgn * tilt / 2
        parts.append(mass)
    return SimObject("anaphase_telophase_cytokinesis", parts, n_members=2, n_nuclei=2,
                     radius=sep / 2 + b.px(r))


GENERATORS = {
    "non_mitotic": interphase,
    "prophase": prophase,
    "early_prometaphase": early_prometaphase,
    "prometaphase_metaphase": prometaphase_metaphase,
    "anaphase_telophase_cytokinesis": anaphase_telophase_cytokinesis,
}
