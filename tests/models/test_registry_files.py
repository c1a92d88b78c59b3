"""Cards of models made of several weight files (``extra_files``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sarcoreg.models.registry import check_card, list_cards, sha256_of


def _folder_with_two_files(tmp_path: Path, corrupt: bool = False) -> Path:
    (tmp_path / "cards").mkdir()
    a = tmp_path / "net_a.bin"
    b = tmp_path / "net_b.bin"
    a.write_bytes(b"first network")
    b.write_bytes(b"second network")
    card = {
        "name": "two-nets",
        "method": "test",
        "file": "net_a.bin",
        "sha256": sha256_of(a),
        "licence": "GPL-2.0-or-later",
        "extra_files": {"optical": "net_b.bin"},
        "extra_sha256": {"optical": "0" * 64 if corrupt else sha256_of(b)},
    }
    (tmp_path / "cards" / "two-nets.json").write_text(json.dumps(card), encoding="utf-8")
    return tmp_path


def test_extra_files_resolve_and_check(tmp_path: Path) -> None:
    folder = _folder_with_two_files(tmp_path)
    (card,) = list_cards(folder / "cards")
    assert card.file_for("main") == (folder / "net_a.bin").resolve()
    assert card.file_for("optical") == (folder / "net_b.bin").resolve()
    assert set(card.all_files()) == {"main", "optical"}
    assert check_card(card)["ok"]
    with pytest.raises(ValueError, match="no 'sar' file; its files: main, optical"):
        card.file_for("sar")


def test_bad_checksum_of_an_extra_file_is_named(tmp_path: Path) -> None:
    (card,) = list_cards(_folder_with_two_files(tmp_path, corrupt=True) / "cards")
    status = check_card(card)
    assert not status["ok"]
    assert "'optical' file: checksum mismatch" in status["error"]


def test_missing_extra_file_is_named(tmp_path: Path) -> None:
    folder = _folder_with_two_files(tmp_path)
    (folder / "net_b.bin").unlink()
    (card,) = list_cards(folder / "cards")
    assert "missing 'optical' file" in check_card(card)["error"]
