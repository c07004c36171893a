"""Target expansion: syntax tables, safety rules, ordering, memory, and hypothesis properties
checked against a brute-force model that materialises every address with ``ipaddress``."""

from __future__ import annotations

import ipaddress
import tracemalloc
from itertools import islice, pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.errors import TargetError
from scanner.models import Target
from scanner.plan.targets import (
    DEFAULT_PORTS,
    TargetPlan,
    build_plan,
    hostnames_in,
    parse_lines,
    parse_ports,
)

Triple = tuple[str, int, str | None]


def triples(plan: TargetPlan) -> list[Triple]:
    return [(t.address, t.port, t.sni) for t in plan]


# ---------------------------------------------------------------- ports


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("443", (443,)),
        ("8443,443", (443, 8443)),
        ("443, 443 ,443", (443,)),
        ("9000-9003,443", (443, 9000, 9001, 9002, 9003)),
        ("1,65535", (1, 65535)),
        ("7-7", (7,)),
    ],
)
def test_parse_ports(text: str, expected: tuple[int, ...]) -> None:
    assert parse_ports(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0", "port 0 is out of range"),
        ("443,70000", "port 70000 is out of range"),
        ("9010-9000", "'9010-9000' is reversed"),
        ("1-70000", "port 70000 in '1-70000'"),
        ("443,,8443", "'' is not a port"),
        ("https", "'https' is not a port"),
        ("-5", "'-5' is not a port"),
        ("4 43", "'4 43' is not a port"),
        ("", "no ports given"),
        ("１２", "'１２' is not a port"),  # full-width digits are not ports
    ],
)
def test_parse_ports_errors_name_the_bad_part(text: str, fragment: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_ports(text)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_default_ports_are_sorted_tls_ports() -> None:
    assert DEFAULT_PORTS == (25, 110, 143, 389, 443, 465, 587, 636, 993, 995, 3389, 5432, 8443)
    assert parse_ports(",".join(map(str, DEFAULT_PORTS))) == DEFAULT_PORTS


# ---------------------------------------------------------------- files


def test_parse_lines_strips_comments_and_splits_entries() -> None:
    text = "# header\n10.0.0.1\r\n\n  10.0.0.2, 10.0.0.3\t10.0.0.4 # trailing\n#10.0.0.9\n,\n"
    entries = parse_lines(text, source="ranges.txt")
    assert entries == ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_errors_from_a_file_name_source_and_line() -> None:
    entries = parse_lines("10.0.0.1\n\n# c\n10.0.0.0/33\n", source="ranges.txt")
    with pytest.raises(TargetError, match=r"^ranges\.txt:4: target '10\.0\.0\.0/33': prefix"):
        build_plan(entries, ports=[443])


def test_blocklist_bad_line_is_named() -> None:
    blocklist = parse_lines("10.0.0.0/8\n# ok\nnot a cidr!\n", source="block.txt")
    with pytest.raises(TargetError, match=r"^block\.txt:3: blocklist entry 'not'"):
        build_plan(["10.0.0.1"], ports=[443], blocklist=blocklist)


# ---------------------------------------------------------------- syntax

NAMES = {"db.corp.test": ["10.9.0.1", "fd00::9"], "localhost": ["127.0.0.1"]}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10.0.0.7", [("10.0.0.7", 443, None)]),
        ("10.0.0.7:8443", [("10.0.0.7", 8443, None)]),
        ("10.0.0.7:8000-8001", [("10.0.0.7", 8000, None), ("10.0.0.7", 8001, None)]),
        ("10.0.0.4/31", [("10.0.0.4", 443, None), ("10.0.0.5", 443, None)]),
        ("10.0.0.5/31", [("10.0.0.4", 443, None), ("10.0.0.5", 443, None)]),
        (
            "10.0.0.254-10.0.1.1",
            [(f"10.0.{a}", 443, None) for a in ("0.254", "0.255", "1.0", "1.1")],
        ),
        ("10.0.0.1-3", [(f"10.0.0.{i}", 443, None) for i in (1, 2, 3)]),
        ("10.0.0.3-3", [("10.0.0.3", 443, None)]),
        ("fd00::1", [("fd00::1", 443, None)]),
        ("FD00:0::1", [("fd00::1", 443, None)]),
        ("[fd00::1]:8443", [("fd00::1", 8443, None)]),
        ("[fd00::1]", [("fd00::1", 443, None)]),
        ("fd00::/127", [("fd00::", 443, None), ("fd00::1", 443, None)]),
        ("[fd00::/127]:1", [("fd00::", 1, None), ("fd00::1", 1, None)]),
        ("fd00::fe-fd00::101", [(f"fd00::{h}", 443, None) for h in ("fe", "ff", "100", "101")]),
        ("db.corp.test", [("10.9.0.1", 443, "db.corp.test"), ("fd00::9", 443, "db.corp.test")]),
        (
            "DB.Corp.Test.:993",
            [("10.9.0.1", 993, "db.corp.test"), ("fd00::9", 993, "db.corp.test")],
        ),
        ("localhost", [("127.0.0.1", 443, "localhost")]),
        ("  10.0.0.7  ", [("10.0.0.7", 443, None)]),
    ],
)
def test_spec_syntax(spec: str, expected: list[Triple]) -> None:
    plan = build_plan([spec], ports=[443], resolved=NAMES)
    assert triples(plan) == expected
    assert plan.count == len(expected)


def test_non_strict_cidr_is_noted() -> None:
    plan = build_plan(["10.0.0.5/24"], ports=[443])
    assert plan.count == 256
    assert plan.notes == ("10.0.0.5/24 taken as 10.0.0.0/24",)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("10.0.0.0/33", "prefix length must be 0-32 for IPv4"),
        ("fd00::/129", "prefix length must be 0-128 for IPv6"),
        ("10.0.0.0/x", "prefix length"),
        ("10.0.0.0/", "prefix length"),
        ("10.0.0/24", "'10.0.0' is not an IP address"),
        ("10.0.0.256", "not an IP address, CIDR, range or hostname"),
        ("010.0.0.1", "not an IP address, CIDR, range or hostname"),
        ("10.0.0.9-10.0.0.1", "range end is before its start"),
        ("10.0.0.9-3", "range end is before its start"),
        ("10.0.0.1-256", "last octet 256 is out of range"),
        ("10.0.0.1-fd00::1", "range end 'fd00::1' is not an IPv4 address"),
        ("10.0.0.1-", "range end '' is not an IPv4 address"),
        ("fd00::1-5", "range end '5' is not an IPv6 address"),
        ("10.0.0.1:0", "bad port: port 0 is out of range"),
        ("10.0.0.1:70000", "bad port: port 70000 is out of range"),
        ("host.test:", "bad port"),
        ("host.test:https", "bad port"),
        (":443", "missing address or hostname"),
        ("[fd00::1", "missing ']'"),
        ("[fd00::1]443", "expected ':PORT' after ']'"),
        ("[10.0.0.1]:443", "brackets are only for IPv6"),
        ("fe80::1%eth0", "zone ids"),
        ("-bad.test", "not an IP address, CIDR, range or hostname"),
        ("bad..test", "not an IP address, CIDR, range or hostname"),
        ("a" * 64 + ".test", "not an IP address, CIDR, range or hostname"),
        ("host_with space", "not an IP address, CIDR, range or hostname"),
        ("", "empty entry"),
        ("   ", "empty entry"),
    ],
)
def test_bad_specs_are_one_line_errors_naming_the_entry(spec: str, fragment: str) -> None:
    with pytest.raises(TargetError) as info:
        build_plan([spec], ports=[443])
    message = str(info.value)
    assert fragment in message
    assert repr(spec) in message
    assert "\n" not in message


def test_hostile_entry_text_is_escaped_in_messages() -> None:
    with pytest.raises(TargetError) as info:
        build_plan(["\x1b[31mevil\x07"], ports=[443])
    assert "\x1b" not in str(info.value)
    assert "\x07" not in str(info.value)


def test_idn_hostnames_use_the_a_label() -> None:
    assert hostnames_in(["Bücher.test"]) == ["xn--bcher-kva.test"]


def test_hostnames_in_normalises_dedupes_and_keeps_order() -> None:
    specs = [
        "b.test",
        "10.0.0.1",
        "A.test:465",
        "b.test.",
        "[fd00::1]:443",
        "a.test",
        "10.0.0.0/30",
    ]
    assert hostnames_in(specs) == ["b.test", "a.test"]
    with pytest.raises(TargetError):
        hostnames_in(["10.0.0.0/40"])


def test_explicit_port_overrides_only_that_entry() -> None:
    plan = build_plan(["10.0.0.1", "10.0.0.2:8443"], ports=[443, 993])
    assert sorted(triples(plan)) == [
        ("10.0.0.1", 443, None),
        ("10.0.0.1", 993, None),
        ("10.0.0.2", 8443, None),
    ]


def test_entries_with_explicit_ports_need_no_default_ports() -> None:
    assert build_plan(["10.0.0.1:443"], ports=[]).count == 1
    with pytest.raises(TargetError, match="no ports"):
        build_plan(["10.0.0.1"], ports=[])
    with pytest.raises(TargetError, match="port 0 is out of range"):
        build_plan(["10.0.0.1"], ports=[0])


# ---------------------------------------------------------------- names, SNI, dedupe


def test_same_address_by_ip_and_by_name_are_two_targets() -> None:
    plan = build_plan(
        ["127.0.0.1", "localhost", "LOCALHOST", "localhost."], ports=[443], resolved=NAMES
    )
    assert triples(plan) == [
        ("127.0.0.1", 443, None),
        ("127.0.0.1", 443, "localhost"),
    ]


def test_sni_option_applies_to_non_hostname_targets_and_merges_duplicates() -> None:
    plan = build_plan(["127.0.0.1", "localhost"], ports=[443], resolved=NAMES, sni="LocalHost")
    assert triples(plan) == [("127.0.0.1", 443, "localhost")]
    plan = build_plan(["127.0.0.1", "db.corp.test"], ports=[443], resolved=NAMES, sni="x.test")
    assert sorted(t.sni or "" for t in plan) == ["db.corp.test", "db.corp.test", "x.test"]
    with pytest.raises(TargetError, match=r"--sni '10\.0\.0\.1' is not a valid hostname"):
        build_plan(["127.0.0.1"], ports=[443], sni="10.0.0.1")


def test_overlapping_entries_are_deduplicated() -> None:
    plan = build_plan(
        ["10.0.0.0/29", "10.0.0.4-10.0.0.12", "10.0.0.3", "10.0.0.3:443", "10.0.0.3:8443"],
        ports=[443, 8443],
    )
    expected = {(f"10.0.0.{i}", p, None) for i in range(13) for p in (443, 8443)}
    assert triples(plan) == sorted(triples(plan), key=lambda t: (t[1], ipaddress.ip_address(t[0])))
    assert set(triples(plan)) == expected
    assert plan.count == len(expected)


def test_unresolved_names_are_notes_not_errors() -> None:
    plan = build_plan(
        ["gone.test", "empty.test", "10.0.0.1", "gone.test:465"],
        ports=[443],
        resolved={"empty.test": []},
        resolve_errors={"gone.test": "Name or service not known"},
    )
    assert triples(plan) == [("10.0.0.1", 443, None)]
    assert plan.notes == (
        "could not resolve gone.test: Name or service not known",
        "empty.test has no addresses",
    )
    assert build_plan(["x.test"], ports=[443]).notes == ("could not resolve x.test",)


# ---------------------------------------------------------------- safety


@pytest.mark.parametrize(
    ("spec", "first_public"),
    [
        ("8.8.8.8", "8.8.8.8"),
        ("192.0.2.0/24", "192.0.2.0"),  # documentation ranges count as public (conservative)
        ("172.15.255.250-172.16.0.5", "172.15.255.250"),
        ("10.0.0.0/7", "11.0.0.0"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2606:4700::1]:443", "2606:4700::1"),
        ("100.63.255.255", "100.63.255.255"),
    ],
)
def test_public_addresses_need_allow_public(spec: str, first_public: str) -> None:
    with pytest.raises(TargetError) as info:
        build_plan([spec], ports=[443])
    assert str(info.value) == (
        f"target {spec!r}: {first_public} is a public address; pass --allow-public to scan it"
    )
    assert build_plan([spec], ports=[443], allow_public=True, max_targets=2**25).count > 0


@pytest.mark.parametrize(
    "spec",
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.1.1",
        "::1",
        "fc00::/120",
        "fd12:3456::/112",
    ],
)
def test_private_loopback_link_local_and_ula_are_normal(spec: str) -> None:
    assert build_plan([spec], ports=[443], max_targets=2**32).count > 0


def test_public_check_runs_after_exclusions() -> None:
    plan = build_plan(["10.0.0.0/7"], ports=[443], excludes=["11.0.0.0/8"], max_targets=2**25)
    assert plan.count == 2**24


def test_hostname_resolving_to_public_address_needs_allow_public() -> None:
    resolved = {"www.test": ["10.0.0.1", "203.0.113.9"]}
    with pytest.raises(TargetError, match=r"'www\.test': 203\.0\.113\.9 is a public address"):
        build_plan(["www.test"], ports=[443], resolved=resolved)


@pytest.mark.parametrize(
    ("spec", "kinds"),
    [
        ("224.0.0.1", "multicast/0.0.0.0/8/240.0.0.0/4/broadcast"),
        ("239.255.255.250:1900", "multicast"),
        ("0.0.0.0", "0.0.0.0/8"),
        ("0.1.2.3/16", "0.0.0.0/8"),
        ("240.0.0.0/4", "240.0.0.0/4"),
        ("255.255.255.255", "broadcast"),
        ("ff02::1", "multicast/unspecified"),
        ("[::]:443", "multicast/unspecified"),
        ("fe80::1", "IPv6 link-local, which needs a zone id"),
        ("fe80::/120", "IPv6 link-local"),
        ("[febf::1]:443", "IPv6 link-local"),
    ],
)
def test_reserved_addresses_are_refused(spec: str, kinds: str) -> None:
    with pytest.raises(TargetError, match="is never scanned") as info:
        build_plan([spec], ports=[443], allow_public=True)
    assert kinds in str(info.value)


def test_overlap_with_reserved_space_is_removed_with_a_note() -> None:
    plan = build_plan(["223.255.255.254-224.0.0.1"], ports=[443], allow_public=True)
    assert triples(plan) == [("223.255.255.254", 443, None), ("223.255.255.255", 443, None)]
    assert plan.notes == (
        "removed 2 reserved addresses (multicast/0.0.0.0/8/240.0.0.0/4/broadcast) "
        "from 223.255.255.254-224.0.0.1",
    )
    whole = build_plan(["0.0.0.0/0"], ports=[443], allow_public=True, max_targets=2**32)
    assert whole.count == 2**32 - 2**24 - 2**29
    assert whole.first(2) == [
        Target(address="1.0.0.0", port=443),
        Target(address="1.0.0.1", port=443),
    ]


def test_link_local_ipv6_is_left_out_of_a_plan_never_connected_to() -> None:
    # Without a zone id every connect to fe80::/10 fails with EINVAL: planning refuses it, so
    # the engine never sees such a target (a name resolving to one loses that address).
    span = "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff-fe80::1"
    plan = build_plan([span], ports=[443], allow_public=True)  # planned only: nothing is sent
    assert triples(plan) == [("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 443, None)]
    assert plan.notes[0].startswith("removed 2 reserved addresses (IPv6 link-local")
    named = build_plan(["printer.test"], ports=[443], resolved={"printer.test": ["fe80::5"]})
    assert named.count == 0
    assert named.notes == (
        "printer.test resolves only to reserved addresses "
        "(IPv6 link-local, which needs a zone id); skipped",
    )
    mixed = build_plan(["bmc.test"], ports=[443], resolved={"bmc.test": ["fe80::5", "fd00::5"]})
    assert triples(mixed) == [("fd00::5", 443, "bmc.test")]


def test_a_sinkholed_name_is_skipped_with_a_note() -> None:
    plan = build_plan(["ads.test", "10.0.0.1"], ports=[443], resolved={"ads.test": ["0.0.0.0"]})
    assert triples(plan) == [("10.0.0.1", 443, None)]
    assert plan.notes == (
        "ads.test resolves only to reserved addresses "
        "(multicast/0.0.0.0/8/240.0.0.0/4/broadcast); skipped",
    )


def test_max_targets() -> None:
    assert build_plan(["10.0.0.0/24"], ports=[1, 2], max_targets=512).count == 512
    with pytest.raises(TargetError, match=r"exceed the limit of 511; pass --max-targets 512"):
        build_plan(["10.0.0.0/24"], ports=[1, 2], max_targets=511)
    with pytest.raises(TargetError, match="--max-targets"):
        build_plan(["10.0.0.0/8"], ports=DEFAULT_PORTS)
    names = [f"h{i}.test" for i in range(300)]
    resolved = {n: ["10.0.0.1"] for n in names}
    tracemalloc.start()
    try:
        with pytest.raises(TargetError, match="--max-targets"):  # an IPv6 /64 is refused at once
            build_plan(["fd00::/64"], ports=[443])
        with pytest.raises(TargetError, match="--max-targets"):  # many names x every port
            build_plan(names, ports=range(1, 65536), resolved=resolved)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Refused from the counts alone: nothing near 2^64 or 19.6 million targets is materialised.
    assert peak < 16 * 1024 * 1024


def test_exclusions_and_blocklist_subtract() -> None:
    plan = build_plan(
        ["10.0.0.0/28", "localhost"],
        ports=[443],
        excludes=["10.0.0.0-10.0.0.3", "10.0.0.8/30"],
        blocklist=["10.0.0.15", "127.0.0.0/8"],
        resolved=NAMES,
    )
    assert [t.address for t in plan] == [f"10.0.0.{i}" for i in (4, 5, 6, 7, 12, 13, 14)]
    with pytest.raises(TargetError, match=r"exclusion 'db\.test': must be an address"):
        build_plan(["10.0.0.1"], ports=[443], excludes=["db.test"])
    with pytest.raises(TargetError, match=r"exclusion '10\.0\.0\.1:443': must be an address"):
        build_plan(["10.0.0.1"], ports=[443], excludes=["10.0.0.1:443"])


# ---------------------------------------------------------------- order, resume, memory


def test_order_is_port_major_and_spreads_load() -> None:
    plan = build_plan(["10.0.0.0/30", "fd00::1", "localhost"], ports=[443, 993], resolved=NAMES)
    got = triples(plan)
    assert got[:6] == [
        ("10.0.0.0", 443, None),
        ("10.0.0.1", 443, None),
        ("10.0.0.2", 443, None),
        ("10.0.0.3", 443, None),
        ("fd00::1", 443, None),
        ("127.0.0.1", 443, "localhost"),
    ]
    assert all(a[0] != b[0] for a, b in pairwise(got))


def test_same_inputs_same_order() -> None:
    def plan() -> list[Triple]:
        return triples(
            build_plan(
                ["db.corp.test:465", "10.0.0.0/29", "localhost", "10.0.0.3:8443"],
                ports=[443, 465],
                resolved={"db.corp.test": ["fd00::9", "10.9.0.1"], "localhost": ["127.0.0.1"]},
            )
        )

    first = plan()
    assert first == plan()
    assert len(first) == len(set(first)) == 8 * 2 + 2 + 2 + 1


def test_iter_from_jumps_without_walking() -> None:
    plan = build_plan(["10.0.0.0/8", "fd00::/104"], ports=range(440, 450), max_targets=2**30)
    assert plan.count == (2**24 + 2**24) * 10
    # A walk to the last of 335 million targets would not end within the test's lifetime:
    # finishing at all shows the jump (timings live in the bench, not here).
    index, target = next(plan.iter_from(plan.count - 1))
    assert (index, target) == (plan.count - 1, Target(address="fd00::ff:ffff", port=449))
    middle = 2**25 + 5  # second port, first IPv4 interval
    assert next(plan.iter_from(middle)) == (middle, Target(address="10.0.0.5", port=441))
    assert list(plan.iter_from(plan.count)) == []
    with pytest.raises(ValueError, match="start"):
        plan.iter_from(-1)


def test_iter_from_every_start_on_a_mixed_plan() -> None:
    plan = build_plan(
        ["10.0.0.1-2", "10.0.0.9", "fd00::1", "localhost", "db.corp.test:993", "10.0.0.7:993"],
        ports=[443, 993, 995],  # 443 and 995 form one run of two ports and several segments
        resolved=NAMES,
        sni="x.test",
    )
    everything = list(plan.iter_from(0))
    assert [i for i, _ in everything] == list(range(plan.count))
    for k in range(plan.count + 1):
        assert list(plan.iter_from(k)) == everything[k:]


def test_a_slash_8_times_ten_ports_stays_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        plan = build_plan(["10.0.0.0/8"], ports=range(8440, 8450), max_targets=2**28)
        assert plan.count == 2**24 * 10
        pulled = sum(1 for _ in islice(plan.iter_from(2**24 * 9 - 50_000), 100_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pulled == 100_000
    assert peak < 1_000_000


def test_empty_plan() -> None:
    plan = build_plan([], ports=[443])
    assert plan.count == 0
    assert list(plan) == []
    assert plan.first(5) == []
    fully_excluded = build_plan(["10.0.0.1"], ports=[443], excludes=["10.0.0.0/24"])
    assert fully_excluded.count == 0


# ---------------------------------------------------------------- properties

V4_BASE = int(ipaddress.IPv4Address("10.0.0.0"))
V6_BASE = int(ipaddress.IPv6Address("fd00::"))
NAME_POOL = ("a.test", "b.test", "c.test")
PORT_POOL = (1, 2, 443)

Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _addr(v6: bool, offset: int) -> Addr:
    return (
        ipaddress.IPv6Address(V6_BASE + offset) if v6 else ipaddress.IPv4Address(V4_BASE + offset)
    )


@st.composite
def address_sets(draw: st.DrawFn) -> tuple[str, set[Addr]]:
    """An address/CIDR/range entry inside 10.0.0.0/26 or fd00::/122, with its address set."""
    v6 = draw(st.booleans())
    kind = draw(st.sampled_from(["addr", "cidr", "range", "short"]))
    a, b = sorted(draw(st.lists(st.integers(0, 63), min_size=2, max_size=2)))
    if kind == "cidr":
        plen = draw(st.integers(122, 128)) if v6 else draw(st.integers(26, 32))
        net = ipaddress.ip_network(f"{_addr(v6, a)}/{plen}", strict=False)
        return f"{_addr(v6, a)}/{plen}", set(net)
    if kind == "addr":
        return str(_addr(v6, a)), {_addr(v6, a)}
    members = {_addr(v6, i) for i in range(a, b + 1)}
    if kind == "short" and not v6:
        return f"{_addr(v6, a)}-{(V4_BASE + b) & 255}", members
    return f"{_addr(v6, a)}-{_addr(v6, b)}", members


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, object], set[Triple], set[str]]:
    """Keyword arguments for build_plan, the brute-force target set, and the excluded addresses."""
    ports = draw(st.lists(st.sampled_from(PORT_POOL), max_size=3, unique=True))
    resolved = {
        name: [
            str(_addr(v6, i))
            for v6, i in draw(st.lists(st.tuples(st.booleans(), st.integers(0, 63)), max_size=3))
        ]
        for name in NAME_POOL
        if draw(st.booleans())
    }
    sni = draw(st.sampled_from([None, "a.test", "s.test"]))
    specs: list[str] = []
    model: set[Triple] = set()
    for _ in range(draw(st.integers(0, 6))):
        explicit = draw(st.none() | st.sampled_from(PORT_POOL))
        entry_ports = [explicit] if explicit is not None else ports
        if not entry_ports:
            continue  # an entry with no port at all is an error, tested elsewhere
        if draw(st.booleans()):
            name = draw(st.sampled_from(NAME_POOL))
            specs.append(name if explicit is None else f"{name}:{explicit}")
            addrs = {ipaddress.ip_address(a) for a in resolved.get(name, [])}
            model |= {(str(a), p, name) for a in addrs for p in entry_ports}
            continue
        text, addrs = draw(address_sets())
        if explicit is not None:
            text = f"[{text}]:{explicit}" if ":" in text else f"{text}:{explicit}"
        specs.append(text)
        model |= {(str(a), p, sni) for a in addrs for p in entry_ports}
    excludes = [draw(address_sets()) for _ in range(draw(st.integers(0, 2)))]
    blocklist = [draw(address_sets()) for _ in range(draw(st.integers(0, 2)))]
    gone = {str(a) for _, addrs in excludes + blocklist for a in addrs}
    model = {t for t in model if t[0] not in gone}
    kwargs: dict[str, object] = {
        "specs": specs,
        "ports": ports,
        "excludes": [e for e, _ in excludes],
        "blocklist": [b for b, _ in blocklist],
        "resolved": resolved,
        "sni": sni,
    }
    return kwargs, model, gone


def _build(kwargs: dict[str, object]) -> TargetPlan:
    return build_plan(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None, database=None)
@given(scenarios(), st.data())
def test_plan_matches_brute_force_model(
    scenario: tuple[dict[str, object], set[Triple], set[str]], data: st.DataObject
) -> None:
    kwargs, model, gone = scenario
    plan = _build(kwargs)
    got = triples(plan)
    assert len(got) == len(set(got)) == plan.count  # exact count, no duplicates
    assert set(got) == model
    assert not {t[0] for t in got} & gone  # exclusions and blocklist never leak
    numbered = list(enumerate(got))
    for k in data.draw(st.lists(st.integers(0, plan.count + 2), min_size=1, max_size=4)):
        assert [(i, (t.address, t.port, t.sni)) for i, t in plan.iter_from(k)] == numbered[k:]
    assert triples(_build(kwargs)) == got  # deterministic


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 3)), min_size=1, max_size=6))
def test_parse_ports_matches_model(parts: list[tuple[int, int]]) -> None:
    expected: set[int] = set()
    texts = []
    for lo, span in parts:
        hi = min(lo + span, 65535)
        expected.update(range(lo, hi + 1))
        texts.append(f"{lo}-{hi}" if span else str(lo))
    assert parse_ports(",".join(texts)) == tuple(sorted(expected))


FUZZ_ALPHABET = st.sampled_from([*"0123456789abcdef.:/-[]%, xXé_", "\x00", "\n"])


@settings(max_examples=300, deadline=None)
@given(st.text(FUZZ_ALPHABET, max_size=40) | st.text(max_size=20))
def test_any_entry_is_a_plan_or_a_target_error(text: str) -> None:
    for call in (
        lambda: build_plan([text], ports=[443], allow_public=True, max_targets=2**16),
        lambda: build_plan(["10.0.0.1"], ports=[443], excludes=[text], max_targets=2**16),
        lambda: parse_ports(text),
        lambda: hostnames_in(parse_lines(text, source="fuzz")),
    ):
        try:
            call()
        except TargetError as exc:
            message = str(exc)
        else:
            continue
        assert "\n" not in message
