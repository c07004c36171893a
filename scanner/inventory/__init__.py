"""The inventory: every scan, endpoint, observation, certificate, finding and hook run, in
SQLite (the embedded default) or PostgreSQL. All SQL lives on this floor.

Theory of operation
-------------------
``tables`` declares the SQLModel tables; ``schema`` knows where a database is, the engine
each back end needs and the state of its schema; ``connect`` brings the schema up to date on
open and ``migrate`` runs the Alembic revisions in ``migrations/``. ``store`` is the
:class:`Inventory` facade the upper floors hold; it delegates writing a batch to ``write``,
reads to ``read``, sharded scans to ``shards``, the findings lifecycle to ``findings``, hook
runs to ``hooks`` and the metrics queries to ``metrics``; ``views`` turns scan and shard records
into the JSON the CLI and the API share. Rows are built only from already-validated
dataclasses (``scanner.models``). Must never import ``reports``, the sweep, the CLI or
``exporters``.
"""
