"""ARI (RFC 9773) against the test suite's renewalInfo responder on loopback: certificate IDs
exactly as the RFC computes them, the window of a discovered certificate stored and exported, a
window moved before the policy's point raising ``ca_requests_early_renewal`` (resolved when it
moves back), and the ``acme`` hook waiting for the window to open."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import hashes
from prometheus_client import CollectorRegistry

from exporters.hooks.acme import AcmeAction
from exporters.hooks.ari import AriError, parse_window, retry_after
from exporters.hooks.ari_id import cert_id, cert_id_from_hex
from exporters.hooks.ari_scan import policy_point, scan_windows
from exporters.hooks.config import parse_hooks
from exporters.hooks.runner import execute, plan
from exporters.prometheus import CertscanCollector
from reports.policy import Policy
from scanner.engine.crew import probe
from scanner.inventory.store import Inventory
from scanner.lab.certgen import make_ca, make_leaf
from scanner.models import CertInfo, EngineLimits, Handshake
from scanner.parse import parse_certificate
from tests import peers
from tests.exporters.hooks.ari_responder import rfc9773_id, run_responder
from tests.exporters.hooks.test_isolation import _acme, _endpoints, _finding, _hook

FAST = EngineLimits(connect_timeout=2.0, handshake_timeout=2.0, target_deadline=3.0)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def test_the_rfcs_example_id() -> None:
    """RFC 9773 section 4.1: keyIdentifier 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:
    01:C8:D4 and serial 0x87654321 (DER content 00 87 65 43 21)."""
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    assert cert_id(aki, 0x87654321) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert cert_id_from_hex(aki.hex(), "87654321") == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert cert_id(b"\x01", 0x7F).endswith(".fw")  # no sign byte needed
    assert cert_id(b"\x01", 0x80).endswith(".AIA")
    assert cert_id_from_hex(None, "01") is None


def test_the_id_matches_an_independent_computation() -> None:
    leaf = make_leaf(make_ca("certscan ari id root"), cn="x.certscan.test")
    info = parse_certificate(leaf.der)
    assert cert_id_from_hex(info.authority_key_id, info.serial) == rfc9773_id(leaf.cert)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[]", "no suggestedWindow"),
        (b'{"suggestedWindow": {"start": "yesterday", "end": "x"}}', "start is not"),
        (b'{"suggestedWindow": {"start": "2026-01-02T00:00:00", "end": "x"}}', "no time zone"),
        (
            b'{"suggestedWindow": {"start": "2026-01-02T00:00:00Z", '
            b'"end": "2026-01-01T00:00:00Z"}}',
            "ends before",
        ),
        (b"\xff", "not JSON"),
    ],
)
def test_hostile_answers_are_one_line_errors(body: bytes, why: str) -> None:
    with pytest.raises(AriError, match=why):
        parse_window(body, None, NOW)


def test_retry_after_is_honoured_within_bounds() -> None:
    assert retry_after("120", NOW) == NOW + timedelta(seconds=120)
    assert retry_after("1", NOW) == NOW + timedelta(minutes=1)
    assert retry_after("99999999", NOW) == NOW + timedelta(days=1)
    assert retry_after("Thu, 03 Dec 2026 14:00:00 GMT", NOW) == NOW + timedelta(hours=2)
    assert retry_after("soon", NOW) == NOW + timedelta(hours=6)


async def test_a_discovered_certificate_whose_ca_moves_the_window_early(tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    issuer = make_ca("certscan ARI issuing CA")
    leaf = make_leaf(
        issuer,
        cn="ari.certscan.test",
        dns_names=["ari.certscan.test"],
        not_before=now - timedelta(days=30),
        not_after=now + timedelta(days=60),
    )
    sha = leaf.cert.fingerprint(hashes.SHA256()).hex()
    with Inventory(f"sqlite:///{tmp_path / 'inv.db'}") as inv, trio.fail_after(30):
        async with (
            run_responder("127.3.9.1") as ca,
            peers.serve("127.3.9.2", peers.tls_server(peers.server_context([leaf]))) as peer,
        ):
            outcome = await probe(peer.target("ari.certscan.test"), FAST)
            assert isinstance(outcome, Handshake)
            scan = inv.start_scan(spec={"targets": ["127.3.9.2"]}, total=1)
            inv.record_batch(
                scan, [(outcome, [parse_certificate(d) for d in outcome.chain])], watermark=1
            )
            config = parse_hooks(
                None,
                source="t.toml",
                ari={
                    "directories": {"certscan ARI issuing CA": ca.directory},
                    "ca_bundle": ca.ca_bundle,
                },
            ).ari
            assert config is not None
            # the CA moves the window to tomorrow, long before the policy's day 30 before expiry
            ca.set_window(leaf.cert, now + timedelta(days=1), now + timedelta(days=2))
            (first,) = await scan_windows(inv, config, now)
            assert first.early is True
            assert f"/ari/{rfc9773_id(leaf.cert)}" in ca.paths
            early = [
                f for f in inv.findings(open_only=True) if f.kind == "ca_requests_early_renewal"
            ]
            assert [(f.address, f.sha256) for f in early] == [("127.3.9.2", sha)]
            assert "https://ca.certscan.test/why" in early[0].message

            assert await scan_windows(inv, config, now + timedelta(minutes=30)) == []  # Retry-After

            registry = CollectorRegistry(auto_describe=False)
            registry.register(CertscanCollector(inv))
            start = registry.get_sample_value(
                "certscan_certificate_renewal_window_start_timestamp_seconds", {"sha256": sha}
            )
            assert start == (now + timedelta(days=1)).timestamp()

            ca.set_window(leaf.cert, now + timedelta(days=35), now + timedelta(days=40))
            (again,) = await scan_windows(inv, config, now + timedelta(hours=2))
            assert again.early is False
            assert not [
                f for f in inv.findings(open_only=True) if f.kind == "ca_requests_early_renewal"
            ]
            # The same window, judged by a config whose [policy] renews only 10 days before
            # expiry (day 50): the CA's day 35 is now early.
            late = parse_hooks(
                None,
                source="t.toml",
                ari={
                    "directories": {"certscan ARI issuing CA": ca.directory},
                    "ca_bundle": ca.ca_bundle,
                },
                policy=Policy(expiring_high_days=10, expiring_critical_days=3),
            ).ari
            assert late is not None
            (third,) = await scan_windows(inv, late, now + timedelta(hours=4))
            assert third.early is True


async def test_the_acme_hook_waits_for_the_window(tmp_path: Path) -> None:
    """The hook's CA (here the responder) says the window opens in 10 days: nothing is ordered
    and the run is tried again when the CA said to ask again (Retry-After, 1 hour)."""
    leaf = make_leaf(make_ca("certscan managed CA"), cn="w.certscan.test")
    info = parse_certificate(leaf.der)
    now = datetime.now(UTC)
    with Inventory(f"sqlite:///{tmp_path / 'inv.db'}") as inv, trio.fail_after(30):
        async with run_responder("127.3.9.3") as ca:
            ca.set_window(leaf.cert, now + timedelta(days=10), now + timedelta(days=12))
            options = _acme(
                tmp_path,
                directory=ca.directory,
                ca_bundle=Path(ca.ca_bundle),
                names=("w.certscan.test",),
            )
            hook = _hook("renew", AcmeAction(options=options))
            records = {
                k: dataclasses.replace(r, chain=(info,))
                for k, r in _endpoints(("w.certscan.test",), sha=info.sha256).items()
            }
            todo = plan([hook], [_finding(info.sha256)], records, {}, now)
            assert todo[0].ctx.replaces == rfc9773_id(leaf.cert)
            (done,) = await execute(inv, todo, concurrency=1, now=now)
    assert done.result is not None
    assert not done.result.ok
    assert "waiting for the CA's renewal window" in done.result.output_tail
    assert done.result.retry_at is not None
    assert abs((done.result.retry_at - now).total_seconds() - 3600) < 60
    assert not any(p.startswith("/nonce") for p in ca.paths)  # no ACME request was made
    assert not (tmp_path / "out").exists()


def test_the_policy_point_follows_the_policy() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)

    def leaf(days: float) -> CertInfo:
        return CertInfo(der=b"", sha256="0" * 64, not_before=now, not_after=now + timedelta(days))

    year, ninety, nine = leaf(365), leaf(90), leaf(9)
    assert policy_point(ninety, Policy()) == now + timedelta(days=60)  # 30 days before
    assert policy_point(nine, Policy()) == now + timedelta(days=6)  # a third of 9 days
    wide = Policy(expiring_high_days=45, expiring_critical_days=7)
    assert policy_point(year, wide) == now + timedelta(days=320)
    # 90 days is short-lived under a 45-day lead (below 135 days): the lead shrinks to a third
    # of the lifetime, as the expiring finding's does.
    assert policy_point(ninety, wide) == now + timedelta(days=60)
    assert policy_point(ninety, Policy(expiring_high_fraction=0.5)) == now + timedelta(days=45)
    assert policy_point(CertInfo(der=b"", sha256="0" * 64), Policy()) is None
