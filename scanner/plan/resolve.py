"""Hostname resolution, the DNS edge of target expansion.

Each name is looked up once with ``trio.socket.getaddrinfo`` (which runs the system resolver in
a worker thread, so ``/etc/hosts``, search domains and nsswitch all apply) inside its own cancel
scope: a resolver that never answers costs ``timeout`` seconds for that name, not a hang. At most
``concurrency`` lookups run at once. A failure is a value (name -> message), never an exception,
so one bad name in a targets file does not stop the sweep; ``scanner.plan.targets.build_plan`` turns
it into a note.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Literal

import trio

Resolved = dict[str, tuple[str, ...]]


def _canonical(sockaddr_host: str) -> str:
    """The ``ipaddress`` form of a getaddrinfo host, without any IPv6 zone id."""
    return str(ipaddress.ip_address(sockaddr_host.split("%", 1)[0]))


async def _lookup(name: str, seconds: float) -> tuple[str, ...] | str:
    """Addresses of ``name`` in resolver order (deduplicated), or an error message."""
    with trio.move_on_after(seconds) as scope:
        try:
            infos = await trio.socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return exc.strerror or str(exc)
        except UnicodeError as exc:  # IDNA refused the name (label too long, bad characters)
            return f"invalid name: {exc}"
        except OSError as exc:
            return exc.strerror or str(exc)
    if scope.cancelled_caught:
        return f"no answer within {seconds:g} s"
    addresses = (
        _canonical(str(sockaddr[0]))
        for family, _, _, _, sockaddr in infos
        if family in (socket.AF_INET, socket.AF_INET6)
    )
    found = tuple(dict.fromkeys(addresses))
    return found if found else "no IPv4 or IPv6 address"


async def resolve_names(
    names: Sequence[str],
    *,
    mode: Literal["all", "first"] = "all",
    timeout: float = 5.0,  # noqa: ASYNC109 - bounds each lookup, not the whole call
    concurrency: int = 20,
) -> tuple[Resolved, dict[str, str]]:
    """Resolve ``names`` to their A and AAAA addresses.

    Returns ``(resolved, errors)``: ``resolved`` maps each name that resolved to its canonical
    addresses (deduplicated, in the resolver's preference order; only the first one when
    ``mode="first"``), ``errors`` maps each name that did not to a one-line reason. Every name
    lands in exactly one of the two; both keep the order of ``names`` (duplicates looked up once).
    """
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    unique = list(dict.fromkeys(names))
    answers: dict[str, tuple[str, ...] | str] = {}
    limiter = trio.CapacityLimiter(concurrency)

    async def one(name: str) -> None:
        async with limiter:
            answers[name] = await _lookup(name, timeout)

    async with trio.open_nursery() as nursery:
        for name in unique:
            nursery.start_soon(one, name)

    resolved: Resolved = {}
    errors: dict[str, str] = {}
    for name in unique:
        answer = answers[name]
        if isinstance(answer, str):
            errors[name] = answer
        else:
            resolved[name] = answer[:1] if mode == "first" else answer
    return resolved, errors
