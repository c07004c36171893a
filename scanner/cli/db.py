"""``certscan db``: the inventory's schema revisions (``scanner/migrations``).

Opening an inventory applies additive revisions by itself (``scanner.inventory.schema``); these
commands show where a database is and move it explicitly: ``upgrade`` also applies revisions
that older certscans cannot use, ``downgrade`` goes back so that an older certscan can use the
database again (the next certscan to open it applies the additive revisions again).

They work on the engine, not on ``Inventory``, which would migrate on open. Alembic is imported
only by the commands that need it. Exit codes follow :mod:`scanner.cli.app`: 2 bad usage (a
missing ``--to``, an unknown revision, the wrong direction), 3 operational.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from scanner.cli.options import DbOption
from scanner.errors import OperationalError, StoreError, UsageError
from scanner.inventory import location
from scanner.serialize import json_line
from scanner.text import safe

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

db_app = typer.Typer(
    help="The inventory's schema: show its revision, upgrade or downgrade it.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

ToOption = Annotated[
    str | None,
    typer.Option("--to", metavar="REV", help="A revision id (certscan db history), or base."),
]


@contextmanager
def _engine(db: str | None, *, create: bool) -> Iterator[tuple[Engine, str]]:
    """The engine for ``--db`` and its label (no password); database errors become one line.
    Without ``create``, a SQLite file that does not exist is an error, not created."""
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    from scanner.inventory import schema as store_schema

    try:
        url = sa.make_url(location.db_url(db))
    except (sa_exc.ArgumentError, ValueError):
        raise StoreError(
            "invalid database URL (want a file path or a URL such as "
            "postgresql+psycopg://user@host/db)"
        ) from None
    label = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise StoreError(f"unsupported database {backend!r}: use sqlite or postgresql")
    database = url.database or ""
    exists = database in ("", ":memory:") or Path(database).exists()
    if backend == "sqlite" and not create and not exists:
        raise OperationalError(f"no inventory at {safe(database, 200)} (pass --db)")
    engine: Engine | None = None
    try:
        engine = store_schema.make_engine(url)
        yield engine, safe(label, 300)
    except (sa_exc.SQLAlchemyError, OSError, ImportError) as exc:
        raise StoreError(f"inventory {safe(label, 300)}: {_reason(exc, url.password)}") from exc
    finally:
        if engine is not None:
            engine.dispose()


def _reason(exc: BaseException, password: str | None) -> str:
    """One line saying why, with no SQL, traceback or password."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None:
        exc = exc.orig
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    if isinstance(exc, ImportError):
        text = f"database driver missing ({text})"
    if password:
        text = text.replace(password, "***")
    return safe(text, 300)


def _name(revision: str | None) -> str:
    return revision or "none"


@db_app.command("current")
def current(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    db: DbOption = None,
) -> int:
    """Print the database's schema revision (none: new, or written before revisions)."""
    from scanner.inventory import schema as store_schema

    with _engine(db, create=False) as (engine, label), engine.connect() as conn:
        state = store_schema.read_state(conn)
    head = store_schema.head_revision()
    revision = state.revision
    if json_out:
        version = state.schema_version
        record = {
            "inventory": label,
            "revision": revision,
            "head": head,
            "up_to_date": state.current,
            "schema_version": int(version) if version and version.isdigit() else version,
        }
        typer.echo(json_line(record))
        return 0
    if state.current:
        note = "(head)"
    elif revision is None and state.schema_version is not None:
        note = f"(schema version {safe(state.schema_version, 20)}, before revisions; head {head})"
    else:
        note = f"(head {head})"
    typer.echo(f"{safe(_name(revision), 80)} {note}")
    return 0


@db_app.command("history")
def history(db: DbOption = None) -> int:
    """List the schema revisions, oldest first; the database's own is marked when it exists."""
    from scanner.inventory import migrate as store_migrate  # imports Alembic
    from scanner.inventory import schema as store_schema

    mark: str | None = None
    try:
        with _engine(db, create=False) as (engine, _label):
            mark = store_schema.current_revision(engine)
    except OperationalError:
        if db is not None and location.URL_SCHEME.match(db):
            raise  # a server was named and is not usable; a missing file just has no mark
    for info in store_migrate.history():
        flags = "additive" if info.additive else "not additive"
        here = "  <- current" if info.revision == mark else ""
        typer.echo(f"{info.revision}  {safe(info.message, 200)} [{flags}]{here}")
    return 0


@db_app.command("upgrade")
def upgrade(to: ToOption = None, db: DbOption = None) -> int:
    """Apply the schema revisions up to --to (default: the newest), additive or not."""
    from scanner.inventory import migrate as store_migrate  # imports Alembic

    with _engine(db, create=True) as (engine, label):
        change = store_migrate.upgrade(engine, label, to or "head")
    if change.applied:
        typer.echo(
            f"inventory {label}: upgraded from {_name(change.before)} to {_name(change.after)}"
        )
    else:
        typer.echo(f"inventory {label}: already at {_name(change.after)}")
    return 0


@db_app.command("downgrade")
def downgrade(
    to: ToOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm --to base: it drops every table and row.")
    ] = False,
    db: DbOption = None,
) -> int:
    """Undo schema revisions back to --to, so that an older certscan can use the database.

    Dropped tables and columns lose their data. Opening the inventory with this certscan applies
    the additive revisions again.
    """
    if to is None:
        raise UsageError("certscan db downgrade needs --to REV (see certscan db history) or base")
    if to == "base" and not yes:
        raise UsageError("--to base drops every table and all the data: add --yes to confirm")
    from scanner.inventory import migrate as store_migrate  # imports Alembic

    with _engine(db, create=False) as (engine, label):
        change = store_migrate.downgrade(engine, label, to)
    if change.applied:
        typer.echo(
            f"inventory {label}: downgraded from {_name(change.before)} to {_name(change.after)}"
        )
    else:
        typer.echo(f"inventory {label}: already at {_name(change.after)}")
    return 0
