"""Simulated objects (a cell, a cell-in-cell structure, a dividing cell) and their rendering.

An object is a list of :class:`~hcs.synth.shapes.Part` around its centre. Rendering evaluates
the parts on a small patch (per z plane) and adds the patch into the field canvas; the same pass
measures the truth geometry from the rendered coverage (object box, each member's cell and
nucleus centroid), so truth and pixels cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hcs.synth.shapes import Part, coverage, signed_distance, texture_window, z_scale


@dataclass
class SimObject:
    """One detectable object with its true class.

    Attributes
    ----------
    cls
        True class (one of the assay's classes).
    parts
        Geometry, centred on the object.
    n_members
        Cells making up the object (1 for a single cell; 2+ for cell-in-cell structures).
    n_nuclei
        Separate nuclear masses it shows (2 in anaphase, fragments of a dead cell ...).
    radius
        Footprint radius (px) used for placing objects at a density.
    info
        Extra truth columns (e.g. the hidden origin of an ``unknown`` cancer-assay cell).
    """

    cls: str
    parts: list[Part]
    n_members: int = 1
    n_nuclei: int = 1
    radius: float = 10.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rendered:
    """Rendering of one object: patches per channel role and truth geometry (field px)."""

    y0: int
    x0: int
    patches: dict[str, np.ndarray]
    bbox: tuple[int, int, int, int] | None
    members: list[dict[str, float]]


def render_object(
    obj: SimObject,
    y: float,
    x: float,
    roles: list[str],
    z_um: list[float],
    bank: np.ndarray,
    rng: np.random.Generator,
) -> Rendered:
    """Render ``obj`` centred at field position (``y``, ``x``) for planes at ``z_um``.

    Returns patches of shape (nz, h, w) for every role the parts touch; truth geometry is
    measured on the plane closest to the object's focus (z = 0).
    """
    reach = max(math.hypot(p.cy, p.cx) + p.extent() for p in obj.parts)
    half = int(math.ceil(reach)) + 2
    iy0, ix0 = int(math.floor(y)) - half, int(math.floor(x)) - half
    n = 2 * half + 2
    ys = (iy0 + np.arange(n, dtype=np.float32)) - np.float32(y)
    xs = (ix0 + np.arange(n, dtype=np.float32)) - np.float32(x)
    nz = len(z_um)
    focus = int(np.argmin(np.abs(np.asarray(z_um))))
    patches = {r: np.zeros((nz, n, n), dtype=np.float32) for r in roles}
    body = np.zeros((n, n), dtype=np.float32)
    nuc: dict[int, np.ndarray] = {}
    cells: dict[int, tuple[float, float]] = {}

    for part in obj.parts:
        ext = part.extent()
        r0 = max(int(math.floor(part.cy - ext - ys[0])), 0)
        r1 = min(int(math.ceil(part.cy + ext - ys[0])) + 1, n)
        c0 = max(int(math.floor(part.cx - ext - xs[0])), 0)
        c1 = min(int(math.ceil(part.cx + ext - xs[0])) + 1, n)
        if r1 <= r0 or c1 <= c0:
            continue
        yy = ys[r0:r1, None]
        xx = xs[None, c0:c1]
        textured = [(role, slot, amp) for role, (slot, amp) in part.texture.items()
                    if role in patches]
        tex: dict[str, np.ndarray] = {}
        if part.tag == "body":
            cells[part.member] = (y + part.cy, x + part.cx)
        for iz, z in enumerate(z_um):
            s = z_scale(part, z)
            if s <= 0:
                continue
            if textured:
                # A fresh texture window per plane, so chromatin is not a column through z.
                tex = {role: 1.0 + amp * texture_window(bank, slot, (r1 - r0, c1 - c0), rng)
                       for role, slot, amp in textured}
            d = signed_distance(yy - part.cy, xx - part.cx, part, s)
            cov = coverage(d, part.edge)
            keep = None
            for hole in part.holes:
                hs = z_scale(hole, z)
                if hs <= 0:
                    continue
                dh = signed_distance(yy - hole.cy, xx - hole.cx, hole, hs) + part.hole_margin
                k = 1.0 - coverage(dh, hole.edge)
                keep = k if keep is None else keep * k
            if keep is not None:
                cov = cov * keep
            for role, amp in part.fill.items():
                if role in patches and amp:
                    contrib = amp * cov
                    if role in tex:
                        contrib = contrib * tex[role]
                    patches[role][iz, r0:r1, c0:c1] += contrib
            if part.ring:
                ring = np.exp(np.float32(-0.5) * ((d + np.float32(part.ring_offset))
                                                  / np.float32(part.ring_width)) ** 2)
                if keep is not None:
                    ring = ring * keep
                for role, amp in part.ring.items():
                    if role in patches and amp:
                        patches[role][iz, r0:r1, c0:c1] += amp * ring
            if iz == focus:
                if part.tag == "body":
                    np.maximum(body[r0:r1, c0:c1], cov, out=body[r0:r1, c0:c1])
                elif part.tag == "nucleus":
                    m = nuc.setdefault(part.member, np.zeros((n, n), dtype=np.float32))
                    np.maximum(m[r0:r1, c0:c1], cov, out=m[r0:r1, c0:c1])

    inside = np.nonzero(body >= 0.5)
    bbox = None
    if len(inside[0]):
        bbox = (
            ix0 + int(inside[1].min()),
            iy0 + int(inside[0].min()),
            ix0 + int(inside[1].max()) + 1,
            iy0 + int(inside[0].max()) + 1,
        )
    members = []
    for m in sorted(set(cells) | set(nuc)):
        cy, cx = cells.get(m, (y, x))
        row: dict[str, float] = {"member": m, "cell_y": cy, "cell_x": cx}
        mask = nuc.get(m)
        w = float(mask.sum()) if mask is not None else 0.0
        if mask is not None and w > 0:
            row["nucleus_y"] = iy0 + float((mask.sum(axis=1) * np.arange(n)).sum() / w)
            row["nucleus_x"] = ix0 + float((mask.sum(axis=0) * np.arange(n)).sum() / w)
        else:
            row["nucleus_y"] = row["nucleus_x"] = float("nan")
        row["nucleus_area_px"] = w
        members.append(row)
    return Rendered(iy0, ix0, {k: v for k, v in patches.items() if v.any()}, bbox, members)


def paste(canvas: np.ndarray, patch: np.ndarray, y0: int, x0: int) -> None:
    """Add ``patch`` (nz, h, w) into ``canvas`` (nz, H, W) at (y0, x0), clipped to the canvas.

    Examples
    --------
    >>> c = np.zeros((1, 4, 4)); paste(c, np.ones((1, 3, 3)), -1, 2); int(c.sum())
    4
    """
    _, hh, ww = canvas.shape
    _, ph, pw = patch.shape
    cy0, cx0 = max(y0, 0), max(x0, 0)
    cy1, cx1 = min(y0 + ph, hh), min(x0 + pw, ww)
    if cy1 <= cy0 or cx1 <= cx0:
        return
    canvas[:, cy0:cy1, cx0:cx1] += patch[:, cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
