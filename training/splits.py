"""Scene-level held-out splits of the real data sets: scenes that no training run may use.

Every benchmark that reports accuracy on "held-out" data reads its scenes from here, and every
training data loader drops them, so the two can never drift apart.

``s1s2/volkov-1024``: 58 Sentinel-1/2 scenes of 1024 x 1024 px over two Sentinel-2 tiles
(T11SLT, T11SMT). Neighbouring scenes touch, and the two tiles overlap by about 1.7 km, so a
random pick of scenes would leave held-out pixels a few metres from training pixels. The held-out
set is therefore one spatial block: the 12 T11SMT scenes whose upper-left corner lies at least
13.8 scene widths east of scene 003 (World Mercator x >= -13,093,600 m). No training scene
overlaps them (the nearest training scenes end exactly where this block begins).

Pure Python: importable without numpy or torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

__all__ = ["VOLKOV_HELD_OUT", "volkov_is_held_out", "volkov_scene_ids", "volkov_split"]

#: Scene ids of ``s1s2/volkov-1024`` that are never trained on (the eastern T11SMT block).
VOLKOV_HELD_OUT: frozenset[str] = frozenset(
    {"156", "157", "161", "162", "168", "169", "171", "172", "196", "207", "208", "216"}
)


def volkov_is_held_out(scene_id: str) -> bool:
    """True when ``scene_id`` (e.g. ``"156"`` or ``"156.png"``) belongs to the held-out block."""
    return Path(str(scene_id)).stem in VOLKOV_HELD_OUT


def volkov_scene_ids(folder: str | Path) -> list[str]:
    """Every scene id listed in ``folder/index.json``, in file order."""
    entries = json.loads((Path(folder) / "index.json").read_text(encoding="utf-8"))
    return [str(e["id"]) for e in entries]


def volkov_split(ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(training, held_out)`` scene ids, each in the given order."""
    ids = list(ids)
    return ([i for i in ids if not volkov_is_held_out(i)], [i for i in ids if volkov_is_held_out(i)])
