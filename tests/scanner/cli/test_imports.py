"""Each command imports only what it uses: the modules loaded by ``certscan --version``,
``--help``, ``sweep --help`` and ``sweep --dry-run``, read from ``sys.modules`` in a fresh
interpreter after the command ran (start-up speed is measured by ``make bench``, not here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

_PROBE = """
import io, json, sys
from contextlib import redirect_stdout
from scanner.cli.entry import main
with redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""

#: Loaded by no command before it needs them (the web stack, Celery, Alembic, the ACME client,
#: the report renderers, the findings engine, the daemon, the hooks).
HEAVY = (
    "alembic",
    "acme",
    "josepy",
    "celery",
    "kombu",
    "starlette",
    "hypercorn",
    "httpx",
    "jinja2",
    "prometheus_client",
    "reports.assess",
    "reports.findings",
    "reports.rules",
    "reports.trust",
    "reports.render.html",
    "reports.render.csv",
    "reports.render.json",
    "exporters.hooks",
    "exporters.serve.daemon",
    "exporters.serve.api",
    "exporters.prometheus",
    "scanner.zones.agent",
    "scanner.zones.ingest",
)
#: Not needed to print help or plan targets: the database layer and the TLS engine.
INVENTORY_AND_ENGINE = (
    "sqlalchemy",
    "sqlmodel",
    "scanner.inventory.store",
    "scanner.inventory.tables",
    "OpenSSL",
    "scanner.engine.tls",
    "scanner.parse",
)


def loaded(*argv: str) -> tuple[int, set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return int(result["code"]), set(result["modules"])


def offenders(modules: set[str], banned: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned))


def test_version_imports_neither_typer_nor_the_stack() -> None:
    code, modules = loaded("--version")
    assert code == 0
    assert (
        offenders(modules, ("typer", "click", "rich", "trio", *HEAVY, *INVENTORY_AND_ENGINE)) == []
    )
    assert sorted(m for m in modules if m.startswith("scanner.")) == [
        "scanner.cli",
        "scanner.cli.entry",
    ]


@pytest.mark.parametrize("argv", [("--help",), ("sweep", "--help"), ("report", "--help")])
def test_help_imports_no_command_body(argv: tuple[str, ...]) -> None:
    code, modules = loaded(*argv)
    assert code == 0
    assert offenders(modules, (*HEAVY, *INVENTORY_AND_ENGINE, "trio")) == []


def test_dry_run_plans_without_the_inventory_engine_or_findings() -> None:
    code, modules = loaded("sweep", "127.0.0.1/30", "-p", "443", "--dry-run")
    assert code == 0
    assert offenders(modules, (*HEAVY, *INVENTORY_AND_ENGINE)) == []
    assert "scanner.plan.targets" in modules  # it did plan


def test_the_probe_can_fail(tmp_path: Path) -> None:
    # A real sweep of one refused loopback port does load the inventory and the engine.
    code, modules = loaded("sweep", "127.0.0.1", "-p", "1", "--db", str(tmp_path / "x.db"), "-q")
    assert code in (0, 1)
    assert offenders(modules, INVENTORY_AND_ENGINE) != []
