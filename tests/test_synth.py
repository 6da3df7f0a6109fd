"""hcs.synth: determinism, truth vs pixels, export round trip, frequencies vs layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from skimage import filters, measure

from hcs.errors import InputError, OutputExistsError
from hcs.synth import get_assay, simulate_plate
from hcs.synth.build import Builder
from hcs.synth.objects import render_object
from hcs.synth.plate import load_layout, plan_wells
from hcs.synth.shapes import texture_bank

REPO = Path(__file__).resolve().parents[1]
ARHGAP36 = REPO / "plate_layouts" / "arhgap36_truncations.csv"
DOSE = REPO / "plate_layouts" / "livedead_dose_series.csv"


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _layout(tmp: Path, text: str) -> Path:
    p = tmp / "layout.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize("fmt", ["harmony", "scanr"])
def test_same_seed_same_bytes(tmp_path: Path, fmt: str) -> None:
    lay = _layout(tmp_path, "well,condition\nB02,a\nC03,b\n")
    kw = dict(fmt=fmt, fields=2, size=96, progress=False)
    a = simulate_plate(tmp_path / "a", lay, "cic", seed=3, **kw)
    b = simulate_plate(tmp_path / "b", lay, "cic", seed=3, **kw)
    c = simulate_plate(tmp_path / "c", lay, "cic", seed=4, **kw)
    one = simulate_plate(tmp_path / "one", lay, "cic", seed=3, workers=1, **kw)
    da, db, dc = _digest(a.out), _digest(b.out), _digest(c.out)
    assert da == db == _digest(one.out)  # in a pool or in this process: the same bytes
    assert len(da) == 2 * 2 * 3 + 6  # 12 TIFFs + index + 4 truth tables + simulation.json
    tiffs = [k for k in da if k.endswith((".tif", ".tiff"))]
    assert all(da[k] != dc[k] for k in tiffs)


def test_truth_agrees_with_pixels(tmp_path: Path) -> None:
    """On a sparse field a plain Otsu threshold of the Hoechst plane finds the true nuclei."""
    lay = _layout(
        tmp_path,
        "well,condition,sim_density,sim_freq_non_cic,sim_freq_one_in_one\nB02,a,150,0.8,0.2\n",
    )
    res = simulate_plate(tmp_path / "s", lay, "cic", fmt="scanr", fields=3, size=768,
                         seed=1, progress=False)
    from hcs.io.scanr import read_scanr

    acq = read_scanr(res.export, plate_format=96)
    cells = pd.read_parquet(res.cells)
    members = pd.read_parquet(res.out / "truth" / "members.parquet")
    nuc_ch = [c.name for c in acq.channels].index("HOECHST 33342")
    from hcs.io.acquisition import read_plane

    qc = pd.read_parquet(res.out / "truth" / "fields.parquet")
    clean = qc[~qc["defocused"] & ~qc["overexposed"]]["field"].tolist()
    assert len(clean) >= 2
    total_true = total_found = 0
    hits = n_members = 0
    for f in clean:
        rec = acq.planes[(acq.planes["field"] == f) & (acq.planes["channel"] == nuc_ch)].iloc[0]
        img = read_plane(rec["path"], int(rec["page"])).astype(np.float64)
        lab = measure.label(img > filters.threshold_otsu(img))
        regions = [r for r in measure.regionprops(lab) if r.area >= 20]
        true_n = int(cells.loc[cells["field"] == f, "n_nuclei"].sum())
        total_true += true_n
        total_found += len(regions)
        # Every true nucleus has a thresholded object whose centroid is within 1.5 px of the
        # truth (centroids, not pixel lookups: a crescent's centroid lies outside it).
        found = np.array([r.centroid for r in regions])
        m = members[members["field"] == f]
        for y, x in zip(m["nucleus_y"], m["nucleus_x"], strict=True):
            n_members += 1
            hits += np.hypot(found[:, 0] - y, found[:, 1] - x).min() <= 1.5
    assert total_true > 60
    assert abs(total_found - total_true) <= 0.05 * total_true
    assert hits >= 0.97 * n_members


def test_bbox_and_classes(tmp_path: Path) -> None:
    lay = _layout(tmp_path, "well,condition\nB02,a\n")
    res = simulate_plate(tmp_path / "s", lay, "cic", fmt="scanr", fields=1, size=256,
                         seed=2, progress=False)
    cells = pd.read_parquet(res.cells)
    assert set(cells["class"]) <= set(get_assay("cic").classes)
    assert (cells["bbox_x0"] < cells["bbox_x1"]).all()
    assert (cells["bbox_y0"] < cells["bbox_y1"]).all()
    inside = cells[~cells["touches_border"]]
    assert ((inside["bbox_x0"] <= inside["x"]) & (inside["x"] <= inside["bbox_x1"])).all()
    n_members = cells["members"].str.split(";").map(len)
    assert (n_members == cells["n_members"]).all()


def test_export_round_trips_through_convert(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hcs.cli import app

    lay = _layout(tmp_path, "well,condition\nB02,a\nB03,a\n")
    runner = CliRunner()
    r = runner.invoke(app, ["simulate", str(tmp_path / "s"), "--layout", str(lay), "--assay",
                            "mitosis", "--fields", "2", "--size", "64", "--z-planes", "3", "-q"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["convert", str(tmp_path / "s" / "export"),
                            str(tmp_path / "p.ome.zarr")])
    assert r.exit_code == 0, r.output
    from hcs.io.harmony import read_harmony
    from hcs.io.omezarr import open_plate

    plate = open_plate(tmp_path / "p.ome.zarr")
    acq = read_harmony(tmp_path / "s" / "export")
    arr = np.asarray(plate.field("B02", 1))
    assert arr.shape == (1, 3, 3, 64, 64)
    pl = acq.planes
    row = pl[(pl["row"] == 1) & (pl["col"] == 1) & (pl["field"] == 1) & (pl["z"] == 2)
             & (pl["channel"] == 1)].iloc[0]
    from hcs.io.acquisition import read_plane

    np.testing.assert_array_equal(arr[0, 1, 2], read_plane(row["path"], int(row["page"])))
    assert [c.name for c in acq.channels] == ["CellMask Deep Red", "HOECHST 33342", "Brightfield"]
    assert acq.pixel_size_um == pytest.approx((0.598, 0.598))
    assert acq.channels[1].flatfield["Background"]["Profile"]["Type"] == "Polynomial"


def test_existing_output_and_bad_input(tmp_path: Path) -> None:
    lay = _layout(tmp_path, "well,condition\nB02,a\n")
    simulate_plate(tmp_path / "s", lay, "livedead", fmt="scanr", fields=1, size=64,
                   progress=False)
    with pytest.raises(OutputExistsError):
        simulate_plate(tmp_path / "s", lay, "livedead", fmt="scanr", fields=1, size=64,
                       progress=False)
    with pytest.raises(InputError, match="unknown assay"):
        simulate_plate(tmp_path / "t", lay, "nope", progress=False)
    bad = _layout(tmp_path, "well,condition,sim_freq_zombie\nB02,a,0.5\n")
    with pytest.raises(InputError, match="sim_freq_zombie"):
        simulate_plate(tmp_path / "t", bad, "livedead", progress=False)
    assert not (tmp_path / "t").exists()
    neg = _layout(tmp_path, "well,condition,sim_density\nB02,a,-3\n")
    with pytest.raises(InputError, match=r"layout.csv:2: sim_density of well B02"):
        simulate_plate(tmp_path / "t", neg, "livedead", progress=False)


def test_wells_truth_counts_and_frequencies(tmp_path: Path) -> None:
    res = simulate_plate(tmp_path / "s", ARHGAP36, "cic", fmt="scanr", fields=1, size=256,
                         wells_per_condition=2, progress=False)
    wells = pd.read_parquet(res.wells)
    cells = pd.read_parquet(res.cells)
    assert len(wells) == 8 and set(wells["condition"]) == {
        "control", "ARHGAP36 1-194", "ARHGAP36 118-194", "ARHGAP36 195-395"}
    for rec in wells.to_dict("records"):
        sub = cells[cells["well"] == rec["well"]]
        assert rec["n_total"] == len(sub)
        assert rec["n_f_category"] == int((sub["class"] == "f_category").sum())
        assert rec["n_analysed"] == rec["n_total"] - rec["n_f_category"]
        n_partial = int((sub["class"] == "partial").sum())
        assert rec["freq_partial"] == pytest.approx(n_partial / rec["n_analysed"])
    assert "freq_f_category" not in wells
    assert {"construct", "replicate", "role", "sim_density"} <= set(wells.columns)


def test_replicate_wells_follow_condition() -> None:
    """Well probabilities scatter around the condition's (beta-binomial replicate spread)."""
    lay = load_layout(DOSE)
    plan = plan_wells(lay, get_assay("livedead"), seed=0)
    dmso = plan[plan["condition"] == "DMSO"]
    assert len(dmso) == 6
    assert dmso["p_dead"].std() > 0
    # Over many draws the well mean converges on the condition value; rho=0.005 -> sd ~0.017.
    many = pd.concat([plan_wells(lay, get_assay("livedead"), seed=s) for s in range(40)])
    by = many.groupby("condition")[["p_dead", "cond_p_dead"]].mean()
    np.testing.assert_allclose(by["p_dead"], by["cond_p_dead"], atol=0.01)
    sd = many[many["condition"] == "DMSO"]["p_dead"].std()
    assert 0.008 < sd < 0.03


def test_plate_layouts_encode_the_paper() -> None:
    lay = load_layout(ARHGAP36)
    assert len(lay) == 96 and lay.groupby("condition").size().eq(24).all()
    plan = plan_wells(lay, get_assay("cic"), seed=0).groupby("condition").first()
    subtypes = ["partial", "one_in_one", "two_in_one", "in_turn", "complicated"]
    total = plan[[f"cond_p_{c}" for c in subtypes]].sum(axis=1)
    completed = total - plan["cond_p_partial"]
    ctl = "control"
    for t in ("ARHGAP36 1-194", "ARHGAP36 118-194", "ARHGAP36 195-395"):
        assert total[t] < 0.8 * total[ctl]
    assert plan.loc["ARHGAP36 1-194", "cond_p_partial"] == pytest.approx(
        plan.loc[ctl, "cond_p_partial"], rel=0.1)
    for t in ("ARHGAP36 118-194", "ARHGAP36 195-395"):
        assert completed[t] / total[t] > completed[ctl] / total[ctl] + 0.05
    for c in ("two_in_one", "in_turn"):
        assert plan.loc["ARHGAP36 195-395", f"cond_p_{c}"] < 0.6 * plan.loc[ctl, f"cond_p_{c}"]
    dose = load_layout(DOSE)
    doxo = dose[dose["construct"] == "doxorubicin"]
    assert doxo["dose"].nunique() == 8 and doxo.groupby("dose").size().eq(3).all()
    assert set(dose["role"]) == {"sample", "negative_control", "positive_control"}
    dead = doxo.groupby("dose")["sim_freq_dead"].first().astype(float)
    assert dead.is_monotonic_increasing and dead.iloc[-1] > 5 * dead.iloc[0]


def _render_one(cls: str, assay: str, pixel_size_um: float, z_um: list[float]):
    sim = get_assay(assay)
    rng = np.random.default_rng(7)
    obj = sim.generators[cls](Builder(rng, pixel_size_um))
    return obj, render_object(obj, 100.0, 100.0, sim.roles, z_um, texture_bank(0, 64), rng)


def test_sizes_scale_with_pixel_size() -> None:
    _, fine = _render_one("non_cic", "cic", 0.3, [0.0])
    _, coarse = _render_one("non_cic", "cic", 0.6, [0.0])
    ratio = fine.members[0]["nucleus_area_px"] / coarse.members[0]["nucleus_area_px"]
    assert ratio == pytest.approx(4.0, rel=0.08)
    area_um2 = coarse.members[0]["nucleus_area_px"] * 0.36
    assert 50 < area_um2 < 400  # MCF10A-like nuclei: 8-22 um across


def test_mitosis_projections_differ() -> None:
    """Interphase nuclei are flat; a metaphase plate is as tall as it is long."""
    z = [float(v) for v in np.arange(-8, 8.1, 1.0)]

    def z_extent(cls: str) -> int:
        _, r = _render_one(cls, "mitosis", 0.3, z)
        dna = r.patches["nucleus"]  # (z, y, x)
        profile = dna.max(axis=(1, 2))
        return int((profile > 0.3 * profile.max()).sum())

    assert z_extent("non_mitotic") <= 6
    assert z_extent("prometaphase_metaphase") >= 8
    _, meta = _render_one("prometaphase_metaphase", "mitosis", 0.3, z)
    dna = meta.patches["nucleus"]
    xy, xz = dna.max(axis=0), dna.max(axis=1)
    assert not np.allclose(xy.sum(axis=0), xz.sum(axis=0) * dna.shape[1] / dna.shape[0])


def test_dead_cells_look_dead() -> None:
    _, live = _render_one("live", "livedead", 0.6, [0.0])
    _, dead = _render_one("dead", "livedead", 0.6, [0.0])
    assert dead.patches["dead"].max() > 5 * live.patches["dead"].max()
    assert dead.patches["brightfield"].min() < live.patches["brightfield"].min()
    live_area = (live.patches["nucleus"] > 0.3).sum()
    dead_area = (dead.patches["nucleus"] > 0.3).sum()
    assert dead_area < live_area


def test_well_frequencies_follow_conditions(tmp_path: Path) -> None:
    lay = _layout(
        tmp_path,
        "well,condition,sim_density,sim_freq_live,sim_freq_dead\n"
        "B02,low,2500,0.9,0.1\nB03,low,2500,0.9,0.1\n"
        "C02,high,2500,0.3,0.7\nC03,high,2500,0.3,0.7\n",
    )
    res = simulate_plate(tmp_path / "s", lay, "livedead", fmt="scanr", fields=2, size=224,
                         progress=False, workers=1)
    wells = pd.read_parquet(res.wells)
    for rec in wells.to_dict("records"):
        n, p = rec["n_analysed"], rec["expected_freq_dead"]
        assert n > 60
        assert abs(rec["freq_dead"] - p) < 4 * np.sqrt(p * (1 - p) / n) + 0.05
    by = wells.groupby("condition")["freq_dead"].mean()
    assert by["high"] - by["low"] > 0.4


def test_flatfield_in_export_matches_vignetting(tmp_path: Path) -> None:
    """The FlatfieldProfile the export carries, evaluated by the reader, is the surface that
    shaded the pixels: dividing the background by it leaves it flat."""
    from hcs.io.flatfield import flatfield_surface
    from hcs.io.harmony import read_harmony

    lay = _layout(tmp_path, "well,condition,sim_density\nB02,a,0\n")
    res = simulate_plate(tmp_path / "s", lay, "livedead", fmt="harmony", fields=1, size=256,
                         progress=False, workers=1)
    acq = read_harmony(res.export)
    ch = [c.name for c in acq.channels].index("HOECHST 33342")
    surf = flatfield_surface(acq.channels[ch].flatfield, "Background", (256, 256))
    assert 1.1 < surf[128, 128] < 1.45 and surf[0, 0] < 0.8
    from hcs.io.acquisition import read_plane

    rec = acq.planes[acq.planes["channel"] == ch].iloc[0]
    img = read_plane(rec["path"]).astype(np.float64) - 100.0  # camera offset
    raw_cv = img.std() / img.mean()
    flat = img / surf
    assert flat.std() / flat.mean() < 0.5 * raw_cv
    assert acq.channels[[c.name for c in acq.channels].index("Brightfield")].flatfield[
        "Background"]["Profile"]["Type"] == "Identity"


def test_field_artefacts() -> None:
    from hcs.synth import artefacts
    from hcs.synth.field import FieldConditions, simulate_field

    sim = get_assay("cic")
    size = 192
    vig = {i: artefacts.flatfield_surface(artefacts.PHENIX_HOECHST_COEFFS, (size, size))
           for i in range(3)}

    def run(**kw):
        cond = FieldConditions((size, size), 0.598, [0.0], texture_bank(0, 64), vig,
                               artefacts.brightfield_illumination((size, size), (0, 0)),
                               np.zeros((size, size), np.float32), **kw)
        return simulate_field(sim, ["non_cic"] * 12, np.random.default_rng(1), cond)

    normal = run(defocus_prob=0.0, overexposure_prob=0.0)
    over = run(defocus_prob=0.0, overexposure_prob=1.0)
    blur = run(defocus_prob=1.0, overexposure_prob=0.0)
    assert over.qc["overexposed"] and blur.qc["defocused"]
    assert normal.planes[1].max() < 65535 and over.planes[1].max() == 65535

    def sharpness(a: np.ndarray) -> float:
        a = a[0].astype(np.float64)
        return float(np.abs(np.diff(a, axis=1)).mean())

    # Same objects, same positions; the blurred field has much weaker edges.
    assert [o["class"] for o in blur.objects] == [o["class"] for o in normal.objects]
    assert sharpness(blur.planes[1]) < 0.8 * sharpness(normal.planes[1])


def test_harmony_v7_and_zstack_export(tmp_path: Path) -> None:
    from hcs.io.harmony import read_harmony

    lay = _layout(tmp_path, "well,condition\nB02,a\n")
    res = simulate_plate(tmp_path / "s", lay, "cancer", fmt="harmony", schema="v7", fields=2,
                         size=64, z_planes=3, z_step_um=2.0, progress=False, workers=1)
    assert res.index_file.name == "Index.xml"
    acq = read_harmony(res.export)
    assert acq.size_z == 3 and acq.n_fields == 2 and acq.size_c == 4
    assert acq.z_step_um == pytest.approx(2.0)
    assert len(acq.planes) == res.n_planes == 2 * 3 * 4
    assert acq.missing_planes().empty


def test_pi_separates_live_from_dead() -> None:
    """The PI channel labels cells as DESIGN.md's GMM rule expects: dead cells are PI-bright."""
    from hcs.synth import artefacts
    from hcs.synth.field import FieldConditions, simulate_field

    sim = get_assay("livedead")
    size = 384
    vig = {i: np.ones((size, size), np.float32) for i in range(3)}
    cond = FieldConditions((size, size), 0.598, [0.0], texture_bank(0, 64), vig,
                           artefacts.brightfield_illumination((size, size), (0, 0)),
                           np.zeros((size, size), np.float32), defocus_prob=0.0,
                           overexposure_prob=0.0)
    rng = np.random.default_rng(4)
    classes = list(rng.choice(["live", "dead"], size=60, p=[0.7, 0.3]))
    res = simulate_field(sim, classes, rng, cond)
    pi = res.planes[2][0].astype(np.float64)
    score = {"live": [], "dead": []}
    for o in res.objects:
        y, x = int(round(o["nucleus_y"])), int(round(o["nucleus_x"]))
        score[o["class"]].append(pi[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3].mean())
    live, dead = np.array(score["live"]), np.array(score["dead"])
    auc = (dead[:, None] > live[None, :]).mean()
    assert len(dead) > 8 and auc > 0.95


def test_simulated_classes_match_the_assay_registry():
    """The simulator labels cells with exactly the classes hcs.assays declares."""
    from hcs.assays import get_assay
    from hcs.synth.assays import ASSAYS as SIM_ASSAYS

    for name, spec in SIM_ASSAYS.items():
        reg = get_assay(name)
        assert set(spec.classes) == set(reg.classes), name
        assert set(spec.excluded) == set(reg.excluded), name
