"""Target expansion: what the user typed -> a lazy, numbered stream of ``Target``.

Theory of operation
-------------------
Every address lives on one integer line: an IPv4 address is its 32-bit value, an IPv6 address
is ``2**32`` plus its 128-bit value. An address set is a tuple of sorted, disjoint, non-touching
half-open intervals on that line, so union, exclusion and counting are exact and cost the number
of intervals, never the number of addresses (``10.0.0.0/8`` is one interval).

Each entry becomes a *unit* ``(sni, ports, intervals)``: bare addresses get ``sni=None`` (or the
``--sni`` name), a hostname gets its resolved addresses and itself as SNI. Units are grouped by
SNI, and ports with the same membership are merged, so every ``(address, port, sni)`` appears
exactly once. The plan is then a short list of *runs*: a set of ports and the segments
``(sni, intervals)`` scanned on each of them. The order is port-major: for each port, every
address once, so one address never receives all its ports back to back. Position ``k`` is found
by arithmetic and bisection, which is how ``--resume`` skips work without replaying it.

Syntax (one entry; a targets file may hold several per line, separated by blanks or commas):

* ``10.0.0.7``, ``2001:db8::7`` - one address; ``[2001:db8::7]:443`` or ``10.0.0.7:8443`` pins
  the port (a port list or range such as ``:8000-8010`` works too) for that entry only.
* ``10.0.0.0/24``, ``fd00::/120`` - a CIDR. Like nmap and masscan, host bits are ignored:
  ``10.0.0.5/24`` means ``10.0.0.0/24`` (a note says so). Network and broadcast addresses of
  the block are included: certscan cannot know how the block is subnetted.
* ``10.0.0.1-10.0.0.50``, ``10.0.0.1-50`` (same last-octet short form), ``fd00::1-fd00::ff``.
* ``host.example`` / ``host.example:465`` - every resolved A/AAAA address, SNI = the name.
  An unresolved name is a note, not an error. An IPv6 address with a port needs brackets.
* ``ENTRY=NAME`` - any entry above paired with one server name to send as SNI:
  ``10.0.0.5:443=www.example.org``, ``[::1]:8443=api.example.org``, ``10.0.0.0/28=ingress.example``,
  ``lb.example:443=www.example.org`` (the addresses of ``lb.example``, the SNI ``www.example.org``).
  ``=`` occurs in no address, port or hostname, so the last ``=`` splits the pair without
  ambiguity, IPv6 included. The name overrides ``--sni`` for that entry; one address given with
  two names is two targets. ``scanner.plan.pairs`` reads the same pairs from a CSV file.

Safety, as in zmap and masscan: loopback, IPv4 link-local, RFC 1918, 100.64/10 and IPv6 ULA are
the normal use. Every other unicast address counts as public (conservatively, documentation and
benchmark ranges too) and needs ``allow_public``. Multicast, 0/8, 240/4 (with broadcast) and
IPv6 multicast/unspecified are never scanned, nor IPv6 link-local (fe80::/10: it needs a zone
id, and entries take none): an entry made only of them is an error, an entry
that overlaps them loses that part with a note (a hostname that resolves only to them, as a DNS
sinkhole answers ``0.0.0.0``, is skipped with a note). The public check runs after exclusions.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, islice

import idna

from scanner.errors import TargetError
from scanner.models import PROTOCOLS, Target

#: Implicit TLS: https, smtps, ldaps, imaps, pop3s, https-alt. STARTTLS
# (``scanner.engine.starttls.session``):
#: smtp, submission, pop3, imap, ldap, rdp, postgres.
DEFAULT_PORTS: tuple[int, ...] = (25, 110, 143, 389, 443, 465, 587, 636, 993, 995, 3389, 5432, 8443)

Intervals = tuple[tuple[int, int], ...]

_V6 = 1 << 32  # IPv6 keys start here; IPv4 keys are the address itself
_V4_RESERVED = "multicast/0.0.0.0/8/240.0.0.0/4/broadcast"
_V6_RESERVED = "multicast/unspecified"
_V6_LINK_LOCAL = "IPv6 link-local, which needs a zone id"
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_PORT = re.compile(r"([0-9]{1,6})(?:-([0-9]{1,6}))?")


class Entry(str):
    """A targets-file entry that remembers where it came from (``origin`` = ``file:line``)."""

    __slots__ = ("origin",)
    origin: str

    def __new__(cls, value: str, origin: str) -> Entry:
        self = super().__new__(cls, value)
        self.origin = origin
        return self


# ---------------------------------------------------------------- interval arithmetic


def _union(*sets: Sequence[tuple[int, int]]) -> Intervals:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(chain.from_iterable(sets)):
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def _subtract(a: Intervals, b: Intervals) -> Intervals:
    out: list[tuple[int, int]] = []
    j = 0
    for lo, hi in a:
        while j < len(b) and b[j][1] <= lo:
            j += 1
        cur, k = lo, j
        while k < len(b) and b[k][0] < hi:
            if b[k][0] > cur:
                out.append((cur, b[k][0]))
            cur = max(cur, b[k][1])
            k += 1
        if cur < hi:
            out.append((cur, hi))
    return tuple(out)


def _size(a: Intervals) -> int:
    return sum(hi - lo for lo, hi in a)


def _key(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    return int(addr) if addr.version == 4 else _V6 + int(addr)


def _net(text: str) -> tuple[int, int]:
    net = ipaddress.ip_network(text)
    return _key(net.network_address), _key(net.broadcast_address) + 1


def _address(key: int) -> str:
    if key < _V6:
        return f"{key >> 24}.{(key >> 16) & 255}.{(key >> 8) & 255}.{key & 255}"
    return str(ipaddress.IPv6Address(key - _V6))


# Never scanned: 0/8, 224/4 + 240/4 with broadcast (together 224/3), IPv6 :: and ff00::/8,
# and IPv6 link-local fe80::/10: without a zone id (which entries may not carry) the kernel
# cannot tell which interface it is on, and every connect fails with EINVAL.
_LINK_LOCAL_V6 = (_net("fe80::/10"),)
_REFUSED = _union(
    [_net(n) for n in ("0.0.0.0/8", "224.0.0.0/3", "::/128", "ff00::/8")], _LINK_LOCAL_V6
)
# Scanned without --allow-public: RFC 1918, CGNAT, loopback, link-local, IPv6 ULA.
_LOCAL_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8")
_LOCAL = _union(
    [_net(n) for n in (*_LOCAL_NETS, "169.254.0.0/16", "::1/128", "fe80::/10", "fc00::/7")]
)


# ---------------------------------------------------------------- parsing


def _port_range(part: str) -> range:
    """The ports of one ``443`` or ``9000-9010``; ValueError(reason) naming the bad part."""
    m = _PORT.fullmatch(part)
    if m is None:
        hint = " (a /PROTOCOL goes in the port list, -p)" if "/" in part else ""
        raise ValueError(f"{part!r} is not a port or a range like 9000-9010{hint}")
    lo = int(m[1])
    hi = int(m[2]) if m[2] is not None else lo
    for p in (lo, hi):
        if not 1 <= p <= 65535:
            where = f" in {part!r}" if m[2] is not None else ""
            raise ValueError(f"port {p}{where} is out of range (1-65535)")
    if hi < lo:
        raise ValueError(f"range {part!r} is reversed")
    return range(lo, hi + 1)


def _parts(text: str) -> list[str]:
    if not text.strip():
        raise ValueError("no ports given")
    return [raw.strip() for raw in text.split(",")]


def _parse_ports(text: str) -> tuple[int, ...]:
    """Sorted unique ports of ``443,8443,9000-9010``; ValueError(reason) naming the bad part."""
    ports: set[int] = set()
    for part in _parts(text):
        ports.update(_port_range(part))
    return tuple(sorted(ports))


def parse_ports(text: str) -> tuple[int, ...]:
    """``"443,8443,9000-9010"`` -> sorted unique ports. Bad input is a one-line TargetError."""
    try:
        return _parse_ports(text)
    except ValueError as exc:
        raise TargetError(f"bad port list {text!r}: {exc}") from None


def check_protocol(name: str) -> str:
    """``name`` lowercased when it is one of ``models.PROTOCOLS``; ValueError otherwise."""
    protocol = name.strip().lower()
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r} (one of {', '.join(PROTOCOLS)})")
    return protocol


def _parse_port_specs(text: str) -> tuple[tuple[int, str | None], ...]:
    found: dict[int, str | None] = {}
    for part in _parts(text):
        ports, slash, name = part.partition("/")
        protocol = check_protocol(name) if slash else None
        for port in _port_range(ports.strip()):
            before = found.get(port)
            if before is not None and protocol is not None and before != protocol:
                raise ValueError(f"port {port} is given as both {before} and {protocol}")
            found[port] = before or protocol
    return tuple(sorted(found.items()))


def parse_port_specs(text: str) -> tuple[tuple[int, str | None], ...]:
    """``"443,2525/smtp,10443/tls"`` -> sorted unique ``(port, protocol or None)`` pairs.

    A ``/PROTOCOL`` (``tls`` for implicit TLS or a STARTTLS protocol, ``models.PROTOCOLS``)
    applies to every port of its part (``9000-9010/imap``); ``None`` leaves the choice to the
    port. A port given with a protocol and without keeps the protocol; with two different
    protocols it is an error. Bad input is a one-line TargetError.
    """
    try:
        return _parse_port_specs(text)
    except ValueError as exc:
        raise TargetError(f"bad port list {text!r}: {exc}") from None


def parse_lines(text: str, *, source: str) -> list[str]:
    """Entries of a targets, exclude or blocklist file: ``#`` starts a comment, blank lines are
    skipped, entries on a line are separated by whitespace or commas. Each entry is an ``Entry``
    remembering ``source:line`` so later errors can point at it."""
    out: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        for part in re.split(r"[\s,]+", line.split("#", 1)[0]):
            if part:
                out.append(Entry(part, f"{source}:{lineno}"))
    return out


def _hostname(text: str) -> str | None:
    """The normalised (lowercase, A-label, no trailing dot) hostname, or None if not one."""
    name = text[:-1] if text.endswith(".") else text
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    name = name.lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return None if labels[-1].isdigit() else name  # "10.0.0.256" is a typo, not a name


def hostname(text: str) -> str | None:
    """``text`` as a hostname to send as SNI (lowercase, A-label, no trailing dot), or None
    when it is not one (an IP literal, a wildcard, bad labels)."""
    return _hostname(text)


@dataclass(frozen=True, slots=True)
class _Parsed:
    intervals: Intervals  # empty for a hostname
    name: str | None  # normalised hostname, or None for an address set
    ports: tuple[int, ...] | None  # explicit :port, or None for the plan's ports
    note: str | None = None
    sni: str | None = None  # the ``=NAME`` of a pair, normalised; None without one


def _fail(entry: str, kind: str, reason: str) -> TargetError:
    origin = getattr(entry, "origin", "")
    return TargetError(f"{origin + ': ' if origin else ''}{kind} {str(entry)!r}: {reason}")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _parse_hostpart(host: str, entry: str, kind: str) -> _Parsed:
    if "/" in host:
        addr_text, _, plen = host.partition("/")
        addr = _ip(addr_text)
        if addr is None:
            raise _fail(entry, kind, f"{addr_text!r} is not an IP address")
        bits = addr.max_prefixlen
        if not plen.isdigit() or not plen.isascii() or int(plen) > bits:
            raise _fail(entry, kind, f"prefix length must be 0-{bits} for IPv{addr.version}")
        net = ipaddress.ip_network(f"{addr}/{int(plen)}", strict=False)
        note = None if net.network_address == addr else f"{host} taken as {net}"
        return _Parsed(
            ((_key(net.network_address), _key(net.broadcast_address) + 1),), None, None, note
        )
    left, dash, right = host.partition("-")
    start = _ip(left) if dash else None
    if start is not None:
        end = _ip(right)
        if end is None and start.version == 4 and right.isdigit() and right.isascii():
            if int(right) > 255:
                raise _fail(entry, kind, f"last octet {right} is out of range (0-255)")
            end = ipaddress.IPv4Address((int(start) & ~255) | int(right))
        if end is None or end.version != start.version:
            raise _fail(entry, kind, f"range end {right!r} is not an IPv{start.version} address")
        if int(end) < int(start):
            raise _fail(entry, kind, "range end is before its start")
        return _Parsed(((_key(start), _key(end) + 1),), None, None)
    addr = _ip(host)
    if addr is not None:
        return _Parsed(((_key(addr), _key(addr) + 1),), None, None)
    name = _hostname(host)
    if name is None:
        raise _fail(entry, kind, "not an IP address, CIDR, range or hostname")
    return _Parsed((), name, None)


def _parse_entry(entry: str, kind: str = "target") -> _Parsed:
    text = entry.strip()
    if not text:
        raise _fail(entry, kind, "empty entry")
    if "%" in text:
        raise _fail(entry, kind, "IPv6 zone ids (%) are not supported")
    sni = None
    if "=" in text:  # ENTRY=NAME: no address, port or hostname holds '='
        text, _, pair_name = (part.strip() for part in text.rpartition("="))
        if not text:
            raise _fail(entry, kind, "missing address before '='")
        if (sni := _hostname(pair_name)) is None:
            raise _fail(entry, kind, f"{pair_name!r} after '=' is not a valid hostname")
    host, port_text = text, None
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close:
            raise _fail(entry, kind, "missing ']'")
        if rest and not rest.startswith(":"):
            raise _fail(entry, kind, "expected ':PORT' after ']'")
        if ":" not in host:
            raise _fail(entry, kind, "brackets are only for IPv6 addresses")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host:
        raise _fail(entry, kind, "missing address or hostname")
    ports = None
    if port_text is not None:
        try:
            ports = _parse_ports(port_text)
        except ValueError as exc:
            raise _fail(entry, kind, f"bad port: {exc}") from None
    parsed = _parse_hostpart(host, entry, kind)
    return _Parsed(parsed.intervals, parsed.name, ports, parsed.note, sni)


def _address_set(entries: Sequence[str], kind: str) -> Intervals:
    sets = []
    for entry in entries:
        parsed = _parse_entry(entry, kind)
        if parsed.name is not None or parsed.ports is not None or parsed.sni is not None:
            raise _fail(
                entry, kind, "must be an address, CIDR or range (no hostname, port or =NAME)"
            )
        sets.append(parsed.intervals)
    return _union(*sets)


def check_address_entries(entries: Sequence[str], kind: str) -> None:
    """Raise TargetError for the first entry that is not an address, CIDR or range (as
    ``--exclude``/``--blocklist`` entries must be); ``kind`` names them in the message."""
    _address_set(entries, kind)


def hostnames_in(specs: Sequence[str]) -> list[str]:
    """Normalised hostnames among ``specs`` that need DNS (deduplicated, first-seen order).
    These are the keys ``build_plan`` looks up in ``resolved``. Bad entries raise TargetError."""
    names = (_parse_entry(spec).name for spec in specs)
    return list(dict.fromkeys(n for n in names if n is not None))


def check_entry(entry: str) -> None:
    """Raise TargetError (naming ``entry`` and its origin) unless it is a valid target entry."""
    _parse_entry(entry)


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class _Segment:
    sni: str | None
    intervals: Intervals
    starts: tuple[int, ...]  # offset of each interval inside the segment
    size: int


@dataclass(frozen=True, slots=True)
class _Run:
    ports: tuple[int, ...]  # ascending; each port walks every segment
    segments: tuple[_Segment, ...]
    seg_starts: tuple[int, ...]
    width: int  # targets per port

    @property
    def size(self) -> int:
        return self.width * len(self.ports)


def _offsets(sizes: Sequence[int]) -> tuple[int, ...]:
    out, total = [], 0
    for s in sizes:
        out.append(total)
        total += s
    return tuple(out)


def _segment(sni: str | None, intervals: Intervals) -> _Segment:
    sizes = [hi - lo for lo, hi in intervals]
    return _Segment(sni, intervals, _offsets(sizes), sum(sizes))


def _run(ports: Sequence[int], segments: Sequence[_Segment]) -> _Run:
    starts = _offsets([s.size for s in segments])
    return _Run(tuple(ports), tuple(segments), starts, sum(s.size for s in segments))


def _group_ports(port_sets: Sequence[Sequence[int]]) -> dict[tuple[int, ...], list[int]]:
    """Partition every port by which of ``port_sets`` hold it: membership -> ascending ports."""
    member: dict[int, list[int]] = {}
    for i, ports in enumerate(port_sets):
        for p in ports:
            member.setdefault(p, []).append(i)
    groups: dict[tuple[int, ...], list[int]] = {}
    for p in sorted(member):
        groups.setdefault(tuple(member[p]), []).append(p)
    return groups


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetPlan:
    """The targets of one sweep, numbered ``0 .. count-1`` in a fixed order, never materialised.

    ``notes`` are human-readable warnings (removed reserved addresses, unresolved names...).
    """

    count: int
    notes: tuple[str, ...] = ()
    runs: tuple[_Run, ...] = field(default=(), repr=False)
    run_starts: tuple[int, ...] = field(default=(), repr=False)
    #: ``Target.protocol`` by port, and for every other port.
    protocols: tuple[tuple[int, str], ...] = field(default=(), repr=False)
    default_protocol: str | None = field(default=None, repr=False)

    def iter_from(self, start: int = 0) -> Iterator[tuple[int, Target]]:
        """``(index, target)`` from position ``start``; costs O(intervals) to get there."""
        if start < 0:
            raise ValueError("start must be >= 0")
        return self._walk(start) if start < self.count else iter(())

    def _walk(self, start: int) -> Iterator[tuple[int, Target]]:
        ri = bisect_right(self.run_starts, start) - 1
        rem = start - self.run_starts[ri]
        index = start
        protocols, default = dict(self.protocols), self.default_protocol
        for run in self.runs[ri:]:
            pi, rem = divmod(rem, run.width)
            si = bisect_right(run.seg_starts, rem) - 1
            rem -= run.seg_starts[si]
            for port in run.ports[pi:]:
                protocol = protocols.get(port, default)
                for seg in run.segments[si:]:
                    ii = bisect_right(seg.starts, rem) - 1
                    rem -= seg.starts[ii]
                    sni = seg.sni
                    for lo, hi in seg.intervals[ii:]:
                        for key in range(lo + rem, hi):
                            address = _address(key)
                            yield (
                                index,
                                Target(address=address, port=port, sni=sni, protocol=protocol),
                            )
                            index += 1
                        rem = 0
                si = 0

    def at(self, index: int) -> Target:
        """The target at position ``index`` (random access, as ``iter_from(index)`` would yield).

        The same navigation as the walk, without walking: bisect into the run, divide for the
        port, bisect into the segment and the interval. O(log runs + log segments + log
        intervals + log protocols); IndexError outside ``0 .. count-1``.
        """
        if not 0 <= index < self.count:
            raise IndexError(f"target index {index} is outside 0..{self.count - 1}")
        ri = bisect_right(self.run_starts, index) - 1
        run = self.runs[ri]
        pi, rem = divmod(index - self.run_starts[ri], run.width)
        si = bisect_right(run.seg_starts, rem) - 1
        seg = run.segments[si]
        rem -= run.seg_starts[si]
        ii = bisect_right(seg.starts, rem) - 1
        port = run.ports[pi]
        pj = bisect_left(self.protocols, (port,))  # (port,) sorts just before (port, name)
        found = pj < len(self.protocols) and self.protocols[pj][0] == port
        protocol = self.protocols[pj][1] if found else self.default_protocol
        address = _address(seg.intervals[ii][0] + rem - seg.starts[ii])
        return Target(address=address, port=port, sni=seg.sni, protocol=protocol)

    def __iter__(self) -> Iterator[Target]:
        return (target for _, target in self.iter_from(0))

    def first(self, n: int) -> list[Target]:
        """The first ``n`` targets (for ``--dry-run``)."""
        return list(islice(self, n))


def first_outside(plan: TargetPlan, networks: Sequence[str]) -> str | None:
    """The lowest address of ``plan`` outside every one of ``networks`` (CIDR text), or None
    when the plan lies inside them; costs O(intervals), never enumerates the targets."""
    allowed = _union([_net(n) for n in networks])
    spans = _union([iv for run in plan.runs for seg in run.segments for iv in seg.intervals])
    rest = _subtract(spans, allowed)
    return _address(rest[0][0]) if rest else None


def _reserved_label(removed: Intervals) -> str:
    labels = [_V4_RESERVED] if removed[0][0] < _V6 else []
    other = _subtract(removed, _LINK_LOCAL_V6)
    labels += [_V6_RESERVED] if other and other[-1][1] > _V6 else []
    labels += [_V6_LINK_LOCAL] if other != removed else []
    return "; ".join(labels)


def _checked_ports(ports: Sequence[int]) -> tuple[int, ...]:
    for p in ports:
        if not 1 <= p <= 65535:
            raise TargetError(f"port {p} is out of range (1-65535)")
    return tuple(sorted(set(ports)))


def build_plan(
    specs: Sequence[str],
    *,
    ports: Sequence[int],
    excludes: Sequence[str] = (),
    blocklist: Sequence[str] = (),
    resolved: Mapping[str, Sequence[str]] | None = None,
    allow_public: bool = False,
    max_targets: int = 2**24,
    sni: str | None = None,
    resolve_errors: Mapping[str, str] | None = None,
    protocols: Mapping[int, str] | None = None,
    default_protocol: str | None = None,
) -> TargetPlan:
    """Expand ``specs`` into a lazy plan (see the module docstring for syntax and safety).

    ``resolved`` maps names from ``hostnames_in`` to their addresses; ``resolve_errors`` (the
    second result of ``scanner.plan.resolve.resolve_names``) only enriches the unresolved-name
    notes.
    ``sni`` is sent to every target that is not a hostname. Each target's ``protocol`` is
    ``protocols[port]`` (``-p 2525/smtp``), else ``default_protocol`` (``None``: chosen by
    port at scan time). Raises TargetError naming the entry.
    """
    default_ports = _checked_ports(ports)
    try:
        by_port = tuple(sorted((p, check_protocol(n)) for p, n in (protocols or {}).items()))
        if default_protocol is not None:
            default_protocol = check_protocol(default_protocol)
    except ValueError as exc:
        raise TargetError(str(exc)) from None
    sni_name = None
    if sni is not None and (sni_name := _hostname(sni)) is None:
        raise TargetError(f"--sni {sni!r} is not a valid hostname")
    removed = _union(
        _address_set(excludes, "exclusion"), _address_set(blocklist, "blocklist entry")
    )
    resolved = resolved or {}
    notes: list[str] = []
    units: dict[str | None, dict[tuple[int, ...], list[tuple[int, int]]]] = {}
    for spec in specs:
        parsed = _parse_entry(spec)
        notes += [parsed.note] if parsed.note else []
        intervals, unit_sni, label = parsed.intervals, parsed.sni or sni_name, spec.strip()
        if parsed.name is not None:
            unit_sni, label = parsed.sni or parsed.name, parsed.name
            if parsed.name not in resolved:
                reason = (resolve_errors or {}).get(parsed.name)
                notes.append(f"could not resolve {parsed.name}" + (f": {reason}" if reason else ""))
                continue
            addrs = [_ip(a) for a in resolved[parsed.name]]
            if any(a is None for a in addrs):
                raise _fail(spec, "target", f"resolved to a bad address {resolved[parsed.name]!r}")
            intervals = _union([(_key(a), _key(a) + 1) for a in addrs if a is not None])
            if not intervals:
                notes.append(f"{parsed.name} has no addresses")
                continue
        reserved = _subtract(intervals, _subtract(intervals, _REFUSED))
        if reserved:
            kinds = _reserved_label(reserved)
            if reserved != intervals:
                intervals = _subtract(intervals, reserved)
                notes.append(f"removed {_size(reserved)} reserved addresses ({kinds}) from {label}")
            elif parsed.name is not None:
                notes.append(f"{label} resolves only to reserved addresses ({kinds}); skipped")
                continue
            else:
                raise _fail(spec, "target", f"is reserved ({kinds}) and is never scanned")
        intervals = _subtract(intervals, removed)
        public = _subtract(intervals, _LOCAL)
        if public and not allow_public:
            first = _address(public[0][0])
            reason = f"{first} is a public address; pass --allow-public to scan it"
            raise _fail(spec, "target", reason)
        unit_ports = parsed.ports or default_ports
        if not unit_ports:
            raise _fail(spec, "target", "no ports: give a port list or ADDRESS:PORT")
        if intervals:
            units.setdefault(unit_sni, {}).setdefault(unit_ports, []).extend(intervals)
    plan = _layout(units, notes, max_targets)
    if not by_port and default_protocol is None:
        return plan
    return replace(plan, protocols=by_port, default_protocol=default_protocol)


def _too_many(count: int, max_targets: int, prefix: str = "", v6: bool = False) -> TargetError:
    hint = (
        " (an IPv6 /64 alone holds 2^64 addresses: sweep the few you know, such as a /120 or "
        "a list of hosts)"
        if v6
        else ""
    )
    return TargetError(
        f"{prefix}{count:,} targets exceed the limit of {max_targets:,}{hint}; "
        f"pass --max-targets {count} (or more) to scan them all"
    )


def _layout(
    units: dict[str | None, dict[tuple[int, ...], list[tuple[int, int]]]],
    notes: list[str],
    max_targets: int,
) -> TargetPlan:
    merged = {
        s: {ports: _union(ivs) for ports, ivs in units[s].items()}
        for s in sorted(units, key=lambda s: (s is not None, s or ""))
    }
    # Distinct SNIs never share a target, so this lower bound is cheap and exact enough to stop
    # a huge port list times many names before the port partition below does any work.
    low = sum(
        max(len(p) * _size(ivs) for p, ivs in by_ports.items()) for by_ports in merged.values()
    )
    v6 = any(hi > _V6 for by_ports in merged.values() for ivs in by_ports.values() for _, hi in ivs)
    if low > max_targets:
        raise _too_many(low, max_targets, "at least ", v6)
    segments: list[tuple[_Segment, list[int]]] = []
    for s, by_ports in merged.items():
        keys = list(by_ports)
        for member, seg_ports in _group_ports(keys).items():
            segments.append((_segment(s, _union(*(by_ports[keys[i]] for i in member))), seg_ports))
    groups = _group_ports([p for _, p in segments])
    runs = tuple(_run(p, [segments[i][0] for i in member]) for member, p in groups.items())
    count = sum(r.size for r in runs)
    if count > max_targets:
        raise _too_many(count, max_targets, v6=v6)
    starts = _offsets([r.size for r in runs])
    return TargetPlan(count=count, notes=tuple(dict.fromkeys(notes)), runs=runs, run_starts=starts)
