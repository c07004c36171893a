"""The TLS client: pyOpenSSL in memory-BIO mode over a socket driven by trio
(``scanner.engine.net``).

Theory of operation
-------------------
OpenSSL never touches the socket. It reads the server's bytes from one memory BIO and writes
its own into another; this module shuttles bytes between those BIOs and the socket. Each turn
of :func:`handshake` does three things in order:

1. call ``do_handshake()``, which either finishes, fails, or says it needs the server's bytes;
2. send whatever OpenSSL wrote (a client flight, possibly its last one on the way out);
3. if OpenSSL is waiting, await exactly one ``recv`` and feed the chunk to it.

Only this task drives the connection, so sending then receiving in one turn is safe (trio's
``SSLStream._retry`` has to choose one of the two because several tasks may share a stream).
Every byte from the server is counted before OpenSSL sees it: the first five are checked to be
a plausible TLS record header (``not_tls`` otherwise), and the total is capped by
``max_chain_bytes`` (``chain_too_large``). Timeouts are the caller's cancel scopes.

One :class:`OpenSSL.SSL.Context` per minimum version is built once and shared. It accepts
anything: TLS 1.0 to 1.3, every cipher but the anonymous ones (they carry no certificate), and
security level 0. Verification mode is NONE with an empty trust store: OpenSSL's client still
runs its chain builder internally (pyOpenSSL exposes no way to replace it), but with no trust
anchors it gives up at the first missing issuer, before any signature check, and the result
is never read. Trust is judged later, from the DER, by pure code.

Two context callbacks watch the handshake for facts OpenSSL does not keep: the OCSP staple
(the status callback) and, from the info callback, the alert the server sent (its code, so the
failure names it precisely) and whether the server asked for a client certificate. That last
works for TLS 1.2, where the server aborts after our empty certificate and we keep the chain
it already sent, and for TLS 1.3, where the client's handshake completes before the server
notices and rejects: the request is seen in OpenSSL's state machine, so normal servers pay no
extra round trip to find out.

Proof of possession. A chain is only a copy of bytes until the server uses the key: a signed
ServerKeyExchange (TLS 1.2 (EC)DHE, which OpenSSL checks as it reads it, before any client
certificate request), a CertificateVerify (TLS 1.3) or its Finished after static RSA key
exchange (both checked before our handshake completes). So a chain from a handshake that
completed, or that got past a signed ServerKeyExchange, is ``key_proven``; the one a TLS 1.2
static-RSA server presents before rejecting our empty client certificate is not. A chain is
kept on a failure only when the failure is the server's rejection (an alert, a hang-up, a
reset) after it asked for a client certificate; a failure OpenSSL found in the server's bytes
(a bad signature) is a failure, chain or not.

Classification lives in :data:`_KINDS`, the one table from causes (errno names, OpenSSL reason
strings, and this module's own observations) to :class:`~scanner.models.FailureKind`.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Final

from OpenSSL import SSL, crypto
from OpenSSL._util import lib as _ssl_lib

from scanner.engine import net
from scanner.errors import UsageError
from scanner.models import FailureKind

# --- the classification table ---------------------------------------------------------------
# Causes this module observes itself (not errno, not OpenSSL).
PEER_EOF: Final = "peer-eof"
NOT_A_RECORD: Final = "not-a-tls-record"
READ_LIMIT: Final = "read-limit"
TIMED_OUT: Final = "timed-out"
ALERT_RECEIVED: Final = "alert-received"
# Causes the STARTTLS preambles (scanner.engine.starttls.session) observe.
STARTTLS_DECLINED: Final = "starttls-declined"
PREAMBLE_LIMIT: Final = "preamble-limit"

_KINDS: Final[dict[str, FailureKind]] = {
    # TCP connect, by errno name.
    # The host answered our SYN with RST: it is up and nothing listens on the port (or a
    # firewall rule rejects with tcp-reset).
    "ECONNREFUSED": FailureKind.REFUSED,
    # No route to the network from here (local routing table), or an ICMP net-unreachable from
    # a router on the way; also Linux's answer to a connect to a broadcast address.
    "ENETUNREACH": FailureKind.UNREACHABLE,
    # ARP/neighbour discovery got no answer on the local segment, or a router or firewall sent
    # ICMP host-unreachable / administratively-prohibited (iptables REJECT's default).
    "EHOSTUNREACH": FailureKind.UNREACHABLE,
    # Neighbour discovery says the host is down (IPv6 on the local segment).
    "EHOSTDOWN": FailureKind.UNREACHABLE,
    # A local packet filter (nftables/iptables OUTPUT chain) refused to let the SYN out.
    "EPERM": FailureKind.UNREACHABLE,
    # The kernel gave up: SYN retransmissions to a host that drops them silently ran out
    # before our own connect timeout, or data retransmissions to a peer that vanished.
    "ETIMEDOUT": FailureKind.TIMEOUT,
    # TCP I/O after the connect, by errno name.
    # RST mid-conversation: the server process died, a middlebox killed the flow, or the
    # server closed with our ClientHello unread (SO_LINGER 0, or a port-knocking guard).
    "ECONNRESET": FailureKind.RESET,
    # We wrote after the peer's RST had already arrived.
    "EPIPE": FailureKind.RESET,
    # The connection was aborted locally after the peer's RST (BSD-flavoured stacks).
    "ECONNABORTED": FailureKind.RESET,
    # Our own observations of the byte stream.
    # FIN before the handshake finished: a server that rejects our SNI or hello by hanging up,
    # a load balancer with no healthy backend, a crashed worker.
    PEER_EOF: FailureKind.RESET,
    # The first bytes are not a TLS record header: an SSH/SMTP/FTP banner, an HTTP server
    # answering our hello with "400 Bad Request", a proxy speaking plaintext, line noise.
    NOT_A_RECORD: FailureKind.NOT_TLS,
    # More than max_chain_bytes before the handshake ended: a gigantic chain, padding, or a
    # server streaming bytes forever.
    READ_LIMIT: FailureKind.CHAIN_TOO_LARGE,
    # A cancel scope ran out: SYNs dropped by a firewall, a server that accepts and never
    # speaks, a tarpit dripping one byte at a time.
    TIMED_OUT: FailureKind.TIMEOUT,
    # The server sent an alert record (the detail names it): no shared version or cipher,
    # unknown SNI (unrecognized_name), client certificate missing, internal_error.
    ALERT_RECEIVED: FailureKind.TLS_ALERT,
    # The server answered a STARTTLS preamble, and the answer does not lead to TLS (the detail
    # quotes it): an EHLO reply without STARTTLS, IMAP "NO"/"BAD", POP3 "-ERR", FTP 5xx, LDAP
    # resultCode protocolError (2), PostgreSQL 'N', MySQL without CLIENT_SSL, an RDP
    # negotiation failure, or a service that does not speak the protocol at all (an SSH
    # banner on port 25).
    STARTTLS_DECLINED: FailureKind.STARTTLS_REFUSED,
    # More bytes than a preamble may read before the server is ready for TLS: an endless
    # greeting or capability list, a service streaming data at whoever connects.
    PREAMBLE_LIMIT: FailureKind.PROTOCOL_ERROR,
    # OpenSSL reason strings: the first entry of the error queue, lowercased. Whatever else
    # OpenSSL rejects in the server's bytes is a protocol error too; these are the ones seen
    # from real peers (and reproduced by the tests' peers).
    # The ServerHello picks a version we did not offer: an SSLv3-only box, or a server below
    # the sweep's minimum version that answers instead of sending protocol_version.
    "unsupported protocol": FailureKind.PROTOCOL_ERROR,
    # The ServerHello picks a cipher suite we never offered: a broken middlebox or a fuzzer.
    "unknown cipher returned": FailureKind.PROTOCOL_ERROR,
    # A handshake message whose length fields disagree with its body: truncating proxies,
    # hand-rolled TLS stacks.
    "length mismatch": FailureKind.PROTOCOL_ERROR,
    # Application data or ChangeCipherSpec before any ServerHello: a server that skipped the
    # handshake, or a service replaying canned bytes.
    "unexpected message": FailureKind.PROTOCOL_ERROR,
    # A record header announcing more than TLS allows: a non-TLS service whose first bytes
    # happen to look like a record header.
    "data length too long": FailureKind.PROTOCOL_ERROR,
    "packet length too long": FailureKind.PROTOCOL_ERROR,
    # A handshake message over OpenSSL's own bound (its certificate list limit, 100 KiB): a
    # server whose chain holds thousands of SANs or dozens of certificates. The chain is too
    # large, whichever bound caught it first.
    "excessive message size": FailureKind.CHAIN_TOO_LARGE,
}

ALERT_NAMES: Final[dict[int, str]] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    21: "decryption_failed",
    22: "record_overflow",
    30: "decompression_failure",
    40: "handshake_failure",
    41: "no_certificate",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    60: "export_restriction",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    100: "no_renegotiation",
    109: "missing_extension",
    110: "unsupported_extension",
    111: "certificate_unobtainable",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    114: "bad_certificate_hash_value",
    115: "unknown_psk_identity",
    116: "certificate_required",
    120: "no_application_protocol",
    121: "ech_required",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """A classified reason a target yielded no chain; ``detail`` keeps the original words.

    ``opening`` is set for ``not_tls`` only: the server's first bytes (at most
    :data:`OPENING_BYTES`), from which the engine recognises a plaintext greeting.
    """

    kind: FailureKind
    detail: str
    opening: bytes = b""
    alert: int | None = None  # the TLS alert the server sent, for ``tls_alert``

    @property
    def refused_alpn(self) -> bool:
        """The server ended the handshake over the ALPN offer (nginx's mail proxy does)."""
        return self.alert == NO_APPLICATION_PROTOCOL


#: The alert a server sends when it supports none of the offered ALPN protocols (RFC 7301).
NO_APPLICATION_PROTOCOL: Final = 120


def fault(cause: str, detail: str, opening: bytes = b"") -> Fault:
    """Classify one of the causes in the table (an OpenSSL reason not listed: protocol_error)."""
    return Fault(kind=_KINDS.get(cause, FailureKind.PROTOCOL_ERROR), detail=detail, opening=opening)


def os_fault(exc: OSError) -> Fault | None:
    """Classify a socket error by errno; ``None`` when it is not a network outcome (a bug, or
    a local resource problem such as EMFILE) and must propagate."""
    name = errno.errorcode.get(exc.errno or 0, "")
    if name not in _KINDS:
        return None
    return Fault(kind=_KINDS[name], detail=f"{name}: {os.strerror(exc.errno or 0)}")


def alert_name(code: int) -> str:
    """``"handshake_failure (40)"``; unknown codes keep their number."""
    return f"{ALERT_NAMES.get(code, 'unknown_alert')} ({code})"


def _ssl_fault(exc: SSL.Error, alert: int | None) -> Fault:
    if alert is not None:
        return dataclasses.replace(fault(ALERT_RECEIVED, alert_name(alert)), alert=alert)
    if isinstance(exc, SSL.SysCallError):  # pyOpenSSL's spelling of an EOF it saw itself
        return fault(PEER_EOF, "connection closed by the peer during the handshake")
    reasons = [entry for entry in (exc.args[0] if exc.args else ()) if isinstance(entry, tuple)]
    if not reasons:
        return fault("", f"{type(exc).__name__}: {exc}")
    detail = "; ".join(f"{entry[0]}: {entry[2]}" for entry in reasons)
    return fault(str(reasons[0][2]).lower(), detail)  # the first entry is the root cause


# --- the client context ---------------------------------------------------------------------

_VERSIONS: Final[dict[str, int]] = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}
_CIPHERS: Final = b"ALL:!aNULL:@SECLEVEL=0"
_ALPN: Final = [b"h2", b"http/1.1"]
_FATAL: Final = 2
# SSL_state_string_long() right after OpenSSL read a CertificateRequest (TLS 1.2 and 1.3).
_READ_CERT_REQUEST: Final = b"SSLv3/TLS read server certificate request"
# ... right after it read (and checked the signature of) a TLS 1.2 ServerKeyExchange.
_READ_KEY_EXCHANGE: Final = b"SSLv3/TLS read server key exchange"


class _Seen:
    """What the callbacks noticed on one connection (the connection's app data)."""

    __slots__ = ("alert", "cert_requested", "key_signed", "ocsp")

    def __init__(self) -> None:
        self.alert: int | None = None
        self.cert_requested = False
        self.key_signed = False  # a signed ServerKeyExchange was read and checked
        self.ocsp = b""


def _on_info(conn: SSL.Connection, where: int, ret: int) -> None:
    if where & SSL.SSL_CB_READ_ALERT == SSL.SSL_CB_READ_ALERT:
        level, code = ret >> 8, ret & 0xFF
        if level == _FATAL or code == 0:  # a warning (say unrecognized_name) ends nothing
            conn.get_app_data().alert = code
    elif where & SSL.SSL_CB_CONNECT_LOOP == SSL.SSL_CB_CONNECT_LOOP:
        state = conn.get_state_string()
        if state == _READ_CERT_REQUEST:
            conn.get_app_data().cert_requested = True
        elif state == _READ_KEY_EXCHANGE:
            conn.get_app_data().key_signed = True


def _on_ocsp(conn: SSL.Connection, staple: bytes, _data: object) -> bool:
    conn.get_app_data().ocsp = staple
    return True  # a staple is recorded, never judged here


#: ``--all-certs``: per server key type, the TLS 1.2 cipher suites (by authentication) and the
#: signature algorithms (TLS 1.2 and 1.3) that leave a server holding several certificates
#: only the one of that type to present.
KEY_TYPES: Final[dict[str, tuple[bytes, bytes]]] = {
    "RSA": (
        b"aRSA:@SECLEVEL=0",
        b"rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:rsa_pss_pss_sha256:"
        b"rsa_pss_pss_sha384:rsa_pss_pss_sha512:RSA+SHA256:RSA+SHA384:RSA+SHA512:RSA+SHA1",
    ),
    "EC": (b"aECDSA:@SECLEVEL=0", b"ECDSA+SHA256:ECDSA+SHA384:ECDSA+SHA512:ECDSA+SHA1"),
}


@functools.cache
def client_context(
    min_version: str = "TLSv1", max_version: str = "TLSv1.3", key_type: str | None = None
) -> SSL.Context:
    """The shared client context offering ``min_version`` up to ``max_version``.

    The protocol probe uses ``max_version`` "TLSv1.1" / "TLSv1" to learn whether a server still
    accepts legacy versions; sweeps use the full range. ``key_type`` (a key of
    :data:`KEY_TYPES`) offers only the cipher suites and signature algorithms of that server
    key type (``--all-certs``).
    """
    for version in (min_version, max_version):
        if version not in _VERSIONS:
            choices = ", ".join(_VERSIONS)
            raise UsageError(f"unsupported TLS version {version!r} (one of {choices})")
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_min_proto_version(_VERSIONS[min_version])
    ctx.set_max_proto_version(_VERSIONS[max_version])
    if key_type is None:
        ctx.set_cipher_list(_CIPHERS)
    else:
        ciphers, sigalgs = KEY_TYPES[key_type]
        ctx.set_cipher_list(ciphers)
        # pyOpenSSL has no wrapper for SSL_CTX_set1_sigalgs_list; its binding library does.
        if not _ssl_lib.SSL_CTX_set1_sigalgs_list(ctx._context, sigalgs):
            raise RuntimeError(f"OpenSSL refused the {key_type} signature algorithms")
    ctx.set_options(SSL.OP_ALL | SSL.OP_LEGACY_SERVER_CONNECT | SSL.OP_NO_TICKET)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
    ctx.set_verify(SSL.VERIFY_NONE)
    ctx.set_ocsp_client_callback(_on_ocsp)
    ctx.set_info_callback(_on_info)
    return ctx


_MAX_NAME: Final = 253  # the longest DNS name


@functools.lru_cache(maxsize=4096)
def sni_bytes(name: str | None) -> bytes | None:
    """The SNI to send for ``name``: IDNA-encoded, no trailing dot.

    ``None`` (send no SNI) for no name, for IP literals (RFC 6066 forbids them) and for names
    IDNA cannot encode (empty or over-long labels, names over 253 bytes, disallowed
    characters): the handshake then goes ahead without SNI, as for a bare address, and the
    server's default certificate is what gets recorded. Nothing else records the omission;
    the target planner validates names before they get here.
    """
    if not name:
        return None
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return None
    try:
        encoded = name.encode("idna")
    except UnicodeError:
        return None
    if not encoded or len(encoded) > _MAX_NAME or b"\x00" in encoded:
        return None
    return encoded


# --- the handshake driver -------------------------------------------------------------------

_RECV_CHUNK: Final = 16384  # one full TLS record
_OPENING: Final = 24  # how many of the server's first bytes a not_tls detail quotes
OPENING_BYTES: Final = 512  # how many of them a not_tls fault keeps (Fault.opening)
_BIO_CHUNK: Final = 65536


@dataclass(frozen=True, slots=True, kw_only=True)
class Negotiated:
    """What a handshake that yielded a chain established (see ``scanner.models.Handshake``)."""

    chain: tuple[bytes, ...]
    tls_version: str
    cipher: str
    alpn: str | None
    ocsp_staple: bytes | None
    client_cert_requested: bool
    #: Read from the records of a hand-built hello (``scanner.engine.legacy``), not negotiated
    #: by OpenSSL: no handshake completed, the server's first flight was read in clear.
    legacy_capture: bool = False
    group: str | None = None  # the key exchange group (Handshake.group)
    #: The server's bytes as received, for a handshake below TLS 1.3 only (its first flight is
    #: in clear: the engine reads the signature scheme from it); ``b""`` otherwise.
    clear_flight: bytes = b""
    signature_scheme: str | None = (
        None  # the server's signature scheme (Handshake.signature_scheme)
    )
    key_proven: bool = True  # the server showed it holds the leaf's key (module docstring)


def _plausible_record_start(head: bytes) -> bool:
    """Whether ``head`` (1 to 5 bytes) can begin a TLS record a server sends first."""
    if head[0] not in (20, 21, 22, 23):  # change_cipher_spec, alert, handshake, application_data
        return False
    if len(head) >= 2 and head[1] != 3:  # major version 3 for SSLv3 and every TLS
        return False
    return len(head) < 3 or head[2] <= 4


def _outgoing(conn: SSL.Connection) -> bytes:
    try:
        data = conn.bio_read(_BIO_CHUNK)
    except SSL.WantReadError:
        return b""
    while len(data) % _BIO_CHUNK == 0:  # a flight bigger than one chunk: keep draining
        try:
            data += conn.bio_read(_BIO_CHUNK)
        except SSL.WantReadError:
            break
    return data


def _negotiated(
    conn: SSL.Connection, seen: _Seen, received: list[bytes], *, complete: bool = True
) -> Negotiated:
    chain = conn.get_peer_cert_chain() or []
    alpn = conn.get_alpn_proto_negotiated()
    version = conn.get_protocol_version_name()
    return Negotiated(
        chain=tuple(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in chain),
        tls_version=version,
        clear_flight=b"" if version == "TLSv1.3" else b"".join(received),
        cipher=conn.get_cipher_name() or "",
        alpn=alpn.decode("ascii", "replace") if alpn else None,
        ocsp_staple=seen.ocsp or None,
        client_cert_requested=seen.cert_requested,
        group=_group_name(conn),
        key_proven=complete or seen.key_signed,
    )


def _group_name(conn: SSL.Connection) -> str | None:
    """The negotiated key exchange group ("X25519MLKEM768", "x25519", "secp256r1"...), bounded
    in length; ``None`` for a key exchange without one (static RSA)."""
    try:
        name = conn.get_group_name()
    except (SSL.Error, ValueError, NotImplementedError):  # no state to ask, or an old OpenSSL
        return None
    return name[:64] if name else None


def _failed(
    conn: SSL.Connection, seen: _Seen, found: Fault, received: list[bytes]
) -> Negotiated | Fault:
    """A failure, unless the server asked for a client certificate and had sent its chain:
    then the server refusing us (an alert, a hang-up or a reset; not an error OpenSSL found in
    its bytes) is the expected end and the chain is kept, marked unless its key was proven."""
    rejected = found.alert is not None or found.kind is FailureKind.RESET
    if seen.cert_requested and rejected and conn.get_peer_cert_chain():
        return _negotiated(conn, seen, received, complete=False)
    return found


async def handshake(
    sock: socket.socket,
    context: SSL.Context,
    sni: bytes | None,
    max_bytes: int,
    *,
    alpn: bool = True,
) -> Negotiated | Fault:
    """Run a client handshake over ``sock`` and report what the server presented.

    ``alpn`` offers ``h2`` and ``http/1.1`` (what a browser offers); STARTTLS and mail or
    directory ports go without, since some servers end a handshake whose ALPN offer they do not
    support.

    Network and TLS faults are returned as :class:`Fault`; an ``OSError`` whose errno is not
    a network outcome propagates. Cancellation (the caller's timeouts) propagates too.
    """
    conn = SSL.Connection(context, None)
    seen = _Seen()
    conn.set_app_data(seen)
    conn.set_connect_state()
    if sni:
        conn.set_tlsext_host_name(sni)
    if alpn:
        conn.set_alpn_protos(_ALPN)
    conn.request_ocsp()
    received = 0
    head = b""
    chunks: list[bytes] = []  # what the server sent (bounded by max_bytes), for clear_flight
    while True:
        waiting = False
        try:
            conn.do_handshake()
        except SSL.WantReadError:
            waiting = True
        except SSL.Error as exc:
            return _failed(conn, seen, _ssl_fault(exc, seen.alert), chunks)
        try:
            flight = _outgoing(conn)
            if flight:
                await net.send_all(sock, flight)
            if not waiting:
                return _negotiated(conn, seen, chunks)
            data = await net.receive(sock, min(_RECV_CHUNK, max_bytes - received + 1))
        except OSError as exc:
            classified = os_fault(exc)
            if classified is None:
                raise
            return _failed(conn, seen, classified, chunks)
        if not data:
            detail = f"connection closed by the peer after {received} bytes"
            return _failed(conn, seen, fault(PEER_EOF, detail), chunks)
        if len(head) < _OPENING:
            opening = head + data
            head = opening[:_OPENING]
            if not _plausible_record_start(head[:5]):
                detail = f"first bytes from the server: {head!r}"
                return fault(NOT_A_RECORD, detail, opening[:OPENING_BYTES])
        received += len(data)
        if received > max_bytes:
            return fault(READ_LIMIT, f"server sent more than {max_bytes} bytes in the handshake")
        chunks.append(data)
        conn.bio_write(data)
