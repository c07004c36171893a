"""Notifications through the product: real ``certscan sweep --run-hooks`` runs of TLS servers on
loopback, an ``email`` hook sending to a real SMTP server (aiosmtpd, STARTTLS and login; the
fixture of test_email). One message per certificate across its endpoints; no repeat until the
finding rises or the certificate changes; a daily digest kept in the inventory across a
restart and delivered once after its UTC day."""

from __future__ import annotations

import email
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives import hashes

from exporters.hooks.config import parse_hooks
from exporters.hooks.runner import after_hooks, evaluate, execute
from scanner.inventory import notify as store_notify
from scanner.inventory.store import Inventory
from scanner.lab.certgen import Issued, make_ca, make_leaf
from tests import peers
from tests.exporters.hooks.test_email import HOST as SMTP_HOST
from tests.exporters.hooks.test_email import PASSWORD, USER, Inbox, smtp  # noqa: F401
from tests.scanner.cli.test_app import certscan

NAME = "notify.certscan.test"
ENV = "CERTSCAN_TEST_SMTP_PASSWORD"
SMTP = tuple[Inbox, int, Path]


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv(ENV, PASSWORD)


class Reloadable:
    """A TLS server presenting ``ctx`` until the test swaps in another."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx

    async def handle(self, stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, self.ctx, server_side=True)
        try:
            await tls.do_handshake()
            while await tls.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass


def leaf(root: Issued, days_left: float, lifetime: float = 365) -> Issued:
    now = datetime.now(UTC)
    return make_leaf(
        root,
        cn=NAME,
        dns_names=[NAME],
        not_before=now - timedelta(days=lifetime - days_left),
        not_after=now + timedelta(days=days_left),
    )


def sha(issued: Issued) -> str:
    return issued.cert.fingerprint(hashes.SHA256()).hex()


def hook_table(port: int, ca: Path, **extra: Any) -> dict[str, Any]:
    return {
        "action": "email",
        "kinds": ["expiring"],
        "smtp_host": SMTP_HOST,
        "smtp_port": port,
        "username": USER,
        "password_env": ENV,
        "from": "certscan@example.org",
        "to": ["pki@example.org"],
        "tls_ca": str(ca),
        "timeout": 30,
        **extra,
    }


def write_config(path: Path, table: dict[str, Any], policy: str = "") -> Path:
    lines = [f"[policy]\n{policy}\n", "[hooks.mail]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@asynccontextmanager
async def servers(addresses: list[str], ctx: ssl.SSLContext) -> AsyncIterator[list[str]]:
    """One TLS server per address presenting ``ctx``; yields the sweep specs."""
    async with AsyncExitStack() as stack:
        specs = []
        for address in addresses:
            peer = await stack.enter_async_context(peers.serve(address, tls_handler(ctx)))
            specs.append(f"{peer.address}:{peer.port}")
        yield specs


def tls_handler(ctx: ssl.SSLContext) -> peers.Handler:
    return Reloadable(ctx).handle


def messages(inbox: Inbox) -> list[EmailMessage]:
    out = []
    for _, _, raw in inbox.messages:
        message = email.message_from_bytes(raw, policy=default_policy)
        assert isinstance(message, EmailMessage)
        out.append(message)
    return out


async def sweep(specs: list[str], db: Path, config: Path) -> None:
    proc = await certscan(
        "sweep", *specs, "--sni", NAME, "--db", str(db), "--config", str(config),
        "--no-progress", "--handshake-timeout", "2", "--deadline", "4", "--run-hooks",
        timeout=60,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr.decode()
    assert b"hooks: " in proc.stderr, proc.stderr.decode()
    assert b"0 failed" in proc.stderr, proc.stderr.decode()


async def test_one_message_names_the_certificate_once_with_every_endpoint(
    smtp: SMTP,  # noqa: F811
    tmp_path: Path,
) -> None:
    inbox, port, ca = smtp
    root = make_ca("certscan notify root")
    shared = leaf(root, days_left=20)
    addresses = [f"127.3.20.{i}" for i in range(1, 13)]
    config = write_config(tmp_path / "c.toml", hook_table(port, ca))
    with trio.fail_after(90):
        async with servers(addresses, peers.server_context([shared])) as specs:
            await sweep(specs, tmp_path / "inv.db", config)
    (message,) = messages(inbox)  # 12 endpoints, one certificate: one message
    subject = str(message["Subject"])
    assert subject == f"certscan: high expiring on {NAME} (12 endpoints)"
    body = message.get_content()
    assert body.count(sha(shared)) == 1
    assert "endpoints:   12 presenting this certificate" in body
    listed = [line for line in body.splitlines() if line.startswith("  - ")]
    assert len(listed) == 10
    assert all(f"(SNI {NAME})" in line for line in listed)
    assert "  ... and 2 more" in body
    shown = {line[4:].split(":")[0] for line in listed}
    assert shown <= set(addresses)


async def test_no_repeat_until_the_finding_rises_or_the_certificate_changes(
    smtp: SMTP,  # noqa: F811
    tmp_path: Path,
) -> None:
    inbox, port, ca = smtp
    root = make_ca("certscan notify root")
    first, second = leaf(root, days_left=20), leaf(root, days_left=19)
    db = tmp_path / "inv.db"
    plain = write_config(tmp_path / "plain.toml", hook_table(port, ca))
    # The same certificate judged critical: its critical window now starts 25 days out.
    strict = write_config(
        tmp_path / "strict.toml", hook_table(port, ca), "expiring_critical_days = 25"
    )
    server = Reloadable(peers.server_context([first]))
    with trio.fail_after(240):
        async with peers.serve("127.3.21.1", server.handle) as peer:
            spec = [f"{peer.address}:{peer.port}"]
            await sweep(spec, db, plain)
            assert [str(m["Subject"]) for m in messages(inbox)] == [
                f"certscan: high expiring on {NAME}"
            ]
            await sweep(spec, db, plain)  # the same finding: not sent again
            assert len(inbox.messages) == 1
            await sweep(spec, db, strict)  # high -> critical: sent
            assert len(inbox.messages) == 2
            await sweep(spec, db, strict)  # still critical: not again
            assert len(inbox.messages) == 2
            server.ctx = peers.server_context([second])  # a new certificate: its own message
            await sweep(spec, db, strict)
            assert len(inbox.messages) == 3
            await sweep(spec, db, strict)
    sent = messages(inbox)
    assert len(sent) == 3
    assert str(sent[1]["Subject"]) == f"certscan: critical expiring on {NAME}"
    assert sha(first) in sent[0].get_content()
    assert sha(first) in sent[1].get_content()
    assert sha(second) in sent[2].get_content()
    assert sha(first) not in sent[2].get_content()


async def test_the_daily_digest_survives_a_restart_and_is_sent_once_after_its_day(
    smtp: SMTP,  # noqa: F811
    tmp_path: Path,
) -> None:
    inbox, port, ca = smtp
    root = make_ca("certscan digest root")
    one, two = leaf(root, days_left=20), leaf(root, days_left=5)
    db = tmp_path / "inv.db"
    config = write_config(tmp_path / "c.toml", {})  # no hooks while sweeping
    with trio.fail_after(90):
        async with (
            servers(["127.3.22.1"], peers.server_context([one])) as a,
            servers(["127.3.22.2", "127.3.22.3"], peers.server_context([two])) as b,
        ):
            proc = await certscan(
                "sweep", *a, *b, "--sni", NAME, "--db", str(db), "--config", str(config),
                "--no-progress", "--quiet", timeout=60,
            )  # fmt: skip
            assert proc.returncode in (0, 1), proc.stderr.decode()
    url = f"sqlite:///{db}"
    hooks = parse_hooks({"mail": hook_table(port, ca, digest="daily")}, source="t.toml")
    collected = datetime(2031, 5, 1, 9, 30, tzinfo=UTC)

    async def run(at: datetime, config: Any = hooks) -> list[Any]:
        with Inventory(url) as inv:  # a fresh open each time: nothing lives in memory
            steps = await trio.to_thread.run_sync(evaluate, inv, config, at)
            done = await execute(inv, steps, concurrency=2, now=at)
            assert all(o.result is not None and o.result.ok for o in done)
            return await after_hooks(inv, config, done, at)

    assert await run(collected) == []  # two certificates kept, nothing sent
    assert await run(collected + timedelta(hours=14, minutes=29)) == []  # 23:59: the day goes on
    assert inbox.messages == []
    with Inventory(url) as inv:
        assert store_notify.pending(inv.engine, ["mail"]) == {
            ("mail", store_notify.window_of(collected)): 2
        }

    # The SMTP server is unreachable at first: kept, retried after the back-off.
    down = parse_hooks({"mail": hook_table(1, ca, digest="daily")}, source="t.toml")
    after = datetime(2031, 5, 2, 0, 0, 5, tzinfo=UTC)
    (failed,) = await run(after, down)
    assert not failed.result.ok
    assert await run(after + timedelta(minutes=1)) == []  # within the back-off
    (delivered,) = await run(after + timedelta(minutes=10))
    assert delivered.result.ok, delivered.result.output_tail
    assert (delivered.certificates, delivered.window_start) == (2, datetime(2031, 5, 1, tzinfo=UTC))
    assert await run(after + timedelta(hours=1)) == []  # never twice
    (message,) = messages(inbox)
    assert (
        str(message["Subject"])
        == "certscan digest 2031-05-01 (UTC): 2 certificates, worst critical"
    )
    body = message.get_content()
    assert body.count(sha(one)) == 1
    assert body.count(sha(two)) == 1
    assert "endpoints:   2 presenting this certificate" in body
    assert "2031-05-01T00:00:00+00:00 to 2031-05-02T00:00:00+00:00 (UTC)" in body
