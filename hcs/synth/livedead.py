"""Stain-free live/dead objects (JIMT-1-like cells, ``papers/002``).

*live*: spread, irregular cells with smooth grey cytoplasm in brightfield, a faint membrane, and
dark nucleoli in the nucleus; no PI. *dead*: shrunken and rounded, either blebbed or fragmented,
a blurred dark halo in brightfield, granular interior without nucleoli, condensed (pyknotic)
Hoechst and bright PI in the nucleus.
"""

from __future__ import annotations

import math

from hcs.synth.build import Builder
from hcs.synth.objects import SimObject
from hcs.synth.shapes import TEX_GRANULAR, Part


def live(b: Builder) -> SimObject:
    r = b.u(9.0, 14.0)
    cell = b.body(0, 0, r, ecc=(0.55, 1.0), irregular=b.u(0.12, 0.25), hz_um=3.0,
                  membrane=0.0, bf_fill=-0.01, bf_halo=b.u(0.02, 0.04), bf_texture=0.25)
    cell.fill["dead"] = 0.01
    ang = b.angle()
    nuc = b.nucleus(0.2 * cell.b * math.sin(ang), 0.2 * cell.b * math.cos(ang),
                    b.u(0.36, 0.45) * r, dna=b.u(0.7, 1.1), extra_fill={"dead": 0.015})
    parts = [cell, nuc, *b.nucleoli(nuc, int(b.rng.integers(1, 4)), bf=-0.14)]
    return SimObject("live", parts, radius=b.px(r))


def dead(b: Builder) -> SimObject:
    r = b.u(4.5, 7.5)
    kind = "fragmented" if b.rng.random() < 0.35 else "blebbed"
    halo = -b.u(0.12, 0.22)
    cell = b.body(0, 0, r, ecc=(0.8, 1.0), irregular=0.05, hz_um=r, membrane=0.0,
                  bf_fill=-b.u(0.04, 0.08), bf_halo=0.0, bf_texture=0.0)
    cell.fill["dead"] = 0.1
    cell.texture["brightfield"] = (TEX_GRANULAR, 0.8)
    # Blurred dark halo just outside the (compromised) membrane.
    cell.ring = {"brightfield": halo}
    cell.ring_width = b.px(b.u(1.2, 2.0))
    cell.ring_offset = b.px(1.0)
    parts: list[Part] = [cell]
    pi = b.u(0.9, 1.5)
    if kind == "blebbed":
        for _ in range(int(b.rng.integers(3, 8))):
            ang, rb = b.angle(), b.px(b.u(1.0, 2.2))
            d = cell.a * b.u(0.85, 1.05)
            parts.append(Part(d * math.sin(ang), d * math.cos(ang), rb, rb, hz=2.0,
                              fill={"brightfield": -0.05, "dead": 0.05}, ring={"brightfield": 0.08},
                              ring_width=b.px(0.4), edge=b.px(0.6)))
        nuc = b.nucleus(0, 0, b.u(0.45, 0.6) * r, dna=b.u(1.5, 2.2), ecc=(0.85, 1.0),
                        granular=True, texture=0.3, bf=-0.03, extra_fill={"dead": pi})
        parts.append(nuc)
        n_nuc = 1
    else:
        n_nuc = int(b.rng.integers(2, 5))
        for _ in range(n_nuc):
            ang, d = b.angle(), b.px(r) * b.u(0.25, 0.55)
            parts.append(b.nucleus(d * math.sin(ang), d * math.cos(ang), b.u(1.2, 2.0),
                                   dna=b.u(1.6, 2.4), ecc=(0.8, 1.0), bf=-0.04,
                                   extra_fill={"dead": pi}))
    return SimObject("dead", parts, n_nuclei=n_nuc, radius=b.px(r + 1.5), info={"dead_kind": kind})


GENERATORS = {"live": live, "dead": dead}
