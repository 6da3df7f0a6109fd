"""One simulated field: place objects at a density, render every channel, add artefacts.

:func:`simulate_field` is a pure function of its arguments (the random generator included), so a
plate can render its fields in any order, or in parallel, and get the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import hcs.synth.artefacts as artefacts
from hcs.synth.assays import AssaySim
from hcs.synth.build import Builder
from hcs.synth.objects import SimObject, paste, render_object


@dataclass
class FieldConditions:
    """Plate-level inputs a field needs besides its classes and random generator."""

    shape: tuple[int, int]
    pixel_size_um: float
    z_um: list[float]
    bank: np.ndarray
    vignetting: dict[int, np.ndarray]
    bf_illumination: np.ndarray
    mottle: np.ndarray
    defocus_prob: float = 0.02
    overexposure_prob: float = 0.01
    debris_per_mm2: float = 25.0
    min_gap: float = 0.85


@dataclass
class FieldResult:
    """Planes per channel index, shape (nz, h, w) uint16, plus truth rows and QC flags."""

    planes: dict[int, np.ndarray]
    objects: list[dict[str, Any]]
    members: list[dict[str, Any]]
    qc: dict[str, Any] = field(default_factory=dict)


def place_objects(
    radii: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, min_gap: float = 0.85,
    tries: int = 25,
) -> np.ndarray:
    """Centres (y, x) for objects of footprint ``radii`` inside ``shape``.

    Each centre is drawn uniformly and kept if it is at least ``min_gap * (r_i + r_j)`` from
    every centre already placed (so neighbours touch and overlap a little); in a crowded field,
    after ``tries`` draws the least crowded candidate is taken (more overlap, as in dense wells).

    Examples
    --------
    >>> c = place_objects(np.full(20, 5.0), (200, 200), np.random.default_rng(0))
    >>> c.shape, bool(((c >= 0) & (c < 200)).all())
    ((20, 2), True)
    """
    h, w = shape
    n = len(radii)
    out = np.zeros((n, 2))
    for i in range(n):
        cand = rng.uniform((0, 0), (h, w), size=(tries, 2))
        if i == 0:
            out[0] = cand[0]
            continue
        d = np.hypot(cand[:, None, 0] - out[None, :i, 0], cand[:, None, 1] - out[None, :i, 1])
        slack = (d / (radii[None, :i] + radii[i])).min(axis=1)
        ok = np.nonzero(slack >= min_gap)[0]
        out[i] = cand[ok[0]] if len(ok) else cand[int(np.argmax(slack))]
    return out


def simulate_field(
    assay: AssaySim,
    classes: list[str],
    rng: np.random.Generator,
    cond: FieldConditions,
    *,
    intensity_scale: float = 1.0,
) -> FieldResult:
    """Render one field holding one object per entry of ``classes``.

    Parameters
    ----------
    assay
        The assay (channels, generators).
    classes
        True class of every object to place.
    rng
        The field's own generator (seed it from (seed, row, col, field)).
    cond
        Shape, pixel size, z planes and plate-level illumination.
    intensity_scale
        Multiplies fluorescence signal (edge wells are dimmer).
    """
    h, w = cond.shape
    builder = Builder(rng, cond.pixel_size_um)
    objs: list[SimObject] = [assay.generators[c](builder) for c in classes]
    radii = np.array([o.radius for o in objs], dtype=np.float64)
    centres = place_objects(radii, cond.shape, rng, cond.min_gap) if objs else np.zeros((0, 2))
    nz = len(cond.z_um)
    roles = sorted(set(assay.roles))
    canvas = {r: np.zeros((nz, h, w), dtype=np.float32) for r in roles}
    objects: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    for i, (obj, (y, x)) in enumerate(zip(objs, centres, strict=True)):
        rend = render_object(obj, float(y), float(x), roles, cond.z_um, cond.bank, rng)
        for role, patch in rend.patches.items():
            paste(canvas[role], patch, rend.y0, rend.x0)
        bx0, by0, bx1, by1 = rend.bbox if rend.bbox else (int(x), int(y), int(x) + 1, int(y) + 1)
        host = rend.members[0] if rend.members else {}
        member_ids = [f"{i}.{int(m['member'])}" for m in rend.members]
        objects.append(
            {
                "cell_id": i,
                "x": float(x),
                "y": float(y),
                "bbox_x0": max(bx0, 0),
                "bbox_y0": max(by0, 0),
                "bbox_x1": min(bx1, w),
                "bbox_y1": min(by1, h),
                "touches_border": bool(bx0 < 0 or by0 < 0 or bx1 > w or by1 > h),
                "class": obj.cls,
                "members": ";".join(member_ids),
                "n_members": obj.n_members,
                "n_nuclei": obj.n_nuclei,
                "nucleus_x": host.get("nucleus_x", math.nan),
                "nucleus_y": host.get("nucleus_y", math.nan),
                **{k: str(v) for k, v in obj.info.items()},
            }
        )
        for m, mid in zip(rend.members, member_ids, strict=True):
            members.append({"cell_id": i, "member_id": mid, **m})

    qc = {
        "defocused": bool(rng.random() < cond.defocus_prob),
        "overexposed": bool(rng.random() < cond.overexposure_prob),
    }
    if qc["defocused"]:
        sigma = rng.uniform(2.5, 4.5) / cond.pixel_size_um
        qc["defocus_sigma_um"] = round(sigma * cond.pixel_size_um, 3)
        for r in roles:
            canvas[r] = artefacts.defocus(canvas[r], sigma)
    area_mm2 = h * w * (cond.pixel_size_um / 1000.0) ** 2
    n_debris = int(rng.poisson(cond.debris_per_mm2 * area_mm2))
    qc["n_debris"] = n_debris
    debris = artefacts.debris_mask(rng, cond.shape, n_debris, cond.pixel_size_um)
    exposure = float(rng.uniform(4.0, 8.0)) if qc["overexposed"] else 1.0
    # The plate's periodic brightfield blotch pattern, shifted and flipped per field.
    mottle = np.roll(cond.mottle, (int(rng.integers(0, h)), int(rng.integers(0, w))), (0, 1))
    mottle = mottle * np.float32(rng.choice([-1.0, 1.0]))

    planes: dict[int, np.ndarray] = {}
    for ci, spec in enumerate(assay.channels):
        sig = canvas[spec.role]
        # In-place arithmetic: these are full-field float32 arrays, allocations cost.
        if spec.channel_type == "brightfield":
            expected = sig + np.float32(1.0)
            expected += mottle[None]
            expected -= np.float32(0.25) * debris[None]
            expected *= (np.float32(spec.level - spec.offset) * cond.bf_illumination)[None]
        else:
            expected = sig * np.float32(spec.level * intensity_scale * exposure)
            expected += np.float32(spec.background)
            expected += np.float32(0.15 * spec.level) * debris[None]
            expected *= cond.vignetting[ci][None]
        planes[ci] = artefacts.camera(
            expected, rng, gain=spec.gain, read_noise=spec.read_noise, offset=spec.offset
        )
    return FieldResult(planes, objects, members, qc)
