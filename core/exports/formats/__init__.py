"""One writer module per output format: ``write(artifacts, path)`` (see :mod:`sarcoreg.core.output_formats`).

The format list names these modules by string; nothing imports this package at module level, so
a writer may use anything of the core (the report's writer uses the correspondence maps).
"""
