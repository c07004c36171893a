"""Fleet consistency (reports.fleet), table by table: which endpoints of a name are stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from reports.fleet import fleet_inconsistencies
from reports.model import EndpointInput
from reports.policy import Policy
from scanner.models import CertInfo, Severity

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def leaf(n: int, ends_in: float) -> CertInfo:
    return CertInfo(
        der=b"",
        sha256=f"{n:02x}" * 32,
        not_before=NOW + (ends_in - 90) * DAY,
        not_after=NOW + ends_in * DAY,
    )


def at(
    address: str, cert: CertInfo | None, *, sni: str | None = "www.example.test"
) -> EndpointInput:
    return EndpointInput(
        address=address, port=443, sni=sni, status="ok", chain=(cert,) if cert else ()
    )


def judge(*endpoints: EndpointInput) -> dict[str, tuple[Severity, str]]:
    found = fleet_inconsistencies(endpoints, now=NOW, policy=Policy())
    return {key[0]: (p.severity, p.message) for key, p in found.items()}


def test_one_certificate_everywhere_is_consistent() -> None:
    a = leaf(1, 60)
    assert judge(at("127.0.0.1", a), at("127.0.0.2", a), at("127.0.0.3", a)) == {}


def test_unnamed_endpoints_and_single_addresses_are_not_grouped() -> None:
    assert (
        judge(at("127.0.0.1", leaf(1, 60), sni=None), at("127.0.0.2", leaf(2, 80), sni=None)) == {}
    )
    assert judge(at("127.0.0.1", leaf(1, 60))) == {}
    assert judge(at("127.0.0.1", leaf(1, 60)), at("127.0.0.2", None)) == {}


def test_stale_nodes_are_named_and_graded() -> None:
    fresh, healthy_old, dying = leaf(1, 80), leaf(2, 60), leaf(3, 2)
    found = judge(
        at("127.0.0.10", fresh),
        at("127.0.0.9", healthy_old),
        at("127.0.0.2", healthy_old),
        at("127.0.0.4", fresh),
    )
    assert set(found) == {"127.0.0.2", "127.0.0.9"}
    severity, message = found["127.0.0.2"]
    assert severity is Severity.MEDIUM
    assert message == (
        "'www.example.test':443 presents 2 certificates on 4 addresses; 127.0.0.2 and "
        "127.0.0.9 still serve sha256 0202020202020202… (expires in 60 days) where the others "
        "serve 0101010101010101… (expires in 80 days)"
    )
    found = judge(at("127.0.0.1", fresh), at("127.0.0.2", dying), at("127.0.0.3", healthy_old))
    assert set(found) == {"127.0.0.2", "127.0.0.3"}
    assert {s for s, _ in found.values()} == {Severity.HIGH}  # one of them expires in 2 days
    assert (
        "127.0.0.2 still serves sha256 0303030303030303… (expires in 2 days)"
        in (found["127.0.0.2"][1])
    )


def test_names_compare_without_case() -> None:
    found = judge(
        at("127.0.0.1", leaf(1, 80), sni="WWW.example.test"), at("127.0.0.2", leaf(2, 70))
    )
    assert set(found) == {"127.0.0.2"}
