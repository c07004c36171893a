"""Bringing an inventory's schema up to date when it is opened (the steps are in
:mod:`scanner.inventory.schema`'s docstring). Apart from ``schema`` so that ``migrate``, which
needs the schema's state and locks, is imported from here alone and only when there is work."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from scanner.inventory.schema import check_schema_version, quick_state

__all__ = ["prepare"]


def prepare(engine: Engine, label: str) -> None:
    """Bring the database to the head revision if that is safe to do unasked (module docstring).

    Raises StoreError for a database newer than this code or one that needs a revision that is
    not additive (``certscan db upgrade``); SQLAlchemy errors propagate.
    """
    with engine.connect() as conn:
        state = quick_state(conn)
    check_schema_version(state, label)
    if state.current:
        return
    from scanner.inventory import migrate  # imports Alembic: only when there is work to do

    migrate.upgrade(engine, label, additive_only=True)
