"""Plain data that flows through a scan: targets, handshake outcomes and parsed certificates.

Everything here is a frozen dataclass with no behaviour beyond small derived properties, so the
pure modules (targets, parse, findings) and the I/O edges (engine, store, reports) share one
vocabulary: ``address``, ``port``, ``sni``, ``sha256``, ``not_after``, ``status``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Target:
    """One thing to connect to.

    ``address`` is a canonical IP literal (``ipaddress`` string form, no brackets).
    ``sni`` is the server name to send, or ``None`` to send none (bare IP targets).
    ``protocol`` is how TLS starts: ``"tls"`` for implicit TLS, a STARTTLS protocol name (one
    of :data:`PROTOCOLS`), or ``None`` to choose by port (``scanner.engine.starttls.session``).
    """

    address: str
    port: int
    sni: str | None = None
    protocol: str | None = None

    def label(self) -> str:
        """``address:port`` (``[v6]:port``), then ``/protocol`` when one was given and
        ``(sni)`` when one is sent: ``10.0.0.1:2525/smtp (mail.example)``."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        proto = f"/{self.protocol}" if self.protocol else ""
        return f"{host}:{self.port}{proto}" + (f" ({self.sni})" if self.sni else "")


#: How TLS may start on a port: implicit ``tls``, or the STARTTLS preamble of a protocol
#: (``scanner.engine.starttls.session`` speaks each). ``xmpp`` is client-to-server, ``xmpp-server``
# is
#: server-to-server.
PROTOCOLS: tuple[str, ...] = (
    "tls",
    "smtp",
    "imap",
    "pop3",
    "ftp",
    "ldap",
    "xmpp",
    "xmpp-server",
    "postgres",
    "mysql",
    "rdp",
)

#: The protocol spoken on each well-known STARTTLS port. Other ports are implicit TLS.
STARTTLS_PORTS: dict[int, str] = {
    21: "ftp",
    25: "smtp",
    110: "pop3",
    143: "imap",
    389: "ldap",
    587: "smtp",
    3306: "mysql",
    3389: "rdp",
    5222: "xmpp",
    5269: "xmpp-server",
    5432: "postgres",
}


class FailureKind(enum.StrEnum):
    """Why a target yielded no certificate chain. One classification point:
    ``scanner.engine.tls``."""

    REFUSED = "refused"  # RST in answer to SYN: nothing listens there
    UNREACHABLE = "unreachable"  # ICMP unreachable / no route
    TIMEOUT = "timeout"  # connect, handshake or the whole-target deadline ran out
    RESET = "reset"  # the peer reset or closed the connection during the handshake
    NOT_TLS = "not_tls"  # the peer answered with bytes that are not a TLS record
    TLS_ALERT = "tls_alert"  # the peer sent a TLS alert (detail names it)
    PROTOCOL_ERROR = "protocol_error"  # TLS records OpenSSL rejected; a STARTTLS preamble too long
    CHAIN_TOO_LARGE = "chain_too_large"  # the server sent more than the read bound allows
    STARTTLS_REFUSED = "starttls_refused"  # the plaintext preamble did not lead to TLS (detail)
    INTERNAL_ERROR = "internal_error"  # a bug in certscan, kept apart from server faults
    UNREADABLE = "unreadable"  # a certificate file that cannot be read or decrypted (detail)


#: Status strings as stored and printed; ``ok`` and ``client_cert_required`` carry a chain.
STATUS_OK = "ok"
STATUS_CLIENT_CERT_REQUIRED = "client_cert_required"


@dataclass(frozen=True, slots=True, kw_only=True)
class Handshake:
    """A completed (or certificate-yielding) TLS handshake.

    ``chain`` is every certificate the server presented, DER, in the order sent (leaf first
    for a well-behaved server). ``client_cert_requested`` is true when the server asked for a
    client certificate; the chain is still captured (TLS 1.2 and 1.3).
    """

    target: Target
    started_at: datetime  # UTC, when the TCP connect began
    chain: tuple[bytes, ...]
    tls_version: str  # as OpenSSL names it: "TLSv1.3", "TLSv1.2", "TLSv1", ...
    cipher: str  # OpenSSL cipher name
    alpn: str | None = None  # negotiated ALPN protocol, None when none was agreed
    ocsp_staple: bytes | None = None  # stapled OCSP response, None when none was stapled
    client_cert_requested: bool = False
    #: The server proved it holds the leaf's key (a signed key exchange, a CertificateVerify,
    #: a Finished); False for a chain presented before rejecting our empty client certificate
    #: without such proof (TLS 1.2 static RSA): a copy of someone else's certificate looks
    #: the same. Such chains drive no hook and count for no ``key_reuse``.
    key_proven: bool = True
    #: Legacy versions ("TLSv1", "TLSv1.1") the endpoint also accepted when probed with
    #: ``--probe-protocols``; ``None`` when not probed, ``()`` when probed and none was accepted.
    legacy_versions: tuple[str, ...] | None = None
    connect_seconds: float = 0.0
    handshake_seconds: float = 0.0
    #: How TLS started: ``"tls"`` (implicit) or the STARTTLS protocol actually spoken (after
    #: the ``--starttls auto`` fallback too); ``None`` when not known (built by hand).
    protocol: str | None = None
    #: With ``--all-certs``: the other chains the endpoint presented when offered only one
    #: key type (RSA, ECDSA), DER, leaf first; each differs from ``chain`` in its leaf.
    alt_chains: tuple[tuple[bytes, ...], ...] = ()
    #: The chain was read from the server's first flight after a hand-built legacy hello
    #: (``scanner.engine.legacy``), because the normal handshake failed: ``tls_version`` and
    #: ``cipher`` (its IANA name) are what the ServerHello chose, no handshake completed.
    legacy_capture: bool = False
    #: The key exchange group negotiated, as OpenSSL names it ("X25519MLKEM768", "x25519",
    #: "secp256r1", "ffdhe2048"); ``None`` when none was used (static RSA) or not known.
    group: str | None = None
    #: The signature scheme the server signed the handshake with ("ecdsa_secp256r1_sha256",
    #: "rsa_pss_rsae_sha256"); ``None`` when it signed nothing (static RSA) or not known.
    signature_scheme: str | None = None

    @property
    def status(self) -> str:
        return STATUS_CLIENT_CERT_REQUIRED if self.client_cert_requested else STATUS_OK


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanFailure:
    """A target that yielded no chain, with the classified reason and the original detail."""

    target: Target
    started_at: datetime  # UTC
    kind: FailureKind
    detail: str  # the original reason (OpenSSL error string, errno text, alert name)
    elapsed_seconds: float = 0.0
    connected: bool = False  # the TCP connection was accepted (the failure came later)

    @property
    def status(self) -> str:
        return self.kind.value


Outcome = Handshake | ScanFailure


@dataclass(frozen=True, slots=True, kw_only=True)
class CertInfo:
    """What certscan knows about one certificate, parsed once per SHA-256 fingerprint.

    Every field derived from the certificate may be ``None`` (or empty) when the certificate
    lacks it or when it could not be read; ``field_errors`` then names the field and the reason.
    When the certificate could not be loaded at all, ``error`` is set and only ``der`` and
    ``sha256`` are meaningful. Text fields are exactly what the certificate says: they are
    attacker-controlled and must be escaped by every renderer.
    """

    der: bytes
    sha256: str  # lowercase hex of SHA-256(DER): the certificate's identity everywhere
    error: str | None = None  # set when the DER could not be loaded as a certificate
    field_errors: tuple[str, ...] = ()  # "extensions: duplicate extension ...", one per failure
    subject: str | None = None  # RFC 4514
    subject_cn: str | None = None
    subject_o: str | None = None
    issuer: str | None = None  # RFC 4514
    issuer_cn: str | None = None
    issuer_o: str | None = None
    serial: str | None = None  # lowercase hex, no separators
    version: int | None = None  # 1 or 3
    not_before: datetime | None = None  # UTC
    not_after: datetime | None = None  # UTC
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    san_email: tuple[str, ...] = ()
    san_uri: tuple[str, ...] = ()
    key_type: str | None = None  # "RSA", "EC", "Ed25519", "Ed448", "DSA", "X25519"... or None
    key_bits: int | None = None
    key_curve: str | None = None  # EC curve name, e.g. "secp256r1"
    signature_algorithm: str | None = None  # e.g. "sha256WithRSAEncryption" or a dotted OID
    signature_hash: str | None = None  # "sha256", "sha1", "md5"...; None for Ed25519/unknown
    is_ca: bool | None = None  # basicConstraints cA; None when the extension is absent
    path_length: int | None = None
    key_usage: tuple[str, ...] = ()  # "digital_signature", "key_cert_sign", ...
    extended_key_usage: tuple[str, ...] = ()  # "serverAuth", "clientAuth" or a dotted OID
    subject_key_id: str | None = None  # lowercase hex
    authority_key_id: str | None = None  # lowercase hex
    ocsp_urls: tuple[str, ...] = ()
    ca_issuer_urls: tuple[str, ...] = ()
    crl_urls: tuple[str, ...] = ()
    sct_count: int = 0
    spki_sha256: str | None = None  # lowercase hex of SHA-256(SubjectPublicKeyInfo DER)
    self_issued: bool = False  # subject == issuer (raw name comparison)

    @property
    def sans(self) -> tuple[str, ...]:
        """Every subject alternative name with its type prefix: DNS:, IP:, email:, URI:."""
        return (
            tuple(f"DNS:{n}" for n in self.san_dns)
            + tuple(f"IP:{n}" for n in self.san_ip)
            + tuple(f"email:{n}" for n in self.san_email)
            + tuple(f"URI:{n}" for n in self.san_uri)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineLimits:
    """The bounds one sweep runs under. Times are seconds."""

    concurrency: int = 4096  # connections in flight at once (clamped to the open-files limit)
    handshakes: int = 256  # TLS handshakes in flight at once (bounds memory: ~80 KB each)
    rate: float | None = None  # new connections per second; None = as fast as concurrency allows
    per_address: int = 2  # connections to one address at once
    connect_timeout: float = 3.0
    handshake_timeout: float = 5.0
    target_deadline: float = 10.0  # whole target: connect + handshake, however the peer drips
    max_chain_bytes: int = 256 * 1024  # bytes read from one server before chain_too_large
    tls_min_version: str = "TLSv1"  # lowest version offered; "SSLv3" is not supported
    probe_protocols: bool = False  # after a handshake, also try TLS 1.1 and 1.0 (legacy_versions)
    all_certs: bool = False  # after a handshake, also offer only RSA, then only ECDSA (alt_chains)
    #: after a handshake failure, hang-up or version refusal, read the chain once from the
    #: records of a hand-built hello offering every suite and group (Handshake.legacy_capture);
    #: only while tls_min_version is the lowest, "TLSv1"
    legacy_capture: bool = True


class Severity(enum.IntEnum):
    """Ordered severities; compare with ``>=`` for ``--fail-on``. Names are the public strings."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r} (expected one of {names})") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One thing wrong (or worth knowing) about an endpoint or one of its certificates.

    ``kind`` is stable and machine-readable (``expired``, ``weak_key``...); ``message`` is one line
    for a person, with the evidence. ``sha256`` names the certificate concerned, ``None`` when the
    finding is about the endpoint as a whole (``legacy_protocol``, ``weak_cipher``).
    """

    kind: str
    severity: Severity
    message: str
    address: str
    port: int
    sni: str | None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a sweep had got when a batch was cut: positions below ``watermark`` are complete;
    ``done`` planned targets, ``ok`` of them handshook, ``failed`` did not (discovered endpoints
    are not counted)."""

    watermark: int
    done: int
    ok: int
    failed: int
