"""Running the inventory's Alembic migrations (``scanner/migrations``): upgrade, downgrade and the
history, for :func:`scanner.inventory.connect.prepare` (on open) and ``certscan db``.

Importing this module imports Alembic, so ``scanner.inventory.schema`` imports it only when a
database is not at the head revision.

Every change runs the same way: :func:`scanner.inventory.schema.exclusive` opens one transaction
holding the migration lock (PostgreSQL advisory lock, SQLite ``BEGIN IMMEDIATE``); the state is
read again under the lock, since another process may have just migrated; the target is checked
against the linear history of revisions; then Alembic runs on that very connection (handed over
in ``config.attributes``; ``env.py`` joins the transaction) and the caller's transaction commits
once at the end, so a failed migration leaves the database as it was. Alembic's ``op`` and
``context`` are process-wide proxies, so a process-wide lock also keeps two threads from running
Alembic at the same time (it is taken before the database lock, never after).

Alembic's INFO chatter is silenced by ``scanner.inventory.migrations`` (imported before Alembic is).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, Engine

from scanner.errors import StoreError, UsageError
from scanner.inventory import migrations
from scanner.inventory.schema import SchemaState, check_schema_version, exclusive, read_state

_DIRECTORY = Path(migrations.__file__).parent
_ALEMBIC = threading.Lock()


@dataclass(frozen=True)
class RevisionInfo:
    """One revision of the schema."""

    revision: str
    down_revision: str | None
    message: str  # the first line of the revision's docstring
    additive: bool  # an older certscan keeps working after it


@dataclass(frozen=True)
class Change:
    """What an upgrade or downgrade did: ``applied`` in the order they ran (none: no-op)."""

    before: str | None
    after: str | None
    applied: tuple[str, ...]


@cache
def script_directory() -> ScriptDirectory:
    """The Alembic script directory, with no ``alembic.ini`` (configured here)."""
    return ScriptDirectory(str(_DIRECTORY))


def _config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_DIRECTORY))
    config.attributes["connection"] = conn
    return config


def history() -> list[RevisionInfo]:
    """Every revision, oldest first. The history is linear: one head, no branches."""
    scripts = script_directory()
    heads = scripts.get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"scanner/migrations has {len(heads)} heads, want 1")
    out = []
    for script in reversed(list(scripts.walk_revisions())):
        down = script.down_revision
        if down is not None and not isinstance(down, str):
            raise RuntimeError(f"revision {script.revision} merges branches")
        lines = (script.module.__doc__ or "").strip().splitlines()
        additive = getattr(script.module, "additive", False) is True
        out.append(RevisionInfo(script.revision, down, lines[0] if lines else "", additive))
    return out


def head_revision() -> str:
    """The head revision as Alembic computes it (``scanner.inventory.migrations.HEAD_REVISION`` is
    the
    cheap copy that the open fast path uses)."""
    return history()[-1].revision


def _resolve(target: str, lineage: list[str]) -> str | None:
    """``target`` (``head``, ``base``, a revision id or a unique prefix) as a revision id."""
    if target == "base":
        return None
    try:
        script = script_directory().get_revision(target)
    except CommandError:
        script = None
    if script is None:
        raise UsageError(f"unknown schema revision {target!r} (see certscan db history)")
    assert script.revision in lineage
    return script.revision


def _position(state: SchemaState, lineage: list[str], label: str) -> int:
    """Where the database is in ``lineage``: -1 for none (new, or written before Alembic)."""
    revision = state.revision
    if revision is not None and revision not in lineage:
        raise StoreError(
            f"inventory {label} has schema revision {revision}, newer than this certscan "
            "understands: upgrade certscan"
        )
    if state.legacy or revision is None:
        return -1
    return lineage.index(revision)


def upgrade(
    engine: Engine, label: str, target: str = "head", *, additive_only: bool = False
) -> Change:
    """Bring the database to ``target`` (module docstring). With ``additive_only`` (opening),
    refuse when a pending revision is not additive: ``certscan db upgrade`` applies those."""
    with _ALEMBIC, exclusive(engine) as conn:
        state = read_state(conn)
        check_schema_version(state, label)
        lineage = [r.revision for r in history()]
        start = _position(state, lineage, label)
        before = lineage[start] if start >= 0 else None
        goal = _resolve(target, lineage)
        if goal is None:
            raise UsageError("cannot upgrade to base: use certscan db downgrade --to base")
        end = lineage.index(goal)
        if end < start:
            raise UsageError(
                f"inventory {label} is at schema revision {before}, past {goal}: "
                "use certscan db downgrade"
            )
        pending = lineage[start + 1 : end + 1]
        if not pending:
            return Change(before, before, ())
        if additive_only:
            _refuse_non_additive(pending, before, label)
        if state.legacy and state.revisions:  # stale: the baseline adopts the database again
            conn.execute(sa.text("DELETE FROM alembic_version"))
        command.upgrade(_config(conn), goal)
        return Change(before, goal, tuple(pending))


def _refuse_non_additive(pending: list[str], before: str | None, label: str) -> None:
    flags = {r.revision: r.additive for r in history()}
    blocking = [revision for revision in pending if not flags[revision]]
    if blocking:
        raise StoreError(
            f"inventory {label} is at schema revision {before or 'none'} and needs revision "
            f"{blocking[0]}, which older certscans sharing it cannot use: "
            "run certscan db upgrade to apply it"
        )


def downgrade(engine: Engine, label: str, target: str) -> Change:
    """Take the database back to ``target`` (a revision, or ``base``: every table dropped)."""
    with _ALEMBIC, exclusive(engine) as conn:
        state = read_state(conn)
        check_schema_version(state, label)
        lineage = [r.revision for r in history()]
        start = _position(state, lineage, label)
        if start < 0 and state.schema_version is not None:
            raise StoreError(
                f"inventory {label} was written by a certscan older than schema revisions: "
                "run certscan db upgrade first"
            )
        before = lineage[start] if start >= 0 else None
        goal = _resolve(target, lineage)
        end = lineage.index(goal) if goal is not None else -1
        if end > start:
            raise UsageError(
                f"inventory {label} is at schema revision {before or 'none'}, before {goal}: "
                "use certscan db upgrade"
            )
        undone = tuple(reversed(lineage[end + 1 : start + 1]))
        if undone:
            command.downgrade(_config(conn), goal or "base")
        return Change(before, goal, undone)
