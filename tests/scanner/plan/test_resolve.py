"""DNS edge. Only ``localhost``, names that /etc/hosts maps to loopback, IP literals and a
``.invalid`` name are looked up: no other DNS traffic."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import trio

from scanner.plan.resolve import resolve_names
from scanner.plan.targets import build_plan, hostnames_in


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def _loopback_names_in_etc_hosts() -> list[str]:
    names: list[str] = []
    try:
        text = Path("/etc/hosts").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return names
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and _is_ip(fields[0]) and _is_loopback(fields[0]):
            names += [n for n in fields[1:] if n != "localhost"]
    return list(dict.fromkeys(names))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def test_localhost_resolves_to_loopback_only() -> None:
    with trio.fail_after(5):
        resolved, errors = await resolve_names(["localhost"])
    assert errors == {}
    addresses = resolved["localhost"]
    assert addresses
    assert all(_is_loopback(a) for a in addresses)
    assert all(a == str(ipaddress.ip_address(a)) for a in addresses)  # canonical form
    assert len(set(addresses)) == len(addresses)


@pytest.mark.parametrize("name", _loopback_names_in_etc_hosts() or ["localhost"])
async def test_names_from_etc_hosts_resolve(name: str) -> None:
    with trio.fail_after(5):
        resolved, errors = await resolve_names([name])
    assert errors == {}
    assert resolved[name]
    assert all(_is_loopback(a) for a in resolved[name])


async def test_ip_literals_are_canonicalised_without_dns() -> None:
    resolved, errors = await resolve_names(["127.0.0.2", "0:0::1", "::1"])
    assert errors == {}
    assert resolved == {"127.0.0.2": ("127.0.0.2",), "0:0::1": ("::1",), "::1": ("::1",)}


async def test_first_mode_keeps_one_address() -> None:
    resolved, _ = await resolve_names(["localhost", "127.0.0.3"], mode="first")
    assert resolved["127.0.0.3"] == ("127.0.0.3",)
    assert len(resolved["localhost"]) == 1


async def test_failures_are_values_and_every_name_lands_once() -> None:
    names = ["localhost", "nonexistent.invalid", "localhost", "127.0.0.4"]
    with trio.fail_after(10):
        resolved, errors = await resolve_names(names, timeout=5)
    assert list(resolved) == ["localhost", "127.0.0.4"]
    assert list(errors) == ["nonexistent.invalid"]
    assert errors["nonexistent.invalid"]
    assert "\n" not in errors["nonexistent.invalid"]


async def test_a_name_idna_refuses_fails_without_a_lookup() -> None:
    name = "a" * 64 + ".test"  # a 64-byte label cannot be encoded, so nothing is sent
    resolved, errors = await resolve_names([name])
    assert resolved == {}
    assert errors[name].startswith("invalid name:")


async def test_each_lookup_has_its_own_deadline() -> None:
    resolved, errors = await resolve_names(["localhost", "127.0.0.5"], timeout=0)
    assert resolved == {}
    assert errors == {"localhost": "no answer within 0 s", "127.0.0.5": "no answer within 0 s"}


async def test_concurrency_is_bounded_and_validated() -> None:
    names = [f"127.0.0.{i}" for i in range(1, 30)]
    resolved, errors = await resolve_names(names, concurrency=1)
    assert errors == {}
    assert list(resolved) == names
    with pytest.raises(ValueError, match="concurrency"):
        await resolve_names(names, concurrency=0)


async def test_empty_input() -> None:
    assert await resolve_names([]) == ({}, {})


async def test_resolved_names_feed_the_plan() -> None:
    specs = ["LocalHost:8443", "nonexistent.invalid", "127.0.0.9"]
    with trio.fail_after(10):
        resolved, errors = await resolve_names(hostnames_in(specs))
    plan = build_plan(specs, ports=[443], resolved=resolved, resolve_errors=errors)
    targets = list(plan)
    assert {(t.port, t.sni) for t in targets} == {(8443, "localhost"), (443, None)}
    assert all(_is_loopback(t.address) for t in targets)
    assert any(note.startswith("could not resolve nonexistent.invalid: ") for note in plan.notes)
