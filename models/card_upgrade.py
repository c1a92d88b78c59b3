"""Rewrite old-layout model cards (``file``, ``sha256``, ``extra_files``, ``extra_sha256``) in the ``files`` layout.

Usage::

    python -m sarcoreg.models.card_upgrade models/cards/*.json           # rewrite in place
    python -m sarcoreg.models.card_upgrade --check models/cards/*.json   # only say which are old

Both layouts are read alike (:func:`sarcoreg.models.card.read_card`), so upgrading is optional;
a rewritten card must read back to the same :class:`~sarcoreg.models.card.ModelCard` (checked
before the file is replaced, atomically). Weight files are never touched.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .card import read_card, typed_layout

__all__ = ["main", "upgrade_card"]


def upgrade_card(path: Path) -> bool:
    """Rewrite one card file in the ``files`` layout; returns whether it changed.

    Raises:
        ValueError: The card does not parse, or the rewritten card would read differently.
    """
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a card (a JSON object)")
    if "files" in raw:
        return False
    before = read_card(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(typed_layout(raw), indent=1) + "\n", encoding="utf-8")
    try:
        if read_card(tmp) != before:
            raise ValueError(f"{path}: the rewritten card reads differently; left unchanged")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`upgrade_card` (exit status 1 with ``--check`` when a card is old)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cards", nargs="+", type=Path)
    p.add_argument("--check", action="store_true", help="change nothing; list the cards in the old layout")
    a = p.parse_args(argv)
    old = 0
    for card in a.cards:
        if a.check:
            if "files" not in json.loads(card.read_text(encoding="utf-8")):
                print(f"{card}: old layout")
                old += 1
        elif upgrade_card(card):
            print(f"{card}: rewritten in the files layout")
    return 1 if old else 0


if __name__ == "__main__":
    raise SystemExit(main())
