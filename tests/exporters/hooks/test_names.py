"""The host-name check every hook uses before a name reaches a CA, a script or a terminal."""

from __future__ import annotations

import dataclasses

import pytest

from exporters.hooks.command import environment
from exporters.hooks.names import MAX_NAMES, check, printable, select
from tests.exporters.hooks.test_acme import _context


@pytest.mark.parametrize(
    ("name", "wildcard", "ok"),
    [
        ("www.example.test", False, True),
        ("xn--bcher-kva.example", False, True),
        ("a-b.example", False, True),
        ("*.example.test", True, True),
        ("*.example.test", False, False),
        ("*.test", True, False),
        ("a.*.example", True, False),
        ("a\nb.example", False, False),
        ("a,b.example", False, False),
        ("a b.example", False, False),
        ("bücher.example", False, False),
        ("xn--zz-.example", False, False),
        ("ab--c.example", False, False),
        ("-a.example", False, False),
        ("a-.example", False, False),
        ("WWW.example.test", False, False),
        ("localhost", False, False),
        ("10.0.0.1", False, False),
        ("a..example", False, False),
        ("example.test.", False, False),
        ("\x1b[31m.example", False, False),
        ("a" * 64 + ".example", False, False),
        (("a" * 60 + ".") * 5 + "example", False, False),
        ("", False, False),
    ],
)
def test_check(name: str, wildcard: bool, ok: bool) -> None:
    assert (check(name, wildcard=wildcard) is None) == ok


def test_select_keeps_orderable_matching_names_and_says_why_not() -> None:
    chosen = select(
        ["a.example.test", "a.example.test", "evil.test", "*.example.test", "x\ny.example.test"],
        globs=["*.example.test"],
    )
    assert chosen.kept == ("a.example.test",)
    assert [n for n, _ in chosen.refused] == ["evil.test", "*.example.test", "x\\x0ay.example.test"]
    assert "\n" not in chosen.refusal()


def test_select_stops_at_the_limit() -> None:
    chosen = select(f"n{i}.example.test" for i in range(MAX_NAMES + 3))
    assert len(chosen.kept) == MAX_NAMES
    assert len(chosen.refused) == 3


def test_printable_escapes_terminal_controls() -> None:
    assert printable("a\x1b[2Jb\\") == "a\\x1b[2Jb\\\\"
    assert len(printable("x" * 500, 50)) == 50


def test_certscan_names_cannot_smuggle_commas() -> None:
    """certbot's ``-d`` splits on commas: a SAN holding one would add a name."""
    ctx = _context(("ok.example.test", "evil.test,ok2.example.test", "x\ny.test", "\x1b]0;t"))
    env = environment(ctx)
    assert env["CERTSCAN_NAMES"] == "ok.example.test"
    assert env["CERTSCAN_NAMES_DROPPED"] == "3"


def test_the_sni_and_endpoints_are_passed_only_when_plain() -> None:
    ctx = _context(("ok.example.test",))
    ctx = dataclasses.replace(
        ctx, sni="localhost", endpoints=(("::1", 443, "x\ny"), ("127.0.0.1", 8443, "localhost"))
    )
    env = environment(ctx)
    assert env["CERTSCAN_SNI"] == "localhost"  # the operator's target list gave it
    assert env["CERTSCAN_ENDPOINTS"] == "[::1]:443 127.0.0.1:8443/localhost"
    assert environment(dataclasses.replace(ctx, sni="a b,c"))["CERTSCAN_SNI"] == ""
