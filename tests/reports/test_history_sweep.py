"""Changes, regressions, fleets and renewals through the real sweep path: real TLS servers on
loopback (127.18.0.x) swapping certificates between sweeps, swept with ``scanner.sweep.run``
into a fresh SQLite inventory, judged by the findings the sweep records and by the report."""

from __future__ import annotations

import errno
import io
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from reports import assess
from reports.model import EndpointView
from reports.policy import Policy
from reports.trust import TrustStore
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.lab.certgen import Issued
from scanner.models import EngineLimits, Finding
from scanner.sweep.events import SilentEvents
from scanner.sweep.options import SweepOptions
from scanner.sweep.run import run
from tests import peers

FAST = EngineLimits(connect_timeout=2, handshake_timeout=2, target_deadline=3, concurrency=8)
DAY = timedelta(days=1)
NAME = "www.fleet.test"


@dataclass
class Switch:
    """The certificate a server presents, swapped between sweeps."""

    ctx: ssl.SSLContext

    def handler(self) -> peers.Handler:
        async def handle(stream: trio.SocketStream) -> None:
            tls = trio.SSLStream(stream, self.ctx, server_side=True)
            await tls.do_handshake()
            while await tls.receive_some(4096):
                pass

        return handle


@dataclass(frozen=True)
class Pki:
    root: Issued
    inter: Issued
    other: Issued  # an intermediate of another CA family
    other_root: Issued
    criteria: assess.Criteria


@pytest.fixture(scope="module")
def pki() -> Pki:
    start = datetime.now(UTC) - 1000 * DAY
    root = certgen.make_ca("Fleet Root", not_before=start)
    inter = certgen.make_ca("Fleet CA", issuer=root, not_before=start)
    other_root = certgen.make_ca("Elsewhere Root", org="Elsewhere CA", not_before=start)
    other = certgen.make_ca("Elsewhere CA", org="Elsewhere CA", issuer=other_root, not_before=start)
    trust = TrustStore.from_pem(root.cert_pem, other_root.cert_pem, mozilla=False)
    return Pki(root, inter, other, other_root, assess.Criteria(policy=Policy(), trust=trust))


def cert(
    issuer: Issued, *, ends_in: float, lifetime: float = 90, names: Sequence[str] = (NAME,)
) -> Issued:
    now = datetime.now(UTC)
    return certgen.make_leaf(
        issuer,
        cn=NAME,
        dns_names=list(names),
        not_before=now + (ends_in - lifetime) * DAY,
        not_after=now + ends_in * DAY,
    )


def context(pki: Pki, leaf: Issued, issuer: Issued | None = None) -> ssl.SSLContext:
    return peers.server_context([leaf, issuer or pki.inter])


async def sweep(pki: Pki, db: Path, addresses: Sequence[str], port: int) -> list[EndpointView]:
    options = SweepOptions(
        specs=tuple(addresses),
        ports=(port,),
        sni=NAME,
        limits=FAST,
        db_url=db_url(str(db)),
        db_label="test",
        progress=False,
        summary=False,
        criteria=pki.criteria,
        keep_views=True,
    )
    report = await run(options, out=io.StringIO(), events=SilentEvents())
    assert report.views is not None
    return sorted(report.views, key=lambda v: v.address)


def of_kinds(view: EndpointView, *kinds: str) -> list[Finding]:
    return [f for f in view.findings if f.kind in kinds]


CHANGE = ("certificate_changed", "material_change", "certificate_regressed")


@asynccontextmanager
async def same_port(
    addresses: Sequence[str], handlers: Sequence[peers.Handler]
) -> AsyncIterator[int]:
    """Serve ``handlers[i]`` on ``addresses[i]``, all on one port (found by binding port 0 on
    the first address; a port another test holds on the others is retried, 20 times at most)."""
    for _ in range(20):
        socks: list[trio.socket.SocketType] = []
        try:
            port = 0
            for address in addresses:
                sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                await sock.bind((address, port))
                port = sock.getsockname()[1]
                sock.listen(64)
        except OSError as exc:
            for sock in socks:
                sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        async with trio.open_nursery() as nursery:
            for sock, handler in zip(socks, handlers, strict=True):
                nursery.start_soon(
                    trio.serve_listeners, _wrap(handler), [trio.SocketListener(sock)]
                )
            yield port
            nursery.cancel_scope.cancel()
        return
    raise RuntimeError("no port free on every address")


def _wrap(handler: peers.Handler) -> peers.Handler:
    async def safe(stream: trio.SocketStream) -> None:
        try:
            async with stream:
                await handler(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass

    return safe


async def test_renewal_material_change_and_regression(pki: Pki, tmp_path: Path) -> None:
    db = tmp_path / "inventory.db"
    first = cert(pki.inter, ends_in=20)
    renewed = cert(pki.inter, ends_in=85)
    narrowed = cert(pki.other, ends_in=88, names=[NAME])  # another CA; drops api
    switch = Switch(context(pki, cert(pki.inter, ends_in=20, names=[NAME, "api.fleet.test"])))
    async with peers.serve("127.18.0.1", switch.handler()) as peer:
        views = await sweep(pki, db, [peer.address], peer.port)
        assert of_kinds(views[0], *CHANGE) == []

        switch.ctx = context(pki, first)  # same CA, SAN api.fleet.test dropped
        (view,) = await sweep(pki, db, [peer.address], peer.port)
        (found,) = of_kinds(view, *CHANGE)
        assert (found.kind, found.severity.label) == ("material_change", "high")
        assert "SANs removed: 'DNS:api.fleet.test'" in found.message

        switch.ctx = context(pki, renewed)  # a routine renewal
        (view,) = await sweep(pki, db, [peer.address], peer.port)
        (found,) = of_kinds(view, *CHANGE)
        assert (found.kind, found.severity.label) == ("certificate_changed", "info")
        assert "a renewal (same subject and SANs)" in found.message

        switch.ctx = context(pki, narrowed, pki.other)  # issuer moved to another CA
        (view,) = await sweep(pki, db, [peer.address], peer.port)
        (found,) = of_kinds(view, *CHANGE)
        assert (found.kind, found.severity.label) == ("material_change", "medium")
        assert "issuer changed from 'certscan lab' to 'Elsewhere CA'" in found.message

        switch.ctx = context(pki, first)  # failover to a stale replica
        (view,) = await sweep(pki, db, [peer.address], peer.port)
        (found,) = of_kinds(view, *CHANGE)
        assert (found.kind, found.severity.label) == ("certificate_regressed", "high")
        assert "which this endpoint served until" in found.message

    with Inventory(db_url(str(db))) as inv:
        stored = {f.kind for f in inv.findings()}
        report = assess.read_views(inv, criteria=pki.criteria, now=datetime.now(UTC))
    assert "certificate_regressed" in stored
    assert {f.kind for f in report[0].findings} >= {"certificate_regressed"}


async def test_one_stale_node_of_three(pki: Pki, tmp_path: Path) -> None:
    fresh, stale = cert(pki.inter, ends_in=80), cert(pki.inter, ends_in=3)
    addresses = ["127.18.1.1", "127.18.1.2", "127.18.1.3"]
    switches = [
        Switch(context(pki, fresh)),
        Switch(context(pki, stale)),
        Switch(context(pki, fresh)),
    ]
    async with same_port(addresses, [s.handler() for s in switches]) as port:
        views = await sweep(pki, tmp_path / "fleet.db", addresses, port)
        by_address = {v.address: of_kinds(v, "fleet_inconsistent") for v in views}
        assert by_address["127.18.1.1"] == by_address["127.18.1.3"] == []
        (found,) = by_address["127.18.1.2"]
        assert found.severity.label == "high"  # the stale one expires in 3 days
        assert found.message.startswith(
            f"'{NAME}':{port} presents 2 certificates on 3 addresses; 127.18.1.2 still serves "
            f"sha256 {found.sha256[:16]}… (expires in 2 days)"  # type: ignore[index]
        )

        switches[1].ctx = context(pki, fresh)  # the node is fixed: the finding resolves
        views = await sweep(pki, tmp_path / "fleet.db", addresses, port)
        assert all(of_kinds(v, "fleet_inconsistent") == [] for v in views)
    with Inventory(db_url(str(tmp_path / "fleet.db"))) as inv:
        history = inv.findings(open_only=False)
    (closed,) = [f for f in history if f.kind == "fleet_inconsistent"]
    assert closed.resolved_at is not None


async def test_renewal_behaviour_from_real_sweeps(pki: Pki, tmp_path: Path) -> None:
    db = tmp_path / "renewals.db"
    # Renewed 1 day, then 2 days, before the old certificate expired: a late habit.
    late = [cert(pki.inter, ends_in=1), cert(pki.inter, ends_in=2), cert(pki.inter, ends_in=90)]
    switch = Switch(context(pki, late[0]))
    async with peers.serve("127.18.2.1", switch.handler()) as peer:
        for issued in late:
            switch.ctx = context(pki, issued)
            (view,) = await sweep(pki, db, [peer.address], peer.port)
    (found,) = of_kinds(view, "renews_late")
    assert "the last 2 renewals came 1 day before and 2 days before" in found.message
    assert view.automation == "automated"  # regular, if late, lead times

    # Renewed 30 days ahead, then nothing: 70 days on, the successor is overdue.
    db = tmp_path / "overdue.db"
    early = [cert(pki.inter, ends_in=30), cert(pki.inter, ends_in=89)]
    async with peers.serve("127.18.2.2", switch.handler()) as peer:
        for issued in early:
            switch.ctx = context(pki, issued)
            await sweep(pki, db, [peer.address], peer.port)
    with Inventory(db_url(str(db))) as inv:
        later = datetime.now(UTC) + 70 * DAY
        (view,) = assess.read_views(inv, criteria=pki.criteria, now=later)
        (now_view,) = assess.read_views(inv, criteria=pki.criteria, now=datetime.now(UTC))
    (found,) = of_kinds(view, "renewal_not_observed")
    assert "no successor has been seen" in found.message
    assert of_kinds(now_view, "renewal_not_observed") == []
    assert view.automation == "one renewal"
