"""The STARTTLS preambles of the binary protocols: LDAP, PostgreSQL, MySQL and RDP.

Each message is read with its own length field through the session
(``scanner.engine.starttls.session``),
so a length that claims more than the session's byte budget ends in ``protocol_error`` after at
most that many bytes, and a short read waits under the engine's deadline. What the server says
instead of "go ahead" is ``starttls_refused``, with the reason the protocol gives (an LDAP
resultCode and diagnostic, a MySQL error, an RDP negotiation failure code) in the detail.
"""

from __future__ import annotations

import struct
from typing import Final

from scanner.engine.starttls.session import Session
from scanner.models import Target

# --- LDAP (RFC 4511 section 4.14) -----------------------------------------------------------

_STARTTLS_OID: Final = b"1.3.6.1.4.1.1466.20037"
_SEQUENCE, _INTEGER, _ENUMERATED, _OCTETS = 0x30, 0x02, 0x0A, 0x04
_EXTENDED_REQUEST, _EXTENDED_RESPONSE, _REQUEST_NAME = 0x77, 0x78, 0x80
_RESULT_NAMES: Final = {
    1: "operationsError",
    2: "protocolError",
    13: "confidentialityRequired",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}


def _ber(tag: int, value: bytes) -> bytes:
    """One BER element with a short-form length (every element we send is under 128 bytes)."""
    return bytes((tag, len(value))) + value


#: LDAPMessage { messageID 1, extendedReq { requestName StartTLS } }.
LDAP_STARTTLS: Final = _ber(
    _SEQUENCE, _ber(_INTEGER, b"\x01") + _ber(_EXTENDED_REQUEST, _ber(_REQUEST_NAME, _STARTTLS_OID))
)


def read_element(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """The BER element at ``pos``: ``(tag, value, position after it)``; ``ValueError`` when it
    is truncated or its length is not a definite one of at most three bytes."""
    if pos + 2 > len(data):
        raise ValueError("truncated element")
    tag, size = data[pos], data[pos + 1]
    pos += 2
    if size & 0x80:
        count = size & 0x7F
        if not 1 <= count <= 3 or pos + count > len(data):
            raise ValueError("unsupported length encoding")
        size = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + size > len(data):
        raise ValueError("truncated element")
    return tag, data[pos : pos + size], pos + size


def _expect(tag: int, data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    found, value, pos = read_element(data, pos)
    if found != tag:
        raise ValueError(f"{what} has tag 0x{found:02x}")
    return value, pos


def ldap_result(message: bytes) -> tuple[int, int, bytes]:
    """``(messageID, resultCode, diagnosticMessage)`` of an ExtendedResponse LDAPMessage body;
    ``ValueError`` naming what is wrong otherwise."""
    message_id, pos = _expect(_INTEGER, message, 0, "messageID")
    response, _ = _expect(_EXTENDED_RESPONSE, message, pos, "the response (not ExtendedResponse)")
    code, pos = _expect(_ENUMERATED, response, 0, "resultCode")
    _, pos = _expect(_OCTETS, response, pos, "matchedDN")
    diagnostic, _ = _expect(_OCTETS, response, pos, "diagnosticMessage")
    return int.from_bytes(message_id, "big"), int.from_bytes(code, "big"), diagnostic


async def ldap(session: Session, target: Target) -> None:
    await session.send(LDAP_STARTTLS)
    head = await session.exactly(2)
    if head[0] != _SEQUENCE:
        raise session.declined("the reply is not an LDAP message", head + session.pending())
    size = head[1]
    if size & 0x80:
        count = size & 0x7F
        if not 1 <= count <= 3:
            raise session.declined("unsupported LDAP message length", head)
        size = int.from_bytes(await session.exactly(count), "big")
    body = await session.exactly(size)
    try:
        message_id, code, diagnostic = ldap_result(body)
    except ValueError as exc:
        raise session.declined(f"unexpected LDAP reply ({exc})", head + body) from None
    if message_id == 0:  # unsolicited: the server is closing the connection
        raise session.declined(f"notice of disconnection, resultCode {code}", diagnostic)
    if code != 0:
        name = _RESULT_NAMES.get(code, "")
        raise session.declined(f"StartTLS refused, resultCode {code} {name}".rstrip(), diagnostic)


# --- PostgreSQL (protocol 3: SSLRequest) ----------------------------------------------------

#: Length 8, then the SSLRequest code 1234.5679.
POSTGRES_SSL_REQUEST: Final = struct.pack("!II", 8, 80877103)


async def postgres(session: Session, target: Target) -> None:
    await session.send(POSTGRES_SSL_REQUEST)
    answer = await session.exactly(1)
    if answer == b"N":
        raise session.declined("the server does not accept SSL (it answered 'N')")
    if answer != b"S":
        raise session.declined("unexpected answer to SSLRequest", answer + session.pending())


# --- MySQL (client/server protocol 10) ------------------------------------------------------

CLIENT_LONG_PASSWORD: Final = 0x1
CLIENT_PROTOCOL_41: Final = 0x200
CLIENT_SSL: Final = 0x800
CLIENT_SECURE_CONNECTION: Final = 0x8000
_UTF8_GENERAL_CI: Final = 33
_MAX_PACKET: Final = 1 << 24


def mysql_capabilities(payload: bytes) -> tuple[bytes, int]:
    """``(server version, capability flags)`` of an initial handshake payload (protocol 10);
    ``ValueError`` when it is not one."""
    if payload[:1] != b"\x0a":
        raise ValueError("not a protocol 10 handshake")
    version, nul, rest = payload[1:].partition(b"\x00")
    if not nul or len(rest) < 15:
        raise ValueError("truncated handshake")
    # rest: connection id (4), auth data (8), filler (1), capabilities low (2), charset (1),
    # status (2), capabilities high (2), ...
    capabilities = int.from_bytes(rest[13:15], "little")
    if len(rest) >= 20:
        capabilities |= int.from_bytes(rest[18:20], "little") << 16
    return version, capabilities


def mysql_ssl_request(sequence: int) -> bytes:
    """The SSLRequest packet answering a handshake packet numbered ``sequence``."""
    flags = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION
    body = struct.pack("<IIB23x", flags, _MAX_PACKET, _UTF8_GENERAL_CI)
    return len(body).to_bytes(3, "little") + bytes(((sequence + 1) & 0xFF,)) + body


async def mysql(session: Session, target: Target) -> None:
    head = await session.exactly(4)
    payload = await session.exactly(int.from_bytes(head[:3], "little"))
    if payload[:1] == b"\xff":  # an error packet: blocked host, too many connections
        code = int.from_bytes(payload[1:3], "little")
        message = payload[3:]
        message = message[6:] if message[:1] == b"#" else message  # "#" and the SQLSTATE
        raise session.declined(f"the server answered with error {code}", message)
    try:
        version, capabilities = mysql_capabilities(payload)
    except ValueError as exc:
        raise session.declined(f"unexpected greeting ({exc})", head + payload) from None
    if not capabilities & CLIENT_SSL:
        raise session.declined("the server does not offer SSL (no CLIENT_SSL)", version)
    await session.send(mysql_ssl_request(head[3]))


# --- RDP (MS-RDPBCGR 2.2.1.1 and 2.2.1.2: X.224 over TPKT) ----------------------------------

PROTOCOL_SSL: Final = 0x1
PROTOCOL_HYBRID: Final = 0x2  # CredSSP, which runs inside the same TLS
PROTOCOL_HYBRID_EX: Final = 0x8
_NEG_RESPONSE, _NEG_FAILURE = 0x02, 0x03
_RDP_FAILURES: Final = {
    1: "SSL_REQUIRED_BY_SERVER",
    2: "SSL_NOT_ALLOWED_BY_SERVER",
    3: "SSL_CERT_NOT_ON_SERVER",
    4: "INCONSISTENT_FLAGS",
    5: "HYBRID_REQUIRED_BY_SERVER",
    6: "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER",
}


def _rdp_request() -> bytes:
    # RDP_NEG_REQ offering TLS and CredSSP: a server that insists on NLA (CredSSP) still runs
    # the TLS handshake first, and only asking for TLS alone would get HYBRID_REQUIRED.
    negotiation = struct.pack("<BBHI", 0x01, 0, 8, PROTOCOL_SSL | PROTOCOL_HYBRID)
    tpdu = bytes((0xE0, 0, 0, 0, 0, 0)) + negotiation  # Connection Request, refs 0, class 0
    x224 = bytes((len(tpdu),)) + tpdu  # the length indicator counts what follows it
    return struct.pack("!BBH", 3, 0, 4 + len(x224)) + x224  # TPKT version 3


#: TPKT + X.224 Connection Request + RDP_NEG_REQ (TLS or CredSSP).
RDP_CONNECTION_REQUEST: Final = _rdp_request()


async def rdp(session: Session, target: Target) -> None:
    await session.send(RDP_CONNECTION_REQUEST)
    head = await session.exactly(4)
    size = int.from_bytes(head[2:4], "big")
    if head[0] != 3 or size < 11:  # TPKT header + the 7-byte Connection Confirm header
        raise session.declined("the reply is not a TPKT packet", head + session.pending())
    body = await session.exactly(size - 4)
    if body[1] & 0xF0 != 0xD0:
        raise session.declined("the reply is not an X.224 Connection Confirm", head + body)
    negotiation = body[7:15]
    if len(negotiation) < 8:
        raise session.declined("the server offers only standard RDP security, no TLS")
    kind, _, _, value = struct.unpack("<BBHI", negotiation)
    if kind == _NEG_RESPONSE and value in (PROTOCOL_SSL, PROTOCOL_HYBRID, PROTOCOL_HYBRID_EX):
        return
    if kind == _NEG_RESPONSE:
        raise session.declined(f"the server selected protocol {value}, not TLS")
    if kind == _NEG_FAILURE:
        raise session.declined(f"negotiation failure {_RDP_FAILURES.get(value, value)}")
    raise session.declined(f"unexpected negotiation message type {kind}", head + body)
