"""Shared fixtures: the built-in lab on loopback, throwaway PostgreSQL databases, tool checks."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import trio

from scanner.lab import servers as lab_mod

# Raw-socket discovery runs only inside network namespaces the tests create: every other sweep
# a test starts (in this process or as a subprocess, which inherits the environment) connects,
# even as root. The namespace tests pass --discover syn (or clear this) themselves.
os.environ["CERTSCAN_DISCOVER"] = "connect"

PG_ADMIN_URL = os.environ.get(
    "CERTSCAN_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(what: str) -> None:
    """A tool or service the test needs is absent: fail in CI, skip with the reason locally."""
    if in_ci():
        pytest.fail(f"{what} (CI=true: every test must run)")
    pytest.skip(what)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed (apt-get install the Debian package)")
    assert path is not None
    return path


@pytest.fixture
async def lab() -> AsyncIterator[lab_mod.Lab]:
    """The built-in lab, every server on its own loopback address and a free port."""
    async with trio.open_nursery() as nursery:
        running: lab_mod.Lab = await nursery.start(
            lambda task_status: lab_mod.run_lab(port=0, task_status=task_status)
        )
        yield running
        nursery.cancel_scope.cancel()


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the machine's server (its URL), dropped afterwards."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the test extra installs it
        missing("psycopg is not installed")
    conninfo = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"certscan_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        missing(f"PostgreSQL at {conninfo} is not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the machine's server, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url
