"""Old import path of :mod:`sarcoreg.models.nets.shared` (the network moved to ``models/nets/``).

Every name of the network module stays importable from here, so user code and the training
code that import ``sarcoreg.models.shared_nets`` keep working; new code imports ``sarcoreg.models.nets.shared``.
"""

from __future__ import annotations

from typing import Any

from .nets import shared as _impl
from .nets.shared import *  # noqa: F403
from .nets.shared import __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    """Any other name of :mod:`sarcoreg.models.nets.shared` (private helpers included)."""
    return getattr(_impl, name)
