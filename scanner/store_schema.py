"""Opening an inventory database: where it is by default, the engine each backend needs,
schema creation, and the additive migration of databases written by an older certscan.

Theory of operation
-------------------
``certscan_meta.schema_version`` says which schema a database holds (``scanner.tables``
lists what each version added). :func:`prepare` runs on every open:

1. It reads the version without changing anything. A version newer than this code (or one that
   is not a number) is refused before any statement could alter the database.
2. At the current version it stops there: the common case costs one query.
3. Otherwise (a new, empty database is version 0) it takes a lock that serialises concurrent
   openers -- a transaction-scoped advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite --
   reads the version again (another opener may have just migrated), and in that ONE transaction
   (DDL is transactional on both backends) creates the missing tables and indexes with
   ``CREATE .. IF NOT EXISTS`` (indexes are not reflected: SQLAlchemy cannot read expression
   indexes), adds every column the code declares but the database lacks (``ALTER TABLE .. ADD
   COLUMN``), runs the data steps of the versions in between, and records the new version.

Every step checks what exists first, so a migration that dies half way (it cannot: it is one
transaction, but a hand-edited database might look like one) is finished by the next open.
Only additive changes can be made this way, and only nullable columns can be added to existing
rows; a rename or a type change would need a real migration step.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.schema import CreateColumn, CreateIndex, CreateTable

from scanner import tables as t
from scanner.errors import StoreError
from scanner.models import STATUS_CLIENT_CERT_REQUIRED, STATUS_OK

#: ``scheme://``: a value of ``--db`` that is a URL rather than a file path.
URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
#: How long SQLite waits for another connection's lock before giving up.
_SQLITE_BUSY_SECONDS = 30.0
#: The pg_advisory_xact_lock key held while a schema is created or migrated.
_LOCK_KEY = int.from_bytes(b"certscan", "big")


# --- Locations ---------------------------------------------------------------------------------


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/certscan/inventory.db`` (XDG default: ``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return root / "certscan" / "inventory.db"


def db_url(value: str | None) -> str:
    """A SQLAlchemy URL for ``--db``/``CERTSCAN_DB``: None or '' -> the default SQLite file; a
    URL (``scheme://...``) passes through; anything else is a file path for SQLite."""
    if not value:
        path = default_db_path()
    elif URL_SCHEME.match(value):
        return value
    else:
        path = Path(value).expanduser().absolute()
    return sa.URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


# --- Backends ------------------------------------------------------------------------------------


def make_engine(url: URL) -> Engine:
    """An engine for a SQLite or PostgreSQL ``url``, set up as the inventory needs it.

    SQLite: the file's directory is created; WAL, ``synchronous=NORMAL`` (a committed
    transaction survives the process being killed), foreign keys on, and connections usable from
    any one thread at a time (the writer runs in a worker thread). PostgreSQL: session time zone
    UTC, so the driver converts timestamps near year 1 or 9999 without overflowing.
    """
    if url.get_backend_name() == "postgresql":
        engine = sa.create_engine(url, pool_pre_ping=True)
        sa.event.listen(engine, "connect", _postgres_session)
        return engine
    database = url.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in str(url.query)
    if not in_memory and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_SECONDS},
        poolclass=StaticPool if in_memory else None,
    )
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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


# --- Creation and migration ----------------------------------------------------------------------


def prepare(engine: Engine, label: str) -> None:
    """Create the schema, or bring an older one up to ``t.SCHEMA_VERSION`` (module docstring).

    Raises StoreError for a database newer than this code; SQLAlchemy errors propagate.
    """
    with engine.connect() as conn:
        found = _version(conn, label)
    if found == t.SCHEMA_VERSION:
        return
    with _exclusive(engine) as conn:
        found = _version(conn, label)
        if found != t.SCHEMA_VERSION:
            _upgrade(conn, found)


def _version(conn: Connection, label: str) -> int:
    """The stored schema version; 0 for a database without one (new, or not certscan's)."""
    if not sa.inspect(conn).has_table(t.META.name):
        return 0
    text = conn.execute(
        sa.select(t.META.c.value).where(t.META.c.key == "schema_version")
    ).scalar_one_or_none()
    if text is None:
        return 0
    if not text.isdigit() or int(text) > t.SCHEMA_VERSION:
        raise StoreError(
            f"inventory {label} has schema version {text}, newer than this "
            f"certscan ({t.SCHEMA_VERSION}) understands: upgrade certscan"
        )
    return int(text)


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """One transaction that no other certscan opening the same database runs at the same time."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
            yield conn
        return
    # pysqlite starts transactions lazily and never before DDL: drive them by hand instead.
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, waiting up to the timeout
        try:
            yield conn
        except BaseException:
            with suppress(sa_exc.DBAPIError):  # SQLite may have rolled back already
                conn.exec_driver_sql("ROLLBACK")
            raise
        conn.exec_driver_sql("COMMIT")


def _upgrade(conn: Connection, found: int) -> None:
    for table in t.ALL_TABLES:
        conn.execute(CreateTable(table, if_not_exists=True))
        _add_missing_columns(conn, table)
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            conn.execute(CreateIndex(index, if_not_exists=True))
    for version in range(found + 1, t.SCHEMA_VERSION + 1):
        step = _STEPS.get(version)
        if step is not None:
            step(conn)
    stored = conn.execute(
        sa.update(t.META)
        .where(t.META.c.key == "schema_version")
        .values(value=str(t.SCHEMA_VERSION))
    )
    if stored.rowcount == 0:
        conn.execute(sa.insert(t.META).values(key="schema_version", value=str(t.SCHEMA_VERSION)))


def _add_missing_columns(conn: Connection, table: sa.Table) -> None:
    present = {column["name"] for column in sa.inspect(conn).get_columns(table.name)}
    quote = conn.dialect.identifier_preparer
    for column in table.columns:
        if column.name in present:
            continue
        if not column.nullable:  # existing rows would need a value: a bug in the schema change
            raise RuntimeError(f"cannot add NOT NULL column {table.name}.{column.name} in place")
        spec = CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {quote.format_table(table)} ADD COLUMN {spec}")


def _to_v2(conn: Connection) -> None:
    """Schema 2 records whether the connection was accepted; every handshake was."""
    o = t.OBSERVATION
    conn.execute(
        sa.update(o)
        .where(o.c.connected.is_(None), o.c.status.in_((STATUS_OK, STATUS_CLIENT_CERT_REQUIRED)))
        .values(connected=True)
    )


#: Data changes a version needs besides new tables and columns, keyed by that version.
_STEPS: dict[int, Callable[[Connection], None]] = {2: _to_v2}
