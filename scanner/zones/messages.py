"""The messages between dispatcher, agents and ingest: dataclasses and their JSON dicts.

Every message is a JSON object with ``"v": 1`` and a ``"type"``; :func:`parse` checks both and
the fields of that type (exact JSON types, bounds, no unknown keys) and raises
:class:`scanner.zones.wire.WireError` naming the first problem. Outcomes and certificates inside a
batch use :mod:`scanner.zones.wire`. Pure: no broker, no database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scanner.engine.discovery import DiscoveryOptions
from scanner.errors import UsageError
from scanner.models import EngineLimits, Outcome, Progress
from scanner.plan import targets
from scanner.plan.shards import MAX_SEED, ShardedPlan, ShardSpec, shard_size
from scanner.sweep.modes import MAX_RETRIES, DiscoverOptions
from scanner.sweep.modes import parse_options as parse_discover
from scanner.zones.app import QUEUE_NAME
from scanner.zones.policy import MAXIMA as LIMIT_MAXIMA
from scanner.zones.wire import (
    DEFAULT_LIMITS,
    DerTable,
    WireError,
    WireLimits,
    from_datetime,
    integer,
    items,
    mapping,
    only_keys,
    optional_text,
    outcome_from_wire,
    outcome_to_wire,
    text,
    to_datetime,
    typed,
)

VERSION = 1
MAX_ITEMS = 2000  # outcomes in one batch (the pipeline cuts at 400)
MAX_ENTRIES = 1_000_000  # targets, exclusions or resolved names in one plan
MAX_INDEX = 2**62
_ERROR_CHARS = 2000


def _strings(value: object, what: str, limit: int = 4096) -> tuple[str, ...]:
    entries = items(value, what, MAX_ENTRIES)
    if any(type(e) is not str or len(e) > limit for e in entries):
        raise WireError(f"{what}: each entry must be text of at most {limit} characters")
    return tuple(entries)


def _ints(value: object, what: str, low: int, high: int) -> tuple[int, ...]:
    entries = items(value, what, MAX_ENTRIES)
    if any(type(e) is not int or not low <= e <= high for e in entries):
        raise WireError(f"{what}: each entry must be an integer in {low}..{high}")
    return tuple(entries)


def _header(value: object, kind: str, keys: frozenset[str]) -> Mapping[str, Any]:
    data = mapping(value, kind)
    if data.get("v") != VERSION or type(data.get("v")) is not int:
        raise WireError(f"{kind}: unsupported message version {data.get('v')!r}")
    if data.get("type") != kind:
        raise WireError(f"{kind}: wrong message type {data.get('type')!r}")
    only_keys(data, keys | {"v", "type"}, kind)
    return data


# ---------------------------------------------------------------- the plan's inputs


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanInputs:
    """Everything :func:`scanner.plan.targets.build_plan` needs, names already resolved."""

    specs: tuple[str, ...]
    ports: tuple[int, ...]
    excludes: tuple[str, ...] = ()
    blocklist: tuple[str, ...] = ()
    resolved: tuple[tuple[str, tuple[str, ...]], ...] = ()  # sorted by name
    allow_public: bool = False
    max_targets: int = 2**24
    sni: str | None = None
    protocols: tuple[tuple[int, str], ...] = ()
    default_protocol: str | None = None

    def build(self, resolve_errors: Mapping[str, str] | None = None) -> targets.TargetPlan:
        """The plan (pure; raises TargetError as ``build_plan`` does)."""
        return targets.build_plan(
            self.specs,
            ports=self.ports,
            excludes=self.excludes,
            blocklist=self.blocklist,
            resolved=dict(self.resolved),
            allow_public=self.allow_public,
            max_targets=self.max_targets,
            sni=self.sni,
            resolve_errors=resolve_errors,
            protocols=dict(self.protocols),
            default_protocol=self.default_protocol,
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "specs": list(self.specs),
            "ports": list(self.ports),
            "excludes": list(self.excludes),
            "blocklist": list(self.blocklist),
            "resolved": {name: list(addrs) for name, addrs in self.resolved},
            "allow_public": self.allow_public,
            "max_targets": self.max_targets,
            "sni": self.sni,
            "protocols": [[port, name] for port, name in self.protocols],
            "default_protocol": self.default_protocol,
        }

    @classmethod
    def from_wire(cls, value: object) -> PlanInputs:
        data = mapping(value, "plan")
        only_keys(data, frozenset(cls.__dataclass_fields__), "plan")
        resolved = mapping(data.get("resolved"), "plan.resolved")
        if len(resolved) > MAX_ENTRIES:
            raise WireError("plan.resolved: too many names")
        pairs = items(data.get("protocols"), "plan.protocols", 65536)
        protocols: list[tuple[int, str]] = []
        for pair in pairs:
            if (
                type(pair) is not list
                or len(pair) != 2
                or type(pair[0]) is not int
                or type(pair[1]) is not str
            ):
                raise WireError("plan.protocols: each entry must be [port, protocol]")
            protocols.append((pair[0], pair[1]))
        return cls(
            specs=_strings(data.get("specs"), "plan.specs"),
            ports=_ints(data.get("ports"), "plan.ports", 1, 65535),
            excludes=_strings(data.get("excludes"), "plan.excludes"),
            blocklist=_strings(data.get("blocklist"), "plan.blocklist"),
            resolved=tuple(
                (name, _strings(addrs, "plan.resolved", 64))
                for name, addrs in sorted(resolved.items())
            ),
            allow_public=typed(data, "allow_public", bool),
            max_targets=integer(data, "max_targets", 1, MAX_INDEX),
            sni=optional_text(data, "sni", 1024),
            protocols=tuple(protocols),
            default_protocol=optional_text(data, "default_protocol", 32),
        )


def _limits_to_wire(limits: EngineLimits) -> dict[str, Any]:
    return dataclasses.asdict(limits)


_LIMIT_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _limits_from_wire(value: object) -> EngineLimits:
    data = mapping(value, "limits")
    fields = {f.name: str(f.type) for f in dataclasses.fields(EngineLimits)}
    only_keys(data, frozenset(fields), "limits")
    out: dict[str, Any] = {}
    for name, kind in fields.items():
        if name not in data:
            continue  # a sender from before the field existed: its default
        if kind.endswith(" | None") and data[name] is None:
            out[name] = None
            continue
        got: object = typed(data, name, _LIMIT_TYPES[kind.removesuffix(" | None")])
        top = getattr(LIMIT_MAXIMA, name)
        if isinstance(got, int | float) and not isinstance(got, bool) and not 0 < got <= top:
            raise WireError(f"limits.{name}: out of range (at most {top:g})")
        out[name] = got
    return EngineLimits(**out)


def _discovery_from_wire(value: object) -> DiscoveryOptions | None:
    if value is None:
        return None
    data = mapping(value, "discovery")
    only_keys(data, frozenset({"sources", "names", "max_names"}), "discovery")
    return DiscoveryOptions(
        sources=frozenset(_strings(data.get("sources"), "discovery.sources", 16)),
        names=_strings(data.get("names"), "discovery.names", 253),
        max_names=integer(data, "max_names", 0, 1024),
    )


def _discovery_to_wire(options: DiscoveryOptions | None) -> dict[str, Any] | None:
    if options is None or not options.enabled:
        return None
    return {
        "sources": sorted(options.sources),
        "names": list(options.names),
        "max_names": options.max_names,
    }


def _discover_to_wire(options: DiscoverOptions) -> dict[str, Any]:
    return {"mode": options.mode, "retries": options.retries, "wait": options.wait}


def _discover_from_wire(value: object) -> DiscoverOptions | None:
    if value is None:
        return None
    data = mapping(value, "discover")
    only_keys(data, frozenset({"mode", "retries", "wait"}), "discover")
    wait = data.get("wait")
    if isinstance(wait, bool) or not isinstance(wait, int | float):
        raise WireError("discover.wait: not a number")
    try:
        return parse_discover(
            text(data, "mode", 16), integer(data, "retries", 0, MAX_RETRIES), float(wait)
        )
    except UsageError as exc:
        raise WireError(f"discover: {exc}") from None


# ---------------------------------------------------------------- the shard task


def _queue_name(name: str) -> str:
    if QUEUE_NAME.fullmatch(name) is None:
        raise WireError("ingest_queue: not a queue name")
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardTask:
    """Sweep shard ``shard`` of ``shards`` of scan ``scan_id``; results to ``ingest_queue``."""

    scan_id: int
    shard: int
    shards: int
    seed: int
    total: int  # the whole plan's count, as the dispatcher built it
    plan: PlanInputs
    limits: EngineLimits
    discovery: DiscoveryOptions | None
    ingest_queue: str
    #: ``--discover`` as dispatched; the agent decides ``auto`` with its own privilege. None
    #: (absent on the wire, as older dispatchers send it): connect.
    discover: DiscoverOptions | None = None

    def sharded_plan(self) -> ShardedPlan:
        """Rebuild this shard's plan; WireError when it differs from the dispatcher's."""
        plan = self.plan.build()
        if plan.count != self.total:
            raise WireError(
                f"the plan rebuilt here has {plan.count} targets, the dispatcher's had "
                f"{self.total}: are agent and dispatcher the same certscan version?"
            )
        return ShardedPlan(plan, ShardSpec(self.seed, self.shards, self.shard))

    @property
    def count(self) -> int:
        """Targets in this shard."""
        return shard_size(self.total, ShardSpec(self.seed, self.shards, self.shard))

    def to_wire(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.discover is not None:  # only when given: older agents accept the message
            extra["discover"] = _discover_to_wire(self.discover)
        return extra | {
            "v": VERSION,
            "type": "shard",
            "scan_id": self.scan_id,
            "shard": self.shard,
            "shards": self.shards,
            "seed": self.seed,
            "total": self.total,
            "plan": self.plan.to_wire(),
            "limits": _limits_to_wire(self.limits),
            "discovery": _discovery_to_wire(self.discovery),
            "ingest_queue": self.ingest_queue,
        }

    @classmethod
    def from_wire(cls, value: object) -> ShardTask:
        data = _header(value, "shard", frozenset(cls.__dataclass_fields__))
        shards = integer(data, "shards", 1, MAX_INDEX)
        return cls(
            scan_id=integer(data, "scan_id", 1, MAX_INDEX),
            shard=integer(data, "shard", 0, shards - 1),
            shards=shards,
            seed=integer(data, "seed", 0, MAX_SEED),
            total=integer(data, "total", 1, MAX_INDEX),
            plan=PlanInputs.from_wire(data.get("plan")),
            limits=_limits_from_wire(data.get("limits")),
            discovery=_discovery_from_wire(data.get("discovery")),
            ingest_queue=_queue_name(text(data, "ingest_queue", 200)),
            discover=_discover_from_wire(data.get("discover")),
        )


# ---------------------------------------------------------------- agent -> ingest


def _progress_to_wire(progress: Progress) -> dict[str, int]:
    return {
        "watermark": progress.watermark,
        "done": progress.done,
        "ok": progress.ok,
        "failed": progress.failed,
    }


def _progress_from_wire(value: object) -> Progress:
    data = mapping(value, "progress")
    only_keys(data, frozenset({"watermark", "done", "ok", "failed"}), "progress")
    return Progress(
        watermark=integer(data, "watermark", 0, MAX_INDEX),
        done=integer(data, "done", 0, MAX_INDEX),
        ok=integer(data, "ok", 0, MAX_INDEX),
        failed=integer(data, "failed", 0, MAX_INDEX),
    )


_ATTEMPT_KEYS = frozenset({"scan_id", "shard", "attempt", "attempt_started_at"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One run of one shard by one agent: the key every agent message carries."""

    scan_id: int
    shard: int
    attempt: str  # uuid4 hex
    attempt_started_at: datetime

    def to_wire(self) -> dict[str, Any]:
        return {
            "scan_id": self.scan_id,
            "shard": self.shard,
            "attempt": self.attempt,
            "attempt_started_at": to_datetime(self.attempt_started_at),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Attempt:
        attempt = text(data, "attempt", 32)
        if len(attempt) != 32 or attempt.strip("0123456789abcdef"):
            raise WireError("attempt: must be 32 lowercase hex digits")
        return cls(
            scan_id=integer(data, "scan_id", 1, MAX_INDEX),
            shard=integer(data, "shard", 0, MAX_INDEX),
            attempt=attempt,
            attempt_started_at=from_datetime(data, "attempt_started_at"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardStarted:
    key: Attempt
    agent: str  # "host/pid"

    def to_wire(self) -> dict[str, Any]:
        return {"v": VERSION, "type": "shard_started", **self.key.to_wire(), "agent": self.agent}

    @classmethod
    def from_wire(cls, value: object) -> ShardStarted:
        data = _header(value, "shard_started", _ATTEMPT_KEYS | {"agent"})
        return cls(key=Attempt.from_wire(data), agent=text(data, "agent", 300))


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchMessage:
    """Batch ``seq`` of an attempt: outcomes, their positions in the shard (-1: a discovered
    endpoint), and the shard's progress when the batch was cut."""

    key: Attempt
    seq: int
    outcomes: tuple[Outcome, ...]
    indices: tuple[int, ...]
    progress: Progress
    #: Items dropped on arrival (malformed), and why the first was; never sent.
    dropped: int = 0
    problem: str | None = None

    def to_wire(self) -> dict[str, Any]:
        certs = DerTable()  # dropped and problem are the receiver's: never on the wire
        wired = [outcome_to_wire(o, certs) for o in self.outcomes]
        return {
            "v": VERSION,
            "type": "batch",
            **self.key.to_wire(),
            "seq": self.seq,
            "certs": certs.to_wire(),
            "items": wired,
            "indices": list(self.indices),
            "progress": _progress_to_wire(self.progress),
        }

    @classmethod
    def from_wire(cls, value: object, limits: WireLimits = DEFAULT_LIMITS) -> BatchMessage:
        keys = _ATTEMPT_KEYS | {"seq", "certs", "items", "indices", "progress"}
        data = _header(value, "batch", keys)
        certs = DerTable.from_wire(data.get("certs"), limits)
        raw = items(data.get("items"), "items", MAX_ITEMS)
        raw_indices = items(data.get("indices"), "indices", MAX_ITEMS)
        if len(raw_indices) != len(raw):
            raise WireError("indices: not one per item")
        # One malformed item is dropped, not the batch: the others are real observations.
        outcomes: list[Outcome] = []
        indices: list[int] = []
        problems: list[str] = []
        for item, index in zip(raw, raw_indices, strict=True):
            try:
                if type(index) is not int or not -1 <= index <= MAX_INDEX:
                    raise WireError(f"indices: each entry must be an integer in -1..{MAX_INDEX}")
                outcomes.append(outcome_from_wire(item, certs, limits))
                indices.append(index)
            except WireError as exc:
                problems.append(str(exc))
        return cls(
            key=Attempt.from_wire(data),
            seq=integer(data, "seq", 0, MAX_INDEX),
            outcomes=tuple(outcomes),
            indices=tuple(indices),
            progress=_progress_from_wire(data.get("progress")),
            dropped=len(problems),
            problem=problems[0] if problems else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ShardFinished:
    """The attempt ended after ``batches`` batches; ``error`` says why it failed, if it did."""

    key: Attempt
    batches: int
    progress: Progress
    error: str | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "v": VERSION,
            "type": "shard_finished",
            **self.key.to_wire(),
            "batches": self.batches,
            "progress": _progress_to_wire(self.progress),
            "error": None if self.error is None else self.error[:_ERROR_CHARS],
        }

    @classmethod
    def from_wire(cls, value: object) -> ShardFinished:
        data = _header(value, "shard_finished", _ATTEMPT_KEYS | {"batches", "progress", "error"})
        return cls(
            key=Attempt.from_wire(data),
            batches=integer(data, "batches", 0, MAX_INDEX),
            progress=_progress_from_wire(data.get("progress")),
            error=optional_text(data, "error", _ERROR_CHARS),
        )


def kind_of(value: object) -> str:
    """The message's type, for log lines (``?`` when there is none)."""
    kind = value.get("type") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) and kind.isidentifier() and len(kind) < 40 else "?"
