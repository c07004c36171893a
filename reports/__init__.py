"""Judging and showing what the inventory holds.

Theory of operation
-------------------
``policy`` reads the thresholds; ``rules`` and ``findings`` are pure functions from one
observation in context (``model``: :class:`EndpointInput`, :class:`Context`) to findings, with
``trust``, ``chain``, ``names`` and ``ciphers`` as their helpers; ``assess`` reads the
inventory, judges every endpoint and records the findings lifecycle; ``output`` builds the
:class:`Report` every format renders; ``render/`` holds one renderer per format behind one
interface; ``destination`` writes a report to a file or stdout. Imports the inventory and the
vocabulary below it, never the sweep, the zones, ``exporters`` or the CLI.
"""
