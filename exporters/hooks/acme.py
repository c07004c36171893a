"""The built-in ACME client of the ``acme`` hook: order, prove, check, install, deploy.

Theory of operation. :func:`renew` drives one RFC 8555 order with the ``acme`` library (the one
certbot uses). The library is blocking (``requests``), so every call to the CA runs in a worker
thread through ``trio.to_thread.run_sync``, while the trio side answers the challenges:

- ``http-01`` served by certscan (:mod:`exporters.hooks.http01`) on ``listen``, only while the
  order runs.
- ``command``: an argv (never a shell) per challenge, for the user's own DNS (``dns-01``) or web
  server (``http-01``), with ``CERTSCAN_ACME_CHALLENGE`` (the type), ``CERTSCAN_ACME_DOMAIN``,
  ``CERTSCAN_ACME_TOKEN``, ``CERTSCAN_ACME_VALIDATION`` (the http-01 file content or the dns-01 TXT
  value) and, for dns-01, ``CERTSCAN_ACME_RECORD`` (``_acme-challenge.DOMAIN``) in its environment;
  the optional ``cleanup_command`` gets the same afterwards. ``deploy`` gets ``CERTSCAN_SHA256``
  and ``CERTSCAN_NAMES`` (the ordered names, comma-separated; each passed the host-name check,
  so none holds a comma).

Only names the operator configured are ordered (:mod:`exporters.hooks.acme_options`); the CSR is
built only from names that pass the host-name check, and the issued certificate is checked
before anything is written: its public key is the one we generated, its SANs are exactly what
was ordered. It is then stashed and installed as a set (:mod:`exporters.hooks.files`); a stashed
certificate is installed on the next attempt instead of ordering again. External Account
Binding (``eab_kid`` with the HMAC key from ``eab_hmac_key_env``), an ACME profile the directory
must list, and IP identifiers (RFC 8738) are passed to the CA as the options say; the account
key and the HMAC key are never logged or returned.

A CA may reject any nonce as bad (Pebble rejects 5 % by default); the library retries a POST once,
and each step here is retried a few more times on ``badNonce``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import trio
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy import json_util
from josepy.jwa import ES256, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from exporters.hooks import files
from exporters.hooks.acme_checks import (
    AcmeError,
    check_issued,
    issued_names,
    make_csr,
    wanted_names,
)
from exporters.hooks.acme_options import AcmeOptions, KeyType, parse_acme_options
from exporters.hooks.ari import AriError, fetch_window
from exporters.hooks.base import ActionResult, HookContext, one_line, tail
from exporters.hooks.http01 import serve_http01
from exporters.hooks.names import printable

__all__ = [
    "AcmeAction",
    "AcmeError",
    "AcmeOptions",
    "RenewalResult",
    "check_issued",
    "issued_names",
    "make_csr",
    "parse_acme_options",
    "renew",
    "serve_http01",
    "wanted_names",
    "write_atomically",
]

T = TypeVar("T")

_USER_AGENT = "certscan-acme"
_NONCE_RETRIES = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class RenewalResult:
    """A certificate the CA issued and where it was written."""

    sha256: str  # hex, of the new leaf's DER
    not_after: datetime  # UTC
    names: tuple[str, ...]
    paths: tuple[Path, ...]  # every file written, key first
    deployed: bool  # a deploy command ran and exited 0
    from_stash: bool = False  # installed from an earlier attempt's issued certificate


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (``mode`` from the start) through a random ``O_EXCL``
    temporary file: readers see old or new, whole."""
    files.install([(path, data, mode)])


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
        text = done.stderr[-300:].decode("utf-8", "replace").strip()
        raise AcmeError(f"{what} command exited {done.returncode}: {text}")


def _eab(options: AcmeOptions, key: JWK, directory: messages.Directory) -> dict[str, Any] | None:
    if options.eab_kid is None or options.eab_hmac_key_env is None:
        return None
    hmac_key = os.environ.get(options.eab_hmac_key_env, "")
    if not hmac_key:
        raise AcmeError(
            f"environment variable {options.eab_hmac_key_env} (eab_hmac_key_env) is unset"
        )
    return messages.ExternalAccountBinding.from_data(
        account_public_key=key.public_key(),
        kid=options.eab_kid,
        hmac_key=hmac_key,
        directory=directory,
    )


def _client(options: AcmeOptions, key: JWK, alg: JWASignature) -> client.ClientV2:
    net = client.ClientNetwork(key, alg=alg, user_agent=_USER_AGENT, timeout=30)
    if options.ca_bundle is not None:
        # requests takes a CA bundle path where the library's annotation says bool.
        net.verify_ssl = cast(bool, str(options.ca_bundle))
    directory = client.ClientV2.get_directory(options.directory, net)
    acme = client.ClientV2(directory, net)
    if options.profile is not None:
        offered = dict(getattr(directory.meta, "profiles", None) or {})
        if options.profile not in offered:
            listed = ", ".join(sorted(offered)) or "none"
            raise AcmeError(
                f"the CA's directory lists no profile {printable(options.profile, 40)} "
                f"(it lists: {printable(listed, 100)})"
            )
    if directory.meta.external_account_required and options.eab_kid is None:
        raise AcmeError(
            "the CA requires External Account Binding: set eab_kid and eab_hmac_key_env"
        )
    registration = messages.NewRegistration.from_data(
        email=options.contact,
        terms_of_service_agreed=True,
        external_account_binding=_eab(options, key, directory),
    )
    try:
        acme.new_account(registration)
    except errors.ConflictError as exc:  # the key already has an account: use it
        net.account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
    return acme


def has_resource(directory: messages.Directory, name: str) -> bool:
    """Whether the CA's directory lists ``name`` (``renewalInfo``...)."""
    try:
        directory[name]
    except KeyError:
        return False
    return True


class _NewOrder(messages.NewOrder):
    """A new order carrying RFC 9773's ``replaces`` (the library's has no such field)."""

    replaces: str = json_util.field("replaces", omitempty=True)


def _new_order(
    acme: client.ClientV2, csr: bytes, profile: str | None, replaces: str | None
) -> messages.OrderResource:
    if replaces is None or not has_resource(acme.directory, "renewalInfo"):
        return acme.new_order(csr, profile=profile)
    parsed = x509.load_pem_x509_csr(csr)
    dns, ips = crypto_util.get_identifiers_from_x509(parsed.subject, parsed.extensions)
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in dns]
    identifiers += [messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(i)) for i in ips]
    order = _NewOrder(identifiers=identifiers, profile=profile or "", replaces=replaces)
    response = acme._post(acme.directory["newOrder"], order)
    body = messages.Order.from_json(response.json())
    authorizations = [
        acme._authzr_from_response(acme._post_as_get(url), uri=url) for url in body.authorizations
    ]
    return messages.OrderResource(
        body=body,
        uri=response.headers.get("Location"),
        authorizations=authorizations,
        csr_pem=csr,
    )


def _pick(authz: messages.AuthorizationResource, kind: str) -> messages.ChallengeBody:
    for challb in authz.body.challenges:
        if challb.chall.typ == kind:
            return challb
    raise AcmeError(f"the CA offers no {kind} challenge for {authz.body.identifier.value}")


async def _order(
    options: AcmeOptions, wanted: tuple[str, ...], tokens: dict[str, str], replaces: str | None
) -> tuple[str, bytes]:
    key_pem = _new_key(options.key_type)
    csr = make_csr(key_pem, wanted, wildcards=options.allow_wildcards)
    jwk, alg = await trio.to_thread.run_sync(_account_jwk, options.account_key)
    acme = await _call(lambda: _client(options, jwk, alg))
    order = await _call(lambda: _new_order(acme, csr, options.profile, replaces))
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


async def renew(
    options: AcmeOptions, *, names: Sequence[str], replaces: str | None = None
) -> RenewalResult:
    """Install the stashed certificate for ``names`` if an earlier attempt left one, else order
    one (``replaces``: the RFC 9773 id of the certificate it replaces); then run ``deploy``."""
    wanted = tuple(dict.fromkeys(names))
    if not wanted:
        raise AcmeError("no names to order a certificate for")
    kept = await trio.to_thread.run_sync(files.read_stash, options.key_path)
    if kept is not None:
        try:
            check_issued(kept.fullchain_pem, kept.key_pem, wanted)
            leaf = x509.load_pem_x509_certificates(kept.fullchain_pem)[0]
            if leaf.not_valid_after_utc > datetime.now(UTC):
                return await _install(options, wanted, kept.fullchain_pem, kept.key_pem, True)
        except AcmeError:
            pass  # for other names, or damaged: order afresh
        await trio.to_thread.run_sync(files.clear_stash, options.key_path)
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
                issued = await _order(options, wanted, tokens, replaces)
            except AcmeError as exc:
                failure = str(exc)
            except (messages.Error, errors.Error, OSError) as exc:
                failure = "ACME order failed: " + one_line(str(exc))
            nursery.cancel_scope.cancel()
    if deadline.cancelled_caught:
        raise AcmeError(f"the ACME order took longer than {options.timeout:g} s")
    if issued is None:
        raise AcmeError(failure or "ACME order failed")
    fullchain, key_pem = issued
    check_issued(fullchain.encode(), key_pem, wanted)
    try:
        await trio.to_thread.run_sync(files.stash, options.key_path, key_pem, fullchain.encode())
    except OSError as exc:
        raise AcmeError(f"issued, but cannot keep the certificate: {one_line(str(exc))}") from None
    return await _install(options, wanted, fullchain.encode(), key_pem, False)


async def _install(
    options: AcmeOptions, wanted: tuple[str, ...], fullchain: bytes, key_pem: bytes, kept: bool
) -> RenewalResult:
    certs = check_issued(fullchain, key_pem, wanted)
    leaf = certs[0]
    leaf_pem = leaf.public_bytes(serialization.Encoding.PEM)
    chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs[1:])
    written = [(options.key_path, key_pem, 0o600), (options.cert_path, leaf_pem, 0o644)]
    if options.chain_path is not None:
        written.append((options.chain_path, chain_pem, 0o644))
    if options.fullchain_path is not None:
        written.append((options.fullchain_path, leaf_pem + chain_pem, 0o644))
    digest = sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    stashed = f"issued {digest[:16]}, kept in {files.stash_dir(options.key_path)} for the next try"
    try:
        await trio.to_thread.run_sync(files.install, written)
    except OSError as exc:
        raise AcmeError(f"{stashed}; installing failed: {one_line(str(exc))}") from None
    if options.deploy:
        env = {"CERTSCAN_SHA256": digest, "CERTSCAN_NAMES": ",".join(wanted)}
        try:
            await _run(options.deploy, env, options.command_timeout, "deploy")
        except AcmeError as exc:
            raise AcmeError(f"{stashed}; {exc}") from None
    await trio.to_thread.run_sync(files.clear_stash, options.key_path)
    return RenewalResult(
        sha256=digest,
        not_after=leaf.not_valid_after_utc.astimezone(UTC),
        names=wanted,
        paths=tuple(path for path, _, _ in written),
        deployed=bool(options.deploy),
        from_stash=kept,
    )


# --- the hook action ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeAction:
    """The ``acme`` hook action: order the configured names again and install them.

    A failed order is a result with ``ok=False`` and a one-line reason (never a key).
    """

    kind: ClassVar[str] = "acme"

    async def _window(self, ctx: HookContext) -> ActionResult | None:
        """A "not yet" result while the CA's renewal window (ARI) has not opened; None to go
        ahead (no window, it is open, or it cannot be read: the policy decides then)."""
        if not self.options.ari or ctx.replaces is None:
            return None
        now = datetime.now(UTC)
        verify: str | bool = str(self.options.ca_bundle) if self.options.ca_bundle else True
        try:
            with trio.fail_after(min(self.options.timeout, 30)):
                window = await fetch_window(
                    self.options.directory, ctx.replaces, now=now, verify=verify
                )
        except (AriError, trio.TooSlowError):
            return None
        if window is None or window.start <= now:
            return None
        again = min(window.start, window.next_fetch_at)
        return ActionResult(
            ok=False,
            exit_status=None,
            output_tail=(
                f"waiting for the CA's renewal window: it opens {window.start:%Y-%m-%d %H:%M} "
                f"UTC; asking again {again:%Y-%m-%d %H:%M} UTC"
            ),
            retry_at=again,
        )

    #: One file set per hook: the runner gives this action at most one run at a time.
    one_certificate: ClassVar[bool] = True
    options: AcmeOptions

    async def run(self, ctx: HookContext) -> ActionResult:
        wanted, note = wanted_names(self.options, ctx.names)
        suffix = f" ({note})" if note else ""
        if not wanted:
            return ActionResult(
                ok=False, exit_status=None, output_tail=tail(f"no configured name to order{suffix}")
            )
        waiting = await self._window(ctx)
        if waiting is not None:
            return waiting
        try:
            result = await renew(self.options, names=wanted, replaces=ctx.replaces)
        except AcmeError as exc:
            return ActionResult(ok=False, exit_status=None, output_tail=tail(f"{exc}{suffix}"))
        how = "installed the certificate issued earlier" if result.from_stash else "renewed"
        written = ", ".join(str(p) for p in result.paths)
        return ActionResult(
            ok=True,
            exit_status=0,
            output_tail=tail(
                f"{how} {result.sha256} for {', '.join(result.names)} until "
                f"{result.not_after:%Y-%m-%d}: {written}{suffix}"
            ),
            new_sha256=result.sha256,
        )
