"""Figures and numbers for docs/simulation.md: a simulated field next to a real Phenix field.

Run as ``python docs/simulation_figures.py`` (needs the ``docs`` extra: matplotlib, and the real
sample in ../shared/data/harmony-phenix-v5). Writes PNGs to docs/img/ and prints the table of
statistics the document quotes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from skimage import filters, measure  # noqa: E402

from hcs.synth import artefacts, get_assay  # noqa: E402
from hcs.synth.build import Builder  # noqa: E402
from hcs.synth.field import FieldConditions, simulate_field  # noqa: E402
from hcs.synth.objects import render_object  # noqa: E402
from hcs.synth.plate import draw_field_classes  # noqa: E402
from hcs.synth.shapes import texture_bank  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("HCS_SHARED_DATA", REPO.parent / "shared" / "data"))
IMG = REPO / "docs" / "img"
PX = 0.598


def _conditions(assay: str, size: int, z_um: list[float] | None = None) -> FieldConditions:
    sim = get_assay(assay)
    rng = np.random.default_rng([0, 424242])
    vig = {i: artefacts.flatfield_surface(artefacts.perturbed_coeffs(
        rng, artefacts.PHENIX_HOECHST_COEFFS), (size, size)) for i in range(len(sim.channels))}
    return FieldConditions((size, size), PX, z_um or [0.0], texture_bank(0), vig,
                           artefacts.brightfield_illumination((size, size), (0.005, -0.005)),
                           artefacts.periodic_noise((size, size), 25 / PX, 0.006, rng),
                           defocus_prob=0.0, overexposure_prob=0.0)


def _stats(nuc: np.ndarray, bf: np.ndarray) -> dict[str, float]:
    """Background level, noise (robust sd of horizontal pixel differences / sqrt 2 in the
    background), nucleus equivalent diameters (um) and brightfield level/noise."""
    nuc = nuc.astype(np.float64)
    thr = filters.threshold_otsu(nuc)
    lab = measure.label(filters.gaussian(nuc, 1, preserve_range=True) > thr)
    regions = [r for r in measure.regionprops(lab) if r.area * PX * PX > 20]
    bgmask = lab == 0
    diff = (nuc[:, 1:] - nuc[:, :-1])[bgmask[:, 1:] & bgmask[:, :-1]]
    mad = np.median(np.abs(diff - np.median(diff))) * 1.4826 / np.sqrt(2)
    # The MAD of integer differences is quantised; also give a clipped standard deviation.
    clipped = diff[np.abs(diff) < 5 * mad * np.sqrt(2)]
    bfd = (bf[:, 1:].astype(float) - bf[:, :-1])
    bmad = np.median(np.abs(bfd - np.median(bfd))) * 1.4826 / np.sqrt(2)
    diam = [2 * np.sqrt(r.area / np.pi) * PX for r in regions]
    return {
        "hoechst_background_median": float(np.median(nuc[bgmask])),
        "hoechst_background_p5_p95": [float(v) for v in np.percentile(nuc[bgmask], [5, 95])],
        "hoechst_noise_sd": float(mad),
        "hoechst_noise_sd_clipped": float(clipped.std() / np.sqrt(2)),
        "hoechst_nucleus_mean_intensity_median": float(np.median(
            [nuc[lab == r.label].mean() for r in regions])) if regions else float("nan"),
        "n_nuclei": len(regions),
        "nucleus_diameter_um_median": float(np.median(diam)) if diam else float("nan"),
        "nucleus_diameter_um_range": [float(min(diam)), float(max(diam))] if diam else [],
        "brightfield_median": float(np.median(bf)),
        "brightfield_noise_sd": float(bmad),
    }


def _show(ax, img: np.ndarray, title: str, lo: float = 0.5, hi: float = 99.8) -> None:
    a, b = np.percentile(img, [lo, hi])
    ax.imshow(img, cmap="gray", vmin=a, vmax=b)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def real_vs_sim() -> dict[str, dict[str, float]]:
    src = DATA / "harmony-phenix-v5"
    real_n = tifffile.imread(src / "r01c01f01p01-ch5sk1fk1fl1.tiff")
    real_b = tifffile.imread(src / "r01c01f01p01-ch6sk1fk1fl1.tiff")
    size = real_n.shape[0]
    sim = get_assay("cic")
    cond = _conditions("cic", size)
    rng = np.random.default_rng([0, 1, 1, 0])
    well = {"density": 60.0, **{f"p_{c}": sim.default_freq[c] for c in sim.classes}}
    res = simulate_field(sim, draw_field_classes(well, sim, rng, (size * PX / 1000) ** 2), rng,
                         cond)
    sim_n, sim_b = res.planes[1][0], res.planes[2][0]
    stats = {"real": _stats(real_n, real_b), "simulated": _stats(sim_n, sim_b)}

    fig, axes = plt.subplots(2, 3, figsize=(13, 8.6))
    _show(axes[0, 0], real_n, "real Phenix HOECHST 33342 (r01c01f01)")
    _show(axes[0, 1], sim_n, "simulated HOECHST 33342 (cic, 60 objects/mm$^2$)")
    _show(axes[1, 0], real_b, "real Phenix Brightfield")
    _show(axes[1, 1], sim_b, "simulated Brightfield")
    for ax, (r, s, name) in zip(axes[:, 2], [(real_n, sim_n, "HOECHST 33342"),
                                             (real_b, sim_b, "Brightfield")], strict=True):
        lo = min(r.min(), s.min())
        hi = max(np.percentile(r, 99.99), np.percentile(s, 99.99))
        bins = np.linspace(lo, hi, 200)
        ax.hist(r.ravel(), bins=bins, histtype="step", label="real", log=True)
        ax.hist(s.ravel(), bins=bins, histtype="step", label="simulated", log=True)
        ax.set_title(f"{name}: intensity histogram (counts, log)", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(IMG / "sim_vs_real.png", dpi=80)
    plt.close(fig)

    # Zoomed crops at full resolution, same display window per pair.
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
    for ax, img, t in zip(axes, [real_n[330:630, 250:550], sim_n[400:700, 400:700],
                                 real_b[330:630, 250:550], sim_b[400:700, 400:700]],
                          ["real Hoechst (crop)", "simulated Hoechst (crop)",
                           "real brightfield (crop)", "simulated brightfield (crop)"],
                          strict=True):
        _show(ax, img, t, 0.5, 99.9)
    fig.tight_layout()
    fig.savefig(IMG / "sim_vs_real_crops.png", dpi=80)
    plt.close(fig)
    return stats


def _composite(planes: dict[int, np.ndarray], order: list[int], levels: list[float]
               ) -> np.ndarray:
    """RGB of three channels; the window spans at least half a channel's signal level, so a
    channel without signal stays dark instead of stretching its noise."""
    chans = []
    for ci in order:
        a = planes[ci].astype(np.float64)
        lo, hi = np.percentile(a, [1, 99.7])
        hi = max(hi, lo + 0.5 * levels[ci])
        chans.append(np.clip((a - lo) / (hi - lo + 1e-9), 0, 1))
    while len(chans) < 3:
        chans.append(np.zeros_like(chans[0]))
    return np.stack(chans, -1)


def galleries() -> None:
    """One crop per class per assay, rendered alone at 0.3 um/px for detail."""
    rgb = {  # channel indices shown as R, G, B
        "cic": [0, 2, 1],  # membrane red, brightfield green, nucleus blue (AIM-CICs composite)
        "livedead": [2, 0, 1],  # PI red, brightfield green, Hoechst blue
        "mitosis": [0, 2, 1],
        "cancer": [2, 3, 1],  # cancer dye red, normal dye green, Hoechst blue
    }
    for assay, order in rgb.items():
        sim = get_assay(assay)
        n = len(sim.classes)
        fig, axes = plt.subplots(2, n, figsize=(2.3 * n, 4.9))
        for j, cls in enumerate(sim.classes):
            cond = _conditions(assay, 200)
            cond.pixel_size_um = 0.3
            for k in range(100):  # a draw that lands the object away from the field edge
                rng = np.random.default_rng([5, j, k])
                res = simulate_field(sim, [cls], rng, cond)
                obj = res.objects[0]
                cy, cx = int(obj["y"]), int(obj["x"])
                if 60 <= cy < 140 and 60 <= cx < 140:
                    break
            sl = (slice(cy - 60, cy + 60), slice(cx - 60, cx + 60))
            planes = {ci: p[0][sl] for ci, p in res.planes.items()}
            axes[0, j].imshow(_composite(planes, order, [c.level for c in sim.channels]))
            axes[0, j].set_title(cls.replace("_", " "), fontsize=9)
            bf = [i for i, c in enumerate(sim.channels) if c.role == "brightfield"][0]
            _show(axes[1, j], planes[bf], "brightfield", 0.5, 99.5)
            axes[0, j].axis("off")
        fig.tight_layout()
        fig.savefig(IMG / f"sim_gallery_{assay}.png", dpi=80)
        plt.close(fig)


def mitosis_projections() -> None:
    sim = get_assay("mitosis")
    z = [float(v) for v in np.arange(-9, 9.1, 1.0)]
    fig, axes = plt.subplots(3, 5, figsize=(12, 7.5))
    for j, cls in enumerate(sim.classes):
        rng = np.random.default_rng([3, j])
        obj = sim.generators[cls](Builder(rng, 0.3))
        r = render_object(obj, 50.0, 50.0, sim.roles, z, texture_bank(0), rng)
        dna = r.patches["nucleus"]
        scale = 1.0 / 0.3  # z step 1 um vs 0.3 um pixels: stretch z for display
        for i, (proj, name) in enumerate([(dna.max(0), "xy"), (dna.max(1), "xz"),
                                          (dna.max(2), "yz")]):
            axes[i, j].imshow(proj, cmap="magma", aspect=scale if i else 1.0)
            axes[i, j].set_title(f"{cls.replace('_', ' ')[:22]}\n{name} max projection"
                                 if i == 0 else f"{name} max projection", fontsize=8)
            axes[i, j].axis("off")
    fig.tight_layout()
    fig.savefig(IMG / "sim_mitosis_projections.png", dpi=80)
    plt.close(fig)


def main() -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    stats = real_vs_sim()
    galleries()
    mitosis_projections()
    print(json.dumps(stats, indent=1))


if __name__ == "__main__":
    main()
