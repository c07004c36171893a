"""Alembic's environment for the inventory: online only, on a connection handed over by
``scanner.inventory.migrate`` in ``config.attributes["connection"]``.

The caller has already begun the transaction and taken the lock that serialises migrations, so
Alembic joins that transaction (it does not commit: the caller does, once, at the end) and every
revision runs in it. There is no offline (``--sql``) mode: certscan's revisions inspect the
database they run on (the baseline adopts databases written before Alembic).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("certscan migrations run online only (use certscan db upgrade)")
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "certscan migrations need an open connection in config.attributes['connection'] "
            "(run them with certscan db upgrade or scanner.inventory.migrate)"
        )
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


_run()
