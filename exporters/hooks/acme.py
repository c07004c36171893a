"""The built-in ACME client of the ``acme`` hook: order, prove, write, deploy.

Theory of operation. :func:`renew` drives one RFC 8555 order with the ``acme`` library (the one
certbot uses). The library is blocking (``requests``), so every call to the CA runs in a worker
thread through ``trio.to_thread.run_sync``, while the trio side answers the challenges:

- ``http-01`` served by certscan: a tiny HTTP/1.0 responder on ``listen`` answers
  ``GET /.well-known/acme-challenge/TOKEN`` with the key authorization and 404 for anything else;
  it reads at most a few KB per request, under a short deadline, and only while the order runs.
- ``command``: an argv (never a shell) per challenge, for the user's own DNS (``dns-01``) or web
  server (``http-01``), with ``CERTSCAN_ACME_CHALLENGE`` (the type), ``CERTSCAN_ACME_DOMAIN``,
  ``CERTSCAN_ACME_TOKEN``, ``CERTSCAN_ACME_VALIDATION`` (the http-01 file content or the dns-01 TXT
  value) and, for dns-01, ``CERTSCAN_ACME_RECORD`` (``_acme-challenge.DOMAIN``) in its environment;
  the optional ``cleanup_command`` gets the same afterwards. ``deploy`` gets ``CERTSCAN_SHA256``
  and ``CERTSCAN_NAMES``.

A CA may reject any nonce as bad (Pebble rejects 5 % by default); the library retries a POST once,
and each step here is retried a few more times on ``badNonce``. The new key, certificate, chain and
full chain are written atomically (temporary file in the same directory, ``fsync``, ``rename``),
the key 0600; then the optional ``deploy`` argv runs. The account key is created 0600 when missing
and never logged or returned.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, cast

import trio
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import ES256, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from exporters.hooks.base import ActionResult, HookContext, tail
from scanner.errors import CertscanError, UsageError

KeyType = Literal["ec", "rsa"]
ChallengeKind = Literal["http-01", "dns-01"]
T = TypeVar("T")

_USER_AGENT = "certscan-acme"
_NONCE_RETRIES = 5
_MAX_REQUEST = 4096
_MAX_CLIENTS = 32  # http-01 connections answered at once


class AcmeError(CertscanError):
    """An ACME order failed: the CA refused, a challenge was invalid, or a step timed out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeOptions:
    """One ``acme`` hook's settings, validated. Paths are absolute or relative to the cwd."""

    directory: str  # the CA's directory URL (https)
    account_key: Path  # PEM; created (RSA 2048, 0600) when missing
    contact: str | None = None  # e-mail for the account, None for none
    names: tuple[str, ...] = ()  # DNS names to order; () = the certificate's SANs
    key_type: KeyType = "ec"
    key_path: Path
    cert_path: Path
    chain_path: Path | None = None  # intermediates only; None = not written
    fullchain_path: Path | None = None  # leaf + intermediates; None = not written
    challenge: ChallengeKind = "http-01"
    listen: tuple[str, int] | None = None  # http-01 served by certscan on (address, port)
    challenge_command: tuple[str, ...] = ()  # argv run once per challenge instead of `listen`
    cleanup_command: tuple[str, ...] = ()  # argv run once per challenge afterwards, optional
    deploy: tuple[str, ...] = ()  # argv run after the files are written, optional
    ca_bundle: Path | None = None  # CA certificates for the ACME server's TLS; None = system
    timeout: float = 120.0  # the whole order, seconds
    command_timeout: float = 60.0  # each challenge/cleanup/deploy command, seconds


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalResult:
    """A certificate the CA issued and where it was written."""

    sha256: str  # hex, of the new leaf's DER
    not_after: datetime  # UTC
    names: tuple[str, ...]
    paths: tuple[Path, ...]  # every file written, key first
    deployed: bool  # a deploy command ran and exited 0


def _argv(value: Any, key: str, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(a, str) for a in value):
        raise UsageError(f"{source}.{key}: must be a non-empty list of strings (an argv)")
    return tuple(value)


def _text(table: Mapping[str, Any], key: str, source: str, *, required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise UsageError(f"{source}.{key}: required")
        return None
    if not isinstance(value, str) or not value:
        raise UsageError(f"{source}.{key}: must be a non-empty string")
    return value


def _seconds(table: Mapping[str, Any], key: str, source: str, default: float) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise UsageError(f"{source}.{key}: must be a positive number of seconds (at most a day)")
    return float(value)


_KEYS = frozenset(
    (
        *("directory", "account_key", "contact", "names", "key_type", "key", "cert", "chain"),
        *("fullchain", "challenge", "listen", "challenge_command", "cleanup_command", "deploy"),
        *("ca_bundle", "timeout", "command_timeout"),
    )
)


def parse_acme_options(table: Mapping[str, Any], source: str) -> AcmeOptions:
    """Validate an ``[hooks.action]`` table of kind ``acme``; ``source`` names it in errors."""
    unknown = sorted(set(table) - _KEYS - {"kind"})
    if unknown:
        raise UsageError(f"{source}.{unknown[0]}: unknown acme key")
    directory = _text(table, "directory", source, required=True)
    assert directory is not None
    if not directory.startswith("https://"):
        raise UsageError(f"{source}.directory: must be an https:// URL")
    names = table.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise UsageError(f"{source}.names: must be a list of DNS names")
    key_type = table.get("key_type", "ec")
    if key_type not in ("ec", "rsa"):
        raise UsageError(f"{source}.key_type: must be 'ec' or 'rsa'")
    challenge = table.get("challenge", "http-01")
    if challenge not in ("http-01", "dns-01"):
        raise UsageError(f"{source}.challenge: must be 'http-01' or 'dns-01'")
    listen: tuple[str, int] | None = None
    if "listen" in table:
        raw = _text(table, "listen", source) or ""
        host, _, port = raw.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UsageError(f"{source}.listen: must be 'address:port'")
        listen = (host.strip("[]"), int(port))
    command = (
        _argv(table["challenge_command"], "challenge_command", source)
        if "challenge_command" in table
        else ()
    )
    if (listen is None) == (not command):
        raise UsageError(f"{source}.listen: give exactly one of listen or challenge_command")
    if challenge == "dns-01" and listen is not None:
        raise UsageError(f"{source}.challenge: dns-01 needs challenge_command, not listen")

    def path(key: str, required: bool = False) -> Path | None:
        value = _text(table, key, source, required=required)
        return Path(value) if value is not None else None

    key_path, cert_path = path("key", required=True), path("cert", required=True)
    account_key = path("account_key", required=True)
    assert key_path is not None
    assert cert_path is not None
    assert account_key is not None
    return AcmeOptions(
        directory=directory,
        account_key=account_key,
        contact=_text(table, "contact", source),
        names=tuple(names),
        key_type=key_type,
        key_path=key_path,
        cert_path=cert_path,
        chain_path=path("chain"),
        fullchain_path=path("fullchain"),
        challenge=challenge,
        listen=listen,
        challenge_command=command,
        cleanup_command=(
            _argv(table["cleanup_command"], "cleanup_command", source)
            if "cleanup_command" in table
            else ()
        ),
        deploy=_argv(table["deploy"], "deploy", source) if "deploy" in table else (),
        ca_bundle=path("ca_bundle"),
        timeout=_seconds(table, "timeout", source, 120.0),
        command_timeout=_seconds(table, "command_timeout", source, 60.0),
    )


# --- files ----------------------------------------------------------------------------------


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (``mode`` from the start) so readers see old or new, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.certscan-{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _account_jwk(path: Path) -> tuple[JWK, JWASignature]:
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomically(path, pem, 0o600)
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if isinstance(loaded, rsa.RSAPrivateKey):
        return JWKRSA(key=loaded), RS256
    if isinstance(loaded, ec.EllipticCurvePrivateKey) and loaded.curve.name == "secp256r1":
        return JWKEC(key=loaded), ES256
    raise AcmeError(f"account key {path}: only RSA and EC P-256 keys are supported")


def _new_key(kind: KeyType) -> bytes:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP256R1())
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


# --- the http-01 responder ------------------------------------------------------------------


async def _answer_http(stream: trio.SocketStream, tokens: Mapping[str, str]) -> None:
    request = b""
    with trio.move_on_after(5):
        while b"\r\n\r\n" not in request and len(request) < _MAX_REQUEST:
            chunk = await stream.receive_some(_MAX_REQUEST)
            if not chunk:
                break
            request += chunk
    parts = request.split(b"\r\n", 1)[0].split(b" ")
    prefix = "/.well-known/acme-challenge/"
    path = parts[1].decode("ascii", "replace") if len(parts) == 3 and parts[0] == b"GET" else ""
    body = tokens.get(path[len(prefix) :]) if path.startswith(prefix) else None
    status = b"200 OK" if body is not None else b"404 Not Found"
    payload = (body or "not found").encode()
    head = b"HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
    with trio.move_on_after(5):
        await stream.send_all(head % (status, len(payload)) + payload)


async def serve_http01(
    address: str,
    port: int,
    tokens: Mapping[str, str],
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Answer http-01 requests from ``tokens`` (token → key authorization) until cancelled."""
    listeners = await trio.open_tcp_listeners(port, host=address)
    task_status.started(listeners[0].socket.getsockname()[1])

    busy = trio.Semaphore(_MAX_CLIENTS)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            if busy.value == 0:
                return  # a flood of connections: the extra ones are dropped unanswered
            async with busy:
                await _answer_http(stream, tokens)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(handle, listeners)


# --- the order ------------------------------------------------------------------------------


async def _call(fn: Callable[[], T]) -> T:
    """Run a blocking library call in a thread, again on ``badNonce`` (bounded)."""
    for attempt in range(_NONCE_RETRIES):
        try:
            return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)
        except messages.Error as exc:
            if exc.code != "badNonce" or attempt == _NONCE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def _run(argv: Sequence[str], env: Mapping[str, str], seconds: float, what: str) -> None:
    with trio.move_on_after(seconds) as scope:
        done = await trio.run_process(
            list(argv),
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    if scope.cancelled_caught:
        raise AcmeError(f"{what} command timed out after {seconds:g} s")
    if done.returncode != 0:
        tail = done.stderr[-300:].decode("utf-8", "replace").strip()
        raise AcmeError(f"{what} command exited {done.returncode}: {tail}")


def _client(options: AcmeOptions, key: JWK, alg: JWASignature) -> client.ClientV2:
    net = client.ClientNetwork(key, alg=alg, user_agent=_USER_AGENT, timeout=30)
    if options.ca_bundle is not None:
        # requests takes a CA bundle path where the library's annotation says bool.
        net.verify_ssl = cast(bool, str(options.ca_bundle))
    directory = client.ClientV2.get_directory(options.directory, net)
    acme = client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(
        email=options.contact, terms_of_service_agreed=True
    )
    try:
        acme.new_account(registration)
    except errors.ConflictError as exc:  # the key already has an account: use it
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
    return acme


def _pick(authz: messages.AuthorizationResource, kind: ChallengeKind) -> messages.ChallengeBody:
    for challb in authz.body.challenges:
        if challb.chall.typ == kind:
            return challb
    raise AcmeError(f"the CA offers no {kind} challenge for {authz.body.identifier.value}")


async def renew(options: AcmeOptions, *, names: Sequence[str]) -> RenewalResult:
    """Order a certificate for ``options.names or names``, write it, then run ``deploy``."""
    wanted = tuple(dict.fromkeys(options.names or names))
    if not wanted:
        raise AcmeError("no names to order a certificate for")
    tokens: dict[str, str] = {}
    issued: tuple[str, bytes] | None = None
    failure = ""
    with trio.move_on_after(options.timeout) as deadline:
        async with trio.open_nursery() as nursery:
            # Failures are caught in here, so they leave the nursery as themselves, not a group.
            try:
                if options.listen is not None:
                    host, port = options.listen
                    await nursery.start(serve_http01, host, port, tokens)
                issued = await _order(options, wanted, tokens)
            except AcmeError as exc:
                failure = str(exc)
            except (messages.Error, errors.Error, OSError) as exc:
                failure = "ACME order failed: " + " ".join(str(exc).split())
            nursery.cancel_scope.cancel()
    if deadline.cancelled_caught:
        raise AcmeError(f"the ACME order took longer than {options.timeout:g} s")
    if issued is None:
        raise AcmeError(failure or "ACME order failed")
    fullchain, key_pem = issued
    return await _install(options, wanted, fullchain, key_pem)


async def _order(
    options: AcmeOptions, wanted: tuple[str, ...], tokens: dict[str, str]
) -> tuple[str, bytes]:
    jwk, alg = await trio.to_thread.run_sync(_account_jwk, options.account_key)
    acme = await _call(lambda: _client(options, jwk, alg))
    key_pem = _new_key(options.key_type)
    csr = crypto_util.make_csr(key_pem, list(wanted))
    order = await _call(lambda: acme.new_order(csr))
    cleanups: list[dict[str, str]] = []
    try:
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue
            challb = _pick(authz, options.challenge)
            chall = cast(challenges.KeyAuthorizationChallenge, challb.chall)
            response, validation = chall.response_and_validation(jwk)
            name = authz.body.identifier.value
            token = challb.chall.encode("token")
            env = {
                "CERTSCAN_ACME_CHALLENGE": options.challenge,
                "CERTSCAN_ACME_DOMAIN": name,
                "CERTSCAN_ACME_TOKEN": token,
                "CERTSCAN_ACME_VALIDATION": str(validation),
            }
            if options.challenge == "dns-01":
                env["CERTSCAN_ACME_RECORD"] = cast(challenges.DNS01, chall).validation_domain_name(
                    name
                )
            if options.challenge_command:
                cleanups.append(env)
                await _run(options.challenge_command, env, options.command_timeout, "challenge")
            else:
                tokens[token] = str(validation)
            await _call(lambda c=challb, r=response: acme.answer_challenge(c, r))  # type: ignore[misc]
        deadline = datetime.now() + timedelta(seconds=options.timeout)  # naive local: the library's
        done = await _call(lambda: acme.poll_and_finalize(order, deadline))
    finally:
        for env in cleanups if options.cleanup_command else ():
            with trio.CancelScope(shield=True):
                await _run(options.cleanup_command, env, options.command_timeout, "cleanup")
    if not done.fullchain_pem:
        raise AcmeError("the CA returned no certificate")
    return done.fullchain_pem, key_pem


async def _install(
    options: AcmeOptions, wanted: tuple[str, ...], fullchain: str, key_pem: bytes
) -> RenewalResult:
    certs = x509.load_pem_x509_certificates(fullchain.encode())
    leaf = certs[0]
    leaf_pem = leaf.public_bytes(serialization.Encoding.PEM)
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs[1:])
    files = [(options.key_path, key_pem, 0o600), (options.cert_path, leaf_pem, 0o644)]
    if options.chain_path is not None:
        files.append((options.chain_path, chain_pem, 0o644))
    if options.fullchain_path is not None:
        files.append((options.fullchain_path, leaf_pem + chain_pem, 0o644))

    def write_all() -> None:
        for path, data, mode in files:
            write_atomically(path, data, mode)

    await trio.to_thread.run_sync(write_all)
    digest = sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    if options.deploy:
        env = {"CERTSCAN_SHA256": digest, "CERTSCAN_NAMES": ",".join(wanted)}
        await _run(options.deploy, env, options.command_timeout, "deploy")
    return RenewalResult(
        sha256=digest,
        not_after=leaf.not_valid_after_utc.astimezone(UTC),
        names=wanted,
        paths=tuple(path for path, _, _ in files),
        deployed=bool(options.deploy),
    )


# --- the hook action ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeAction:
    """The ``acme`` hook action: renew the certificate of the context's endpoint.

    Names come from ``options.names`` or else the certificate's SANs in the context. A failed
    order is a result with ``ok=False`` and a one-line reason (never the account key).
    """

    kind: ClassVar[str] = "acme"
    options: AcmeOptions

    async def run(self, ctx: HookContext) -> ActionResult:
        try:
            result = await renew(self.options, names=ctx.names)
        except AcmeError as exc:
            return ActionResult(ok=False, exit_status=None, output_tail=tail(str(exc)))
        written = ", ".join(str(p) for p in result.paths)
        return ActionResult(
            ok=True,
            exit_status=0,
            output_tail=tail(
                f"renewed {result.sha256} until {result.not_after:%Y-%m-%d}: {written}"
            ),
            new_sha256=result.sha256,
        )
