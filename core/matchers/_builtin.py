"""Registers the built-in matchers with :mod:`sarcoreg.core.matchers.base`."""

from __future__ import annotations

from .base import register_matcher
from .mutual_info import MutualInfoMatcher
from .ncc import NCCMatcher
from .sift import SiftMatcher
from .structural import StructuralMatcher

for _cls in (NCCMatcher, StructuralMatcher, MutualInfoMatcher, SiftMatcher):
    register_matcher(_cls.name, _cls)
