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
    action = "command"                 # "command" | "webhook" | "acme"
    command = ["certbot", "renew", "--cert-name", "web"]   # argv, never a shell
    timeout = 300                      # seconds (default 300)
    approval = false                   # true: queue as pending until `certscan hooks approve`

    [hooks.notify]
    action = "webhook"
    url = "https://hooks.example.test/certscan"
    hmac_key_env = "CERTSCAN_HOOK_KEY" # or hmac_key = "..." (never logged nor stored)

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from exporters.hooks.base import Action
from exporters.hooks.command import CommandAction
from exporters.hooks.email import EMAIL_KEYS, parse_email_options
from exporters.hooks.formats import FORMATS as WEBHOOK_FORMATS
from exporters.hooks.webhook import WebhookAction
from reports.policy import KINDS
from scanner.errors import UsageError
from scanner.models import Severity

__all__ = ["DEFAULT_CONCURRENCY", "Hook", "HooksConfig", "Selector", "parse_hooks"]

DEFAULT_CONCURRENCY: Final = 4
DEFAULT_TIMEOUT: Final = 300.0
ACTIONS: Final[tuple[str, ...]] = ("command", "webhook", "acme", "email")
_COMMON: Final[tuple[str, ...]] = (
    "kinds",
    "min_severity",
    "addresses",
    "ports",
    "match_names",
    "action",
    "timeout",
    "approval",
)
_ACTION_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "command": ("command",),
    "webhook": ("url", "hmac_key", "hmac_key_env", "format"),
    "email": EMAIL_KEYS,
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

    def matches(
        self,
        *,
        kind: str,
        severity: Severity,
        address: str,
        port: int,
        sni: str | None,
        names: tuple[str, ...],
    ) -> bool:
        """Whether a finding with these facts is selected (pure)."""
        if kind not in self.kinds or severity < self.min_severity:
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


@dataclass(frozen=True, slots=True, kw_only=True)
class HooksConfig:
    """Every hook, in file order, and the concurrency limit."""

    hooks: tuple[Hook, ...] = ()
    concurrency: int = DEFAULT_CONCURRENCY

    def get(self, name: str) -> Hook | None:
        return next((h for h in self.hooks if h.name == name), None)


def parse_hooks(section: Mapping[str, Any] | None, *, source: str) -> HooksConfig:
    """Validate the raw ``hooks`` section (``Config.sections.get("hooks")``); ``source`` names
    the file in error messages."""
    if not section:
        return HooksConfig()
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
    return HooksConfig(hooks=tuple(hooks), concurrency=concurrency)


def _hook(name: str, table: Mapping[str, Any], where: str) -> Hook:
    action_name = table.get("action")
    if action_name not in ACTIONS:
        raise UsageError(
            f"{where}.action: expected one of {', '.join(ACTIONS)}, got {_show(action_name)}"
        )
    own = {k: v for k, v in table.items() if k not in _COMMON}
    if action_name == "acme" and "timeout" in table:
        own["timeout"] = table["timeout"]  # the ACME client's own per-step timeout too
    if action_name != "acme":
        for key in own:
            if key not in _ACTION_KEYS[action_name]:
                known = ", ".join((*_COMMON, *_ACTION_KEYS[action_name]))
                raise UsageError(f"{where}.{key}: unknown key (expected one of {known})")
    kinds = frozenset(_strings(f"{where}.kinds", table.get("kinds", ["expiring"])))
    for kind in kinds:
        if kind not in KINDS:
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
    selector = Selector(
        kinds=kinds,
        min_severity=min_severity,
        networks=tuple(networks),
        ports=tuple(ports),
        names=names,
    )
    return Hook(
        name=name,
        selector=selector,
        action=_action(action_name, own, where),
        timeout=float(timeout),
        approval=approval,
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
        url = own.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise UsageError(f"{where}.url: expected an http:// or https:// URL")
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
