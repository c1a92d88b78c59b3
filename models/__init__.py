"""Network definitions, the model registry (cards) and shipped weight files of sarcoreg."""
