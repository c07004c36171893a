"""Owners and tags: the [owners] rules (reports.owners), their storage and re-evaluation without a
rescan (scanner.inventory.owners), ``unowned``, ``certscan owners``, ``report --owner`` and the
hook selectors, over an inventory built by real sweeps of loopback TLS servers."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from exporters.hooks.config import Selector, parse_hooks
from exporters.hooks.runner import plan
from exporters.prometheus import CertscanCollector
from reports import assess
from reports.owners import Owners, parse_owners
from reports.policy import Policy
from reports.trust import TrustStore
from scanner.errors import UsageError
from scanner.inventory.owners import OwnerAssignment
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import EngineLimits, Finding, Severity
from scanner.sweep.events import SilentEvents
from scanner.sweep.options import SweepOptions
from scanner.sweep.run import run
from tests import peers
from tests.scanner.cli.test_app import one_line_error, run_main

RULES: dict[str, Any] = {
    "rule": [
        {
            "name": "shop",
            "owner": "web-team",
            "environment": "prod",
            "tags": ["pci", "public"],
            "addresses": ["127.18.5.0/30"],
            "names": ["*.shop.test"],
        },
        {"owner": "infra", "addresses": ["127.18.5.0/24"], "ports": [8443]},
        {"name": "lab", "owner": "lab-team", "addresses": ["127.18.6.0/24"]},
    ]
}


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def owners() -> Owners:
    return parse_owners(RULES, source="t.toml")


@pytest.mark.parametrize(
    ("address", "port", "sni", "expected"),
    [
        ("127.18.5.1", 443, "www.shop.test", ("web-team", "shop")),
        ("127.18.5.1", 443, "WWW.Shop.Test.", ("web-team", "shop")),  # case, trailing dot
        ("127.18.5.1", 8443, "www.shop.test", ("web-team", "shop")),  # first match wins
        ("127.18.5.1", 8443, None, ("infra", "rule 2")),  # no name: rule 1 cannot match
        ("127.18.5.9", 8443, "www.shop.test", ("infra", "rule 2")),  # outside rule 1's range
        ("127.18.5.9", 443, "www.shop.test", None),  # rule 2 wants port 8443
        ("127.18.6.3", 1, None, ("lab-team", "lab")),
        ("::1", 443, "www.shop.test", None),
    ],
)
def test_first_matching_rule_wins(
    address: str, port: int, sni: str | None, expected: tuple[str, str] | None
) -> None:
    found = owners().assign(address, port, sni)
    assert (None if found is None else (found.owner, found.rule)) == expected


def test_an_assignment_carries_environment_and_tags() -> None:
    found = owners().assign("127.18.5.2", 443, "a.shop.test")
    assert found == OwnerAssignment(
        owner="web-team", environment="prod", tags=("pci", "public"), rule="shop"
    )


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"rule": [{"names": ["x"]}]}, "owners.rule[1].owner: expected a non-empty string"),
        ({"rule": [{"owner": "a", "addresses": ["10.0.0.0/33"]}]}, "rule[1].addresses: not an"),
        ({"rule": [{"owner": "a", "ports": [0]}]}, "owners.rule[1].ports"),
        ({"rule": [{"owner": "a", "colour": "red"}]}, "owners.rule[1].colour: unknown key"),
        ({"rule": [{"owner": "a\x1b[31m"}]}, "control characters"),
        ({"rule": [{"owner": "a", "name": "x"}, {"owner": "b", "name": "x"}]}, "two rules"),
        ({"rules": []}, "owners.rules: unknown key"),
        ({"rule": "web"}, "expected [[owners.rule]] tables"),
    ],
)
def test_bad_rules_are_one_line(section: dict[str, Any], needle: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_owners(section, source="t.toml")
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


def test_selectors_by_owner_and_tag() -> None:
    facts: dict[str, Any] = {
        "kind": "expiring",
        "severity": Severity.HIGH,
        "address": "127.0.0.1",
        "port": 443,
        "sni": None,
        "names": (),
    }
    selector = Selector(owners=frozenset({"web-team"}), tags=frozenset({"pci"}))
    assert selector.matches(**facts, owner="web-team", tags=("public", "pci"))
    assert not selector.matches(**facts, owner="web-team", tags=("public",))
    assert not selector.matches(**facts, owner="infra", tags=("pci",))
    assert not selector.matches(**facts)  # unowned
    assert Selector().matches(**facts)  # no owner criteria: any
    hooks = parse_hooks(
        {"h": {"action": "command", "command": ["true"], "owners": ["web-team"], "tags": ["pci"]}},
        source="t.toml",
    )
    assert hooks.hooks[0].selector.owners == frozenset({"web-team"})
    with pytest.raises(UsageError, match=r"hooks\.h\.owners"):
        parse_hooks({"h": {"action": "command", "command": ["true"], "owners": "x"}}, source="t")


# --- through real sweeps ---------------------------------------------------------------------

FAST = EngineLimits(connect_timeout=2, handshake_timeout=2, target_deadline=3, concurrency=8)


async def swept(tmp_path: Path, addresses: Sequence[str], sni: str) -> tuple[str, int]:
    """Sweep TLS servers on ``addresses`` (one port each) into a fresh inventory; returns its
    URL and the port of the first server."""
    root = certgen.make_ca("Owners Root")
    leaf = certgen.make_leaf(root, cn=sni, dns_names=[sni], days=30)
    url = db_url(str(tmp_path / "owners.db"))
    ctx = peers.server_context([leaf])
    trust = TrustStore.from_pem(root.cert_pem, mozilla=False)
    criteria = assess.Criteria(policy=Policy(), trust=trust, owners=owners())
    async with (
        peers.serve(addresses[0], peers.tls_server(ctx)) as first,
        peers.serve(addresses[1], peers.tls_server(ctx)) as second,
    ):
        for peer in (first, second):
            options = SweepOptions(
                specs=(peer.address,),
                ports=(peer.port,),
                sni=sni,
                limits=FAST,
                db_url=url,
                db_label="test",
                progress=False,
                summary=False,
                criteria=criteria,
                keep_views=True,
            )
            report = await run(options, out=io.StringIO(), events=SilentEvents())
            by_address = {v.address: v for v in report.views}
            view = by_address[peer.address]
            if peer is first:
                assert (view.owner, view.environment, view.tags) == (
                    "web-team",
                    "prod",
                    ("pci", "public"),
                )
                assert "unowned" not in {f.kind for f in view.findings}
            else:
                assert view.owner is None
                (found,) = [f for f in view.findings if f.kind == "unowned"]
                assert found.severity is Severity.LOW
                assert "no [owners] rule matches" in found.message
    return url, first.port


async def test_owners_are_stored_and_follow_the_config(tmp_path: Path) -> None:
    url, port = await swept(tmp_path, ["127.18.5.1", "127.18.7.1"], "www.shop.test")
    with Inventory(url) as inv:
        stored = inv.owners()
        assert set(stored) == {("127.18.5.1", port, "www.shop.test")}
        assert stored[("127.18.5.1", port, "www.shop.test")].rule == "shop"
        # the config changes: a catch-all rule owns the rest, without a rescan
        catch_all = {"rule": [*RULES["rule"], {"name": "rest", "owner": "platform"}]}
        changed = assess.record_owners(inv, parse_owners(catch_all, source="t"), now=_now())
        assert changed == 1
        assert {a.owner for a in inv.owners().values()} == {"web-team", "platform"}
        assert assess.record_owners(inv, parse_owners(catch_all, source="t"), now=_now()) == 0
        # the owner label: off by default, bounded values when asked for
        plain, labelled = CollectorRegistry(), CollectorRegistry()
        plain.register(CertscanCollector(inv))
        labelled.register(CertscanCollector(inv, owner_label=True))
        where = {"address": "127.18.5.1", "port": str(port), "sni": "www.shop.test"}
        assert plain.get_sample_value("certscan_endpoint_up", where) == 1.0
        assert (
            plain.get_sample_value("certscan_endpoint_up", {**where, "owner": "web-team"}) is None
        )
        assert (
            labelled.get_sample_value("certscan_endpoint_up", {**where, "owner": "web-team"}) == 1.0
        )
        # rules removed: the stored assignments go too
        assert assess.record_owners(inv, Owners(), now=_now()) == 2
        assert inv.owners() == {}


async def test_owners_command_report_filter_and_hooks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, port = await swept(tmp_path, ["127.18.5.2", "127.18.7.2"], "www.shop.test")
    config = tmp_path / "config.toml"
    config.write_text(
        "[[owners.rule]]\n"
        'name = "shop"\nowner = "web-team"\ntags = ["pci"]\naddresses = ["127.18.5.0/30"]\n'
    )
    db = ["--db", url, "--config", str(config)]
    code, out, err = run_main(["owners", "--json", *db], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [(r["address"], r["owner"], r["rule"], r["tags"]) for r in rows] == [
        ("127.18.5.2", "web-team", "shop", ["pci"]),
        ("127.18.7.2", None, None, []),
    ]
    assert "2 endpoints, 1 owned, 1 unowned (1 rules" in err
    code, _, _ = run_main(["owners", "--fail-unowned", *db], capsys)
    assert code == 1
    code, out, _ = run_main(["report", "--format", "json", "--owner", "web-team", *db], capsys)
    document = json.loads(out)
    assert code == 0
    assert [e["address"] for e in document["endpoints"]] == ["127.18.5.2"]

    hooks = parse_hooks(
        {"pci": {"action": "command", "command": ["true"], "kinds": ["unowned", "expiring"],
                 "tags": ["pci"]}},
        source="t",
    )  # fmt: skip
    found = [
        Finding(kind="expiring", severity=Severity.HIGH, message="m", address=a, port=p,
                sni="www.shop.test", sha256="ab" * 32)
        for a, p in (("127.18.5.2", port), ("127.18.7.2", port))
    ]  # fmt: skip
    with Inventory(url) as inv:
        steps = plan(list(hooks.hooks), found, {}, {}, _now(), inv.owners())
    assert [s.ctx.address for s in steps] == ["127.18.5.2"]

    bad = tmp_path / "bad.toml"
    bad.write_text('[[owners.rule]]\nowner = ""\n')
    code, _, err = run_main(["owners", "--db", url, "--config", str(bad)], capsys)
    assert code == 2
    one_line_error(err)


def _now() -> datetime:
    return datetime.now(UTC)
