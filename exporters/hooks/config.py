"""``[hooks.NAME]`` sections of the config file: which findings a hook acts on, and how.

The file
--------
::

    [hooks]
    concurrency = 4                    # actions running at once (default 4)

    [hooks.renew-web]
    kinds = ["expiring", "expired"]    # finding kinds (default ["expiring"])
    min_severity = "high"              # at least this severity (default "info")
    addresses = ["127.0.0.0/8"]        # endpoint address or CIDR (default: any)
    ports = [443, 8443]                # endpoint port (default: any)
    match_names = ["*.example.test"]   # glob on the SNI or any DNS SAN (default: any)
    owners = ["web-team"]              # the endpoint's [owners] owner (default: any)
    tags = ["pci"]                     # any of the endpoint's [owners] tags (default: any)
    action = "command"                 # "command" | "webhook" | "email" | "acme"
    command = ["certbot", "renew", "--cert-name", "web"]   # argv, never a shell
    timeout = 300                      # seconds (default 300)
    approval = false                   # true: queue as pending until `certscan hooks approve`

    [hooks.notify]
    action = "webhook"
    url = "https://hooks.example.test/certscan"
    hmac_key_env = "CERTSCAN_HOOK_KEY" # or hmac_key = "..." (never logged nor stored)
    digest = "daily"                   # email and webhook only: one message per UTC day
                                       # (default "off": one message per certificate at once)

Every problem is a :class:`~scanner.errors.UsageError` with one line naming the file and the
dotted key. The ``acme`` action's own keys are validated by
``exporters.hooks.acme.parse_acme_options(table, source)``, imported only when a hook uses it;
it gets the hook's table without the common keys above (``timeout`` is passed on too) and
``source`` = ``"FILE: hooks.NAME"``; ``AcmeAction(options=...)`` is the action.
"""

from __future__ import annotations

import fnmatch
import importlib
import ipaddress
import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from exporters.hooks.base import Action
from exporters.hooks.command import CommandAction
from exporters.hooks.email import EMAIL_KEYS, parse_email_options
from exporters.hooks.formats import FORMATS as WEBHOOK_FORMATS
from exporters.hooks.webhook import WebhookAction
from reports.policy import EXTERNAL_KINDS, KINDS, Policy
from scanner.errors import UsageError
from scanner.models import Severity

__all__ = [
    "DEFAULT_CONCURRENCY",
    "AriConfig",
    "Hook",
    "HooksConfig",
    "Selector",
    "parse_ari",
    "parse_hooks",
]

DEFAULT_CONCURRENCY: Final = 4
DEFAULT_TIMEOUT: Final = 300.0
DEFAULT_VERIFY_WITHIN: Final = 600.0
_UNITS: Final[Mapping[str, float]] = {"s": 1, "m": 60, "h": 3600, "d": 86400}
ACTIONS: Final[tuple[str, ...]] = ("command", "webhook", "acme", "email")
#: The actions that notify a person (re-sent when a finding's severity rises; may digest).
NOTIFYING: Final[tuple[str, ...]] = ("webhook", "email")
DIGESTS: Final[tuple[str, ...]] = ("off", "daily")
_COMMON: Final[tuple[str, ...]] = (
    "kinds",
    "min_severity",
    "addresses",
    "ports",
    "match_names",
    "owners",
    "tags",
    "action",
    "timeout",
    "approval",
    "verify_within",
)
_ACTION_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "command": ("command",),
    "webhook": ("url", "hmac_key", "hmac_key_env", "format", "digest"),
    "email": (*EMAIL_KEYS, "digest"),
}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class Selector:
    """Which findings a hook acts on; an empty tuple means "any"."""

    kinds: frozenset[str] = frozenset({"expiring"})
    min_severity: Severity = Severity.INFO
    networks: tuple[Network, ...] = ()
    ports: tuple[int, ...] = ()
    names: tuple[str, ...] = ()  # lowercase globs
    owners: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()

    def matches(
        self,
        *,
        kind: str,
        severity: Severity,
        address: str,
        port: int,
        sni: str | None,
        names: tuple[str, ...],
        owner: str | None = None,
        tags: tuple[str, ...] = (),
    ) -> bool:
        """Whether a finding with these facts is selected (pure). ``owner`` and ``tags`` are
        the endpoint's stored ``[owners]`` assignment."""
        if kind not in self.kinds or severity < self.min_severity:
            return False
        if self.owners and owner not in self.owners:
            return False
        if self.tags and not self.tags.intersection(tags):
            return False
        if self.ports and port not in self.ports:
            return False
        if self.networks:
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                return False
            if not any(ip in net for net in self.networks):
                return False
        if self.names:
            candidates = [n.lower() for n in (sni, *names) if n]
            return any(fnmatch.fnmatchcase(c, g) for c in candidates for g in self.names)
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Hook:
    """One ``[hooks.NAME]`` section, validated; ``action`` is ready to run."""

    name: str
    selector: Selector
    action: Action = field(repr=False)
    timeout: float  # seconds, > 0
    approval: bool
    #: How long after a renewal certscan re-probes the endpoints until they serve the new
    #: certificate (``verify_within``, seconds); 0 turns the check off.
    verify_within: float = DEFAULT_VERIFY_WITHIN
    #: ``"daily"``: collect the findings and send one digest per UTC day
    #: (``exporters.hooks.digest``); None: send each at once.
    digest: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HooksConfig:
    """Every hook, in file order, and the concurrency limit."""

    hooks: tuple[Hook, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY
    #: ``[ari]``: issuer -> ACME directory whose renewalInfo is asked about the discovered
    #: certificates of that issuer (``exporters.hooks.ari_scan``); None when absent.
    ari: AriConfig | None = None

    def get(self, name: str) -> Hook | None:
        return next((h for h in self.hooks if h.name == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class AriConfig:
    """The ``[ari]`` section: which CAs to ask about the certificates they issued."""

    directories: Mapping[str, str]  # issuer CN, or "aki:HEX", -> ACME directory (https)
    ca_bundle: str | None = None  # CA certificates for those servers' TLS; None = system
    #: The config file's ``[policy]``: when it would renew (``reports.expiry.high_lead``), the
    #: point a CA's window is compared with.
    policy: Policy = field(default_factory=Policy)


def parse_ari(
    section: Mapping[str, Any] | None, *, source: str, policy: Policy | None = None
) -> AriConfig | None:
    """Validate the raw ``ari`` section::

    [ari]
    ca_bundle = "/etc/ssl/certs/ca-certificates.crt"   # optional
    [ari.directories]
    "R11" = "https://acme-v02.api.letsencrypt.org/directory"
    """
    if not section:
        return None
    where = f"{source}: ari"
    for key in section:
        if key not in ("directories", "ca_bundle"):
            raise UsageError(f"{where}.{key}: unknown key (expected directories, ca_bundle)")
    raw = section.get("directories", {})
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}.directories: expected a table of issuer = URL")
    directories: dict[str, str] = {}
    for issuer, url in raw.items():
        if not isinstance(url, str) or not url.startswith("https://") or not url.isascii():
            raise UsageError(f"{where}.directories.{_show(issuer)}: expected an https:// URL")
        directories[str(issuer)] = _webhook_url(f"{where}.directories", url)
    bundle = section.get("ca_bundle")
    if bundle is not None and (not isinstance(bundle, str) or not bundle):
        raise UsageError(f"{where}.ca_bundle: expected a path")
    return AriConfig(directories=directories, ca_bundle=bundle, policy=policy or Policy())


def parse_hooks(
    section: Mapping[str, Any] | None,
    *,
    source: str,
    ari: Mapping[str, Any] | None = None,
    policy: Policy | None = None,
) -> HooksConfig:
    """Validate the raw ``hooks`` section (``Config.sections.get("hooks")``) and the ``ari``
    one; ``source`` names the file in error messages, ``policy`` is the file's ``[policy]``."""
    ari_config = parse_ari(ari, source=source, policy=policy)
    if not section:
        return HooksConfig(ari=ari_config)
    hooks: list[Hook] = []
    concurrency = DEFAULT_CONCURRENCY
    for name, value in section.items():
        where = f"{source}: hooks.{name}"
        if name == "concurrency":
            concurrency = _positive_int(where, value)
        elif isinstance(value, Mapping):
            hooks.append(_hook(name, value, where))
        else:
            raise UsageError(f"{where}: expected a [hooks.{name}] table or 'concurrency'")
    return HooksConfig(hooks=tuple(hooks), concurrency=concurrency, ari=ari_config)


def _hook(name: str, table: Mapping[str, Any], where: str) -> Hook:
    action_name = table.get("action")
    if action_name not in ACTIONS:
        raise UsageError(
            f"{where}.action: expected one of {', '.join(ACTIONS)}, got {_show(action_name)}"
        )
    own = {k: v for k, v in table.items() if k not in _COMMON}
    if action_name == "acme" and "timeout" in table:
        own["timeout"] = table["timeout"]  # the ACME client's own per-step timeout too
    if action_name == "acme" and "match_names" in table:
        own["match_names"] = table["match_names"]  # the only SANs an acme hook may order
    if action_name != "acme":
        for key in own:
            if key not in _ACTION_KEYS[action_name]:
                known = ", ".join((*_COMMON, *_ACTION_KEYS[action_name]))
                raise UsageError(f"{where}.{key}: unknown key (expected one of {known})")
    kinds = frozenset(_strings(f"{where}.kinds", table.get("kinds", ["expiring"])))
    for kind in kinds:
        if kind not in KINDS and kind not in EXTERNAL_KINDS:
            raise UsageError(f"{where}.kinds: unknown finding kind {_show(kind)}")
    try:
        min_severity = Severity.parse(str(table.get("min_severity", "info")))
    except ValueError as exc:
        raise UsageError(f"{where}.min_severity: {exc}") from None
    networks: list[Network] = []
    for text in _strings(f"{where}.addresses", table.get("addresses", [])):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise UsageError(f"{where}.addresses: not an address or CIDR: {_show(text)}") from None
    ports = table.get("ports", [])
    if not isinstance(ports, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in ports
    ):
        raise UsageError(f"{where}.ports: expected a list of ports 1-65535, got {_show(ports)}")
    globs = _strings(f"{where}.match_names", table.get("match_names", []))
    names = tuple(g.lower() for g in globs)
    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if (
        not isinstance(timeout, int | float)
        or isinstance(timeout, bool)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise UsageError(f"{where}.timeout: expected a positive number of seconds")
    approval = table.get("approval", False)
    if not isinstance(approval, bool):
        raise UsageError(f"{where}.approval: expected true or false, got {_show(approval)}")
    verify_within = _duration(f"{where}.verify_within", table.get("verify_within", "10m"))
    digest = own.pop("digest", "off") if action_name in NOTIFYING else "off"
    if digest not in DIGESTS:
        raise UsageError(
            f"{where}.digest: expected one of {', '.join(DIGESTS)}, got {_show(digest)}"
        )
    selector = Selector(
        kinds=kinds,
        min_severity=min_severity,
        networks=tuple(networks),
        ports=tuple(ports),
        names=names,
        owners=frozenset(_strings(f"{where}.owners", table.get("owners", []))),
        tags=frozenset(_strings(f"{where}.tags", table.get("tags", []))),
    )
    return Hook(
        name=name,
        selector=selector,
        action=_action(action_name, own, where),
        timeout=float(timeout),
        approval=approval,
        verify_within=verify_within,
        digest=None if digest == "off" else digest,
    )


def _action(name: str, own: Mapping[str, Any], where: str) -> Action:
    if name == "command":
        argv = own.get("command")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise UsageError(f"{where}.command: expected a non-empty list of strings (argv)")
        if not argv[0]:
            raise UsageError(f"{where}.command: the program name is empty")
        return CommandAction(argv=tuple(argv))
    if name == "email":
        return parse_email_options(own, where)
    if name == "webhook":
        url = _webhook_url(f"{where}.url", own.get("url"))
        key, env = own.get("hmac_key"), own.get("hmac_key_env")
        if key is not None and env is not None:
            raise UsageError(f"{where}.hmac_key: give hmac_key or hmac_key_env, not both")
        if key is not None and (not isinstance(key, str) or not key):
            raise UsageError(f"{where}.hmac_key: expected a non-empty string")
        if env is not None and (not isinstance(env, str) or not env):
            raise UsageError(f"{where}.hmac_key_env: expected an environment variable name")
        fmt = own.get("format", "generic")
        if fmt not in WEBHOOK_FORMATS:
            raise UsageError(f"{where}.format: expected one of {', '.join(WEBHOOK_FORMATS)}")
        return WebhookAction(url=url, hmac_key=key, hmac_key_env=env, format=fmt)
    return _acme(own, where)


def _acme(own: Mapping[str, Any], where: str) -> Action:
    try:
        module = importlib.import_module("exporters.hooks.acme")
    except ModuleNotFoundError as exc:
        if exc.name != "exporters.hooks.acme":
            raise
        raise UsageError(f"{where}.action: the acme action is not available yet") from None
    options: Any = module.parse_acme_options(own, where)
    action: Action = module.AcmeAction(options=options)
    return action


def _webhook_url(where: str, url: object) -> str:
    """``url`` when httpx can send to it: http(s), a host, ASCII, no user info or fragment."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise UsageError(f"{where}: expected an http:// or https:// URL")
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise UsageError(f"{where}: spaces, control or non-ASCII characters in {_show(url)}")
    try:
        split = urllib.parse.urlsplit(url)
        split.port  # noqa: B018 -- raises ValueError for a port out of range
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UsageError(f"{where}: not a valid URL ({exc})") from None
    if not parsed.host or parsed.userinfo or parsed.fragment:
        raise UsageError(f"{where}: needs a host and no user info or #fragment")
    host = split.hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?", host):
            raise UsageError(f"{where}: {_show(host)} is not a host name or address") from None
    return url


def _duration(where: str, value: object) -> float:
    """Seconds from a number or a text like "90s", "10m", "2h", "1d" (0 = off)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value[-1:] in _UNITS and value[:-1].isdigit():
        seconds = int(value[:-1]) * _UNITS[value[-1]]
    else:
        raise UsageError(f'{where}: expected seconds or a duration like "10m", got {_show(value)}')
    if not math.isfinite(seconds) or not 0 <= seconds <= 7 * 86400:
        raise UsageError(f"{where}: expected 0 to 7 days, got {_show(value)}")
    return seconds


def _strings(where: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{where}: expected a list of non-empty strings, got {_show(value)}")
    return list(value)


def _positive_int(where: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 256:
        raise UsageError(f"{where}: expected a whole number 1-256, got {_show(value)}")
    return value


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
