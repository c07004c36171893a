"""The ``[serve]`` and ``[jobs.NAME]`` sections of the certscan config, validated.

``reports.policy.load_config`` keeps these sections raw in ``Config.sections``; this module turns
them into :class:`ServeSettings` and :class:`JobSpec`. Every error is a one-line
:class:`~scanner.errors.UsageError` naming the file and the dotted key::

    [serve]
    listen = "127.0.0.1:10943"    # --listen wins
    db = "/var/lib/certscan/inventory.db"   # --db / CERTSCAN_DB win
    token = "..."                 # CERTSCAN_API_TOKEN wins; protects POST /api/v1/jobs/NAME/run
    [serve.tokens]                # several named tokens: the name is who approved a hook run
    alice = "..."                 # (the API records "token:alice"); each at least 16 characters
    read_token = "..."            # CERTSCAN_API_READ_TOKEN wins; then every GET needs a token
    allowed_hosts = ["certscan.corp.example"]   # Host names answered besides IPs and listen

    [jobs.office]
    targets = ["10.1.0.0/24", "mail.example.org", "10.1.0.9:443=www.example.org"]
    targets_file = "office.txt"   # optional, one or more targets a line
    targets_csv = "office.csv"    # optional, address,port,sni rows (scanner.plan.pairs)
    ports = "443,8443,25/smtp"
    every = "6h"                  # or cron = "0 */6 * * *" (UTC)
    exclude = ["10.1.0.13"]       # optional, like the sweep options of the same names:
    starttls = "auto"             # concurrency, connect_timeout, handshake_timeout, deadline,
    probe_protocols = false       # allow_public, sni, discover, syn_retries, syn_wait

    [jobs.dmz]                    # dispatched to the zone's agents instead of scanned here
    targets = ["10.9.0.0/16"]
    every = "1d"
    zone = "dmz"                  # queue certscan.zone.dmz (certscan dispatch --zone)
    shard_size = "/24"            # addresses a shard: /8../32 or a count (default /24)
    broker = "amqp://..."         # default: $CERTSCAN_BROKER, else the local RabbitMQ
    ingest_queue = "certscan.ingest"   # where its agents send results (certscan ingest --queue)

    [jobs.certs]                  # certificate files (certscan import), with or without targets
    files = ["/etc/ssl/private"]  # paths, directories, globs (relative to this file)
    file_roots = ["/etc/ssl"]     # only files inside these (default: the paths themselves)
    password_env = "STORE_PASS"   # the variable holding PKCS#12/keystore passwords
    every = "1h"

``shard_size``, ``broker`` and ``ingest_queue`` need ``zone``. The broker URL is checked here
(its scheme) and reached only when the job runs; ``$CERTSCAN_BROKER`` is read then too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporters.serve.defaults import DEFAULT_PORT
from exporters.serve.job_options import JOB_SWEEP_KEYS, JobSweepOptions, job_sweep_options
from exporters.serve.scheduler import Schedule, parse_schedule
from reports.policy import Config
from scanner.engine.syn.defaults import DEFAULT_RETRIES, DEFAULT_WAIT
from scanner.errors import CertscanError, UsageError
from scanner.models import EngineLimits
from scanner.plan import pairs, targets
from scanner.plan.lists import read_list_file
from scanner.sweep.modes import DiscoverOptions
from scanner.sweep.modes import parse_options as parse_discover
from scanner.sweep.options import starttls_default

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SHARD_SIZE",
    "JobSpec",
    "ServeSettings",
    "parse_listen",
    "serve_settings",
]

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_JOB_KEYS = (
    "targets",
    "targets_file",
    "targets_csv",
    "ports",
    "every",
    "cron",
    "exclude",
    "starttls",
    "sni",
    "allow_public",
    "probe_protocols",
    "concurrency",
    "connect_timeout",
    "handshake_timeout",
    "deadline",
    "discover",
    "syn_retries",
    "syn_wait",
    "zone",
    "shard_size",
    "broker",
    "ingest_queue",
    "files",
    "file_roots",
    "password_env",
    *JOB_SWEEP_KEYS,
)
_ZONE_KEYS = ("shard_size", "broker", "ingest_queue")  # meaningful only with ``zone``
#: Addresses a dispatched shard holds unless ``shard_size`` says otherwise (a /24).
DEFAULT_SHARD_SIZE = 256
_SERVE_KEYS = ("listen", "db", "token", "tokens", "read_token", "allowed_hosts")
_TOKEN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """One named scan job: what to sweep (specs already read from ``targets_file``) and when."""

    name: str
    schedule: Schedule
    specs: tuple[str, ...]
    ports: tuple[tuple[int, str | None], ...]
    excludes: tuple[str, ...] = ()
    starttls: str = "auto"
    sni: str | None = None
    allow_public: bool = False
    limits: EngineLimits = field(default_factory=EngineLimits)
    #: ``discover``/``syn_retries``/``syn_wait``, as ``sweep --discover`` (default ``auto``).
    discover: DiscoverOptions = field(default_factory=DiscoverOptions)
    #: Dispatch each run to this zone's agents (``certscan dispatch --zone``); None: scan here.
    zone: str | None = None
    #: Addresses per shard of a dispatched run.
    shard_size: int = DEFAULT_SHARD_SIZE
    #: The broker of a dispatched run; None: ``$CERTSCAN_BROKER`` or the default, at run time.
    broker: str | None = None
    #: The queue its agents send results to; None: ``certscan ingest``'s default.
    ingest_queue: str | None = None
    #: Certificate files to import on each run (``certscan import``: paths, directories,
    #: globs, relative to the config file), only inside ``file_roots`` (default: themselves);
    #: ``password_env`` names the variable holding PKCS#12/keystore passwords.
    files: tuple[str, ...] = ()
    file_roots: tuple[Path, ...] = ()
    password_env: str | None = None
    #: SNI fan-out, blocklist, resolve mode... (:mod:`exporters.serve.job_options`).
    sweep: JobSweepOptions = field(default_factory=JobSweepOptions)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeSettings:
    """The ``[serve]`` section (each ``None`` when absent) and the jobs, by name."""

    listen: str | None = None
    db: str | None = None
    token: str | None = None
    #: Named bearer tokens (``[serve.tokens]``): name -> token; the name is the identity the
    #: API records for a decision made with that token.
    tokens: Mapping[str, str] = field(default_factory=dict)
    #: GETs need this bearer token when set (CERTSCAN_API_READ_TOKEN wins).
    read_token: str | None = None
    #: Host names the API answers besides IP literals, the listen name and localhost.
    allowed_hosts: tuple[str, ...] = ()
    jobs: Mapping[str, JobSpec]


def parse_listen(text: str) -> tuple[str, int]:
    """``127.0.0.1:10943``, ``[::1]:10943`` or ``localhost:0`` -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UsageError(f"--listen {text!r}: want HOST:PORT such as 127.0.0.1:{DEFAULT_PORT}")
    return host, int(port)


class _Section:
    def __init__(self, source: str, path: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise UsageError(f"{source}: {path} must be a table")
        self.source, self.path, self.data = source, path, data

    def fail(self, key: str, message: str) -> UsageError:
        return UsageError(f"{self.source}: {self.path}.{key}: {message}")

    def check_keys(self, known: tuple[str, ...]) -> None:
        for key in self.data:
            if key not in known:
                raise self.fail(str(key), f"unknown key (known: {', '.join(known)})")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.data.get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(key, "must be a number")
        if not isinstance(value, kind):
            names = (
                kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            )
            raise self.fail(key, f"must be a {names} (got {type(value).__name__})")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.get(key, (list, str), ())
        items = [value] if isinstance(value, str) else list(value)
        if not all(isinstance(v, str) for v in items):
            raise self.fail(key, "must be a list of strings")
        return tuple(items)

    def positive(self, key: str, default: float) -> float:
        value = self.get(key, (int, float), default)
        if value <= 0:
            raise self.fail(key, f"must be positive (got {value})")
        return float(value)


def _job(name: str, raw: object, *, source: str, base: Path) -> JobSpec:
    sec = _Section(source, f"jobs.{name}", raw)
    if not _NAME.fullmatch(name):
        raise UsageError(f"{source}: jobs.{name}: a job name is 1-64 of A-Z a-z 0-9 _ . -")
    sec.check_keys(_JOB_KEYS)
    specs = list(sec.strings("targets"))
    file = sec.get("targets_file", str)
    if file is not None:
        specs += read_list_file(base / Path(file).expanduser())
    csv_file = sec.get("targets_csv", str)
    if csv_file is not None:
        try:
            specs += pairs.read_csv(base / Path(csv_file).expanduser())
        except CertscanError as exc:
            raise sec.fail("targets_csv", str(exc)) from None
    files = tuple(str(base / Path(f).expanduser()) for f in sec.strings("files"))
    if not specs and not files:
        raise sec.fail(
            "targets", "no targets: give targets = [...], targets_file, targets_csv or files"
        )
    try:
        schedule = parse_schedule(every=sec.get("every", str), cron=sec.get("cron", str))
    except ValueError as exc:
        if "every" not in sec.data and "cron" not in sec.data:
            raise UsageError(f"{source}: jobs.{name}: {exc}") from None
        raise sec.fail("every" if "every" in sec.data else "cron", str(exc)) from None
    try:
        default_ports = ",".join(str(p) for p in targets.DEFAULT_PORTS)  # as certscan sweep
        ports = targets.parse_port_specs(sec.get("ports", str, default_ports))
        starttls = sec.get("starttls", str, "auto")
        starttls_default(starttls)
    except CertscanError as exc:
        raise UsageError(f"{source}: jobs.{name}: {exc}") from None
    concurrency = sec.get("concurrency", int, EngineLimits().concurrency)
    if concurrency < 1:
        raise sec.fail("concurrency", "must be at least 1")
    extra = job_sweep_options(sec, base)
    limits = EngineLimits(
        concurrency=concurrency,
        handshakes=extra.handshakes,
        rate=extra.rate,
        per_address=extra.per_address,
        all_certs=extra.all_certs,
        connect_timeout=sec.positive("connect_timeout", EngineLimits().connect_timeout),
        handshake_timeout=sec.positive("handshake_timeout", EngineLimits().handshake_timeout),
        target_deadline=sec.positive("deadline", EngineLimits().target_deadline),
        probe_protocols=sec.get("probe_protocols", bool, False),
    )
    zone, shard_size, broker, ingest_queue = _zone_keys(sec)
    try:
        discover = parse_discover(
            sec.get("discover", str, "auto"),
            sec.get("syn_retries", int, DEFAULT_RETRIES),
            float(sec.get("syn_wait", (int, float), DEFAULT_WAIT)),
        )
    except UsageError as exc:
        raise UsageError(f"{source}: jobs.{name}: {exc}") from None
    return JobSpec(
        discover=discover,
        name=name,
        schedule=schedule,
        specs=tuple(specs),
        ports=ports,
        excludes=sec.strings("exclude") + extra.excludes,
        starttls=starttls,
        sni=sec.get("sni", str),
        allow_public=sec.get("allow_public", bool, False),
        limits=limits,
        zone=zone,
        shard_size=shard_size,
        broker=broker,
        ingest_queue=ingest_queue,
        files=files,
        file_roots=tuple(base / Path(r).expanduser() for r in sec.strings("file_roots")),
        password_env=sec.get("password_env", str),
        sweep=extra,
    )


def _zone_keys(sec: _Section) -> tuple[str | None, int, str | None, str | None]:
    """``zone``, ``shard_size``, ``broker`` and ``ingest_queue``, checked (names and schemes
    only: nothing is contacted; ``scanner.zones.app`` does not import celery)."""
    from scanner.plan.shards import parse_shard_size
    from scanner.zones.app import broker_url, check_queue, safe_url, zone_queue

    zone = sec.get("zone", str)
    if zone is None:
        for key in _ZONE_KEYS:
            if key in sec.data:
                raise sec.fail(key, 'needs zone = "NAME" (it applies to dispatched jobs)')
        return None, DEFAULT_SHARD_SIZE, None, None
    try:
        zone_queue(zone)
    except UsageError as exc:
        raise sec.fail("zone", str(exc)) from None
    size = sec.get("shard_size", (str, int), DEFAULT_SHARD_SIZE)
    try:
        shard_size = parse_shard_size(str(size))
    except UsageError:
        raise sec.fail(
            "shard_size", f"want an IPv4 prefix /8 to /32 or a count of addresses (got {size!r})"
        ) from None
    broker = sec.get("broker", str)
    if broker is not None:
        try:
            broker_url(broker)
        except UsageError:
            raise sec.fail(
                "broker", f"want an amqp:// or redis:// URL (got {safe_url(broker)!r})"
            ) from None
    ingest_queue = sec.get("ingest_queue", str)
    if ingest_queue is not None:
        try:
            check_queue(ingest_queue, "queue")
        except UsageError as exc:
            raise sec.fail("ingest_queue", str(exc)) from None
    return zone, shard_size, broker, ingest_queue


def serve_settings(config: Config) -> ServeSettings:
    """The daemon's settings from a loaded config (no sections: no jobs, all defaults)."""
    source = str(config.path) if config.path is not None else "config"
    base = config.path.parent if config.path is not None else Path.cwd()
    serve = _Section(source, "serve", config.sections.get("serve", {}))
    serve.check_keys(_SERVE_KEYS)
    listen = serve.get("listen", str)
    if listen is not None:
        try:
            parse_listen(listen)
        except UsageError:
            raise serve.fail("listen", f"want HOST:PORT (got {listen!r})") from None
    token = serve.get("token", str)
    if token is not None and len(token) < 16:
        raise serve.fail("token", "must be at least 16 characters")
    tokens = _tokens(serve)
    read_token = serve.get("read_token", str)
    if read_token is not None and len(read_token) < 16:
        raise serve.fail("read_token", "must be at least 16 characters")
    allowed_hosts = serve.strings("allowed_hosts")
    for name in allowed_hosts:
        if not name or any(c.isspace() or c in "/:@" for c in name) or not name.isascii():
            raise serve.fail("allowed_hosts", f"not a host name: {name!r}")
    jobs_raw = config.sections.get("jobs", {})
    jobs = {name: _job(name, raw, source=source, base=base) for name, raw in jobs_raw.items()}
    return ServeSettings(
        listen=listen,
        db=serve.get("db", str),
        token=token,
        tokens=tokens,
        read_token=read_token,
        allowed_hosts=allowed_hosts,
        jobs=jobs,
    )


def _tokens(serve: _Section) -> dict[str, str]:
    raw = serve.get("tokens", Mapping, {})
    tokens: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _TOKEN_NAME.fullmatch(name):
            raise serve.fail("tokens", "a token name is 1-64 of A-Z a-z 0-9 _ . -")
        if not isinstance(value, str) or len(value) < 16:
            raise serve.fail(f"tokens.{name}", "must be a string of at least 16 characters")
        if value in tokens.values():
            raise serve.fail(f"tokens.{name}", "the same token under two names")
        tokens[name] = value
    return tokens
