"""The inventory's Alembic migrations (``scanner/migrations``, ``scanner.inventory.migrate``), the
open
path that applies them (``scanner.inventory.connect.prepare``) and ``certscan db``, on SQLite and a
real PostgreSQL (the ``url`` fixture).

The schema the revisions build is checked against ``scanner.inventory.tables`` with Alembic's own
comparison; the one thing it cannot compare on SQLite (the expression index ``uq_finding_open``,
which SQLite cannot reflect) is checked by its DDL instead.
"""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from scanner.cli import app as cli
from scanner.errors import StoreError, UsageError
from scanner.inventory import migrate as store_migrate
from scanner.inventory import migrations
from scanner.inventory import schema as store_schema
from scanner.inventory import tables as t
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from tests.scanner.inventory.test_findings import make_v1_database

#: Every revision, oldest first; the newest is the head.
CHAIN = (
    "0001",
    "0002",
    "0003_tls_details",
    "0004_renewal",
    "0005_zones",
    "0006_sni",
    "0008_fleet",
    "0009_notify",
)
HEAD = CHAIN[-1]

T0 = datetime(2032, 7, 1, 8, 30, 0, 500000, tzinfo=UTC)
SHA = "ab" * 32
ROOT = Path(__file__).resolve().parents[3]  # the repository (tests/ has a scanner/ too)
VERSIONS = Path(migrations.__file__).parent / "versions"


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """A bare engine on ``url``: opening it migrates nothing."""
    made = store_schema.make_engine(sa.make_url(url))
    try:
        yield made
    finally:
        made.dispose()


def schema_diff(conn: Connection) -> list[Any]:
    """Alembic's differences between the database and ``scanner.inventory.tables`` (none
    expected)."""
    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "compare_server_default": True}
    )
    with unreflected_index_ignored():
        return list(compare_metadata(context, SQLModel.metadata))


@contextmanager
def unreflected_index_ignored() -> Iterator[None]:
    """SQLite cannot reflect expression indexes (SQLAlchemy and Alembic warn that they skip
    ``uq_finding_open``): :func:`finding_open_index` checks that one by its DDL."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expression-based index '?uq_finding_open")
        yield


def finding_open_index(conn: Connection) -> str:
    if conn.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE name = 'uq_finding_open'"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_finding_open'"
    return str(conn.exec_driver_sql(query).scalar_one())


def assert_matches_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        assert schema_diff(conn) == []
        index = finding_open_index(conn)
    if engine.dialect.name == "sqlite":
        assert index == (
            "CREATE UNIQUE INDEX uq_finding_open ON finding "
            "(endpoint_id, kind, coalesce(sha256, '')) WHERE resolved_at IS NULL"
        )
    else:
        assert index.startswith("CREATE UNIQUE INDEX uq_finding_open ON ")
        assert (
            "(endpoint_id, kind, COALESCE(sha256, ''::text)) WHERE (resolved_at IS NULL)" in index
        )


def facts(engine: Engine) -> tuple[str | None, str | None]:
    """(revision, schema_version)."""
    with engine.connect() as conn:
        state = store_schema.read_state(conn)
    return state.revision, state.schema_version


def snapshot(engine: Engine) -> dict[str, Any]:
    """Every table's columns and indexes and every row of the two bookkeeping tables."""
    with engine.connect() as conn, unreflected_index_ignored():
        inspector = sa.inspect(conn)
        out: dict[str, Any] = {}
        for name in sorted(inspector.get_table_names()):
            columns = [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)
            ]
            out[name] = (columns, sorted(str(i["name"]) for i in inspector.get_indexes(name)))
        for name in ("alembic_version", "certscan_meta"):
            out[f"rows:{name}"] = sorted(map(tuple, conn.exec_driver_sql(f"SELECT * FROM {name}")))
    return out


def count(conn: Connection, table: str) -> int:
    return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def columns(conn: Connection, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns(table)}


def seed(engine: Engine) -> None:
    """A sharded scan with one observation, its one-certificate chain and its shard."""
    run = {"started_at": T0, "status": "finished", "spec": "{}", "spec_hash": "h", "version": "t"}
    counters = {"total": 1, "watermark": 1, "done": 1, "ok": 1, "failed": 0}
    with engine.begin() as conn:
        conn.execute(sa.insert(t.SCAN_RUN).values(id=1, shards=2, **run, **counters))
        conn.execute(
            sa.insert(t.ENDPOINT).values(
                id=1, address="127.0.0.1", port=443, sni="", first_seen=T0, last_seen=T0
            )
        )
        conn.execute(
            sa.insert(t.CERTIFICATE).values(
                sha256=SHA, der=b"0\x00", info="{}", self_issued=False, first_seen=T0
            )
        )
        conn.execute(
            sa.insert(t.OBSERVATION).values(
                id=1, scan_id=1, endpoint_id=1, target_index=0, observed_at=T0, status="ok",
                connected=True, shard=1,
            )
        )  # fmt: skip
        conn.execute(
            sa.insert(t.OBSERVATION_CERTIFICATE).values(observation_id=1, position=0, sha256=SHA)
        )
        conn.execute(
            sa.insert(t.SCAN_SHARD).values(
                scan_id=1, shard=1, status="done", attempts=1, queued_at=T0, updated_at=T0,
                **counters,
            )
        )  # fmt: skip


def assert_seed_kept(conn: Connection) -> None:
    """The rows of :func:`seed` that revision 0001 has (0002's columns are not read)."""
    scan = conn.exec_driver_sql("SELECT id, status, total FROM scan_run").one()
    assert tuple(scan) == (1, "finished", 1)
    observation = conn.exec_driver_sql("SELECT id, scan_id, status, connected FROM observation")
    assert tuple(observation.one()) == (1, 1, "ok", True)
    chain = conn.exec_driver_sql(
        "SELECT observation_id, position, sha256 FROM observation_certificate"
    )
    assert tuple(chain.one()) == (1, 0, SHA)  # not cascade-deleted by the SQLite column drop


# --- The revisions themselves ----------------------------------------------------------------


def test_head_constant_is_alembics_head() -> None:
    scripts = ScriptDirectory(str(VERSIONS.parent))
    assert scripts.get_heads() == [migrations.HEAD_REVISION]
    assert store_migrate.head_revision() == store_schema.head_revision() == migrations.HEAD_REVISION
    history = store_migrate.history()
    assert [r.revision for r in history] == list(CHAIN)
    assert [r.down_revision for r in history] == [None, *CHAIN[:-1]]
    assert all(r.additive for r in history)
    assert all(r.message and "\n" not in r.message for r in history)


def test_revisions_are_frozen_history() -> None:
    # A revision must not change meaning when scanner.inventory.tables changes: no certscan imports.
    files = sorted(VERSIONS.glob("0*.py"))
    assert [f.name[:4] for f in files] == [c[:4] for c in CHAIN]
    for path in files:
        tree = ast.parse(path.read_text())
        imported = [
            name
            for node in ast.walk(tree)
            for name in (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )
        ]  # fmt: skip
        assert not [m for m in imported if m.split(".")[0] in {"scanner", "sqlmodel"}], path.name
        module = {n.targets[0].id: n.value for n in tree.body if isinstance(n, ast.Assign)
                  and isinstance(n.targets[0], ast.Name)}  # fmt: skip
        assert isinstance(module["additive"], ast.Constant), path.name


def test_a_new_database_is_built_to_the_head_and_matches_the_tables(
    url: str, engine: Engine
) -> None:
    with Inventory(url):
        pass
    assert facts(engine) == (migrations.HEAD_REVISION, str(t.SCHEMA_VERSION))
    assert store_schema.current_revision(engine) == HEAD
    assert_matches_tables(engine)


def test_revisions_0002_and_0003_add_exactly_what_0001_lacks(url: str, engine: Engine) -> None:
    store_migrate.upgrade(engine, "x", "0001")
    with engine.connect() as conn:
        diff = schema_diff(conn)
    found = set()
    for change in diff:
        match change:
            case ("add_table", sa.Table() as table):
                found.add(("add_table", table.name))
            case ("add_column", _schema, str(table), sa.Column() as column):
                found.add((f"add_column {table}", column.name))
            case _:
                found.add(("unexpected", repr(change)))
    assert found == {
        ("add_table", "scan_shard"),
        ("add_table", "ingested_batch"),
        ("add_table", "scan_plan"),  # revision 0005_zones, after it
        ("add_column scan_run", "shards"),
        ("add_column observation", "shard"),
        ("add_column observation", "ocsp_next_update"),  # revision 0006_sni
        ("add_table", "endpoint_owner"),  # 0008_fleet
        ("add_table", "notify_digest"),  # 0009_notify
        ("add_column hook_run", "severity"),  # 0009_notify
        ("add_column observation", "legacy_capture"),
        ("add_column observation", "tls_group"),
        ("add_column observation", "signature_scheme"),
        # and what 0004_renewal adds (see the next test)
        ("add_table", "renewal_endpoint"),
        ("add_table", "ari_window"),
        ("add_column observation", "key_unproven"),
        ("add_column hook_run", "verify_until"),
        ("add_column hook_run", "endpoints_total"),
        ("add_column hook_run", "endpoints_deployed"),
    }


def test_revision_0006_adds_exactly_the_ocsp_next_update_column(url: str, engine: Engine) -> None:
    store_migrate.upgrade(engine, "x", "0002")
    store_migrate.upgrade(engine, "x", "0006_sni")
    with engine.connect() as conn:
        assert "ocsp_next_update" in columns(conn, "observation")
        assert "endpoint_owner" not in sa.inspect(conn).get_table_names()
    store_migrate.upgrade(engine, "x")
    assert_matches_tables(engine)
    store_migrate.downgrade(engine, "x", "0002")
    with engine.connect() as conn:
        assert "ocsp_next_update" not in columns(conn, "observation")


def test_revision_0008_adds_the_owner_table(url: str, engine: Engine) -> None:
    store_migrate.upgrade(engine, "x", "0006_sni")
    with engine.connect() as conn:
        diff = schema_diff(conn)
    assert ("add_table", "endpoint_owner") in [(c[0], c[1].name) for c in diff if len(c) == 2]
    with Inventory(url):  # opening applies it and 0009_notify: additive
        pass
    assert store_schema.current_revision(engine) == HEAD
    assert_matches_tables(engine)
    change = store_migrate.downgrade(engine, "x", "0006_sni")
    assert change.applied == ("0009_notify", "0008_fleet")
    with engine.connect() as conn:
        assert "endpoint_owner" not in sa.inspect(conn).get_table_names()


def test_revision_0009_adds_the_notification_state(url: str, engine: Engine) -> None:
    store_migrate.upgrade(engine, "x", "0008_fleet")
    with engine.connect() as conn:
        diff = schema_diff(conn)
    found = set()
    for change in diff:
        match change:
            case ("add_table", sa.Table() as table):
                found.add(("add_table", table.name))
            case ("add_column", _schema, str(table), sa.Column() as column):
                assert column.nullable, column.name  # additive
                found.add((f"add_column {table}", column.name))
            case _:
                found.add(("unexpected", repr(change)))
    assert found == {("add_table", "notify_digest"), ("add_column hook_run", "severity")}
    with Inventory(url):  # opening applies it: additive
        pass
    assert store_schema.current_revision(engine) == "0009_notify"
    assert_matches_tables(engine)
    change = store_migrate.downgrade(engine, "x", "0008_fleet")
    assert change.applied == ("0009_notify",)
    with engine.connect() as conn:
        assert "notify_digest" not in sa.inspect(conn).get_table_names()
        assert "severity" not in columns(conn, "hook_run")


def test_revision_0004_adds_exactly_its_tables_and_columns(url: str, engine: Engine) -> None:
    store_migrate.upgrade(engine, "x", "0003_tls_details")
    with engine.connect() as conn:
        diff = schema_diff(conn)
    found = set()
    for change in diff:
        match change:
            case ("add_table", sa.Table() as table):
                found.add(("add_table", table.name))
            case ("add_column", _schema, str(table), sa.Column() as column):
                found.add((f"add_column {table}", column.name))
                assert column.nullable, column.name  # additive: nullable columns only
            case _:
                found.add(("unexpected", repr(change)))
    later = {  # 0005_zones, 0006_sni, 0008_fleet, 0009_notify
        ("add_table", "scan_plan"),
        ("add_column scan_shard", "rejected"),
        ("add_column scan_shard", "dead_letters"),
        ("add_column scan_shard", "announced"),
        ("add_column scan_shard", "pending"),
        ("add_column observation", "ocsp_next_update"),
        ("add_table", "endpoint_owner"),
        ("add_table", "notify_digest"),
        ("add_column hook_run", "severity"),
    }
    assert found - later == {
        ("add_table", "renewal_endpoint"),
        ("add_table", "ari_window"),
        ("add_column observation", "key_unproven"),
        ("add_column hook_run", "verify_until"),
        ("add_column hook_run", "endpoints_total"),
        ("add_column hook_run", "endpoints_deployed"),
    }
    assert store_migrate.upgrade(engine, "x", "0004_renewal").applied == ("0004_renewal",)
    assert store_migrate.downgrade(engine, "x", "0003_tls_details").applied == ("0004_renewal",)
    with engine.connect() as conn:
        assert "key_unproven" not in columns(conn, "observation")
        assert "renewal_endpoint" not in sa.inspect(conn).get_table_names()


def test_sqlite_tables_are_column_for_column_those_of_create_all(tmp_path: Path) -> None:
    # Stricter than Alembic's comparison: column order, declared types, keys, index columns.
    migrated = store_schema.make_engine(sa.make_url(db_url(str(tmp_path / "m.db"))))
    created = store_schema.make_engine(sa.make_url(db_url(str(tmp_path / "c.db"))))
    store_migrate.upgrade(migrated, "m")
    SQLModel.metadata.create_all(created)

    def describe(engine: Engine) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with engine.connect() as conn:
            for table in t.ALL_TABLES:

                def pragma(what: str, name: str = table.name) -> list[tuple[Any, ...]]:
                    return [tuple(r) for r in conn.exec_driver_sql(f"PRAGMA {what}('{name}')")]

                indexes = {row[1]: pragma("index_info", row[1]) for row in pragma("index_list")}
                out[table.name] = (pragma("table_info"), pragma("foreign_key_list"), indexes)
        return out

    try:
        assert describe(migrated) == describe(created)
    finally:
        migrated.dispose()
        created.dispose()


def test_down_and_up_again_keeps_the_surviving_rows(url: str, engine: Engine) -> None:
    with Inventory(url):
        pass
    seed(engine)
    change = store_migrate.downgrade(engine, "x", "0001")
    assert (change.before, change.after, change.applied) == (
        HEAD,
        "0001",
        tuple(reversed(CHAIN[1:])),
    )
    assert facts(engine) == ("0001", "4")
    with engine.connect() as conn:
        assert not {"scan_shard", "ingested_batch"} & set(sa.inspect(conn).get_table_names())
        assert "shards" not in columns(conn, "scan_run")
        assert "shard" not in columns(conn, "observation")
        assert "ocsp_next_update" not in columns(conn, "observation")
        assert_seed_kept(conn)

    # Opening applies the additive revisions again; the dropped columns come back empty.
    with Inventory(url):
        pass
    assert facts(engine) == (HEAD, "4")
    with engine.connect() as conn:
        assert_seed_kept(conn)
        assert conn.execute(sa.select(t.OBSERVATION.c.shard)).scalar_one() is None
        assert conn.execute(sa.select(t.OBSERVATION.c.ocsp_next_update)).scalar_one() is None
        assert conn.execute(sa.select(t.SCAN_RUN.c.shards)).scalar_one() is None
        assert count(conn, "scan_shard") == 0
    assert_matches_tables(engine)

    change = store_migrate.downgrade(engine, "x", "base")
    assert change.applied == tuple(reversed(CHAIN))
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == ["alembic_version"]
        assert count(conn, "alembic_version") == 0
    assert store_schema.current_revision(engine) is None
    assert store_migrate.upgrade(engine, "x").applied == CHAIN
    assert facts(engine) == (HEAD, "4")
    assert_matches_tables(engine)
    assert store_migrate.upgrade(engine, "x").applied == ()  # nothing left to do


def test_upgrade_and_downgrade_refuse_the_wrong_direction(url: str, engine: Engine) -> None:
    store_migrate.upgrade(engine, "x", "0001")
    assert facts(engine) == ("0001", "4")
    with pytest.raises(UsageError, match="before 0002: use certscan db upgrade"):
        store_migrate.downgrade(engine, "x", "0002")
    with pytest.raises(UsageError, match="unknown schema revision 'nope'"):
        store_migrate.upgrade(engine, "x", "nope")
    store_migrate.upgrade(engine, "x")
    with pytest.raises(UsageError, match="past 0001: use certscan db downgrade"):
        store_migrate.upgrade(engine, "x", "0001")


# --- Databases written before Alembic ----------------------------------------------------------


def _make_v4(engine: Engine, *, drop_hook_run: bool) -> None:
    """Schema 4 (or 3) exactly as certscan without Alembic left it: no ``alembic_version``."""
    store_migrate.upgrade(engine, "x", "0001")  # the baseline is schema 4, table for table
    seed_rows = {"id": 7, "address": "127.0.0.7", "port": 636, "sni": "ldap.example"}
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.execute(sa.insert(t.ENDPOINT).values(first_seen=T0, last_seen=T0, **seed_rows))
        if drop_hook_run:
            conn.exec_driver_sql("DROP TABLE hook_run")
            conn.exec_driver_sql("UPDATE certscan_meta SET value = '3'")


@pytest.mark.parametrize("version", [1, 3, 4])
def test_a_database_from_before_alembic_is_adopted_with_its_rows(
    url: str, engine: Engine, version: int, pki: dict[str, certgen.Issued]
) -> None:
    if version == 1:
        leaf = make_v1_database(url, pki["a"])
    else:
        _make_v4(engine, drop_hook_run=version == 3)
    assert facts(engine) == (None, str(version))
    with Inventory(url) as inv:
        assert facts(engine) == (HEAD, "4")
        rows = inv.latest_endpoints(include_failures=True)
    assert_matches_tables(engine)
    if version == 1:
        by_address = {r.address: r for r in rows}
        ok = next(r for r in by_address.values() if r.status == "ok")
        failed = next(r for r in by_address.values() if r.status == "timeout")
        assert (ok.chain[0].sha256, ok.connected, failed.connected) == (leaf, True, None)
    else:
        with engine.connect() as conn:
            endpoint = conn.exec_driver_sql("SELECT id, address, port, sni FROM endpoint").one()
        assert tuple(endpoint) == (7, "127.0.0.7", 636, "ldap.example")


def test_a_future_revision_is_refused_and_the_database_left_alone(url: str, engine: Engine) -> None:
    with Inventory(url):
        pass
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
        conn.exec_driver_sql("DROP TABLE ingested_batch")  # so that a repair would show
    before = snapshot(engine)
    expected = "schema revision 0099, newer than this certscan understands: upgrade certscan"
    for attempt in (
        lambda: Inventory(url),
        lambda: store_migrate.upgrade(engine, "x"),
        lambda: store_migrate.downgrade(engine, "x", "0001"),
    ):
        with pytest.raises(StoreError, match=expected) as raised:
            attempt()
        assert "\n" not in str(raised.value)
    assert snapshot(engine) == before


def test_a_revision_that_is_not_additive_waits_for_db_upgrade(
    url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_migrate.upgrade(engine, "x", "0001")
    real = store_migrate.history

    def with_0002_breaking() -> list[store_migrate.RevisionInfo]:
        return [
            store_migrate.RevisionInfo(r.revision, r.down_revision, r.message, r.revision != "0002")
            for r in real()
        ]

    monkeypatch.setattr(store_migrate, "history", with_0002_breaking)
    with pytest.raises(StoreError, match=r"needs revision 0002, .*: run certscan db upgrade"):
        Inventory(url)
    assert facts(engine) == ("0001", "4")
    assert store_migrate.upgrade(engine, "x").applied == CHAIN[1:]  # as db upgrade does
    with Inventory(url):
        pass


# --- Concurrent openers --------------------------------------------------------------------------


def test_threads_opening_a_new_database_at_once(url: str, engine: Engine) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            start.wait(timeout=30)
            Inventory(url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert errors == []
    assert facts(engine) == (HEAD, "4")
    with engine.connect() as conn:
        assert (count(conn, "alembic_version"), count(conn, "certscan_meta")) == (1, 1)
    assert_matches_tables(engine)


_OPEN_AT = """
import sys, time
from scanner.inventory.store import Inventory
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
Inventory(sys.argv[1]).close()
"""


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_processes_opening_a_new_database_at_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        db_url(str(tmp_path / "shared.db"))
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    at = str(time.time() + 4)  # after every interpreter has imported certscan
    logs = [tmp_path / f"opener{n}.err" for n in range(4)]
    children = []
    for log in logs:
        with log.open("w") as err:
            command = [sys.executable, "-c", _OPEN_AT, url, at]
            children.append(subprocess.Popen(command, cwd=ROOT, stderr=err))
    codes = [child.wait(timeout=90) for child in children]
    assert codes == [0] * 4, [log.read_text() for log in logs]
    made = store_schema.make_engine(sa.make_url(url))
    try:
        assert facts(made) == (HEAD, "4")
        assert_matches_tables(made)
    finally:
        made.dispose()


def test_opening_an_up_to_date_database_does_not_import_alembic(tmp_path: Path) -> None:
    url = db_url(str(tmp_path / "fast.db"))
    Inventory(url).close()
    code = (
        "import sys; from scanner.inventory.store import Inventory; "
        "Inventory(sys.argv[1]).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, url], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


# --- certscan db ---------------------------------------------------------------------------------


@pytest.fixture
def certscan(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """``certscan ARGS`` in-process: (exit code, stdout, stderr)."""
    monkeypatch.delenv("CERTSCAN_DB", raising=False)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_db_commands(
    url: str, engine: Engine, certscan: Callable[..., tuple[int, str, str]], tmp_path: Path
) -> None:
    db = ("--db", url)
    if url.startswith("sqlite"):
        missing = str(tmp_path / "missing.db")
        code, _, err = certscan("db", "current", "--db", missing)
        assert (code, err.count("\n")) == (3, 1)
        assert "no inventory at" in err
        assert not Path(missing).exists()
    assert certscan("db", "upgrade", "--to", "0001", *db)[:2] == (
        0, f"inventory {sa.make_url(url).render_as_string()}: upgraded from none to 0001\n"
    )  # fmt: skip
    assert certscan("db", "current", *db)[:2] == (0, f"0001 (head {HEAD})\n")
    code, out, _ = certscan("db", "upgrade", *db)
    assert (code, out.endswith(f"upgraded from 0001 to {HEAD}\n")) == (0, True)
    code, out, _ = certscan("db", "current", "--json", *db)
    record = json.loads(out)
    assert (code, record["revision"], record["head"], record["up_to_date"]) == (
        0,
        HEAD,
        HEAD,
        True,
    )
    assert record["schema_version"] == 4
    code, out, _ = certscan("db", "history", *db)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == list(CHAIN)
    assert out.splitlines()[-1].endswith("[additive]  <- current")

    for args, message in (
        (("db", "downgrade", *db), "needs --to REV"),
        (("db", "downgrade", "--to", "base", *db), "add --yes to confirm"),
        (("db", "downgrade", "--to", "0099", *db), "unknown schema revision '0099'"),
        (("db", "upgrade", "--to", "0001", *db), "past 0001: use certscan db downgrade"),
    ):
        code, out, err = certscan(*args)
        assert (code, out, err.count("\n")) == (2, "", 1), args
        assert message in err
    assert facts(engine) == (HEAD, "4")

    code, out, _ = certscan("db", "downgrade", "--to", "0001", *db)
    assert (code, out.endswith(f"downgraded from {HEAD} to 0001\n")) == (0, True)
    code, out, _ = certscan("db", "downgrade", "--to", "base", "--yes", *db)
    assert (code, out.endswith("downgraded from 0001 to none\n")) == (0, True)
    assert certscan("db", "current", *db)[:2] == (0, f"none (head {HEAD})\n")

    store_migrate.upgrade(engine, "x")
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    code, out, err = certscan("db", "upgrade", *db)
    assert (code, out, err.count("\n")) == (3, "", 1)
    assert "schema revision 0099, newer than this certscan understands" in err


def test_certscan_db_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "sub.db"
    for args, expected in ((("upgrade",), 0), (("current",), 0), (("downgrade",), 2)):
        done = subprocess.run(
            [sys.executable, "-m", "scanner", "db", *args, "--db", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == expected, done.stderr
    assert done.stdout == ""


def test_migrating_on_open_logs_nothing_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # certscan serve logs INFO to stderr: Alembic's "Running upgrade" lines are not its output.
    with caplog.at_level(logging.INFO):
        Inventory(db_url(str(tmp_path / "quiet.db"))).close()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []
