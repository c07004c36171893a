"""One failing action never stops another: two hooks act on one certificate, one of them fails
in each of the ways that used to escape the runner; the other succeeds, every row ends, and a
certificate Pebble issued but that could not be installed is installed on the next run without
a second order."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from exporters.hooks.acme import AcmeAction
from exporters.hooks.acme_options import AcmeOptions
from exporters.hooks.base import Action, ActionResult, HookContext
from exporters.hooks.config import Hook, Selector, parse_hooks
from exporters.hooks.runner import execute, plan
from exporters.hooks.webhook import WebhookAction
from scanner.errors import UsageError
from scanner.inventory import hooks as store_hooks
from scanner.inventory.read import EndpointRecord
from scanner.inventory.store import Inventory
from scanner.models import CertInfo, Finding, Severity
from tests.exporters.hooks.pebble import free_port, run_pebble
from tests.exporters.hooks.test_acme import NAME

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SHA = "cd" * 32


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Inventory]:
    url = (
        f"sqlite:///{tmp_path / 'inventory.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    with Inventory(url) as inv:
        yield inv


class Exploding:
    """An action with a bug: it raises what no action is meant to."""

    kind: ClassVar[str] = "command"

    async def run(self, ctx: HookContext) -> ActionResult:
        raise OSError(28, "No space left on device\nafter the CA issued")


def _hook(name: str, action: Action) -> Hook:
    return Hook(
        name=name,
        selector=Selector(kinds=frozenset({"expiring"})),
        action=action,
        timeout=20,
        approval=False,
    )


def _good(tmp: Path) -> Hook:
    flag = tmp / "good-ran"
    table = {
        "action": "command",
        "command": [sys.executable, "-c", f"open({str(flag)!r}, 'w').close()"],
    }
    return parse_hooks({"good": table}, source="t.toml").hooks[0]


def _acme(tmp: Path, **extra: Any) -> AcmeOptions:
    fields: dict[str, Any] = {
        "directory": "https://127.0.0.1:1/dir",  # never contacted when nothing is orderable
        "account_key": tmp / "account.pem",
        "key_path": tmp / "out" / "key.pem",
        "cert_path": tmp / "out" / "cert.pem",
        "listen": ("127.0.0.1", 1),
        "match_names": ("*.certscan.test",),
        "timeout": 10.0,
        "command_timeout": 5.0,
    }
    return AcmeOptions(**(fields | extra))


def _endpoints(sans: tuple[str, ...], sha: str = SHA) -> dict[Any, EndpointRecord]:
    leaf = CertInfo(der=b"x", sha256=sha, san_dns=sans, not_after=T0 + timedelta(days=3))
    record = EndpointRecord(
        address="127.3.6.1",
        port=443,
        sni=None,
        status="ok",
        error=None,
        tls_version="TLSv1.3",
        cipher=None,
        alpn=None,
        observed_at=T0,
        scan_id=1,
        chain=(leaf,),
    )
    return {("127.3.6.1", 443, None): record}


def _finding(sha: str = SHA) -> Finding:
    return Finding(
        kind="expiring",
        severity=Severity.HIGH,
        message="expires in 3 days",
        address="127.3.6.1",
        port=443,
        sni=None,
        sha256=sha,
    )


def _bad(tmp: Path, way: str) -> Hook:
    if way == "non_ascii_san":
        return _hook("bad", AcmeAction(options=_acme(tmp)))
    if way == "nul_in_output":
        table = {
            "action": "command",
            "command": [sys.executable, "-c", "print('a\\0b'); raise SystemExit(3)"],
        }
        return parse_hooks({"bad": table}, source="t.toml").hooks[0]
    if way == "malformed_url":
        return _hook("bad", WebhookAction(url="http://[127.0.0.1/x"))
    return _hook("bad", Exploding())


@pytest.mark.parametrize("way", ["non_ascii_san", "nul_in_output", "malformed_url", "raises"])
async def test_one_failing_action_never_stops_the_other(
    inventory: Inventory, tmp_path: Path, way: str
) -> None:
    hooks = [_bad(tmp_path, way), _good(tmp_path)]
    sans = ("ünïcode.certscan.test",) if way == "non_ascii_san" else ("www.certscan.test",)
    todo = plan(hooks, [_finding()], _endpoints(sans), {}, T0)
    assert len(todo) == 2
    with trio.fail_after(20):
        outcomes = await execute(inventory, todo, concurrency=2, now=T0)
    by_hook = {o.planned.hook.name: o for o in outcomes}
    good, bad = by_hook["good"].result, by_hook["bad"].result
    assert good is not None
    assert good.ok
    assert (tmp_path / "good-ran").exists()
    assert bad is not None
    assert not bad.ok
    rows = store_hooks.history(inventory.engine)
    assert sorted(r.status for r in rows) == ["failed", "succeeded"]
    (failed,) = [r for r in rows if r.hook == "bad"]
    assert failed.output_tail
    assert "\x00" not in failed.output_tail
    if way != "nul_in_output":
        assert "\n" not in failed.output_tail
    assert failed.next_attempt_at is not None
    if way == "nul_in_output":
        assert failed.output_tail == "a\ufffdb\n"


def test_a_malformed_webhook_url_is_refused_when_the_config_loads() -> None:
    for url in ("http://[127.0.0.1/x", "http://exa mple.test/", "http://", "http://u:p@h/x"):
        with pytest.raises(UsageError, match=r"^t\.toml: hooks\.n\.url: "):
            parse_hooks({"n": {"action": "webhook", "url": url}}, source="t.toml")


async def test_issued_but_not_installed_is_installed_next_run_without_a_new_order(
    tmp_path: Path,
) -> None:
    http_port = free_port()
    blocker = tmp_path / "deploy"
    blocker.write_text("a file where the certificate's directory should be")
    inv = Inventory(f"sqlite:///{tmp_path / 'inventory.db'}")
    with inv, trio.fail_after(40):
        async with run_pebble(tmp_path, http_port=http_port) as ca:
            options = _acme(
                tmp_path,
                directory=ca.directory,
                ca_bundle=ca.ca_bundle,
                listen=("127.0.0.1", http_port),
                names=(NAME,),
                match_names=(),
                cert_path=blocker / "cert.pem",
            )
            hooks = [_hook("renew", AcmeAction(options=options)), _good(tmp_path)]
            endpoints = _endpoints((NAME,))
            first = await execute(
                inv, plan(hooks, [_finding()], endpoints, {}, T0), concurrency=2, now=T0
            )
            runs = store_hooks.latest(inv.engine, ["renew", "good"])
            renew_run = runs["renew", SHA]
            assert renew_run.status == "failed"
            assert runs["good", SHA].status == "succeeded"
            assert renew_run.output_tail is not None
            assert "kept in" in renew_run.output_tail
            assert "installing failed" in renew_run.output_tail
            issued_prefix = renew_run.output_tail.split("issued ", 1)[1][:16]

            blocker.unlink()  # the operator fixes the deploy directory
            later = T0 + timedelta(days=2)
            second_plan = plan(hooks, [_finding()], endpoints, runs, later)
            assert [p.hook.name for p in second_plan] == ["renew"]
            second = await execute(inv, second_plan, concurrency=2, now=later)

    assert len(first) == 2
    (outcome,) = second
    assert outcome.result is not None
    assert outcome.result.ok, outcome.result.output_tail
    assert "installed the certificate issued earlier" in outcome.result.output_tail
    cert = x509.load_pem_x509_certificate((blocker / "cert.pem").read_bytes())
    digest = cert.fingerprint(hashes.SHA256()).hex()
    assert digest.startswith(issued_prefix)  # the first order's certificate: no second order
    assert outcome.result.new_sha256 == digest
    assert not (tmp_path / "out" / ".key.pem.certscan-issued").exists()
    for row in store_hooks.history(inv.engine):
        assert row.status != "running"
        assert "PRIVATE KEY" not in (row.output_tail or "")
