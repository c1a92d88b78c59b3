"""Registers the built-in matchers with :mod:`sarcoreg.core.matchers.base`."""

from __future__ import annotations

from .base import register_matcher
from .mutual_info import MutualInfoMatcher
from .ncc import NCCMatcher
from .sift import SiftMatcher
from .structural import StructuralMatcher

for _cls in (NCCMatcher, StructuralMatcher, MutualInfoMatcher, SiftMatcher):
    register_matcher(_cls.name, _cls)


# RRL-Net (issue 4): the module imports only numpy / cv2; the model (ONNX Runtime, or torch for a
# .pt file) is loaded when the matcher first matches.
from .rrlnet import RRLNetMatcher  # noqa: E402

register_matcher(RRLNetMatcher.name, RRLNetMatcher)

# AAE descriptors (issue 7): numpy / cv2 only until the model is loaded on the first match.
from .aae import AAEMatcher  # noqa: E402

register_matcher(AAEMatcher.name, AAEMatcher)

# BNN / MoCo-BNN (issue 6): numpy / cv2 only until the model is loaded on the first match.
from .bnn import BNNMatcher  # noqa: E402

register_matcher(BNNMatcher.name, BNNMatcher)
