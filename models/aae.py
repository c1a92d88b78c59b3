"""Old import path of :mod:`sarcoreg.models.nets.aae` (the network moved to ``models/nets/``).

Every name of the network module stays importable from here, so user code and the training
code that import ``sarcoreg.models.aae`` keep working; new code imports ``sarcoreg.models.nets.aae``.
"""

from __future__ import annotations

from typing import Any

from .nets import aae as _impl
from .nets.aae import *  # noqa: F403
from .nets.aae import __all__  # noqa: F401


def __getattr__(name: str) -> Any:
    """Any other name of :mod:`sarcoreg.models.nets.aae` (private helpers included)."""
    return getattr(_impl, name)
