"""The ``acme`` hook: option parsing, atomic files, the http-01 responder, and real orders from
Pebble on loopback that end with a lab server presenting the renewed certificate."""

from __future__ import annotations

import ssl
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from exporters.hooks.acme import (
    AcmeAction,
    AcmeError,
    AcmeOptions,
    parse_acme_options,
    renew,
    serve_http01,
    write_atomically,
)
from exporters.hooks.base import HookContext
from exporters.hooks.config import parse_hooks
from scanner.engine.crew import probe
from scanner.errors import UsageError
from scanner.lab.certgen import make_ca, make_leaf
from scanner.models import EngineLimits, Handshake, Target
from tests.exporters.hooks.pebble import Pebble, free_port, run_pebble
from tests.peers import serve, server_context

NAME = "renew.certscan.test"

BASE: dict[str, Any] = {
    "names": [NAME],
    "directory": "https://127.0.0.1:14000/dir",
    "account_key": "/tmp/acct.pem",
    "key": "/tmp/k.pem",
    "cert": "/tmp/c.pem",
    "listen": "127.0.0.1:5002",
}


def test_parse_minimal() -> None:
    options = parse_acme_options(BASE, "hooks.renew")
    assert options.listen == ("127.0.0.1", 5002)
    assert options.challenge == "http-01"
    assert options.key_type == "ec"
    assert options.names == (NAME,)
    assert options.deploy == ()


def test_parse_full() -> None:
    table = {
        **BASE,
        "listen": None,
        "challenge": "dns-01",
        "challenge_command": ["/usr/local/bin/dns", "add"],
        "cleanup_command": ["/usr/local/bin/dns", "del"],
        "deploy": ["systemctl", "reload", "nginx"],
        "names": ["a.example", "b.example"],
        "key_type": "rsa",
        "chain": "/tmp/chain.pem",
        "fullchain": "/tmp/full.pem",
        "ca_bundle": "/tmp/ca.pem",
        "timeout": 30,
        "contact": "ops@example.org",
    }
    del table["listen"]
    options = parse_acme_options(table, "hooks.renew")
    assert options.challenge_command == ("/usr/local/bin/dns", "add")
    assert options.deploy == ("systemctl", "reload", "nginx")
    assert options.fullchain_path == Path("/tmp/full.pem")
    assert options.timeout == 30.0


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"directory": None}, "hooks.renew.directory"),
        ({"directory": "http://ca/dir"}, "hooks.renew.directory"),
        ({"account_key": None}, "hooks.renew.account_key"),
        ({"key": None}, "hooks.renew.key"),
        ({"key_type": "dsa"}, "hooks.renew.key_type"),
        ({"challenge": "tls-alpn-01"}, "hooks.renew.challenge"),
        ({"listen": "nowhere"}, "hooks.renew.listen"),
        ({"listen": "127.0.0.1:99999"}, "hooks.renew.listen"),
        ({"deploy": "systemctl reload nginx"}, "hooks.renew.deploy"),
        ({"deploy": []}, "hooks.renew.deploy"),
        ({"timeout": 0}, "hooks.renew.timeout"),
        ({"timeout": True}, "hooks.renew.timeout"),
        ({"names": "a.example"}, "hooks.renew.names"),
        ({"timeout": float("inf")}, "hooks.renew.timeout"),
        ({"challenge_command": ["x"]}, "hooks.renew.listen"),
        ({"listen": None}, "hooks.renew.listen"),
        ({"challenge": "dns-01"}, "hooks.renew.challenge"),
        ({"bogus": 1}, "hooks.renew.bogus"),
    ],
)
def test_parse_errors_name_the_key(change: dict[str, Any], key: str) -> None:
    table = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(UsageError) as caught:
        parse_acme_options(table, "hooks.renew")
    message = str(caught.value)
    assert message.startswith(key + ": ")
    assert "\n" not in message


def test_write_atomically_sets_mode_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "key.pem"
    write_atomically(target, b"one", 0o600)
    write_atomically(target, b"two", 0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["key.pem"]


async def _get(port: int, path: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := await stream.receive_some(4096):
            answer += chunk
    return answer


async def test_http01_responder_answers_known_tokens_only() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_http01, "127.0.0.1", 0, {"tok": "tok.thumb"})
        with trio.fail_after(5):
            good = await _get(port, b"/.well-known/acme-challenge/tok")
            other = await _get(port, b"/.well-known/acme-challenge/nope")
            outside = await _get(port, b"/tok")
        nursery.cancel_scope.cancel()
    assert good.startswith(b"HTTP/1.0 200 ")
    assert good.endswith(b"\r\n\r\ntok.thumb")
    assert other.startswith(b"HTTP/1.0 404 ")
    assert outside.startswith(b"HTTP/1.0 404 ")


# --- real orders from Pebble ----------------------------------------------------------------


def _options(ca: Pebble, tmp: Path, http_port: int, **extra: Any) -> AcmeOptions:
    fields: dict[str, Any] = {
        "directory": ca.directory,
        "account_key": tmp / "account.pem",
        "contact": "ops@certscan.test",
        "key_path": tmp / "out" / "key.pem",
        "cert_path": tmp / "out" / "cert.pem",
        "chain_path": tmp / "out" / "chain.pem",
        "fullchain_path": tmp / "out" / "fullchain.pem",
        "listen": ("127.0.0.1", http_port),
        "names": (NAME,),
        "ca_bundle": ca.ca_bundle,
        "timeout": 15.0,
        "command_timeout": 5.0,
    }
    return AcmeOptions(**(fields | extra))


class LabServer:
    """Serves an expiring certificate until the deploy flag appears, then the renewed files."""

    def __init__(self, tmp: Path) -> None:
        root = make_ca("certscan lab root")
        old = make_leaf(
            root, cn=NAME, dns_names=[NAME], not_after=datetime.now(UTC) + timedelta(days=3)
        )
        self.old = old.cert
        self.flag = tmp / "deployed"
        self.out = tmp / "out"
        self.ctx = server_context([old])
        self.reloaded = False

    def _context(self) -> ssl.SSLContext:
        if self.flag.exists() and not self.reloaded:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.out / "fullchain.pem", self.out / "key.pem")
            self.ctx, self.reloaded = ctx, True
        return self.ctx

    async def handle(self, stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, self._context(), server_side=True)
        await tls.do_handshake()
        while await tls.receive_some(4096):
            pass


async def _leaf(address: str, port: int) -> x509.Certificate:
    outcome = await probe(
        Target(address=address, port=port, sni=NAME),
        EngineLimits(connect_timeout=2, handshake_timeout=3, target_deadline=5),
    )
    assert isinstance(outcome, Handshake), outcome
    return x509.load_der_x509_certificate(outcome.chain[0])


async def test_renew_end_to_end_redeploys_lab_server(tmp_path: Path) -> None:
    http_port = free_port()
    lab = LabServer(tmp_path)
    deploy = (sys.executable, "-c", f"open({str(lab.flag)!r}, 'w').close()")
    with trio.fail_after(20):
        async with (
            run_pebble(tmp_path, http_port=http_port) as ca,
            serve("127.3.5.7", lab.handle) as peer,
        ):
            before = await _leaf(peer.address, peer.port)
            assert before.not_valid_after_utc - datetime.now(UTC) < timedelta(days=4)
            options = _options(ca, tmp_path, http_port, deploy=deploy)
            result = await renew(options, names=[NAME])
            after = await _leaf(peer.address, peer.port)

    assert result.deployed
    assert lab.reloaded
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in result.paths}
    assert modes == {
        "key.pem": 0o600,
        "cert.pem": 0o644,
        "chain.pem": 0o644,
        "fullchain.pem": 0o644,
    }
    assert stat.S_IMODE((tmp_path / "account.pem").stat().st_mode) == 0o600
    assert after != before
    assert after.fingerprint(hashes.SHA256()).hex() == result.sha256
    issuer = after.issuer.rfc4514_string()
    assert "Pebble Intermediate CA" in issuer
    assert after.not_valid_after_utc - datetime.now(UTC) > timedelta(days=300)
    assert result.not_after == after.not_valid_after_utc
    sans = after.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [NAME]


#: A dns-01 challenge command: publishes the TXT record through pebble-challtestsrv's API.
DNS_HOOK = """
import json, os, sys, urllib.request
body = {"host": os.environ["CERTSCAN_ACME_RECORD"] + ".",
        "value": os.environ["CERTSCAN_ACME_VALIDATION"]}
path = "/set-txt" if sys.argv[2] == "add" else "/clear-txt"
if path == "/clear-txt":
    del body["value"]
request = urllib.request.Request(sys.argv[1] + path, data=json.dumps(body).encode())
urllib.request.urlopen(request, timeout=3).read()
"""


def _context(names: tuple[str, ...]) -> HookContext:
    return HookContext(
        hook="renew",
        kind="expiring",
        severity="high",
        message="expires in 3 days",
        address="127.3.5.8",
        port=443,
        sni=NAME,
        names=names,
        not_after=datetime.now(UTC) + timedelta(days=3),
        sha256="00" * 32,
        finding={"kind": "expiring"},
    )


async def test_action_dns01_through_command_hook(tmp_path: Path) -> None:
    http_port = free_port()
    with trio.fail_after(20):
        async with run_pebble(tmp_path, http_port=http_port) as ca:
            hook = (sys.executable, "-c", DNS_HOOK, ca.challtestsrv)
            options = _options(
                ca,
                tmp_path,
                http_port,
                listen=None,
                challenge="dns-01",
                challenge_command=(*hook, "add"),
                cleanup_command=(*hook, "del"),
                key_type="rsa",
                names=(NAME, "www." + NAME),
            )
            result = await AcmeAction(options=options).run(_context((NAME, "www." + NAME)))
    assert result.ok, result.output_tail
    assert AcmeAction.kind == "acme"
    cert = x509.load_pem_x509_certificate((tmp_path / "out" / "cert.pem").read_bytes())
    assert result.new_sha256 == cert.fingerprint(hashes.SHA256()).hex()
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == [NAME, "www." + NAME]
    account = (tmp_path / "account.pem").read_text()
    assert "PRIVATE KEY" not in result.output_tail
    assert account.splitlines()[1] not in result.output_tail


async def test_action_reports_failed_validation_without_secrets(tmp_path: Path) -> None:
    """The responder is told about no token (a wrong port): Pebble marks the order invalid."""
    http_port = free_port()
    with trio.fail_after(20):
        async with run_pebble(tmp_path, http_port=http_port) as ca:
            options = _options(ca, tmp_path, http_port, listen=("127.0.0.1", free_port()))
            result = await AcmeAction(options=options).run(_context((NAME,)))
    assert not result.ok
    assert result.new_sha256 is None
    assert "ACME order failed" in result.output_tail
    assert "PRIVATE KEY" not in result.output_tail
    assert not (tmp_path / "out").exists()


async def test_renew_refuses_no_names(tmp_path: Path) -> None:
    options = _options(
        Pebble(directory="https://127.0.0.1:1/dir", ca_bundle=tmp_path, challtestsrv=""),
        tmp_path,
        free_port(),
    )
    with pytest.raises(AcmeError, match="no names"):
        await renew(options, names=[])


async def test_renew_retries_bad_nonces(tmp_path: Path) -> None:
    """Pebble rejecting one nonce in five: more than the library's single retry absorbs."""
    http_port = free_port()
    with trio.fail_after(20):
        async with run_pebble(tmp_path, http_port=http_port, nonce_reject=20) as ca:
            result = await renew(_options(ca, tmp_path, http_port), names=[NAME])
    cert = x509.load_pem_x509_certificate((tmp_path / "out" / "cert.pem").read_bytes())
    assert cert.fingerprint(hashes.SHA256()).hex() == result.sha256


def test_hooks_config_builds_the_acme_action() -> None:
    section = {"renew": {**BASE, "action": "acme", "timeout": 90, "kinds": ["expiring"]}}
    hooks = parse_hooks(section, source="certscan.toml")
    action = hooks.hooks[0].action
    assert isinstance(action, AcmeAction)
    assert action.options.timeout == 90.0
    with pytest.raises(UsageError, match=r"^certscan\.toml: hooks\.renew\.key_type: "):
        parse_hooks({"renew": {**section["renew"], "key_type": "dsa"}}, source="certscan.toml")
