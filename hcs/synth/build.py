"""Builders shared by the assay modules: cell bodies, nuclei, nucleoli, crescents, in micrometres.

A :class:`Builder` carries the random generator and the pixel size, and turns sizes given in
micrometres into :class:`~hcs.synth.shapes.Part` objects in pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hcs.synth.shapes import TEX_FINE, TEX_GRANULAR, TEX_SMOOTH, Part, random_harmonics


@dataclass
class Builder:
    """Random generator + pixel size (um/px) for one object."""

    rng: np.random.Generator
    pixel_size_um: float

    def px(self, um: float) -> float:
        """Micrometres -> pixels."""
        return um / self.pixel_size_um

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def angle(self) -> float:
        return float(self.rng.uniform(0, 2 * np.pi))

    def body(
        self,
        cy: float,
        cx: float,
        r_um: float,
        *,
        member: int = 0,
        ecc: tuple[float, float] = (0.8, 1.0),
        irregular: float = 0.06,
        hz_um: float = 5.0,
        membrane: float = 1.0,
        bf_fill: float = -0.012,
        bf_halo: float = 0.035,
        bf_texture: float = 0.4,
        extra_fill: dict[str, float] | None = None,
    ) -> Part:
        """A cell body: membrane ring, faint brightfield halo and textured cytoplasm."""
        r = self.px(r_um)
        e = self.u(*ecc)
        fill = {"brightfield": bf_fill, **(extra_fill or {})}
        texture = {"brightfield": (TEX_SMOOTH, bf_texture)}
        for role in extra_fill or {}:
            texture[role] = (TEX_SMOOTH, 0.25)
        return Part(
            cy,
            cx,
            r,
            r * e,
            theta=self.angle(),
            harm=random_harmonics(self.rng, irregular),
            hz=hz_um,
            fill=fill,
            ring={"membrane": membrane, "brightfield": bf_halo},
            ring_width=self.px(0.5),
            ring_offset=self.px(0.3),
            texture=texture,
            edge=self.px(0.8),
            tag="body",
            member=member,
        )

    def nucleus(
        self,
        cy: float,
        cx: float,
        r_um: float,
        *,
        member: int = 0,
        ecc: tuple[float, float] = (0.75, 1.0),
        irregular: float = 0.04,
        hz_um: float = 3.0,
        dna: float = 1.0,
        texture: float = 0.15,
        granular: bool = False,
        bf: float = -0.015,
        extra_fill: dict[str, float] | None = None,
        theta: float | None = None,
        holes: list[Part] | None = None,
    ) -> Part:
        """A nucleus in the DNA channel (slightly visible in brightfield)."""
        r = self.px(r_um)
        slot = TEX_GRANULAR if granular else TEX_FINE
        fill = {"nucleus": dna, "brightfield": bf, **(extra_fill or {})}
        tex = {"nucleus": (slot, texture)}
        for role in extra_fill or {}:
            tex[role] = (slot, texture)
        return Part(
            cy,
            cx,
            r,
            r * self.u(*ecc),
            theta=self.angle() if theta is None else theta,
            harm=random_harmonics(self.rng, irregular),
            hz=hz_um,
            fill=fill,
            texture=tex,
            holes=holes or [],
            hole_margin=self.px(1.0),
            edge=self.px(0.6),
            tag="nucleus",
            member=member,
        )

    def nucleoli(
        self, nuc: Part, n: int, *, bf: float = -0.1, dna: float = -0.12, r_um=(0.6, 1.1)
    ) -> list[Part]:
        """``n`` nucleoli inside ``nuc``: dark dots in brightfield, dips in the DNA stain."""
        out = []
        for _ in range(n):
            ang, rad = self.angle(), self.u(0, 0.5) * min(nuc.a, nuc.b)
            r = self.px(self.u(*r_um))
            out.append(
                Part(
                    nuc.cy + rad * math.sin(ang),
                    nuc.cx + rad * math.cos(ang),
                    r,
                    r * self.u(0.8, 1.0),
                    hz=1.0,
                    fill={"brightfield": bf, "nucleus": dna},
                    edge=self.px(0.5),
                )
            )
        return out

    def crescent_nucleus(
        self,
        host_cy: float,
        host_cx: float,
        host_r: float,
        inners: list[Part],
        *,
        member: int = 0,
        dna: float = 1.0,
    ) -> Part:
        """The host nucleus of an entotic structure: pushed aside and bent around the
        internalised cells (a crescent), as their vacuoles cut into it."""
        wy = sum(p.a * p.a * (p.cy - host_cy) for p in inners)
        wx = sum(p.a * p.a * (p.cx - host_cx) for p in inners)
        norm = math.hypot(wy, wx)
        if norm < 1e-6:
            ang = self.angle()
            dy, dx = math.sin(ang), math.cos(ang)
        else:
            dy, dx = wy / norm, wx / norm
        big = max(inners, key=lambda p: p.a)
        # Centre the nucleus just beyond the largest inner cell, on the side facing away from
        # the internalised cells, long axis across that direction so the cut makes a crescent.
        t = (big.cy - host_cy) * dy + (big.cx - host_cx) * dx
        na = 0.55 * host_r
        nb = 0.3 * host_r
        off = t - big.a - 0.25 * nb
        cy, cx = host_cy + off * dy, host_cx + off * dx
        theta = math.atan2(dy, dx) + math.pi / 2
        nuc = self.nucleus(0, 0, 1.0, member=member, dna=dna, theta=theta, holes=inners)
        nuc.cy, nuc.cx, nuc.a, nuc.b = cy, cx, na, nb
        return nuc


def lens_fraction(r_small: float, r_big: float, d: float) -> float:
    """Share of the small circle's area inside the big circle when their centres are ``d`` apart.

    Examples
    --------
    >>> lens_fraction(1, 3, 0.0), lens_fraction(1, 3, 5.0), round(lens_fraction(1, 1, 0.0), 3)
    (1.0, 0.0, 1.0)
    """
    r, big = r_small, r_big
    if d >= r + big:
        return 0.0
    if d <= big - r:
        return 1.0
    a1 = r * r * math.acos((d * d + r * r - big * big) / (2 * d * r))
    a2 = big * big * math.acos((d * d + big * big - r * r) / (2 * d * big))
    a3 = 0.5 * math.sqrt(max((-d + r + big) * (d + r - big) * (d - r + big) * (d + r + big), 0))
    return (a1 + a2 - a3) / (math.pi * r * r)


def distance_for_fraction(r_small: float, r_big: float, frac: float) -> float:
    """Centre distance at which ``frac`` of the small circle lies inside the big one (bisection)."""
    lo, hi = max(r_big - r_small, 0.0), r_big + r_small
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if lens_fraction(r_small, r_big, mid) > frac:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
