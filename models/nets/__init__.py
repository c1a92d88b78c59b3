"""Network definitions (torch modules), apart from the runtime wrappers that run them.

One module per network family:

* :mod:`.rrlnet`: RRL-Net (patch verifier, method ``rrlnet``);
* :mod:`.bnn`: the Bridge Neural Network (two towers, method ``bnn``, also ``bnn-moco`` runs);
* :mod:`.aae`: the dual adversarial auto-encoder (descriptors, method ``aae``);
* :mod:`.unet` and :mod:`.shared`: the U-Net and the SAR / optical transform networks of the
  shared-modality method (``shared``).

The runtime wrappers (:mod:`sarcoreg.models.patch_model`, :mod:`~sarcoreg.models.descriptor_model`,
:mod:`~sarcoreg.models.shared_modality`) run these modules on torch or their exported graphs on ONNX
Runtime; :mod:`sarcoreg.models.loaders` says which network a model card or checkpoint is. The old
import paths (``sarcoreg.models.rrlnet``, ``.bnn``, ``.aae``, ``.shared_nets``) re-export these
modules. This package imports nothing itself: torch comes with the network module that needs it.
"""
