"""The hand-built ClientHello of a legacy capture (pure: bytes in, bytes out).

One record (``handshake``, record version TLS 1.0, which SSLv3 servers accept as well) holding
one ClientHello for TLS 1.2 (``0x0303``): a server answers with the highest version it has up
to that, SSLv3 included. It offers every code of :data:`.suites.OFFERED`, no compression, and
these extensions: ``server_name`` (when a name is given), ``supported_groups`` with every
named group of the registry's ECC and finite-field ranges (sect163k1 to brainpoolP512r1tls13,
x25519, x448, ffdhe2048 to ffdhe8192), ``ec_point_formats`` (all three), ``signature_algorithms``
with every hash/signature pair of TLS 1.2 and the RSA-PSS/EdDSA schemes, and
``status_request`` (so a stapling server sends CertificateStatus). No session id, no ticket,
no ``supported_versions``: TLS 1.3 is never negotiated, so the Certificate stays in clear.

Layout (RFC 5246 section 7.4.1.2): record header (5), handshake header (4), client_version (2),
random (32), session_id (1 + 0), cipher_suites (2 + 2n), compression_methods (1 + 1),
extensions (2 + ...). Every vector length is checked against its bound before it is written.
"""

from __future__ import annotations

import struct
from typing import Final

from scanner.engine.legacy.suites import OFFERED

#: ClientHello.client_version: TLS 1.2, the highest version a legacy capture reads in clear.
CLIENT_VERSION: Final = 0x0303
#: The record layer version of the hello's record: TLS 1.0, accepted by SSLv3 servers too.
RECORD_VERSION: Final = 0x0301
RANDOM_BYTES: Final = 32
MAX_NAME: Final = 253  # the longest DNS name, in bytes

#: Named groups: 1-30 (sect163k1 ... x448), 31-33 (brainpool TLS 1.3), 256-260 (ffdhe).
GROUPS: Final[tuple[int, ...]] = (*range(1, 34), *range(256, 261))
#: Signature algorithms: every TLS 1.2 (hash, signature) pair with hash md5..sha512 and
#: signature rsa, dsa, ecdsa; then rsa_pss_rsae, ed25519, ed448, rsa_pss_pss.
SIGNATURE_ALGORITHMS: Final[tuple[int, ...]] = (
    *((h << 8) | s for h in (6, 5, 4, 3, 2, 1) for s in (1, 2, 3)),
    *range(0x0804, 0x080C),
)

_HANDSHAKE: Final = 22
_CLIENT_HELLO: Final = 1
_EXT_SERVER_NAME: Final = 0
_EXT_STATUS_REQUEST: Final = 5
_EXT_GROUPS: Final = 10
_EXT_POINT_FORMATS: Final = 11
_EXT_SIGNATURE_ALGORITHMS: Final = 13


def _vector(data: bytes, width: int) -> bytes:
    """``data`` prefixed by its length in ``width`` bytes; ``ValueError`` when it does not fit."""
    if len(data) >= 1 << (8 * width):
        raise ValueError(f"{len(data)} bytes do not fit a {width}-byte length")
    return len(data).to_bytes(width, "big") + data


def _extension(kind: int, body: bytes) -> bytes:
    return struct.pack("!H", kind) + _vector(body, 2)


def _u16s(values: tuple[int, ...]) -> bytes:
    return b"".join(struct.pack("!H", v) for v in values)


def client_hello(random: bytes, sni: bytes | None = None) -> bytes:
    """The ClientHello record, ready to send.

    ``random`` is the 32-byte ClientHello.random (the caller draws it). ``sni`` is the server
    name as sent on the wire (IDNA, no trailing dot, at most :data:`MAX_NAME` bytes; ``None``
    or empty: no ``server_name`` extension). Raises ``ValueError`` for a random of the wrong
    length or a name out of bounds; nothing else.
    """
    if len(random) != RANDOM_BYTES:
        raise ValueError(f"the client random is {RANDOM_BYTES} bytes, not {len(random)}")
    if sni is not None and len(sni) > MAX_NAME:
        raise ValueError(f"a server name is at most {MAX_NAME} bytes, not {len(sni)}")
    extensions = b""
    if sni:
        name = b"\x00" + _vector(sni, 2)  # name_type host_name
        extensions += _extension(_EXT_SERVER_NAME, _vector(name, 2))
    extensions += _extension(_EXT_GROUPS, _vector(_u16s(GROUPS), 2))
    extensions += _extension(_EXT_POINT_FORMATS, _vector(b"\x00\x01\x02", 1))
    extensions += _extension(_EXT_SIGNATURE_ALGORITHMS, _vector(_u16s(SIGNATURE_ALGORITHMS), 2))
    # status_request: type ocsp (1), no responder ids, no request extensions.
    extensions += _extension(_EXT_STATUS_REQUEST, b"\x01\x00\x00\x00\x00")
    body = (
        struct.pack("!H", CLIENT_VERSION)
        + random
        + _vector(b"", 1)  # no session id
        + _vector(_u16s(OFFERED), 2)
        + _vector(b"\x00", 1)  # compression: null only
        + _vector(extensions, 2)
    )
    message = bytes((_CLIENT_HELLO,)) + _vector(body, 3)
    return struct.pack("!BH", _HANDSHAKE, RECORD_VERSION) + _vector(message, 2)
