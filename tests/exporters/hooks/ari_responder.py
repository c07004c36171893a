"""An RFC 9773 renewalInfo responder for the tests (Pebble 2.4 serves no renewalInfo).

It serves, over TLS on a loopback address, ``GET /dir`` (an ACME directory listing only
``renewalInfo``) and ``GET /ari/ID``: the window set for the certificate whose ID is ``ID``, with
a ``Retry-After`` header, or 404. IDs are computed here from the certificate itself, written
separately from certscan's code and checked against the RFC's own example: base64url of the AKI
extension's keyIdentifier, ".", base64url of the DER INTEGER content octets of the serial.
Every request path is recorded, so a test can see what certscan asked for.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import trio
from cryptography import x509

from scanner.lab.certgen import Issued, make_ca, make_leaf
from tests.peers import serve, server_context


def rfc9773_id(cert: x509.Certificate) -> str:
    """Section 4.1, from the certificate: no certscan code involved."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier is not None
    serial = cert.serial_number
    octets = serial.to_bytes((serial.bit_length() + 8) // 8 or 1, "big", signed=True)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    return f"{b64(aki.key_identifier)}.{b64(octets)}"


@dataclass
class Responder:
    base: str  # https://ADDRESS:PORT
    ca_bundle: str  # the listener's root, for the client
    windows: dict[str, tuple[datetime, datetime]] = field(default_factory=dict)
    retry_after: str = "3600"
    paths: list[str] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"{self.base}/dir"

    def set_window(self, cert: x509.Certificate, start: datetime, end: datetime) -> None:
        self.windows[rfc9773_id(cert)] = (start, end)


def _answer(responder: Responder, path: str) -> tuple[int, bytes, str]:
    if path == "/dir":
        body = {"renewalInfo": f"{responder.base}/ari", "newNonce": f"{responder.base}/nonce"}
        return 200, json.dumps(body).encode(), ""
    if path.startswith("/ari/") and path[5:] in responder.windows:
        start, end = responder.windows[path[5:]]
        window = {"start": start.isoformat().replace("+00:00", "Z"), "end": end.isoformat()}
        body = {"suggestedWindow": window, "explanationURL": "https://ca.certscan.test/why"}
        return 200, json.dumps(body).encode(), responder.retry_after
    return 404, b'{"type": "urn:ietf:params:acme:error:malformed"}', ""


@asynccontextmanager
async def run_responder(address: str) -> AsyncIterator[Responder]:
    root = make_ca("certscan ari listener root")
    listener: Issued = make_leaf(root, cn="localhost", dns_names=[], ip_addresses=[address])
    ctx: ssl.SSLContext = server_context([listener])
    bundle_dir = trio.Path(f"/tmp/certscan-ari-{address}")
    await bundle_dir.mkdir(exist_ok=True)
    bundle = bundle_dir / "root.pem"
    await bundle.write_bytes(root.cert_pem)
    responder: Responder | None = None

    async def handle(stream: trio.SocketStream) -> None:
        assert responder is not None
        tls = trio.SSLStream(stream, ctx, server_side=True)
        request = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in request and len(request) < 8192:
                chunk = await tls.receive_some(4096)
                if not chunk:
                    return
                request += chunk
        line = request.split(b"\r\n", 1)[0].decode("ascii", "replace").split(" ")
        path = line[1] if len(line) == 3 else ""
        responder.paths.append(path)
        status, body, retry = _answer(responder, path)
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\nConnection: close\r\n"
        head += f"Retry-After: {retry}\r\n" if retry else ""
        await tls.send_all(head.encode() + b"\r\n" + body)
        await tls.aclose()

    async with serve(address, handle) as peer:
        responder = Responder(base=f"https://{address}:{peer.port}", ca_bundle=str(bundle))
        yield responder
