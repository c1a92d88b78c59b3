"""A toy window method for the method-catalog tests: registered through the catalog, nowhere else.

``ToyMatcher`` is a trivial window matcher built from the structural features (six orientations
instead of nine); it counts its calls so a test can tell that the engine really ran it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

from sarcoreg.core.matchers.base import ChipBatch, Matcher, MatchResult
from sarcoreg.core.methods import MethodSpec, register_method, unregister_method

TOY = "toy"


class ToyMatcher(Matcher):
    """Structural features with six orientations, under another name."""

    name: ClassVar[str] = TOY
    description: ClassVar[str] = "toy matcher of the catalog tests"
    calls: ClassVar[int] = 0

    def match(self, chips: ChipBatch) -> MatchResult:
        from sarcoreg.core.matchers.structural import StructuralMatcher

        ToyMatcher.calls += 1
        res = StructuralMatcher(orientations=6).match(chips)
        res.matcher = self.name
        return res


@contextmanager
def toy_method() -> Iterator[MethodSpec]:
    """The toy method in the catalog for the duration of the block."""
    spec = register_method(MethodSpec(TOY, "window", f"{__name__}:ToyMatcher", ToyMatcher.description))
    try:
        yield spec
    finally:
        unregister_method(TOY)
