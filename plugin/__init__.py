"""QGIS side of sarcoreg: the Processing provider, its algorithms and the worker bridge."""
