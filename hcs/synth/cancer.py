"""Cancer vs normal objects (organoid-derived single cells, ``papers/001``).

Dissociated cells dropped on the plate are round. *cancer*: larger, high nucleus:cytoplasm
ratio, irregular hyperchromatic nucleus with coarse chromatin and prominent nucleoli, deep-red
cytoplasmic dye. *normal*: smaller, round, regular nucleus with fine chromatin, green cytoplasmic
dye. *unknown*: the morphology of either, but neither cytoplasmic signal (the ``origin`` truth
column says which it really is).
"""

from __future__ import annotations

from hcs.synth.build import Builder
from hcs.synth.objects import SimObject


def _cancer_like(b: Builder, dye: float) -> SimObject:
    r = b.u(7.0, 11.5)
    cell = b.body(0, 0, r, ecc=(0.8, 1.0), irregular=b.u(0.05, 0.1), hz_um=r * 0.8, membrane=0.0,
                  bf_fill=-0.03, bf_halo=b.u(0.07, 0.12), bf_texture=0.6,
                  extra_fill={"cyto_red": dye * b.u(0.7, 1.3), "cyto_green": 0.0})
    nuc = b.nucleus(b.u(-0.1, 0.1) * b.px(r), b.u(-0.1, 0.1) * b.px(r), b.u(0.58, 0.7) * r,
                    irregular=b.u(0.08, 0.16), dna=b.u(1.1, 1.6), granular=True, texture=0.35,
                    bf=-0.03)
    parts = [cell, nuc, *b.nucleoli(nuc, int(b.rng.integers(2, 5)), bf=-0.12, r_um=(0.8, 1.4))]
    return SimObject("cancer", parts, radius=b.px(r), info={"origin": "cancer"})


def _normal_like(b: Builder, dye: float) -> SimObject:
    r = b.u(5.5, 8.0)
    cell = b.body(0, 0, r, ecc=(0.9, 1.0), irregular=0.03, hz_um=r * 0.8, membrane=0.0,
                  bf_fill=-0.015, bf_halo=b.u(0.05, 0.08), bf_texture=0.2,
                  extra_fill={"cyto_green": dye * b.u(0.7, 1.3), "cyto_red": 0.0})
    nuc = b.nucleus(0, 0, b.u(0.45, 0.52) * r, ecc=(0.9, 1.0), irregular=0.02,
                    dna=b.u(0.7, 1.0), texture=0.1)
    parts = [cell, nuc, *b.nucleoli(nuc, 1, bf=-0.05, r_um=(0.5, 0.8))]
    return SimObject("normal", parts, radius=b.px(r), info={"origin": "normal"})


def cancer(b: Builder) -> SimObject:
    return _cancer_like(b, 1.0)


def normal(b: Builder) -> SimObject:
    return _normal_like(b, 1.0)


def unknown(b: Builder) -> SimObject:
    obj = _cancer_like(b, 0.0) if b.rng.random() < 0.5 else _normal_like(b, 0.0)
    obj.cls = "unknown"
    return obj


GENERATORS = {"cancer": cancer, "normal": normal, "unknown": unknown}
