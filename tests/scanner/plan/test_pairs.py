"""Per-target names: the ``ENTRY=NAME`` syntax in plans and the CSV targets file, as tables and
hypothesis properties (a pair always plans exactly its one target; no text makes the CSV
parser raise anything but TargetError)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.errors import TargetError
from scanner.plan import pairs
from scanner.plan.targets import build_plan, hostnames_in, parse_lines

Triple = tuple[str, int, str | None]


def plan_of(specs: list[str], **kw: object) -> list[Triple]:
    plan = build_plan(specs, ports=kw.pop("ports", (443,)), **kw)  # type: ignore[arg-type]
    return [(t.address, t.port, t.sni) for t in plan]


# ---------------------------------------------------------------- ENTRY=NAME


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("10.0.0.5:443=www.example.org", [("10.0.0.5", 443, "www.example.org")]),
        ("10.0.0.5=WWW.Example.ORG.", [("10.0.0.5", 443, "www.example.org")]),
        ("[::1]:8443=api.example.org", [("::1", 8443, "api.example.org")]),
        ("::1=api.example.org", [("::1", 443, "api.example.org")]),
        (
            "fd00::1-fd00::2=a.example",
            [("fd00::1", 443, "a.example"), ("fd00::2", 443, "a.example")],
        ),
        (
            "10.0.0.0/31=ingress.example",
            [("10.0.0.0", 443, "ingress.example"), ("10.0.0.1", 443, "ingress.example")],
        ),
        (" 10.0.0.5:443 = www.example.org ", [("10.0.0.5", 443, "www.example.org")]),
        ("10.0.0.5:443=bücher.example", [("10.0.0.5", 443, "xn--bcher-kva.example")]),
    ],
)
def test_pair_syntax(spec: str, expected: list[Triple]) -> None:
    assert plan_of([spec]) == expected


def test_pair_overrides_sni_and_one_address_two_names_is_two_targets() -> None:
    got = plan_of(["10.0.0.5=a.example", "10.0.0.5=b.example", "10.0.0.6"], sni="default.example")
    assert sorted(got) == [
        ("10.0.0.5", 443, "a.example"),
        ("10.0.0.5", 443, "b.example"),
        ("10.0.0.6", 443, "default.example"),
    ]


def test_pair_with_a_hostname_resolves_the_host_and_sends_the_name() -> None:
    specs = ["lb.example:8443=www.example.org"]
    assert hostnames_in(specs) == ["lb.example"]
    got = plan_of(specs, resolved={"lb.example": ["10.0.0.9"]})
    assert got == [("10.0.0.9", 8443, "www.example.org")]


def test_pairs_in_a_targets_file() -> None:
    entries = parse_lines("10.0.0.5:443=a.example, [::1]:8443=b.example # two\n", source="t")
    assert plan_of(entries) == [("10.0.0.5", 443, "a.example"), ("::1", 8443, "b.example")]


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("=www.example.org", "missing address before '='"),
        ("10.0.0.5=", "'' after '=' is not a valid hostname"),
        ("10.0.0.5=*.example.org", "'*.example.org' after '=' is not a valid hostname"),
        ("10.0.0.5=10.0.0.6", "'10.0.0.6' after '=' is not a valid hostname"),
        ("10.0.0.5=a=b", "not an IP address, CIDR, range or hostname"),
        ("10.0.0.5:99999=a.example", "out of range"),
        ("[::1]=a.example:443", "after '=' is not a valid hostname"),
    ],
)
def test_bad_pairs_are_one_line_errors(spec: str, reason: str) -> None:
    with pytest.raises(TargetError, match="target") as info:
        build_plan([spec], ports=(443,))
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_exclusions_take_no_name() -> None:
    with pytest.raises(TargetError, match="no hostname, port or =NAME"):
        build_plan(["10.0.0.0/24"], ports=(443,), excludes=["10.0.0.5=a.example"])


_v4 = st.builds(
    lambda base, n: ipaddress.IPv4Address(base + n),
    st.sampled_from([10 << 24, 127 << 24, (192 << 24) | (168 << 16)]),
    st.integers(0, 2**16 - 1),
)
_v6 = st.builds(lambda n: ipaddress.IPv6Address((0xFD << 120) | n), st.integers(0, 2**120 - 1))
_label = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_name = st.lists(_label, min_size=1, max_size=4).map(lambda ls: ".".join([*ls, "example"]))


@settings(max_examples=300, deadline=None)
@given(address=st.one_of(_v4, _v6), port=st.integers(1, 65535), name=_name)
def test_any_pair_plans_exactly_its_target(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int, name: str
) -> None:
    entry = pairs.pair_entry(str(address), str(port), name)
    assert plan_of([entry], ports=(1,), allow_public=True) == [(str(address), port, name)]
    rows = pairs.parse_csv(f"address,port,sni\n{address},{port},{name}\n", source="t.csv")
    assert plan_of(rows, ports=(1,), allow_public=True) == [(str(address), port, name)]


# ---------------------------------------------------------------- the CSV file


def test_csv_rows_header_comments_quotes_and_defaults() -> None:
    text = (
        "\ufeffaddress,port,sni\r\n"
        "# the office\n"
        "10.0.0.5,443,www.example.org\n"
        '"2001:db8::7", "8443", "api.example.org"  # quoted, as spreadsheets write\n'
        "\n"
        "10.0.0.6,,intranet.example\n"
        "10.0.0.7,636\n"
        "10.0.0.8\n"
    )
    rows = pairs.parse_csv(text.removeprefix("\ufeff"), source="office.csv")
    assert [r.origin for r in rows] == [f"office.csv:{n}" for n in (3, 4, 6, 7, 8)]  # type: ignore[attr-defined]
    got = plan_of(rows, ports=(443, 8443), sni="fallback.example", allow_public=True)
    assert sorted(got) == sorted(
        [
            ("10.0.0.5", 443, "www.example.org"),
            ("2001:db8::7", 8443, "api.example.org"),
            ("10.0.0.6", 443, "intranet.example"),
            ("10.0.0.6", 8443, "intranet.example"),
            ("10.0.0.7", 636, "fallback.example"),
            ("10.0.0.8", 443, "fallback.example"),
            ("10.0.0.8", 8443, "fallback.example"),
        ]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.5,443,www.example.org,extra\n", "t.csv:1: expected address,port,sni"),
        ("address,port,sni\n,443,a.example\n", "t.csv:2: the address field is empty"),
        ("10.0.0.5,443,a.example\n10.0.0.6,http,b.example\n", "t.csv:2: target"),
        ("10.0.0.5,443,*.example.org\n", "t.csv:1: target '10.0.0.5:443=*.example.org'"),
        ("10.0.0.5=a.example,443\n", "t.csv:1: '=' belongs in no address or port"),
        ('10.0.0.5,"443\n', "t.csv:1: not a CSV row"),
        ("# header later is a row\n10.0.0.5,443\naddress,port,sni\n", "t.csv:3: target"),
    ],
)
def test_csv_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(TargetError) as info:
        pairs.parse_csv(text, source="t.csv")
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_csv_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pairs, "MAX_ROWS", 3)
    with pytest.raises(TargetError, match=r"t.csv: more than 3 rows"):
        pairs.parse_csv("10.0.0.1\n10.0.0.2\n10.0.0.3\n10.0.0.4\n", source="t.csv")
    monkeypatch.setattr(pairs, "MAX_BYTES", 64)
    big = tmp_path / "big.csv"
    big.write_text("10.0.0.1,443,a.example\n" * 10)
    with pytest.raises(TargetError, match=r"big.csv: larger than"):
        pairs.read_csv(big)
    with pytest.raises(TargetError, match=r"cannot read .*nothing.csv"):
        pairs.read_csv(tmp_path / "nothing.csv")
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe10.0.0.1\n")
    with pytest.raises(TargetError, match=r"cannot read .*bin.csv"):
        pairs.read_csv(binary)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('0123456789abf.:[]=,#"\n\r -*x/%')), max_size=120))
def test_no_text_breaks_the_csv_parser(text: str) -> None:
    errors: list[str] = []
    try:
        rows = pairs.parse_csv(text, source="h.csv")
    except TargetError as exc:
        rows, errors = [], [str(exc)]
    assert all("\n" not in e for e in errors)
    refused: list[str] = []
    for row in rows:  # a checked row plans, or is refused by the plan's safety rules
        try:
            build_plan([row], ports=(443,), allow_public=True, resolved={})
        except TargetError as exc:
            refused.append(str(exc))
    assert all("never scanned" in e for e in refused)
