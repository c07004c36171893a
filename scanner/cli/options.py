"""The options that describe a sweep, shared by ``certscan sweep`` and ``certscan dispatch``.

Both commands scan the same way (what, where, how fast); they differ only in where the sweep
runs. So the typer declarations of those options live here once, as ``Annotated`` aliases with
sweep's help texts, and :func:`sweep_options` turns their raw values into a
:class:`~scanner.sweep.run.SweepOptions`, raising :class:`~scanner.errors.UsageError` for a
bad value before any work is done.

A command declares each option with its alias and its default (typer takes defaults only from
the signature), takes a ``typer.Context`` and passes ``ctx.params`` here: the keys are the
parameter names below, so both commands must spell them as in :data:`SWEEP_PARAMS`. A command
whose wording really differs (``dispatch``: limits per shard task) declares that one alias
itself, with the same option name and metavar.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from scanner.engine.syn.defaults import DEFAULT_RATE, DEFAULT_RETRIES, DEFAULT_WAIT
from scanner.errors import UsageError
from scanner.models import PROTOCOLS, STARTTLS_PORTS, EngineLimits, Severity
from scanner.plan import pairs, targets
from scanner.text import safe

if TYPE_CHECKING:
    from scanner.sweep.options import SweepOptions

# --- options several commands share ---------------------------------------------------------

SEVERITY_NAMES = "|".join(s.label for s in sorted(Severity, reverse=True))
DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="PATH|URL",
        envvar="CERTSCAN_DB",
        show_envvar=True,
        help="Inventory: a SQLite file path or an SQLAlchemy URL (postgresql+psycopg://user@host/db)."
        " Default: $XDG_DATA_HOME/certscan/inventory.db.",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="Policy and trust config (TOML). Default: $CERTSCAN_CONFIG, else "
        "$XDG_CONFIG_HOME/certscan/config.toml when it exists.",
    ),
]
CaBundleOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--ca-bundle",
        metavar="FILE",
        help="PEM file of extra trusted roots (private PKI); repeatable.",
    ),
]
FailOnOption = Annotated[
    str | None,
    typer.Option(
        "--fail-on",
        metavar=SEVERITY_NAMES,
        help="Exit 1 when a reported finding is at or above this severity.",
    ),
]

# --- the options that describe a sweep (sweep and dispatch) -------------------------------

PORTS_HELP = (
    "Ports: list and ranges, each with an optional /PROTOCOL (tls, or a STARTTLS protocol: "
    + ", ".join(p for p in PROTOCOLS if p != "tls")
    + "), e.g. 443,8443,9000-9010,2525/smtp,10443/tls. Default: "
    + ",".join(str(p) for p in targets.DEFAULT_PORTS)
    + ": implicit TLS on 443 HTTPS, 465 SMTPS, 636 LDAPS, 993 IMAPS, 995 POP3S, 8443 HTTPS-alt;"
    " STARTTLS on 25 and 587 SMTP, 110 POP3, 143 IMAP, 389 LDAP, 3389 RDP, 5432 PostgreSQL."
)
STARTTLS_HELP = (
    "How TLS starts on ports given without /PROTOCOL. 'auto': STARTTLS on the well-known ports ("
    + ", ".join(f"{port} {name}" for port, name in STARTTLS_PORTS.items())
    + "), implicit TLS elsewhere, retried once as STARTTLS when the server greets in plaintext "
    "(220, * OK, +OK, MySQL); 'off': implicit TLS everywhere; or one protocol for every port."
)

# --- What to scan ---------------------------------------------------------------------------

TargetArgument = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="TARGET",
        help="Addresses, CIDRs (10.0.0.0/16), ranges (10.0.0.1-50), hostnames, host:port; "
        "TARGET=NAME sends NAME as SNI to that target (10.0.0.5:443=www.example.org, "
        "[::1]:8443=api.example.org).",
        show_default=False,
    ),
]
FileOption = Annotated[
    list[Path] | None,
    typer.Option(
        "-f",
        "--file",
        metavar="FILE",
        help="Read targets from FILE (one or more a line, # comments).",
    ),
]
CsvOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--targets-csv",
        metavar="FILE",
        help="Read targets from a CSV FILE of address,port,sni rows (header optional, "
        "# comments; empty port: the -p ports; empty sni: --sni or none).",
    ),
]
PortsOption = Annotated[str | None, typer.Option("-p", "--ports", metavar="PORTS", help=PORTS_HELP)]
StarttlsOption = Annotated[
    str, typer.Option("--starttls", metavar="auto|off|PROTOCOL", help=STARTTLS_HELP)
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option("--exclude", metavar="CIDR", help="Address, CIDR or range to skip."),
]
ExcludeFileOption = Annotated[
    list[Path] | None,
    typer.Option("--exclude-file", metavar="FILE", help="File of exclusions."),
]
BlocklistOption = Annotated[
    Path | None,
    typer.Option("--blocklist", metavar="FILE", help="File of CIDRs never to scan (# comments)."),
]
SniOption = Annotated[
    str | None,
    typer.Option("--sni", metavar="NAME", help="Server name to send to every IP target."),
]
SniFromOption = Annotated[
    list[str] | None,
    typer.Option(
        "--sni-from",
        metavar="san|ptr",
        help="After a handshake, try again with each DNS name in the leaf's SANs (san, at "
        "most 16, no wildcards) or the address's reverse-DNS name (ptr, also after a "
        "refused handshake); each name is its own endpoint. Repeatable.",
    ),
]
SniFileOption = Annotated[
    Path | None,
    typer.Option(
        "--sni-file",
        metavar="FILE",
        help="After a handshake, or a handshake refused once TCP was accepted (strict-SNI "
        "servers), try again with every name in FILE (one or more a line).",
    ),
]
AllCertsOption = Annotated[
    bool,
    typer.Option(
        "--all-certs",
        help="After a handshake, also offer only RSA, then only ECDSA, to collect every "
        "certificate of a dual-certificate server (up to 2 more connections).",
    ),
]
ResolveOption = Annotated[
    str,
    typer.Option(
        "--resolve",
        metavar="all|first",
        help="Hostnames: scan 'all' their addresses or the 'first'.",
    ),
]
AllowPublicOption = Annotated[
    bool,
    typer.Option("--allow-public", help="Allow globally routable addresses (off: private only)."),
]
MaxTargetsOption = Annotated[
    int, typer.Option("--max-targets", metavar="N", help="Refuse plans larger than this.")
]

# --- How to scan ----------------------------------------------------------------------------

ConcurrencyOption = Annotated[
    int,
    typer.Option(
        "--concurrency",
        metavar="N",
        help="Connections in flight at once (clamped to the open-files limit).",
    ),
]
RateOption = Annotated[
    float | None,
    typer.Option(
        "--rate",
        metavar="PER_SECOND",
        help="New connections per second, and SYNs per second with --discover syn (default: "
        f"no cap on connections, {DEFAULT_RATE:,.0f} SYNs per second).",
    ),
]
DiscoverOption = Annotated[
    str,
    typer.Option(
        "--discover",
        metavar="auto|syn|connect",
        envvar="CERTSCAN_DISCOVER",
        show_envvar=True,
        help="How to find the targets that answer before the TLS handshakes: 'syn' sends raw "
        "SYNs at --rate and handshakes only with those that answer SYN-ACK (needs root or "
        "CAP_NET_RAW); 'connect' connects to every target; 'auto' is syn when allowed, else "
        "connect.",
    ),
]
SynRetriesOption = Annotated[
    int,
    typer.Option(
        "--syn-retries", metavar="N", help="SYNs sent again to a target that has not answered."
    ),
]
SynWaitOption = Annotated[
    float,
    typer.Option(
        "--syn-wait",
        metavar="SECONDS",
        help="Seconds to wait for an answer after each SYN (retries, and the last replies).",
    ),
]
HandshakesOption = Annotated[
    int, typer.Option("--handshakes", metavar="N", help="TLS handshakes in flight at once.")
]
ProbeProtocolsOption = Annotated[
    bool,
    typer.Option(
        "--probe-protocols",
        help="Also try TLS 1.1 and 1.0 on each TLS endpoint (2 more connections).",
    ),
]
PerAddressOption = Annotated[
    int, typer.Option("--per-address", metavar="N", help="Connections to one address at once.")
]
ConnectTimeoutOption = Annotated[
    float,
    typer.Option("--connect-timeout", metavar="SECONDS", help="Seconds to wait for TCP connect."),
]
HandshakeTimeoutOption = Annotated[
    float,
    typer.Option(
        "--handshake-timeout", metavar="SECONDS", help="Seconds to wait for the TLS handshake."
    ),
]
DeadlineOption = Annotated[
    float,
    typer.Option("--deadline", metavar="SECONDS", help="Seconds one target may take in all."),
]

#: The parameter names :func:`sweep_options` reads (each command's defaults are the same).
SWEEP_PARAMS = (
    "target",
    "file",
    "targets_csv",
    "ports",
    "starttls",
    "exclude",
    "exclude_file",
    "blocklist",
    "sni",
    "sni_from",
    "sni_file",
    "all_certs",
    "resolve",
    "allow_public",
    "max_targets",
    "concurrency",
    "rate",
    "handshakes",
    "probe_protocols",
    "per_address",
    "connect_timeout",
    "handshake_timeout",
    "deadline",
)


def positive(name: str, value: float) -> float:
    """``value`` if greater than 0, else a UsageError naming the option."""
    if value <= 0:
        raise UsageError(f"{name} must be greater than 0 (got {value:g})")
    return value


def _read_all(paths: list[Path] | None) -> list[str]:
    from scanner.plan.lists import read_list_file

    entries: list[str] = []
    for path in paths or []:
        entries += read_list_file(path)
    return entries


def engine_limits(params: Mapping[str, Any]) -> EngineLimits:
    """The engine's limits from ``--concurrency`` .. ``--deadline`` (and ``--all-certs``)."""
    concurrency, handshakes, per_address = (
        params["concurrency"],
        params["handshakes"],
        params["per_address"],
    )
    if min(concurrency, per_address, handshakes) < 1:
        raise UsageError("--concurrency, --handshakes and --per-address must be at least 1")
    rate = params["rate"]
    return EngineLimits(
        concurrency=concurrency,
        handshakes=handshakes,
        probe_protocols=params["probe_protocols"],
        all_certs=params["all_certs"],
        rate=positive("--rate", rate) if rate is not None else None,
        per_address=per_address,
        connect_timeout=positive("--connect-timeout", params["connect_timeout"]),
        handshake_timeout=positive("--handshake-timeout", params["handshake_timeout"]),
        target_deadline=positive("--deadline", params["deadline"]),
    )


def sweep_options(params: Mapping[str, Any], *, db_url: str, db_label: str) -> SweepOptions:
    """Check the raw values of the :data:`SWEEP_PARAMS` in ``params`` (a command's
    ``ctx.params``) and build the sweep they describe; the command adds what is its own with
    ``dataclasses.replace``. Files named by the options are read here (UsageError if they
    cannot be)."""
    from scanner.engine import discovery
    from scanner.plan.lists import read_list_file
    from scanner.sweep import modes as discovery_options
    from scanner.sweep.options import SweepOptions, join_specs, starttls_default

    missing = [name for name in SWEEP_PARAMS if name not in params]
    if missing:  # a command declared an option under another name: a bug, not a usage error
        raise TypeError(f"sweep options missing from the command: {', '.join(missing)}")
    specs = list(params["target"] or []) + _read_all(params["file"])
    for path in params["targets_csv"] or []:
        specs += pairs.read_csv(path)
    excludes = list(params["exclude"] or []) + _read_all(params["exclude_file"])
    if not specs:
        raise UsageError(
            "no targets: give addresses, CIDRs or hostnames, -f FILE or --targets-csv FILE"
        )
    resolve = params["resolve"]
    if resolve not in ("all", "first"):
        raise UsageError(f"--resolve must be 'all' or 'first' (got {safe(resolve)!r})")
    starttls = params["starttls"]
    starttls_default(starttls)  # a bad --starttls is a usage error before any work
    limits = engine_limits(params)
    ports = params["ports"]
    port_specs = (
        targets.parse_port_specs(ports)
        if ports is not None
        else tuple((port, None) for port in targets.DEFAULT_PORTS)
    )
    blocklist, sni_file = params["blocklist"], params["sni_file"]
    # --discover and its two knobs: sweep has them; a command without them connects.
    discover = discovery_options.parse_options(
        params.get("discover", "connect"),
        params.get("syn_retries", DEFAULT_RETRIES),
        params.get("syn_wait", DEFAULT_WAIT),
    )
    return SweepOptions(
        discover=discover,
        specs=join_specs(specs),
        ports=tuple(port for port, _ in port_specs),
        protocols=tuple((port, name) for port, name in port_specs if name is not None),
        starttls=starttls,
        excludes=tuple(excludes),
        blocklist=tuple(read_list_file(blocklist)) if blocklist else (),
        sni=params["sni"],
        discovery=discovery.parse_options(
            params["sni_from"] or [], read_list_file(sni_file) if sni_file else []
        ),
        allow_public=params["allow_public"],
        max_targets=params["max_targets"],
        resolve_mode=resolve,
        limits=limits,
        db_url=db_url,
        db_label=db_label,
    )
