"""Reading the pairs of a batch: CSV tables (options as columns) and a reference against a folder / glob."""

from __future__ import annotations

from pathlib import Path

import pytest
from sarcoreg.core.batch.pairs import load_pairs, option_value, pairs_from_csv


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_table_with_ids_and_option_columns(tmp_path: Path) -> None:
    table = _write(tmp_path / "pairs.csv",
                   "reference,target,id,transform,target-bands,radius,no-coarse,method,model,refuse-uncertain\n"
                   "s2.tif,s1/a.tif,jan,shift,1 2,12,yes,,,\n"
                   "s2.tif,s1/b.tif,,,,,,bnn,my-bnn,true\n"
                   ",,,,,,,,,\n")  # a blank line is skipped
    a, b = pairs_from_csv(table, defaults={"transform": "affine", "spacing": 32})
    assert (a.id, a.reference, a.target) == ("jan", str(tmp_path / "s2.tif"), str(tmp_path / "s1" / "a.tif"))
    assert a.options == {"transform": "shift", "spacing": 32, "target_bands": [1, 2], "search_radius": 12,
                         "coarse": False}
    assert b.id == "b"  # from the target's file name
    assert b.options == {"transform": "affine", "spacing": 32, "method": "bnn", "matcher_options": {"model": "my-bnn"},
                         "verdict": {"keep_uncertain": False}}


@pytest.mark.parametrize(("text", "message"), [
    ("reference,image\na.tif,b.tif\n", "needs the columns 'reference' and 'target'"),
    ("reference,target,colour\na.tif,b.tif,red\n", "line 2: unknown option 'colour'; known options:"),
    ("reference,target,spacing\na.tif,b.tif,wide\n", "line 2: option 'spacing' = 'wide' is not a valid int"),
    ("reference,target,transform\na.tif,b.tif,spline\n", "line 2:"),
    ("reference,target,id\na.tif,b.tif,x\na.tif,c.tif,x\n", "two pairs have the id 'x'"),
    ("reference,target\na.tif,\n", "line 2: 'reference' and 'target' must both be given"),
    ("reference,target\n", "no pairs"),
])
def test_bad_tables_are_refused_with_the_line_and_column(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("'", "'")):
        pairs_from_csv(_write(tmp_path / "pairs.csv", text))


def test_reference_against_a_folder_or_a_glob(tmp_path: Path) -> None:
    (tmp_path / "s1").mkdir()
    for name in ("2024-01-03.tif", "2024-01-15.tif", "notes.txt"):
        (tmp_path / "s1" / name).write_bytes(b"")
    ref = tmp_path / "s2.tif"
    ref.write_bytes(b"")
    pairs = load_pairs(tmp_path / "s1", reference=ref, defaults={"transform": "shift"})
    assert [p.id for p in pairs] == ["2024-01-03", "2024-01-15"]  # rasters only, sorted
    assert all(p.reference == str(ref) and p.options == {"transform": "shift"} for p in pairs)
    assert [p.id for p in load_pairs(str(tmp_path / "s1" / "*-15.tif"), reference=ref)] == ["2024-01-15"]
    with pytest.raises(ValueError, match="no target rasters found"):
        load_pairs(str(tmp_path / "none" / "*.tif"), reference=ref)
    with pytest.raises(ValueError, match="give --reference too"):
        load_pairs(tmp_path / "s1")


def test_option_values_name_the_option() -> None:
    assert option_value("expected-error", "30") == ("expected_error_m", 30.0)
    assert option_value("write_outputs", "report_json, report_html") == ("write_outputs", ["report_json",
                                                                                          "report_html"])
    with pytest.raises(ValueError, match="option 'speckle-filter' = 'maybe'"):
        option_value("speckle-filter", "maybe")
