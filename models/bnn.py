"""Old import path of :mod:`sarcoreg.models.nets.bnn` (the network moved to ``models/nets/``).

Every name of the network module stays importable from here, so user code and the training
code that import ``sarcoreg.models.bnn`` keep working; new code imports ``sarcoreg.models.nets.bnn``.
"""

from __future__ import annotations

from typing import Any

from .nets import bnn as _impl
from .nets.bnn import *  # noqa: F403
from .nets.bnn import (
    __all__,  # noqa: F401
    standardise,  # noqa: F401  (used through this path)
)


def __getattr__(name: str) -> Any:
    """Any other name of :mod:`sarcoreg.models.nets.bnn` (private helpers included)."""
    return getattr(_impl, name)
