import pytest

from hcs.errors import InputError
from hcs.plate import PlateGeometry, parse_well, row_index, row_name, well_name


def test_well_names_round_trip_on_1536():
    g = PlateGeometry.from_format(1536)
    assert (g.rows, g.columns) == (32, 48)
    names = g.wells()
    assert names[0] == "A01" and names[-1] == "AF48" and len(set(names)) == 1536
    for n in names:
        r, c = parse_well(n)
        assert well_name(r, c) == n


def test_parse_variants():
    assert parse_well("a1") == (0, 0)
    assert parse_well("P24") == (15, 23)
    assert parse_well("AA01") == (26, 0)
    assert row_name(26) == "AA" and row_index("AF") == 31


@pytest.mark.parametrize("bad", ["", "1A", "A", "A00", "ABC1", "A-1"])
def test_bad_well_names(bad):
    with pytest.raises(InputError):
        parse_well(bad)


def test_check_well_outside_plate_names_source():
    g = PlateGeometry.from_format(96)
    with pytest.raises(InputError, match="layout.csv line 3: well I01 is outside the 8 x 12"):
        g.check_well("I01", "layout.csv line 3")


def test_scanr_style_well_numbers():
    g96 = PlateGeometry.from_format(96)
    assert g96.well_from_index(14) == (1, 1)  # B2 = W00014 on 96 (real scanR sample)
    assert PlateGeometry.from_format(384).well_from_index(26) == (1, 1)  # B2 = W00026 on 384
    with pytest.raises(InputError, match="well number 97"):
        g96.well_from_index(97)
