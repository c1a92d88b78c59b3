"""Network definitions, the model registry (cards) and shipped weight files of sarcoreg.

``load(name_or_path, device="auto")`` returns a patch model (``patch_size``, ``score(a, b)``);
``list_models()`` names the shipped ones. Neither imports torch unless a ``.pt`` file is loaded.
"""

from __future__ import annotations

from .registry import list_models, load

__all__ = ["list_models", "load"]
