"""Cell-in-cell (AIM-CICs) objects: single cells and the five CIC subtypes, plus F-category.

Morphology follows the AIM-CICs definitions (Tang et al., ``papers/000``): *partial* = more than
30% but not all of the internalising cell enclosed by the outer cell; *one_in_one* / *two_in_one*
= one / two cells fully inside; *in_turn* = nested (a cell inside a cell inside a cell);
*complicated* = four or more cells; *f_category* = ambiguous structures experts could not call
(here: loosely overlapping doublets and cells holding an empty, nucleus-free vacuole). Inner
cells are round with a bright E-cadherin ring and a condensed nucleus; the host nucleus is
pushed aside into the crescent typical of entosis. MCF10A-like sizes (cell radius 10-21 um,
nuclei 8-14 um across).
"""

from __future__ import annotations

import math

from hcs.synth.build import Builder, distance_for_fraction
from hcs.synth.objects import SimObject
from hcs.synth.shapes import Part


def _inner(b: Builder, cy: float, cx: float, r: float, member: int) -> list[Part]:
    """An internalised cell: round, bright membrane ring, brightfield vacuole rim, dense nucleus."""
    cell = b.body(
        cy, cx, r * b.pixel_size_um, member=member, ecc=(0.9, 1.0), irregular=0.02,
        membrane=b.u(1.1, 1.5), bf_fill=-0.03, bf_halo=0.1,
    )
    nuc = b.nucleus(
        cy + b.u(-0.15, 0.15) * r, cx + b.u(-0.15, 0.15) * r, b.u(0.42, 0.55) * r * b.pixel_size_um,
        member=member, ecc=(0.85, 1.0), dna=b.u(1.1, 1.6),
    )
    return [cell, nuc]


def _host(b: Builder, r_um: float, member: int = 0) -> Part:
    return b.body(0.0, 0.0, r_um, member=member, ecc=(0.85, 1.0), irregular=0.04)


def _polar(d: float, ang: float) -> tuple[float, float]:
    return d * math.sin(ang), d * math.cos(ang)


def single_cell(b: Builder) -> SimObject:
    r = b.u(10.0, 15.0)
    cell = b.body(0, 0, r, ecc=(0.65, 1.0), irregular=b.u(0.04, 0.12))
    oy, ox = _polar(b.u(0, 0.25) * b.px(r), b.angle())
    nuc = b.nucleus(oy, ox, b.u(0.36, 0.48) * r, dna=b.u(0.7, 1.4))
    return SimObject("non_cic", [cell, nuc, *b.nucleoli(nuc, int(b.rng.integers(1, 4)))],
                     radius=b.px(r))


def partial(b: Builder) -> SimObject:
    big_um = b.u(11.0, 15.0)
    R = b.px(big_um)
    r = R * b.u(0.5, 0.65)
    d = distance_for_fraction(r, R, b.u(0.35, 0.85))
    iy, ix = _polar(d, b.angle())
    host = _host(b, big_um)
    host.harm = host.harm * 0.3
    inner = _inner(b, iy, ix, r, member=1)
    nuc = b.crescent_nucleus(0, 0, R, [inner[0]], dna=b.u(0.8, 1.2))
    return SimObject("partial", [host, nuc, *inner], n_members=2, n_nuclei=2, radius=d + r)


def one_in_one(b: Builder) -> SimObject:
    big_um = b.u(11.0, 16.0)
    R = b.px(big_um)
    r = R * b.u(0.42, 0.6)
    d = (R - r - b.px(1.5)) * b.u(0.3, 1.0)
    iy, ix = _polar(max(d, 0.0), b.angle())
    inner = _inner(b, iy, ix, r, member=1)
    nuc = b.crescent_nucleus(0, 0, R, [inner[0]], dna=b.u(0.8, 1.2))
    return SimObject("one_in_one", [_host(b, big_um), nuc, *inner], n_members=2, n_nuclei=2,
                     radius=R)


def two_in_one(b: Builder) -> SimObject:
    big_um = b.u(13.0, 17.0)
    R = b.px(big_um)
    r1, r2 = R * b.u(0.36, 0.46), R * b.u(0.36, 0.46)
    d1, d2 = R - r1 - b.px(1.5), R - r2 - b.px(1.5)
    a1 = b.angle()
    # Angular gap so the two inner cells do not overlap (chord >= r1 + r2 + 1 um).
    need = 2 * math.asin(min(1.0, (r1 + r2 + b.px(1.0)) / (d1 + d2)))
    a2 = a1 + max(need, b.u(need, math.pi))
    inner1 = _inner(b, *_polar(d1, a1), r1, member=1)
    inner2 = _inner(b, *_polar(d2, a2), r2, member=2)
    nuc = b.crescent_nucleus(0, 0, R, [inner1[0], inner2[0]], dna=b.u(0.8, 1.2))
    return SimObject("two_in_one", [_host(b, big_um), nuc, *inner1, *inner2], n_members=3,
                     n_nuclei=3, radius=R)


def in_turn(b: Builder) -> SimObject:
    big_um = b.u(13.0, 17.0)
    R = b.px(big_um)
    rm = R * b.u(0.55, 0.66)
    dm = (R - rm - b.px(1.5)) * b.u(0.5, 1.0)
    my, mx = _polar(dm, b.angle())
    middle = b.body(my, mx, rm * b.pixel_size_um, member=1, ecc=(0.9, 1.0), irregular=0.02,
                    membrane=b.u(1.1, 1.4), bf_fill=-0.02, bf_halo=0.09)
    ri = rm * b.u(0.45, 0.58)
    di = (rm - ri - b.px(1.2)) * b.u(0.3, 1.0)
    oy, ox = _polar(di, b.angle())
    inner = _inner(b, my + oy, mx + ox, ri, member=2)
    mid_nuc = b.crescent_nucleus(my, mx, rm, [inner[0]], member=1, dna=b.u(1.0, 1.3))
    host_nuc = b.crescent_nucleus(0, 0, R, [middle], dna=b.u(0.8, 1.2))
    parts = [_host(b, big_um), host_nuc, middle, mid_nuc, *inner]
    return SimObject("in_turn", parts, n_members=3, n_nuclei=3, radius=R)


def complicated(b: Builder) -> SimObject:
    big_um = b.u(16.0, 21.0)
    R = b.px(big_um)
    parts: list[Part] = [_host(b, big_um)]
    bodies: list[Part] = []
    placed: list[tuple[float, float, float]] = []
    k = int(b.rng.integers(3, 6))
    member = 1
    for _ in range(60):
        if len(placed) == k:
            break
        r = R * b.u(0.28, 0.4)
        d = (R - r - b.px(1.2)) * math.sqrt(b.u(0.05, 1.0))
        y, x = _polar(d, b.angle())
        if all(math.hypot(y - py, x - px) > r + pr + b.px(0.8) for py, px, pr in placed):
            placed.append((y, x, r))
            cell = _inner(b, y, x, r, member=member)
            parts += cell
            bodies.append(cell[0])
            member += 1
    parts.insert(1, b.crescent_nucleus(0, 0, R, bodies, dna=b.u(0.8, 1.2)))
    n = 1 + len(placed)
    return SimObject("complicated", parts, n_members=n, n_nuclei=n, radius=R)


def f_category(b: Builder) -> SimObject:
    if b.rng.random() < 0.5:
        # Two cells lying over each other by less than the 30% that makes a partial CIC,
        # with a faint, uneven membrane: the ambiguous doublets annotators leave out.
        r1, r2 = b.u(8.0, 11.0), b.u(7.0, 10.0)
        d = distance_for_fraction(b.px(r2), b.px(r1), b.u(0.1, 0.28))
        ang = b.angle()
        oy, ox = _polar(d, ang)
        c1 = b.body(-oy / 2, -ox / 2, r1, member=0, membrane=b.u(0.4, 0.7))
        c2 = b.body(oy / 2, ox / 2, r2, member=1, membrane=b.u(0.4, 0.7))
        n1 = b.nucleus(-oy / 2 - 0.2 * oy, -ox / 2 - 0.2 * ox, 0.42 * r1, member=0)
        n2 = b.nucleus(oy / 2 + 0.2 * oy, ox / 2 + 0.2 * ox, 0.42 * r2, member=1)
        return SimObject("f_category", [c1, c2, n1, n2], n_members=2, n_nuclei=2,
                         radius=d / 2 + b.px(r1), info={"f_kind": "doublet"})
    # A cell holding a round vacuole with a membrane rim but no nucleus inside.
    big_um = b.u(11.0, 15.0)
    R = b.px(big_um)
    r = R * b.u(0.3, 0.45)
    vy, vx = _polar((R - r - b.px(1.5)) * b.u(0.2, 1.0), b.angle())
    vac = b.body(vy, vx, r * b.pixel_size_um, member=0, ecc=(0.9, 1.0), irregular=0.02,
                 membrane=b.u(0.5, 0.9), bf_fill=0.02, bf_halo=0.08)
    vac.tag = ""
    nuc = b.crescent_nucleus(0, 0, R, [vac], dna=b.u(0.8, 1.2))
    return SimObject("f_category", [_host(b, big_um), vac, nuc], n_members=1, n_nuclei=1,
                     radius=R, info={"f_kind": "empty_vacuole"})


GENERATORS = {
    "non_cic": single_cell,
    "partial": partial,
    "one_in_one": one_in_one,
    "two_in_one": two_in_one,
    "in_turn": in_turn,
    "complicated": complicated,
    "f_category": f_category,
}
