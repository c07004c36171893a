"""The ``command`` action and the runner: a real subprocess gets the documented environment and
the finding on stdin; failures back off and are retried; nothing acts twice; approval gates.

Time is a parameter (``now``) of the runner, so back-off is tested without sleeping.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from exporters.hooks.config import Hook, HooksConfig, parse_hooks
from exporters.hooks.runner import STALE_AFTER, backoff, execute, plan, run_hooks
from scanner.inventory import hooks as store_hooks
from scanner.inventory import tables
from scanner.inventory.read import EndpointRecord
from scanner.inventory.store import Inventory
from scanner.models import CertInfo, Finding, Severity

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SHA = "ab" * 32
NOT_AFTER = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
#: Records its environment and stdin into argv[1]; exits with the number in argv[2]'s file.
SCRIPT = """
import json, os, sys
from pathlib import Path
env = {k: v for k, v in os.environ.items() if k.startswith("CERTSCAN_")}
env.pop("CERTSCAN_DISCOVER", None)  # the test suite's own setting, inherited
out = Path(sys.argv[1])
runs = json.loads(out.read_text()) if out.exists() else []
runs.append({"env": env, "stdin": sys.stdin.read()})
out.write_text(json.dumps(runs))
print("renewing", env.get("CERTSCAN_SNI"))
sys.exit(int(Path(sys.argv[2]).read_text()))
"""
#: Certificate text a shell would execute, were there one.
HOSTILE = "expires in 3 days; $(touch pwned) `id` | rm -rf x"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inventory]:
    """An empty inventory: a SQLite file, then a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'inventory.db'}"
    else:
        url = str(request.getfixturevalue("pg_url"))
    with Inventory(url) as inv:
        yield inv


class Probe:
    """A command hook whose script records its runs and exits with a chosen status."""

    def __init__(self, tmp_path: Path, *, approval: bool = False, timeout: float = 20) -> None:
        self.out = tmp_path / "runs.json"
        self.status = tmp_path / "status"
        self.status.write_text("0")
        table: dict[str, Any] = {
            "action": "command",
            "command": [sys.executable, "-c", SCRIPT, str(self.out), str(self.status)],
            "approval": approval,
            "timeout": timeout,
            "kinds": ["expiring", "expired"],
        }
        self.hook: Hook = parse_hooks({"renew": table}, source="t.toml").hooks[0]

    def runs(self) -> list[dict[str, Any]]:
        return json.loads(self.out.read_text()) if self.out.exists() else []


def finding(**changes: Any) -> Finding:
    values: dict[str, Any] = {
        "kind": "expiring",
        "severity": Severity.HIGH,
        "message": HOSTILE,
        "address": "127.0.0.1",
        "port": 8443,
        "sni": "www.example.test",
        "sha256": SHA,
        **changes,
    }
    return Finding(**values)


def endpoints() -> dict[tuple[str, int, str | None], EndpointRecord]:
    leaf = CertInfo(
        der=b"x",
        sha256=SHA,
        san_dns=("www.example.test", "example.test"),
        not_after=NOT_AFTER,
    )
    record = EndpointRecord(
        address="127.0.0.1",
        port=8443,
        sni="www.example.test",
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher=None,
        alpn=None,
        observed_at=T0,
        scan_id=1,
        chain=(leaf,),
    )
    return {("127.0.0.1", 8443, "www.example.test"): record}


def steps(inventory: Inventory, probe: Probe, now: datetime, *found: Finding) -> list[Any]:
    runs = store_hooks.latest(inventory.engine, [probe.hook.name])
    return plan([probe.hook], found or (finding(),), endpoints(), runs, now)


async def test_the_command_gets_the_facts_and_acts_once(
    inventory: Inventory, tmp_path: Path
) -> None:
    probe = Probe(tmp_path)
    todo = steps(inventory, probe, T0)
    assert [s.step for s in todo] == ["start"]
    outcomes = await execute(inventory, todo, concurrency=2, now=T0)
    assert outcomes[0].result is not None
    assert outcomes[0].result.ok

    (seen,) = probe.runs()
    assert seen["env"] == {
        "CERTSCAN_ADDRESS": "127.0.0.1",
        "CERTSCAN_PORT": "8443",
        "CERTSCAN_SNI": "www.example.test",
        "CERTSCAN_NAMES": "www.example.test,example.test",
        "CERTSCAN_NAMES_DROPPED": "0",
        "CERTSCAN_ENDPOINTS": "127.0.0.1:8443/www.example.test",
        "CERTSCAN_NOT_AFTER": "2026-12-01T12:00:00Z",
        "CERTSCAN_SHA256": SHA,
        "CERTSCAN_FINDING": "expiring",
        "CERTSCAN_SEVERITY": "high",
        "CERTSCAN_HOOK": "renew",
    }
    body = json.loads(seen["stdin"])
    assert body["message"] == HOSTILE
    assert body["sha256"] == SHA
    assert body["names"] == ["www.example.test", "example.test"]
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()

    (run,) = store_hooks.history(inventory.engine)
    assert run.status == "succeeded"
    assert run.exit_status == 0
    assert run.attempts == 1
    assert run.output_tail == "renewing www.example.test\n"

    # The same finding again, even much later, and a second finding on the same certificate:
    later = T0 + timedelta(days=2)
    assert steps(inventory, probe, later, finding(), finding(kind="expired")) == []
    assert len(probe.runs()) == 1


async def test_a_failing_command_backs_off_and_is_retried(
    inventory: Inventory, tmp_path: Path
) -> None:
    probe = Probe(tmp_path)
    probe.status.write_text("3")
    await execute(inventory, steps(inventory, probe, T0), concurrency=1, now=T0)
    (run,) = store_hooks.history(inventory.engine)
    assert run.status == "failed"
    assert run.exit_status == 3
    assert run.finished_at is not None
    assert run.next_attempt_at == run.finished_at + backoff(1)

    assert steps(inventory, probe, run.next_attempt_at - timedelta(seconds=1)) == []
    retry_at = run.next_attempt_at
    (again,) = steps(inventory, probe, retry_at)
    assert (again.step, again.run_id) == ("resume", run.id)
    await execute(inventory, [again], concurrency=1, now=retry_at)
    (run,) = store_hooks.history(inventory.engine)
    assert (run.status, run.attempts) == ("failed", 2)
    assert run.next_attempt_at is not None
    assert run.finished_at is not None
    assert run.next_attempt_at - run.finished_at == backoff(2) == 2 * backoff(1)

    probe.status.write_text("0")
    later = run.next_attempt_at
    await execute(inventory, steps(inventory, probe, later), concurrency=1, now=later)
    (run,) = store_hooks.history(inventory.engine)
    assert (run.status, run.attempts, run.exit_status) == ("succeeded", 3, 0)
    assert run.next_attempt_at is None
    assert len(probe.runs()) == 3
    assert steps(inventory, probe, later + timedelta(days=30)) == []


def test_backoff_grows_and_is_capped() -> None:
    waits = [backoff(n) for n in range(1, 30)]
    assert waits[0] == timedelta(minutes=5)
    assert waits == sorted(waits)
    assert waits[-1] == timedelta(days=1)


async def test_approval_queues_until_approved(inventory: Inventory, tmp_path: Path) -> None:
    probe = Probe(tmp_path, approval=True)
    (queued,) = await execute(inventory, steps(inventory, probe, T0), concurrency=1, now=T0)
    assert queued.result is None
    assert probe.runs() == []
    (run,) = store_hooks.history(inventory.engine)
    assert (run.status, run.attempts) == ("pending", 0)
    assert steps(inventory, probe, T0 + timedelta(hours=1)) == []  # waits; queues nothing more

    assert store_hooks.decide(inventory.engine, run.id, approve=True, by="alice", now=T0)
    assert not store_hooks.decide(inventory.engine, run.id, approve=False, by="bob", now=T0)
    (todo,) = steps(inventory, probe, T0)
    assert (todo.step, todo.run_id) == ("resume", run.id)
    await execute(inventory, [todo], concurrency=1, now=T0)
    (run,) = store_hooks.history(inventory.engine)
    assert (run.status, run.decided_by, run.attempts) == ("succeeded", "alice", 1)
    assert len(probe.runs()) == 1


async def test_a_rejected_action_never_runs(inventory: Inventory, tmp_path: Path) -> None:
    probe = Probe(tmp_path, approval=True)
    await execute(inventory, steps(inventory, probe, T0), concurrency=1, now=T0)
    (run,) = store_hooks.history(inventory.engine)
    assert store_hooks.decide(inventory.engine, run.id, approve=False, by="bob", now=T0)
    assert steps(inventory, probe, T0 + timedelta(days=1)) == []
    assert probe.runs() == []


async def test_a_command_that_hangs_is_stopped_at_its_timeout(
    inventory: Inventory, tmp_path: Path
) -> None:
    table = {
        "action": "command",
        "command": [sys.executable, "-c", "import time; time.sleep(60)"],
        "timeout": 0.3,
    }
    hook = parse_hooks({"slow": table}, source="t.toml").hooks[0]
    todo = plan([hook], [finding()], endpoints(), {}, T0)
    (outcome,) = await execute(inventory, todo, concurrency=1, now=T0)
    assert outcome.result is not None
    assert not outcome.result.ok
    assert "timed out" in outcome.result.output_tail
    (run,) = store_hooks.history(inventory.engine)
    assert run.status == "failed"


async def test_a_missing_program_is_a_recorded_failure(inventory: Inventory) -> None:
    table = {"action": "command", "command": ["/nonexistent/certscan-renew"]}
    hook = parse_hooks({"gone": table}, source="t.toml").hooks[0]
    todo = plan([hook], [finding()], endpoints(), {}, T0)
    (outcome,) = await execute(inventory, todo, concurrency=1, now=T0)
    assert outcome.result is not None
    assert outcome.result.exit_status is None
    assert "cannot run" in outcome.result.output_tail


def test_a_schema_3_inventory_gains_the_hook_run_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v3.db'}"
    with Inventory(url) as inv, inv.engine.begin() as conn:  # back to what schema 3 looked like
        conn.exec_driver_sql("DROP TABLE hook_run")
        conn.execute(sa.update(tables.META).values(value="3"))
    with Inventory(url) as inv:
        with inv.engine.connect() as conn:
            assert sa.inspect(conn).has_table("hook_run")
            version = conn.execute(sa.select(tables.META.c.value)).scalar_one()
        assert version == str(tables.SCHEMA_VERSION) == "4"
        run = store_hooks.create(
            inv.engine, hook="h", sha256=SHA, address="127.0.0.1", port=1, sni=None,
            kind="expiring", status="pending", now=T0,
        )  # fmt: skip
        assert store_hooks.get(inv.engine, run) == store_hooks.history(inv.engine)[0]


async def test_a_run_left_running_by_a_dead_runner_is_taken_over(
    inventory: Inventory, tmp_path: Path
) -> None:
    probe = Probe(tmp_path, timeout=60)
    run = store_hooks.create(
        inventory.engine, hook="renew", sha256=SHA, address="127.0.0.1", port=8443,
        sni="www.example.test", kind="expiring", status="running", now=T0,
    )  # fmt: skip
    assert steps(inventory, probe, T0 + timedelta(minutes=5)) == []  # may still be running
    late = T0 + timedelta(seconds=60) + STALE_AFTER
    (todo,) = steps(inventory, probe, late)
    assert (todo.step, todo.run_id) == ("resume", run)
    await execute(inventory, [todo], concurrency=1, now=late)
    (record,) = store_hooks.history(inventory.engine)
    assert (record.status, record.attempts) == ("succeeded", 2)


async def test_run_hooks_evaluates_the_inventory_and_acts(
    inventory: Inventory, tmp_path: Path
) -> None:
    probe = Probe(tmp_path)
    config = HooksConfig(hooks=(probe.hook,))
    assert await run_hooks(inventory, config, now=T0) == []  # no findings in the inventory
    assert probe.runs() == []


async def test_an_approved_run_is_performed_even_if_its_finding_has_gone(
    inventory: Inventory, tmp_path: Path
) -> None:
    probe = Probe(tmp_path, approval=True)
    await execute(inventory, steps(inventory, probe, T0), concurrency=1, now=T0)
    (run,) = store_hooks.history(inventory.engine)
    store_hooks.decide(inventory.engine, run.id, approve=True, by="alice", now=T0)
    runs = store_hooks.latest(inventory.engine, ["renew"])
    (todo,) = plan([probe.hook], [], {}, runs, T0)  # no open finding any more
    assert (todo.step, todo.run_id, todo.ctx.sni) == ("resume", run.id, "www.example.test")
    await execute(inventory, [todo], concurrency=1, now=T0)
    (seen,) = probe.runs()
    assert seen["env"]["CERTSCAN_SHA256"] == SHA
