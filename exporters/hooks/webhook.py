"""The ``webhook`` action: POST the finding as JSON to a URL, optionally signed.

One POST per certificate (every endpoint presenting it listed), in the hook's ``format``
(:mod:`exporters.hooks.formats`); with ``digest = "daily"`` one POST per UTC day
(:meth:`WebhookAction.run_digest`, driven by ``exporters.hooks.digest``).

With a key (``hmac_key`` in the config, or the environment variable ``hmac_key_env`` names,
read at run time) the request carries ``X-Certscan-Timestamp`` (Unix seconds),
``X-Certscan-Delivery`` (a random id, new for every delivery) and
``X-Certscan-Signature: sha256=<hex>``, the HMAC-SHA256 of ``TIMESTAMP.BODY`` (the timestamp's
digits, a dot, the exact body bytes): a receiver checks the signature, refuses timestamps more
than a few minutes old and ids it has seen, and so refuses a replayed delivery.
A 2xx answer is success; anything else, or a transport error, is a
failure the runner retries. The key is never part of a result, a log line or the database.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from exporters.hooks import formats
from exporters.hooks.base import ActionResult, HookContext, one_line, tail_bytes
from exporters.hooks.notice import Digest

if TYPE_CHECKING:  # httpx comes with the serve extra; imported when a webhook runs
    import httpx

SIGNATURE_HEADER = "X-Certscan-Signature"
TIMESTAMP_HEADER = "X-Certscan-Timestamp"
DELIVERY_HEADER = "X-Certscan-Delivery"
_MAX_ANSWER = 64 * 1024  # bytes of the answer kept at most


def signature(key: bytes, timestamp: int, body: bytes) -> str:
    """The header value for ``body`` sent at ``timestamp``: ``sha256=`` and the HMAC-SHA256
    hex digest of ``TIMESTAMP.BODY`` (pure)."""
    signed = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(key, signed, hashlib.sha256).hexdigest()


async def _read_some(response: httpx.Response, into: bytearray) -> None:
    """Read the whole answer, keeping only its last _MAX_ANSWER bytes in ``into``. (Stopping
    early would leave httpx's stream generators unfinished; the runner's timeout bounds the time
    a never-ending answer can take.)"""
    async for chunk in response.aiter_raw():
        into += chunk
        if len(into) > _MAX_ANSWER:
            del into[:-_MAX_ANSWER]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookAction:
    """POST the finding to ``url``."""

    kind: ClassVar[str] = "webhook"
    url: str
    hmac_key: str | None = field(default=None, repr=False)
    hmac_key_env: str | None = None
    #: ``generic``, ``slack`` or ``teams`` (:mod:`exporters.hooks.formats`).
    format: str = "generic"

    def _key(self) -> bytes | None:
        if self.hmac_key is not None:
            return self.hmac_key.encode()
        if self.hmac_key_env is not None:
            value = os.environ.get(self.hmac_key_env)
            return value.encode() if value else None
        return None

    async def run(self, ctx: HookContext) -> ActionResult:
        return await self._post(formats.encoded(ctx, self.format))

    async def run_digest(self, digest: Digest) -> ActionResult:
        """POST one hook's daily digest (``formats.digest_body``)."""
        return await self._post(formats.encoded_digest(digest, self.format))

    async def _post(self, body: bytes) -> ActionResult:
        if self.hmac_key_env is not None and self._key() is None:
            return ActionResult(
                ok=False,
                exit_status=None,
                output_tail=f"environment variable {self.hmac_key_env} (hmac_key_env) is unset",
            )
        headers = {"Content-Type": "application/json", "User-Agent": "certscan-hooks"}
        key = self._key()
        if key is not None:
            stamp = int(time.time())
            headers[TIMESTAMP_HEADER] = str(stamp)
            headers[DELIVERY_HEADER] = secrets.token_hex(16)
            headers[SIGNATURE_HEADER] = signature(key, stamp, body)
        import httpx  # the serve extra; a missing one is reported by the CLI

        received = bytearray()
        try:
            # The runner's cancel scope is the timeout; the answer is read up to a bound only.
            async with (
                httpx.AsyncClient(
                    follow_redirects=False,
                    trust_env=False,
                    timeout=None,  # noqa: S113
                ) as client,
                client.stream("POST", self.url, content=body, headers=headers) as response,
            ):
                await _read_some(response, received)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            reason = one_line(f"{type(exc).__name__}: {exc}")
            return ActionResult(ok=False, exit_status=None, output_tail=reason)
        return ActionResult(
            ok=response.is_success,
            exit_status=response.status_code,
            output_tail=tail_bytes(bytes(received)),
        )
