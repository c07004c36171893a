"""The inventory's Alembic migrations (``scanner.inventory.migrate`` runs them; see its docstring).

``versions/`` holds the revisions, frozen history: they never import ``scanner.inventory.tables``,
they
spell their tables out. Each revision module has a module-level ``additive`` flag: True when a
certscan that knows only the revisions before it keeps working on a database upgraded past it
(new tables, new nullable columns, new indexes). ``scanner.inventory.connect.prepare`` applies
additive
revisions by itself on open; any other needs ``certscan db upgrade``.

Importing this package is cheap (no Alembic): the open fast path compares the database's
revision with :data:`HEAD_REVISION`, and a test keeps that equal to Alembic's head.

Adding a revision: copy the newest file in ``versions/`` (or render ``script.py.mako``), give
it the next id (``0003``), set ``down_revision``, ``additive``, write ``upgrade`` and
``downgrade`` out explicitly, bump :data:`HEAD_REVISION`, and, when the change is not additive,
also raise ``scanner.inventory.tables.SCHEMA_VERSION`` so that certscans older than Alembic refuse
it.

Alembic logs at INFO while it loads (its plugins) and migrates ("Running upgrade"); that is not
certscan's output (``certscan serve`` logs INFO to stderr, one line per event), so the
``alembic`` logger is set to WARNING here, before certscan first imports Alembic, unless
something configured it already.
"""

from __future__ import annotations

import logging

_ALEMBIC_LOG = logging.getLogger("alembic")
if _ALEMBIC_LOG.level == logging.NOTSET:
    _ALEMBIC_LOG.setLevel(logging.WARNING)

#: The newest revision in ``versions/``.
HEAD_REVISION = "0009_notify"
