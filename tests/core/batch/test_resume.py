"""What a re-run of a batch computes again: recorded failures stand, changed inputs or options run again."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sarcoreg.core.batch import BatchOptions, Pair, run_batch
from sarcoreg.core.batch.folders import record_path


def test_recorded_failures_stand_until_retried_or_changed(batch_cases, tmp_path: Path) -> None:
    bad = batch_cases[-1]  # does not overlap its reference: an error in a few milliseconds
    pair = Pair(bad.id, str(bad.reference), str(bad.target), {"spacing": 24})
    here = BatchOptions(workers=0)
    first = run_batch([pair], tmp_path, here)
    assert (first.computed, first.rows[0]["status"], first.rows[0]["reused"]) == (1, "error", False)
    assert "do not overlap" in first.rows[0]["error"] and record_path(tmp_path, bad.id).is_file()

    again = run_batch([pair], tmp_path, here)
    assert (again.computed, again.reused, again.rows[0]["reused"]) == (0, 1, True)
    assert again.rows[0]["error"] == first.rows[0]["error"]

    assert run_batch([pair], tmp_path, replace(here, retry_failed=True)).computed == 1
    assert run_batch([replace(pair, options={"spacing": 32})], tmp_path, here).computed == 1  # options changed
    Path(bad.target).touch()  # the raster changed (modification time)
    assert run_batch([replace(pair, options={"spacing": 32})], tmp_path, here).computed == 1
    assert run_batch([replace(pair, options={"spacing": 32})], tmp_path, here).computed == 0
