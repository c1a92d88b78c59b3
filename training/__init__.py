"""Training code of sarcoreg (datasets, losses, loops, CLI). Never imported by plugin/ or core/."""
