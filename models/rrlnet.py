"""Old import path of :mod:`sarcoreg.models.nets.rrlnet` (the network moved to ``models/nets/``).

Every name of the network module stays importable from here, so user code and the training
code that import ``sarcoreg.models.rrlnet`` keep working; new code imports ``sarcoreg.models.nets.rrlnet``.
"""

from __future__ import annotations

from typing import Any

from .nets import rrlnet as _impl
from .nets.rrlnet import *  # noqa: F403
from .nets.rrlnet import (
    PATCH_SIZE,  # noqa: F401  (used through this path)
    __all__,  # noqa: F401
)


def __getattr__(name: str) -> Any:
    """Any other name of :mod:`sarcoreg.models.nets.rrlnet` (private helpers included)."""
    return getattr(_impl, name)
