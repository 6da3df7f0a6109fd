"""Per-well counts -> wells.parquet: exclusions, frequencies, composites, flags, layout join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hcs.aggregate import counts_from_cells, join_layout, well_table, write_table
from hcs.assays import get_assay
from hcs.errors import InputError, OutputExistsError
from hcs.plate import PlateGeometry

CIC = get_assay("cic")


def cic_counts() -> pd.DataFrame:
    return pd.DataFrame({
        "plate": ["p1", "p1", "p1"], "well": ["A01", "A02", "B01"],
        "n_partial": [4, 0, 0], "n_one_in_one": [3, 0, 0], "n_two_in_one": [2, 0, 0],
        "n_in_turn": [1, 0, 0], "n_complicated": [0, 0, 0], "n_f_category": [10, 5, 0],
        "n_non_cic": [30, 20, 0]})


def test_frequencies_exclude_f_category_and_composites_follow_the_paper():
    w = well_table(cic_counts(), "cic")
    a = w.set_index("well").loc["A01"]
    assert a["n_detected"] == 50 and a["n_analysed"] == 40
    assert a["freq_partial"] == pytest.approx(4 / 40)
    assert a["freq_non_cic"] == pytest.approx(30 / 40)
    assert a["n_all_cic"] == 10 and a["freq_all_cic"] == pytest.approx(10 / 40)
    assert a["n_completed_cic"] == 6 and a["freq_completed_cic"] == pytest.approx(6 / 40)
    assert "freq_f_category" not in w and a["n_f_category"] == 10
    freq = [f"freq_{c}" for c in CIC.analysed_classes]
    np.testing.assert_allclose(w.loc[w.n_analysed > 0, freq].sum(axis=1), 1.0)


def test_wells_without_cells_are_kept_and_flagged():
    w = well_table(cic_counts(), "cic").set_index("well")
    b = w.loc["B01"]
    assert b["no_cells"] and not b["usable"] and b["flags"] == "no_cells"
    assert np.isnan(b["freq_partial"])
    assert w.loc["A01", "usable"] and w.loc["A01", "flags"] == ""


def test_layout_join_adds_missing_wells_and_flags_unknown_ones():
    layout = pd.DataFrame({"well": ["A01", "A02", "C05"], "condition": ["ctrl", "drug", "drug"],
                           "role": ["negative_control", "sample", "sample"]})
    w = well_table(cic_counts(), "cic", layout=layout).set_index("well")
    assert list(w.index) == ["A01", "A02", "B01", "C05"]
    c5 = w.loc["C05"]
    assert c5["missing"] and c5["no_cells"] and c5["n_detected"] == 0 and c5["condition"] == "drug"
    assert (c5["row"], c5["col"]) == (2, 4) and c5["plate"] == "p1"
    assert w.loc["B01", "not_in_layout"] and pd.isna(w.loc["B01", "condition"])
    assert w.loc["A01", "condition"] == "ctrl" and w.loc["A01", "usable"]
    cols = list(well_table(cic_counts(), "cic", layout=layout).columns)
    assert cols[:6] == ["plate", "well", "row", "col", "n_detected", "n_analysed"]
    assert cols.index("usable") < cols.index("condition")


def test_layout_without_plate_applies_to_every_plate():
    counts = pd.concat([cic_counts().assign(plate=p) for p in ("p1", "p2")], ignore_index=True)
    layout = pd.DataFrame({"well": ["A01"], "condition": ["ctrl"]})
    w = join_layout(well_table(counts, "cic"), layout)
    assert (w.loc[w.well == "A01", "condition"] == "ctrl").all()
    assert len(w) == 6


def test_qc_flags_make_wells_unusable():
    qc = pd.DataFrame({"well": ["A01", "A02"], "plate": ["p1", "p1"], "focus": [True, False]})
    w = well_table(cic_counts(), "cic", qc=qc).set_index("well")
    assert w.loc["A01", "qc_focus"] and not w.loc["A01", "usable"]
    assert w.loc["A01", "flags"] == "qc_focus"
    assert w.loc["A02", "usable"] and not w.loc["B01", "qc_focus"]


def test_counts_from_cells_then_well_table():
    cells = pd.DataFrame({
        "plate": ["p"] * 6, "well": ["A01"] * 4 + ["B2"] * 2,
        "label": ["partial", "non_cic", "f_category", "in_turn", "non_cic", "non_cic"]})
    counts = counts_from_cells(cells, "cic")
    assert counts["well"].tolist() == ["A01", "B02"]
    assert counts[["n_detected", "n_partial", "n_f_category", "n_non_cic"]].values.tolist() == \
        [[4, 1, 1, 1], [2, 0, 0, 2]]
    w = well_table(counts, "cic")
    assert w.loc[0, "freq_all_cic"] == pytest.approx(2 / 3)
    with pytest.raises(InputError, match=r"labels \['mitotic'\] are not classes"):
        counts_from_cells(cells.assign(label="mitotic"), "cic")


def test_bad_counts_tables():
    with pytest.raises(InputError, match="missing columns"):
        well_table(cic_counts().drop(columns="n_in_turn"), "cic")
    with pytest.raises(InputError, match="twice"):
        well_table(pd.concat([cic_counts(), cic_counts()]), "cic")
    with pytest.raises(InputError, match="outside the 2 x 3 plate"):
        well_table(cic_counts().assign(well=["A01", "A02", "C01"]), "cic",
                   geometry=PlateGeometry.from_format(6))
    with pytest.raises(InputError, match="unknown assay"):
        well_table(cic_counts(), "nope")


def test_other_assays():
    counts = pd.DataFrame({"well": ["A01"], "n_non_mitotic": [90], "n_prophase": [4],
                           "n_early_prometaphase": [3], "n_prometaphase_metaphase": [2],
                           "n_anaphase_telophase_cytokinesis": [1]})
    w = well_table(counts, "mitosis")
    assert w.loc[0, "freq_mitotic"] == pytest.approx(0.10)
    ld = well_table(pd.DataFrame({"well": ["A01"], "n_live": [3], "n_dead": [1]}), "livedead")
    assert ld.loc[0, "freq_dead"] == pytest.approx(0.25)


def test_write_table_is_atomic_and_refuses_overwrite(tmp_path):
    w = well_table(cic_counts(), "cic")
    p = write_table(w, tmp_path / "wells.parquet")
    back = pd.read_parquet(p)
    assert back["well"].tolist() == w["well"].tolist()
    with pytest.raises(OutputExistsError):
        write_table(w, p)
    write_table(w.head(1), p, overwrite=True)
    assert len(pd.read_parquet(p)) == 1
    assert [x.name for x in tmp_path.iterdir()] == ["wells.parquet"]


def test_rejoining_a_layout_replaces_all_layout_columns():
    first = pd.DataFrame({"well": ["A01"], "condition": ["old"], "construct": ["x"],
                          "dose": [1.0], "dose_unit": ["uM"]})
    w = well_table(cic_counts(), "cic", layout=first)
    second = pd.DataFrame({"well": ["A01", "A02", "B01"], "condition": ["a", "b", "c"]})
    again = join_layout(w, second).set_index("well")
    assert again.loc["A01", "condition"] == "a" and "construct" not in again
    assert not again["not_in_layout"].any()


def test_join_layout_keeps_the_layout_geometry_without_plate_column():
    import pandas as pd

    from hcs.aggregate import join_layout
    from hcs.plate import PlateGeometry

    wells = pd.DataFrame({"plate": ["p"], "well": ["A01"], "row": [0], "col": [0],
                          "n_analysed": [10], "freq_x": [0.5]})
    layout = pd.DataFrame({"well": ["A01", "A02"], "condition": ["ctrl", "drug"]})
    layout.attrs["geometry"] = PlateGeometry.from_format(384)
    assert join_layout(wells, layout).attrs["geometry"] == PlateGeometry(16, 24)
