"""``[hooks.NAME]`` sections: what is accepted, what each error says, and hook selection."""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

import pytest

from exporters.hooks.command import CommandAction
from exporters.hooks.config import DEFAULT_CONCURRENCY, Selector, parse_hooks
from exporters.hooks.webhook import WebhookAction
from reports.policy import config_from_mapping
from scanner.errors import UsageError
from scanner.models import Severity

CMD: dict[str, Any] = {"action": "command", "command": ["/usr/bin/true"]}


def test_a_full_config_is_read() -> None:
    raw = {
        "concurrency": 2,
        "renew": {
            **CMD,
            "kinds": ["expiring", "expired"],
            "min_severity": "high",
            "addresses": ["127.0.0.0/8", "::1"],
            "ports": [443, 8443],
            "match_names": ["*.Example.test"],
            "timeout": 12.5,
            "approval": True,
        },
        "notify": {"action": "webhook", "url": "http://127.0.0.1:9/x", "hmac_key_env": "K"},
    }
    config = parse_hooks(raw, source="c.toml")
    assert config.concurrency == 2
    renew, notify = config.hooks
    assert renew.name == "renew"
    assert renew.approval
    assert renew.timeout == 12.5
    assert renew.selector == Selector(
        kinds=frozenset({"expiring", "expired"}),
        min_severity=Severity.HIGH,
        networks=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1")),
        ports=(443, 8443),
        names=("*.example.test",),
    )
    assert renew.action == CommandAction(argv=("/usr/bin/true",))
    assert notify.action == WebhookAction(url="http://127.0.0.1:9/x", hmac_key_env="K")
    assert not notify.approval
    assert config.get("notify") is notify
    assert config.get("other") is None


def test_defaults_and_an_absent_section() -> None:
    assert parse_hooks(None, source="c.toml").hooks == ()
    config = parse_hooks({"h": CMD}, source="c.toml")
    assert config.concurrency == DEFAULT_CONCURRENCY
    (hook,) = config.hooks
    assert hook.selector == Selector()
    assert hook.selector.kinds == {"expiring"}
    assert not hook.approval


def test_the_section_travels_through_the_config_file_reader() -> None:
    config = config_from_mapping(
        {"hooks": {"h": CMD}}, source="c.toml", base=__import__("pathlib").Path(".")
    )
    assert [h.name for h in parse_hooks(config.sections.get("hooks"), source="c.toml").hooks] == [
        "h"
    ]


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"command": ["x"]}, "hooks.h.action"),
        ({"action": "shell", "command": ["x"]}, "hooks.h.action"),
        ({"action": "command"}, "hooks.h.command"),
        ({"action": "command", "command": "certbot renew"}, "hooks.h.command"),
        ({"action": "command", "command": []}, "hooks.h.command"),
        ({"action": "command", "command": [""]}, "hooks.h.command"),
        ({**CMD, "url": "http://x"}, "hooks.h.url"),
        ({**CMD, "kinds": ["expring"]}, "hooks.h.kinds"),
        ({**CMD, "match_names": "*.test"}, "hooks.h.match_names"),
        ({**CMD, "kinds": "expiring"}, "hooks.h.kinds"),
        ({**CMD, "min_severity": "worst"}, "hooks.h.min_severity"),
        ({**CMD, "addresses": ["127.0.0.300"]}, "hooks.h.addresses"),
        ({**CMD, "ports": [0]}, "hooks.h.ports"),
        ({**CMD, "ports": [True]}, "hooks.h.ports"),
        ({**CMD, "timeout": 0}, "hooks.h.timeout"),
        ({**CMD, "timeout": "5"}, "hooks.h.timeout"),
        ({**CMD, "timeout": float("inf")}, "hooks.h.timeout"),
        ({**CMD, "approval": "yes"}, "hooks.h.approval"),
        ({"action": "webhook", "url": "ftp://x"}, "hooks.h.url"),
        ({"action": "webhook", "url": "http://x", "hmac_key": ""}, "hooks.h.hmac_key"),
        (
            {"action": "webhook", "url": "http://x", "hmac_key": "a", "hmac_key_env": "B"},
            "hooks.h.hmac_key",
        ),
        ({"action": "webhook", "url": "http://x", "command": ["x"]}, "hooks.h.command"),
    ],
)
def test_errors_are_one_line_naming_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_hooks({"h": table}, source="c.toml")
    message = str(raised.value)
    assert message.startswith(f"c.toml: {key}")
    assert "\n" not in message


@pytest.mark.parametrize("value", [0, 1000, "4", True])
def test_concurrency_is_checked(value: object) -> None:
    with pytest.raises(UsageError, match=r"^c\.toml: hooks\.concurrency"):
        parse_hooks({"concurrency": value}, source="c.toml")


def test_a_hook_must_be_a_table() -> None:
    with pytest.raises(UsageError, match=r"^c\.toml: hooks\.h: expected"):
        parse_hooks({"h": "command"}, source="c.toml")


def test_acme_is_refused_while_the_module_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "exporters.hooks.acme", None)  # import fails as if absent
    with pytest.raises(UsageError, match=r"^c\.toml: hooks\.h\.action: the acme action"):
        parse_hooks({"h": {"action": "acme"}}, source="c.toml")


ACME: dict[str, Any] = {
    "action": "acme",
    "kinds": ["expiring"],
    "match_names": ["*.example.test"],
    "directory": "https://127.0.0.1:14000/dir",
    "account_key": "/tmp/account.pem",
    "key": "/tmp/k.pem",
    "cert": "/tmp/c.pem",
    "listen": "127.0.0.1:5002",
    "names": ["www.example.test"],
}


def test_the_acme_action_gets_its_own_keys() -> None:
    (hook,) = parse_hooks({"r": ACME}, source="c.toml").hooks
    assert type(hook.action).kind == "acme"
    assert hook.selector.names == ("*.example.test",)
    assert hook.action.options.names == ("www.example.test",)  # type: ignore[attr-defined]


def test_acme_errors_name_the_hook() -> None:
    with pytest.raises(UsageError, match=r"^c\.toml: hooks\.r\b.*bogus"):
        parse_hooks({"r": {**ACME, "bogus": 1}}, source="c.toml")


FACTS: dict[str, Any] = {
    "kind": "expiring",
    "severity": Severity.HIGH,
    "address": "127.0.0.5",
    "port": 443,
    "sni": "www.example.test",
    "names": ("www.example.test", "api.example.test"),
}


@pytest.mark.parametrize(
    ("selector", "changes", "selected"),
    [
        (Selector(), {}, True),
        (Selector(), {"kind": "weak_key"}, False),
        (Selector(kinds=frozenset({"weak_key", "expiring"})), {"kind": "weak_key"}, True),
        (Selector(min_severity=Severity.CRITICAL), {}, False),
        (Selector(min_severity=Severity.HIGH), {}, True),
        (Selector(networks=(ipaddress.ip_network("127.0.0.0/30"),)), {}, False),
        (Selector(networks=(ipaddress.ip_network("127.0.0.4/30"),)), {}, True),
        (Selector(networks=(ipaddress.ip_network("127.0.0.0/8"),)), {"address": "h.test"}, False),
        (Selector(ports=(8443,)), {}, False),
        (Selector(ports=(8443, 443)), {}, True),
        (Selector(names=("api.*",)), {}, True),  # a SAN
        (Selector(names=("www.example.test",)), {"names": ()}, True),  # the SNI
        (Selector(names=("*.other.test",)), {}, False),
        (Selector(names=("*.example.test",)), {"sni": None, "names": ()}, False),
    ],
)
def test_selection(selector: Selector, changes: dict[str, Any], selected: bool) -> None:
    assert selector.matches(**{**FACTS, **changes}) is selected
