"""An inventory database and its schema: where it is by default, the engine each backend needs,
what state its schema is in, and the transactions that serialise writers and migrations.

Theory of operation
-------------------
The schema is managed by Alembic (``scanner/migrations``, run by ``scanner.inventory.migrate``).
Two facts say what a database holds: the ``alembic_version`` row (the revision), and
``certscan_meta.schema_version``, which certscans older than Alembic read to decide whether they
understand a database (the baseline revision keeps writing 4 there).
:func:`scanner.inventory.connect.prepare` runs on every open:

1. One query reads both facts, changing nothing. A ``schema_version`` newer than this code (or
   not a number) is refused here, before any statement could alter the database.
2. At :data:`~scanner.inventory.migrations.HEAD_REVISION` it stops there: the common case costs one
query
   and never imports Alembic.
3. Otherwise ``scanner.inventory.migrate`` (which imports Alembic) takes a lock that serialises
   concurrent openers -- an advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite -- reads
   both facts again (another opener may have just migrated), refuses a revision it does not know
   (a newer certscan's), and applies the pending revisions in that ONE transaction (DDL is
   transactional on both backends) if every one of them is additive. A revision that is not
   additive is left to ``certscan db upgrade``: an operator decides when older certscans sharing
   the database stop working.

A database written before Alembic (no revision, ``schema_version`` 1 to 4) is adopted by the
baseline revision, which creates what is missing and records revision 0001; so is one whose
``schema_version`` says it is older than the baseline although it has a revision (a hand-made
or restored database): its stale revision is cleared and every revision, each of which skips
what already exists, runs again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import StaticPool

from scanner.errors import StoreError
from scanner.inventory import tables as t
from scanner.inventory.location import default_db_path
from scanner.inventory.migrations import HEAD_REVISION

#: How long SQLite waits for another connection's lock before giving up.
_SQLITE_BUSY_SECONDS = 30.0
#: The pg_advisory_xact_lock key held while a schema is created or migrated.
_LOCK_KEY = int.from_bytes(b"certscan", "big")


# --- Backends ------------------------------------------------------------------------------------


def make_engine(url: URL) -> Engine:
    """An engine for a SQLite or PostgreSQL ``url``, set up as the inventory needs it.

    SQLite: the file's directory is created when it is the default one (else it must exist);
    WAL, ``synchronous=NORMAL`` (a committed transaction survives the process being killed),
    foreign keys on, and connections usable from any one thread at a time (the writer runs in a
    worker thread). PostgreSQL: session time zone UTC, so the driver converts timestamps near
    year 1 or 9999 without overflowing.
    """
    if url.get_backend_name() == "postgresql":
        engine = sa.create_engine(url, pool_pre_ping=True)
        sa.event.listen(engine, "connect", _postgres_session)
        return engine
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in str(url.query)
    if not in_memory and not database.startswith("file:"):
        _sqlite_directory(Path(database))
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_SECONDS},
        poolclass=StaticPool if in_memory else None,
    )
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_directory(path: Path) -> None:
    """Create the default inventory's directory (``$XDG_DATA_HOME/certscan``) when it is missing;
    any other missing directory is an error, as with ``sqlite3``: a typo in ``--db`` must not
    leave a new directory tree behind."""
    parent = path.parent
    if parent.is_dir():
        return
    if parent == default_db_path().parent:
        parent.mkdir(parents=True, exist_ok=True)
        return
    if parent.exists():
        raise NotADirectoryError(f"{parent} is not a directory")
    raise FileNotFoundError(f"directory {parent} does not exist")


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        _sqlite_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA cache_size=-16384")  # up to 16 MiB of pages (default 2)
    finally:
        cursor.close()


def _sqlite_wal(cursor: Any) -> None:
    """Switch the database to WAL (a no-op once it is). Switching takes an exclusive lock, and
    while another connection holds the write lock SQLite answers "locked" at once instead of
    waiting (waiting could deadlock); that happens when several certscans create one file at the
    same time. So: retry, with a short growing pause, for as long as the busy timeout."""
    deadline = time.monotonic() + _SQLITE_BUSY_SECONDS
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _postgres_session(dbapi_connection: Any, _record: object) -> None:
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute("SET TIME ZONE 'UTC'")
    finally:
        dbapi_connection.autocommit = autocommit


# --- Schema state and the open fast path ---------------------------------------------------------

#: The ``schema_version`` the baseline revision records: a database with a lower one was
#: written (or last changed) by a certscan older than Alembic.
BASELINE_SCHEMA_VERSION = 4
_VERSION_TABLE = "alembic_version"
#: Both facts in one round trip; fails when either table is missing (new or pre-Alembic).
_BOTH = sa.text(
    "SELECT 'r', version_num FROM alembic_version UNION ALL "
    "SELECT 'm', value FROM certscan_meta WHERE \"key\" = 'schema_version'"
)


@dataclass(frozen=True)
class SchemaState:
    """What a database says about its schema."""

    #: The ``alembic_version`` rows: one, or none (no table, or downgraded to base).
    revisions: tuple[str, ...]
    #: ``certscan_meta.schema_version`` as stored (None: no row or no table).
    schema_version: str | None

    @property
    def revision(self) -> str | None:
        """The revision, None when there is none (several rows, never written by certscan,
        come back joined, so they are unknown)."""
        return ",".join(self.revisions) if self.revisions else None

    @property
    def legacy(self) -> bool:
        """Written before Alembic: the baseline must adopt it whatever revision it claims."""
        version = self.schema_version
        return self.revision is None or (
            version is not None and version.isdigit() and int(version) < BASELINE_SCHEMA_VERSION
        )

    @property
    def current(self) -> bool:
        return self.revision == HEAD_REVISION and not self.legacy


def head_revision() -> str:
    """The newest revision this certscan knows (no Alembic import)."""
    return HEAD_REVISION


def read_state(conn: Connection) -> SchemaState:
    """Both facts, checking first which tables exist (safe inside a transaction)."""
    inspector = sa.inspect(conn)
    revisions: tuple[str, ...] = ()
    if inspector.has_table(_VERSION_TABLE):
        found = conn.execute(sa.text("SELECT version_num FROM alembic_version"))
        revisions = tuple(sorted(str(r) for r in found.scalars()))
    version = None
    if inspector.has_table(t.META.name):
        version = conn.execute(
            sa.select(t.META.c.value).where(t.META.c.key == "schema_version")
        ).scalar_one_or_none()
    return SchemaState(revisions, version)


def quick_state(conn: Connection) -> SchemaState:
    """:func:`read_state` in one query when both tables exist (the common case)."""
    try:
        rows = conn.execute(_BOTH).all()
    except sa_exc.DBAPIError:  # a table is missing; a real failure repeats below
        conn.rollback()
        return read_state(conn)
    revisions = tuple(sorted(str(value) for kind, value in rows if kind == "r"))
    versions = [str(value) for kind, value in rows if kind == "m"]
    return SchemaState(revisions, versions[0] if versions else None)


def check_schema_version(state: SchemaState, label: str) -> None:
    """Refuse a database that a newer certscan marked as beyond this one (module docstring)."""
    text = state.schema_version
    if text is not None and (not text.isdigit() or int(text) > t.SCHEMA_VERSION):
        raise StoreError(
            f"inventory {label} has schema version {text}, newer than this "
            f"certscan ({t.SCHEMA_VERSION}) understands: upgrade certscan"
        )


def current_revision(engine: Engine) -> str | None:
    """The database's revision (None: none yet, or a database written before Alembic)."""
    with engine.connect() as conn:
        return quick_state(conn).revision


@contextmanager
def exclusive(engine: Engine) -> Iterator[Connection]:
    """One transaction that no other certscan migrating the same database runs at the same
    time: a transaction-scoped advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
            yield conn
        return
    with sqlite_immediate(engine) as conn:
        yield conn


def insert_for(conn: Connection, table: sa.Table) -> Any:
    """An INSERT for ``conn``'s back end that knows ``ON CONFLICT`` (SQLite or PostgreSQL)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return (sqlite if conn.dialect.name == "sqlite" else postgresql).insert(table)


@contextmanager
def sqlite_immediate(engine: Engine) -> Iterator[Connection]:
    """A SQLite transaction that holds the write lock from its start (``BEGIN IMMEDIATE``,
    waiting up to the busy timeout), so that writers queue instead of failing when a read lock
    would have to be upgraded. pysqlite starts transactions lazily and never before DDL, so the
    transaction is driven by hand."""
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with suppress(sa_exc.DBAPIError):  # SQLite may have rolled back already
                conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")


@contextmanager
def read_snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction, so that several SELECTs see one snapshot of the inventory (a sweep
    writing meanwhile cannot make an endpoint show one observation with another's chain).
    SQLite: an explicit ``BEGIN`` (pysqlite runs each SELECT in its own autocommit snapshot
    otherwise; in WAL mode the snapshot is taken at the first read and writers go on).
    PostgreSQL: ``REPEATABLE READ, READ ONLY`` (READ COMMITTED takes one per statement)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN")
            try:
                yield conn
            finally:
                with suppress(sa_exc.DBAPIError):
                    conn.exec_driver_sql("COMMIT")
            return
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            yield conn
