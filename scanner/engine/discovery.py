"""SNI discovery: after a target accepted TCP, which other server names to try there.

Theory of operation
-------------------
A shared address often hosts several virtual hosts, each with its own certificate, and shows
the default one to a client that sends no name (or the wrong one). ``--sni-from san`` takes the
DNS names of the leaf just presented, ``--sni-from ptr`` the address's reverse-DNS name, and
``--sni-file`` a list of names tried on every address; each name becomes one more target
``(address, port, name)``, an endpoint of its own in the inventory.

:class:`SniDiscovery` is the ``discover`` hook of :func:`scanner.engine.crew.sweep`: called with the
outcome of a planned target that accepted TCP, it returns the follow-up targets. Not only after
a handshake: CDNs and ingress controllers refuse a ClientHello without SNI (an
``unrecognized_name`` or ``handshake_failure`` alert, or a hang-up), and those are exactly the
servers whose names must be tried. A failure fans out when it is one of :data:`FAN_OUT_KINDS`,
the shapes such a refusal takes; ``--sni-from san`` needs a chain, so only the PTR name and the
file's names follow a failure. A silent peer (``timeout``), a plaintext one (``not_tls``,
``starttls_refused``) or an oversized chain would answer every name alike: trying a thousand
names there would cost a thousand timeouts and learn nothing. The choice of names is pure
(:func:`follow_up_names`): valid hostnames only (normalised as ``--sni`` is; wildcards and IP
literals are no names to send), never the name the handshake already sent, at most
``max_names`` from the SANs and PTR together (a certificate listing a thousand names costs
sixteen connections, not a thousand), the file's names always. A follow-up keeps the
protocol the target actually spoke, so a STARTTLS fallback is not redone.

Deduplication is per ``(address, port, sni)``: keys the scan already stored (``--resume``)
and keys issued recently (a bounded memory of :data:`RECENT` keys, so a /16 does not grow it
without end) are not issued again. Two planned targets on one address (a hostname's SNI and a
bare address) may still both reach one name after the memory forgot it; the inventory keeps
one observation per endpoint and scan.

The PTR lookup is the only I/O: ``getnameinfo`` (the system resolver, in a thread) with
``NI_NAMEREQD`` under :data:`PTR_SECONDS`, its answer (or its absence) cached per address for
the ports that follow.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

import trio

from scanner.errors import UsageError
from scanner.models import FailureKind, Handshake, Outcome, ScanFailure, Target
from scanner.plan.targets import hostname

#: Where follow-up names may come from (``--sni-from``).
SOURCES: Final = ("san", "ptr")
#: Failures after TCP was accepted that still fan out: how a strict-SNI server refuses.
FAN_OUT_KINDS: Final = frozenset(
    {FailureKind.TLS_ALERT, FailureKind.RESET, FailureKind.PROTOCOL_ERROR}
)
#: Names taken from the SANs and the PTR record per handshake, at most.
MAX_NAMES: Final = 16
#: Names an ``--sni-file`` may hold.
MAX_FILE_NAMES: Final = 1024
#: Follow-up keys remembered for deduplication.
RECENT: Final = 65536
#: Seconds one reverse lookup may take.
PTR_SECONDS: Final = 2.0
_PTR_CACHE: Final = 4096

Key = tuple[str, int, str | None]


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryOptions:
    """What the user asked to discover. ``names``: the ``--sni-file`` names, normalised."""

    sources: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()
    max_names: int = MAX_NAMES

    @property
    def enabled(self) -> bool:
        return bool(self.sources or self.names)


def parse_options(sources: Sequence[str], file_names: Sequence[str]) -> DiscoveryOptions:
    """``--sni-from`` values and ``--sni-file`` entries checked; UsageError naming a bad one."""
    for source in sources:
        if source not in SOURCES:
            raise UsageError(f"--sni-from must be one of {', '.join(SOURCES)} (got {source!r})")
    names: list[str] = []
    for entry in file_names:
        name = hostname(entry)
        if name is None:
            raise UsageError(f"--sni-file: {entry!r} is not a valid hostname")
        names.append(name)
    unique = tuple(dict.fromkeys(names))
    if len(unique) > MAX_FILE_NAMES:
        raise UsageError(f"--sni-file holds {len(unique)} names; at most {MAX_FILE_NAMES}")
    return DiscoveryOptions(sources=frozenset(sources), names=unique)


def fans_out(outcome: Outcome) -> bool:
    """Whether names are tried after ``outcome``: a handshake, or a failure of
    :data:`FAN_OUT_KINDS` once TCP was accepted (module docstring)."""
    match outcome:
        case Handshake():
            return True
        case ScanFailure(connected=connected, kind=kind):
            return connected and kind in FAN_OUT_KINDS


def follow_up_names(
    used: str | None,
    found: Iterable[str],
    file_names: Sequence[str],
    max_names: int = MAX_NAMES,
) -> list[str]:
    """The names to try after a handshake that sent ``used``: the first ``max_names`` valid,
    distinct names of ``found`` (SANs, then the PTR name; attacker-controlled), then every
    name of ``file_names`` (already normalised), never ``used`` nor one name twice."""
    seen = {used} if used else set()
    out: list[str] = []
    taken = 0
    for raw in found:
        if taken >= max_names:
            break
        name = None if raw.startswith("*") else hostname(raw)
        if name is None or name in seen:
            continue
        seen.add(name)
        out.append(name)
        taken += 1
    for name in file_names:
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


class SniDiscovery:
    """The ``discover`` hook of a sweep (module docstring).

    ``dns_names`` gives the DNS SANs of a leaf certificate from its DER (the pipeline's
    certificate cache); ``skip`` holds the keys the scan already stored.
    """

    def __init__(
        self,
        options: DiscoveryOptions,
        dns_names: Callable[[bytes], Sequence[str]],
        *,
        skip: frozenset[Key] = frozenset(),
    ) -> None:
        self._options = options
        self._dns_names = dns_names
        self._skip = skip
        self._recent: dict[Key, None] = {}
        self._ptr: dict[str, str | None] = {}

    async def __call__(self, outcome: Outcome) -> list[Target]:
        if not fans_out(outcome):
            return []
        target = outcome.target
        found: list[str] = []
        if "san" in self._options.sources and isinstance(outcome, Handshake) and outcome.chain:
            found += self._dns_names(outcome.chain[0])
        if "ptr" in self._options.sources:
            name = await self._reverse(target.address)
            if name is not None:
                found.append(name)
        names = follow_up_names(target.sni, found, self._options.names, self._options.max_names)
        spoken = outcome.protocol if isinstance(outcome, Handshake) else None
        protocol = spoken or target.protocol
        out: list[Target] = []
        for name in names:
            key = (target.address, target.port, name)
            if key in self._skip or key in self._recent:
                continue
            self._recent[key] = None
            if len(self._recent) > RECENT:
                del self._recent[next(iter(self._recent))]
            out.append(replace(target, sni=name, protocol=protocol))
        return out

    async def _reverse(self, address: str) -> str | None:
        if address in self._ptr:
            return self._ptr[address]
        name = await reverse_name(address)
        if len(self._ptr) >= _PTR_CACHE:
            del self._ptr[next(iter(self._ptr))]
        self._ptr[address] = name
        return name


async def reverse_name(address: str, seconds: float = PTR_SECONDS) -> str | None:
    """The PTR name of ``address`` from the system resolver, or None (none, or no answer in
    ``seconds``)."""
    with trio.move_on_after(seconds):
        try:
            host, _ = await trio.socket.getnameinfo((address, 0), socket.NI_NAMEREQD)
        except (OSError, UnicodeError):
            return None
        return host
    return None
