"""Layout files: tidy CSV, plate-map grid, Harmony XML, drug_layout.csv; errors name the line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hcs.errors import InputError
from hcs.layouts import LAYOUT_COLUMNS, detect_format, read_layout, require_roles
from hcs.plate import PlateGeometry

EXAMPLES = Path(__file__).resolve().parents[1] / "plate_layouts"
P96 = PlateGeometry.from_format(96)


def write(tmp_path: Path, text: str, name: str = "layout.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_tidy_csv(tmp_path):
    p = write(tmp_path, "well,condition,construct,dose,dose_unit,replicate,role,cell_line\n"
              "A01,ctrl,vector,,,1,negative_control,MCF10A\n"
              "a2,drug 1uM,drug,1,uM,1,,MCF10A\n"
              "H12,drug 2uM,drug,2.5,uM,2,sample,MCF10A\n")
    df = read_layout(p, P96)
    assert list(df.columns) == LAYOUT_COLUMNS + ["cell_line"]
    assert df["well"].tolist() == ["A01", "A02", "H12"]
    assert df[["row", "col"]].to_numpy().tolist() == [[0, 0], [0, 1], [7, 11]]
    assert df["role"].tolist() == ["negative_control", "sample", "sample"]
    np.testing.assert_array_equal(df["dose"].to_numpy(), [np.nan, 1.0, 2.5])
    assert df["replicate"].tolist() == [1, 1, 2]
    assert df.attrs["lines"] == {"A01": 2, "A02": 3, "H12": 4}
    assert df.attrs["geometry"] == (8, 12)


def test_tidy_defaults_semicolons_and_comments(tmp_path):
    p = write(tmp_path, "# a comment\nWell;Compound;Concentration [nM]\nB02;taxol;10\n"
              "B03;taxol;10\nB04;taxol;100\nB05;;\n")
    df = read_layout(p)
    assert df["condition"].tolist()[:3] == ["taxol 10 nM", "taxol 10 nM", "taxol 100 nM"]
    assert df["dose_unit"].tolist()[:3] == ["nM"] * 3
    assert df["replicate"].tolist()[:3] == [1, 2, 1]  # numbered per condition
    assert df["role"].tolist() == ["sample", "sample", "sample", "empty"]
    assert df.attrs["lines"]["B02"] == 3


def test_multi_plate_tidy(tmp_path):
    p = write(tmp_path, "plate,well,condition\nP1,A01,x\nP2,A01,y\n")
    df = read_layout(p)
    assert df.columns[0] == "plate" and df["condition"].tolist() == ["x", "y"]
    with pytest.raises(InputError, match=r"layout.csv:3: well A01 is listed twice"):
        read_layout(write(tmp_path, "plate,well,condition\nP1,A01,x\nP1,A01,y\n"))


@pytest.mark.parametrize("text,message", [
    ("well,condition\nA01,x\nA1,y\n", r"layout.csv:3: well A01 is listed twice \(first at .*:2\)"),
    ("well,condition\nA01,x\nZ3,y\n", r"layout.csv:3: well Z03 is outside the 8 x 12 plate"),
    ("well,condition\nA01,x\n1A,y\n", r"layout.csv:3: not a well name: '1A'"),
    ("well,condition,dose\nA01,x,\nA02,y,3\n", r"layout.csv:3: well A02 has a dose \(3\) but no"),
    ("well,condition,dose,dose_unit\nA01,x,lots,uM\n", r"layout.csv:2: dose 'lots'"),
    ("well,condition,role\nA01,x,ctl\n", r"layout.csv:2: unknown role 'ctl'"),
    ("well,condition\nA01,x,extra\n", r"layout.csv:2: 3 fields, but the header"),
    ("well,condition,replicate\nA01,x,first\n", r"layout.csv:2: replicate 'first'"),
    ("foo,bar\n1,2\n", r"layout.csv:1: cannot tell the layout format"),
])
def test_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        read_layout(write(tmp_path, text), P96)


def test_grid_layout(tmp_path):
    p = write(tmp_path, "condition,1,2,3\nA,ctrl,ctrl,drug\nB,ctrl,,drug\n\n"
              "dose (uM),1,2,3\nA,,,1\nB,,,2\n\nrole,1,2,3\nA,neg,neg,\nB,neg,,\n")
    assert detect_format(p) == "grid"
    df = read_layout(p, P96)
    assert df["well"].tolist() == ["A01", "A02", "A03", "B01", "B03"]
    assert df["condition"].tolist() == ["ctrl", "ctrl", "drug", "ctrl", "drug"]
    assert df.loc[df.well == "B03", ["dose", "dose_unit"]].values.tolist() == [[2.0, "uM"]]
    assert df["role"].tolist() == ["negative_control"] * 2 + ["sample"] + \
        ["negative_control", "sample"]
    bad = write(tmp_path, "condition,1,2\nA,x,y\nQ,x,y\n", "bad.csv")
    with pytest.raises(InputError, match=r"bad.csv:3: well Q01 is outside"):
        read_layout(bad, P96)
    bad = write(tmp_path, "condition,1,2\nA,x,y\n7,x,y\n", "bad2.csv")
    with pytest.raises(InputError, match=r"bad2.csv:3: expected a row letter"):
        read_layout(bad, P96)


def test_shipped_examples_parse():
    tidy = read_layout(EXAMPLES / "example_tidy.csv", P96)
    assert set(tidy["condition"].dropna()) == {"control vector", "ARHGAP36 1-194",
                                               "ARHGAP36 118-194", "ARHGAP36 195-395"}
    assert (tidy.groupby("condition")["well"].count() == 6).all()
    grid = read_layout(EXAMPLES / "example_grid.csv", P96)
    assert len(grid) == 96 and grid["dose"].notna().sum() == 88
    series = grid[grid.construct == "compound X"]
    assert series["dose"].nunique() == 10 and set(series["dose_unit"]) == {"uM"}
    require_roles(grid, ["negative_control", "positive_control"], "Z'")
    with pytest.raises(InputError, match="example_tidy.csv: Z' needs wells with role"):
        require_roles(tidy, ["positive_control"], "Z'")


def test_real_harmony_assay_layout(operetta_cls):
    xml = operetta_cls / "Assaylayout" / "Unnamed.xml"
    df = read_layout(xml)
    assert df.attrs["format"] == "harmony_xml" and df.attrs["geometry"] == (16, 24)
    assert len(df) == 96  # the file lists rows A-D of the 384-well plate
    assert df["well"].iloc[0] == "A01" and df["well"].iloc[-1] == "D24"
    assert df["construct"].isna().all() and (df["role"] == "empty").all()  # "Compound" left blank
    with pytest.raises(InputError, match="layout is for a 16 x 24 plate"):
        read_layout(xml, P96)


def test_harmony_layers_with_values(tmp_path):
    xml = ('<?xml version="1.0" encoding="utf-8"?><AssayLayout xmlns="http://www.perkinelmer.com/'
           'PEHH/HarmonyV5"><PlateCols>12</PlateCols><PlateRows>8</PlateRows>'
           '<Layer><Name>Compound</Name><ValueType>string</ValueType>'
           '<Well><Row>1</Row><Col>1</Col><Value>DMSO</Value></Well>'
           '<Well><Row>1</Row><Col>2</Col><Value>taxol</Value></Well></Layer>'
           '<Layer><Name>Concentration</Name><ValueType>double</ValueType><Unit>nM</Unit>'
           '<Well><Row>1</Row><Col>2</Col><Value>5</Value></Well></Layer>'
           '<Layer><Name>Cell Line</Name><ValueType>string</ValueType>'
           '<Well><Row>1</Row><Col>2</Col><Value>HeLa</Value></Well></Layer></AssayLayout>')
    df = read_layout(write(tmp_path, xml, "l.xml"))
    assert df["condition"].tolist() == ["DMSO", "taxol 5 nM"]
    assert df["cell_line"].tolist()[1] == "HeLa" and df["dose_unit"].tolist()[1] == "nM"
    bad = xml.replace("<Row>1</Row><Col>2</Col><Value>5", "<Row>9</Row><Col>2</Col><Value>5")
    with pytest.raises(InputError, match=r"l2.xml: layer 'Concentration': well I02 is outside"):
        read_layout(write(tmp_path, bad, "l2.xml"))


def test_real_drug_layout(operetta_cls):
    df = read_layout(operetta_cls / "drug_layout.csv", PlateGeometry.from_format(384))
    assert df.attrs["format"] == "rowcol"
    row = df.iloc[0]
    assert (row["well"], row["row"], row["col"]) == ("C03", 2, 2)
    assert (row["construct"], row["dose"], row["dose_unit"]) == ("DMSO", 0.125, "%")
    assert row["condition"] == "DMSO 0.125 %" and row["role"] == "sample"


def test_missing_file_and_empty(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_layout(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="empty"):
        read_layout(write(tmp_path, "\n"))
    with pytest.raises(InputError, match="lists no wells"):
        read_layout(write(tmp_path, "well,condition\n", "hdr.csv"))


def test_layout_check_cli(tmp_path):
    from typer.testing import CliRunner

    from hcs.cli import app

    res = CliRunner().invoke(app, ["layout", "check", str(EXAMPLES / "example_grid.csv"),
                                   "--plate-format", "96", "--require-controls"])
    assert res.exit_code == 0, res.output
    assert "96 wells on a 8 x 12 plate" in res.output and "DMSO (negative_control)" in res.output
    res = CliRunner().invoke(app, ["layout", "check", str(EXAMPLES / "example_tidy.csv"),
                                   "--plate-format", "6"])
    assert res.exit_code == 2 and "outside the 2 x 3 plate" in res.output


def test_layout_is_a_dataframe_for_other_tools(tmp_path):
    # the simulator writes tidy CSVs and reads them back with read_layout
    layout = pd.DataFrame({"well": ["A01", "A02"], "condition": ["c", "d"], "construct": ["c", "d"],
                           "dose": [np.nan, 1.0], "dose_unit": [None, "uM"],
                           "replicate": [1, 1], "role": ["negative_control", "sample"]})
    p = tmp_path / "sim.csv"
    layout.to_csv(p, index=False)
    back = read_layout(p)
    assert back[["well", "condition", "role"]].astype(str).values.tolist() == \
        layout[["well", "condition", "role"]].values.tolist()
