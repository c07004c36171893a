"""Ports with a protocol (``-p 443,2525/smtp,10443/tls``), ``--starttls``, and how the plan
stamps ``Target.protocol`` on every target."""

from __future__ import annotations

import pytest

from scanner.cli.app import main
from scanner.errors import TargetError, UsageError
from scanner.models import STARTTLS_PORTS, Target
from scanner.plan.targets import DEFAULT_PORTS, build_plan, parse_port_specs, parse_ports
from scanner.sweep.options import starttls_default


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("443", ((443, None),)),
        ("443,2525/smtp,10443/tls", ((443, None), (2525, "smtp"), (10443, "tls"))),
        ("10443/tls,443", ((443, None), (10443, "tls"))),
        ("9000-9002/IMAP", ((9000, "imap"), (9001, "imap"), (9002, "imap"))),
        (" 587 / smtp ", ((587, "smtp"),)),
        ("25,25/smtp", ((25, "smtp"),)),  # the explicit protocol wins, whatever the order
        ("25/smtp,25", ((25, "smtp"),)),
        ("25/smtp,20-30/smtp", tuple((p, "smtp") for p in range(20, 31))),
        ("5269/xmpp-server,5432/postgres", ((5269, "xmpp-server"), (5432, "postgres"))),
    ],
)
def test_parse_port_specs(text: str, expected: tuple[tuple[int, str | None], ...]) -> None:
    assert parse_port_specs(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("25/smtp,25/tls", "port 25 is given as both smtp and tls"),
        ("20-30/smtp,25/imap", "port 25 is given as both smtp and imap"),
        ("443/http", "unknown protocol 'http' (one of tls, smtp,"),
        ("443/", "unknown protocol ''"),
        ("/smtp", "'' is not a port"),
        ("0/smtp", "port 0 is out of range"),
        ("443/smtp/tls", "unknown protocol 'smtp/tls'"),
        ("", "no ports given"),
    ],
)
def test_parse_port_specs_errors_name_the_bad_part(text: str, fragment: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_port_specs(text)
    assert fragment in str(caught.value)
    assert str(caught.value).startswith(f"bad port list {text!r}: ")


def test_plain_parse_ports_still_refuses_protocols() -> None:
    with pytest.raises(TargetError, match=r"a /PROTOCOL goes in the port list"):
        parse_ports("2525/smtp")
    assert parse_ports("443,8443") == (443, 8443)


def test_the_plan_stamps_each_port_s_protocol() -> None:
    plan = build_plan(["10.0.0.1-2"], ports=[25, 443, 2525], protocols={2525: "SMTP"})
    assert [(t.address, t.port, t.protocol) for t in plan] == [
        ("10.0.0.1", 25, None),
        ("10.0.0.2", 25, None),
        ("10.0.0.1", 443, None),
        ("10.0.0.2", 443, None),
        ("10.0.0.1", 2525, "smtp"),
        ("10.0.0.2", 2525, "smtp"),
    ]
    assert next(plan.iter_from(5)) == (
        5,
        Target(address="10.0.0.2", port=2525, protocol="smtp"),
    )


def test_a_default_protocol_covers_the_ports_without_one() -> None:
    plan = build_plan(
        ["10.0.0.1", "10.0.0.9:3389"],
        ports=[25, 10443],
        protocols={10443: "tls"},
        default_protocol="tls",
    )
    assert {(t.port, t.protocol) for t in plan} == {(25, "tls"), (10443, "tls"), (3389, "tls")}
    imap = build_plan(
        ["10.0.0.1"], ports=[143, 993], protocols={993: "tls"}, default_protocol="imap"
    )
    assert [(t.port, t.protocol) for t in imap] == [(143, "imap"), (993, "tls")]


def test_a_plan_without_protocols_leaves_the_choice_to_the_port() -> None:
    plan = build_plan(["10.0.0.1"], ports=DEFAULT_PORTS)
    assert {t.protocol for t in plan} == {None}
    assert plan.protocols == ()


@pytest.mark.parametrize(
    "options",
    [{"protocols": {25: "smtps"}}, {"default_protocol": "auto"}, {"protocols": {25: ""}}],
)
def test_the_plan_refuses_unknown_protocols(options: dict[str, object]) -> None:
    with pytest.raises(TargetError, match="unknown protocol"):
        build_plan(["10.0.0.1"], ports=[25], **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("target", "label"),
    [
        (Target(address="10.0.0.1", port=443), "10.0.0.1:443"),
        (Target(address="10.0.0.1", port=2525, protocol="smtp"), "10.0.0.1:2525/smtp"),
        (
            Target(address="fd00::1", port=10443, sni="mail.test", protocol="tls"),
            "[fd00::1]:10443/tls (mail.test)",
        ),
    ],
)
def test_label_names_a_given_protocol(target: Target, label: str) -> None:
    assert target.label() == label


@pytest.mark.parametrize(
    ("mode", "protocol"),
    [("auto", None), ("off", "tls"), ("tls", "tls"), ("SMTP", "smtp"), ("rdp", "rdp")],
)
def test_starttls_modes(mode: str, protocol: str | None) -> None:
    assert starttls_default(mode) == protocol


def test_a_bad_starttls_mode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--starttls must be one of auto, off, tls, smtp"):
        starttls_default("yes")


def test_the_default_ports_are_implicit_tls_or_well_known_starttls() -> None:
    starttls = {p for p in DEFAULT_PORTS if p in STARTTLS_PORTS}
    assert starttls == {25, 110, 143, 389, 587, 3389, 5432}
    assert set(DEFAULT_PORTS) - starttls == {443, 465, 636, 993, 995, 8443}
    assert STARTTLS_PORTS[25] == STARTTLS_PORTS[587] == "smtp"


def test_dry_run_shows_the_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "127.0.0.1", "-p", "443,2525/smtp,10443/tls", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "3 targets",
        "127.0.0.1:443",
        "127.0.0.1:2525/smtp",
        "127.0.0.1:10443/tls",
    ]
    assert main(["sweep", "127.0.0.1", "-p", "25,110", "--starttls", "off", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["127.0.0.1:25/tls", "127.0.0.1:110/tls"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-p", "25/smtp,25/tls"], "port 25 is given as both smtp and tls"),
        (["-p", "443/https"], "unknown protocol 'https'"),
        (["--starttls", "maybe"], "--starttls must be one of"),
    ],
)
def test_cli_errors_are_one_line_usage_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", "127.0.0.1", *argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1
