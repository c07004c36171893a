"""Inventory fixtures shared by the store tests: a database on each backend and a small PKI.

PostgreSQL tests (marked ``postgres``) each get a fresh schema on the server named by
``CERTSCAN_TEST_PG``; they fail when the server is unreachable under ``CI=true`` and are skipped
otherwise. (A schema is quicker to make than the root conftest's throwaway database.)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen

PG_URL = os.environ.get("CERTSCAN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def store_pg_url() -> Iterator[str]:
    """A URL whose connections use a fresh schema, dropped afterwards."""
    schema = f"certscan_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa_exc.OperationalError as exc:
        admin.dispose()
        why = f"PostgreSQL unreachable at {PG_URL}: {str(exc.orig).splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty inventory location: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return db_url(str(tmp_path / "inventory.db"))
    return str(request.getfixturevalue("store_pg_url"))


@pytest.fixture
def inventory(url: str) -> Iterator[Inventory]:
    inv = Inventory(url)
    try:
        yield inv
    finally:
        inv.close()


@pytest.fixture(scope="module")
def pki() -> dict[str, certgen.Issued]:
    root = certgen.make_ca()
    inter = certgen.make_ca("certscan test intermediate", issuer=root)
    return {
        "root": root,
        "inter": inter,
        "a": certgen.make_leaf(inter, cn="a.example", dns_names=["a.example"]),
        "b": certgen.make_leaf(inter, cn="b.example", dns_names=["b.example", "www.b.example"]),
    }
