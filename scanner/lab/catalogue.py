"""The built-in lab's catalogue: which endpoint serves what, and what a scanner should find.

The catalogue is deterministic in everything but key material: the same endpoints, in the same
order, on consecutive loopback addresses from a base (``127.77.0.1``, ``.2``, ...). Each run makes
one throwaway root (EC P-256), an ECDSA and an RSA intermediate under it, and a leaf per TLS
endpoint. Leaves name their lab address as an IP SAN and ``<name>.lab.certscan.test`` as a DNS
SAN, except the hostname-mismatch leaf, which names another endpoint's address.

No I/O here: :mod:`scanner.lab.servers` binds and serves what this module describes.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from scanner.lab import certgen
from scanner.models import STATUS_CLIENT_CERT_REQUIRED, STATUS_OK, FailureKind, Target

DEFAULT_BASE_ADDRESS = "127.77.0.1"
DEFAULT_PORT = 8443
DNS_SUFFIX = "lab.certscan.test"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

EXPIRING_IN_DAYS = 5
EXPIRED_DAYS_AGO = 10
NOT_YET_VALID_IN_DAYS = 30
WEAK_KEY_BITS = 1024
BANNER = b"SSH-2.0-certscan-lab\r\n"


class Service(enum.StrEnum):
    """How an endpoint answers a connection."""

    TLS = "tls"  # any TLS version the server's OpenSSL allows
    TLS10_ONLY = "tls10_only"  # TLS 1.0 and nothing else
    CLIENT_CERT = "client_cert"  # TLS that demands a client certificate from the lab CA
    BANNER = "banner"  # a plaintext SSH banner, no TLS
    HANG = "hang"  # accepts and never sends a byte


@dataclass(frozen=True, slots=True, kw_only=True)
class LabEndpoint:
    """One lab server.

    ``expect`` is the status a scanner should record: ``ok``, ``client_cert_required`` or a
    :class:`~scanner.models.FailureKind` value. ``chain`` is what the server presents, leaf
    first, then intermediates; empty for the non-TLS endpoints. ``dns_name`` is the DNS SAN the
    leaf carries, ``None`` when there is no leaf. ``port`` is 0 in a catalogue built for
    port 0 until the lab has bound its listeners. ``alt_chain`` is a second chain (another key
    type) the server also holds and presents to a client that offers only that key type
    (``--all-certs``); empty for most endpoints.
    """

    name: str
    address: str
    port: int
    description: str
    expect: str
    service: Service
    chain: tuple[certgen.Issued, ...] = ()
    dns_name: str | None = None
    alt_chain: tuple[certgen.Issued, ...] = ()

    def __post_init__(self) -> None:
        if ipaddress.IPv4Address(self.address) not in LOOPBACK:
            raise ValueError(f"lab address {self.address} is outside 127.0.0.0/8")

    @property
    def leaf(self) -> certgen.Issued | None:
        return self.chain[0] if self.chain else None

    @property
    def chain_der(self) -> tuple[bytes, ...]:
        return tuple(c.der for c in self.chain)

    @property
    def target(self) -> Target:
        return Target(address=self.address, port=self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class Lab:
    """The lab's endpoints (with their real bound ports once running) and its root CA."""

    endpoints: tuple[LabEndpoint, ...]
    ca: certgen.Issued

    @property
    def ports(self) -> tuple[int, ...]:
        """Every distinct port the lab listens on, ascending (one unless started on port 0)."""
        return tuple(sorted({e.port for e in self.endpoints}))

    def targets_spec(self) -> list[str]:
        """The lab's addresses as target syntax: one ``first-last`` range (sweep with ``ports``)."""
        first, last = self.endpoints[0].address, self.endpoints[-1].address
        return [first if first == last else f"{first}-{last}"]

    def targets(self) -> list[Target]:
        """Exactly one target per endpoint, at its bound port."""
        return [e.target for e in self.endpoints]

    def by_name(self, name: str) -> LabEndpoint:
        for endpoint in self.endpoints:
            if endpoint.name == name:
                return endpoint
        raise KeyError(name)


#: (name, service, expect, description), in address order. The certificates are made below.
CATALOGUE: tuple[tuple[str, Service, str, str], ...] = (
    ("healthy-rsa", Service.TLS, STATUS_OK, "valid RSA 2048 leaf with RSA intermediate"),
    ("healthy-ecdsa", Service.TLS, STATUS_OK, "valid ECDSA P-256 leaf with ECDSA intermediate"),
    ("expiring", Service.TLS, STATUS_OK, f"leaf expires in {EXPIRING_IN_DAYS} days"),
    ("expired", Service.TLS, STATUS_OK, f"leaf expired {EXPIRED_DAYS_AGO} days ago"),
    (
        "not-yet-valid",
        Service.TLS,
        STATUS_OK,
        f"leaf becomes valid in {NOT_YET_VALID_IN_DAYS} days",
    ),
    ("self-signed", Service.TLS, STATUS_OK, "self-signed leaf, no chain"),
    ("weak-key", Service.TLS, STATUS_OK, f"RSA {WEAK_KEY_BITS}-bit leaf"),
    ("hostname-mismatch", Service.TLS, STATUS_OK, "leaf names another host and address"),
    ("sha1-signature", Service.TLS, STATUS_OK, "leaf signed with SHA-1 (sha1WithRSAEncryption)"),
    ("legacy-tls10", Service.TLS10_ONLY, STATUS_OK, "speaks TLS 1.0 only"),
    (
        "client-cert",
        Service.CLIENT_CERT,
        STATUS_CLIENT_CERT_REQUIRED,
        "requires a client certificate (still presents its chain)",
    ),
    ("not-tls", Service.BANNER, FailureKind.NOT_TLS.value, "plaintext SSH banner, no TLS"),
    ("hang", Service.HANG, FailureKind.TIMEOUT.value, "accepts and never sends a byte"),
    (
        "dual-cert",
        Service.TLS,
        STATUS_OK,
        "ECDSA and RSA leaves, chosen by the client's offer (--all-certs finds both)",
    ),
)


_TLS_SERVICES = frozenset({Service.TLS, Service.TLS10_ONLY, Service.CLIENT_CERT})


def lab_addresses(base_address: str, count: int) -> list[str]:
    """``count`` consecutive IPv4 addresses from ``base_address``, all inside 127.0.0.0/8."""
    try:
        base = ipaddress.IPv4Address(base_address)
    except ValueError:
        raise ValueError(f"lab base address {base_address!r} is not an IPv4 address") from None
    last = int(base) + count - 1
    if base not in LOOPBACK or last > int(LOOPBACK.broadcast_address) - 1:
        raise ValueError(
            f"lab base address {base_address} leaves no room for {count} addresses "
            "inside 127.0.0.0/8"
        )
    return [str(ipaddress.IPv4Address(int(base) + i)) for i in range(count)]


class _Maker:
    """Makes each endpoint's chain under one root and its two intermediates."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.root = certgen.make_ca("certscan lab root", org="certscan lab")
        self.ec_ca = certgen.make_ca(
            "certscan lab ECDSA intermediate", issuer=self.root, path_length=0
        )
        self.rsa_ca = certgen.make_ca(
            "certscan lab RSA intermediate",
            issuer=self.root,
            key=certgen.make_key("rsa", 2048),
            path_length=0,
        )

    def chain(
        self, name: str, address: str, first_address: str
    ) -> tuple[str | None, tuple[certgen.Issued, ...]]:
        dns = f"{name}.{DNS_SUFFIX}"
        day = timedelta(days=1)
        ec, rsa_ca = self.ec_ca, self.rsa_ca

        def leaf(
            issuer: certgen.Issued | None,
            *,
            key: certgen.PrivateKey | None = None,
            host: str = dns,
            ip: str = address,
            not_before: datetime = self.now - day,
            not_after: datetime = self.now + 90 * day,
        ) -> certgen.Issued:
            return certgen.make_leaf(
                issuer,
                cn=host,
                org="certscan lab",
                dns_names=(host,),
                ip_addresses=(ip,),
                key=key,
                not_before=not_before,
                not_after=not_after,
            )

        match name:
            case "healthy-rsa" | "legacy-tls10":
                return dns, (leaf(rsa_ca, key=certgen.make_key("rsa", 2048)), rsa_ca)
            case "healthy-ecdsa" | "client-cert" | "dual-cert":
                return dns, (leaf(ec), ec)
            case "expiring":
                end = self.now + EXPIRING_IN_DAYS * day
                return dns, (leaf(ec, not_before=end - 90 * day, not_after=end), ec)
            case "expired":
                end = self.now - EXPIRED_DAYS_AGO * day
                return dns, (leaf(ec, not_before=end - 90 * day, not_after=end), ec)
            case "not-yet-valid":
                start = self.now + NOT_YET_VALID_IN_DAYS * day
                return dns, (leaf(ec, not_before=start, not_after=start + 90 * day), ec)
            case "self-signed":
                return dns, (leaf(None),)
            case "weak-key":
                weak = certgen.make_key("rsa", WEAK_KEY_BITS)
                return dns, (leaf(rsa_ca, key=weak), rsa_ca)
            case "hostname-mismatch":
                other = f"elsewhere.{DNS_SUFFIX}"
                wrong = leaf(ec, host=other, ip=first_address)
                return other, (wrong, ec)
            case "sha1-signature":
                sha1 = certgen.make_sha1_leaf(
                    rsa_ca,
                    cn=dns,
                    org="certscan lab",
                    dns_names=(dns,),
                    ip_addresses=(address,),
                    key=certgen.make_key("rsa", 2048),
                    not_before=self.now - day,
                    not_after=self.now + 90 * day,
                )
                return dns, (sha1, rsa_ca)
            case _:
                return None, ()

    def alt_chain(self, name: str, address: str) -> tuple[certgen.Issued, ...]:
        """The second chain of an endpoint holding two certificates, else ``()``."""
        if name != "dual-cert":
            return ()
        dns = f"{name}.{DNS_SUFFIX}"
        rsa_leaf = certgen.make_leaf(
            self.rsa_ca,
            cn=dns,
            org="certscan lab",
            dns_names=(dns,),
            ip_addresses=(address,),
            key=certgen.make_key("rsa", 2048),
            not_before=self.now - timedelta(days=1),
            not_after=self.now + timedelta(days=90),
        )
        return (rsa_leaf, self.rsa_ca)


def build_lab(
    *, base_address: str = DEFAULT_BASE_ADDRESS, port: int = DEFAULT_PORT, now: datetime
) -> Lab:
    """The full catalogue with fresh keys; every endpoint on ``port`` (0: chosen at bind time).

    Raises ``ValueError`` when the addresses would leave 127.0.0.0/8 or ``port`` is out of range.
    """
    if not 0 <= port <= 65535:
        raise ValueError(f"lab port {port} is out of range")
    addresses = lab_addresses(base_address, len(CATALOGUE))
    maker = _Maker(now)
    endpoints = []
    for (name, service, expect, description), address in zip(CATALOGUE, addresses, strict=True):
        dns_name, chain = maker.chain(name, address, addresses[0])
        if bool(chain) != (service in _TLS_SERVICES):
            raise AssertionError(f"lab endpoint {name} has no certificate recipe")
        if name == "hostname-mismatch":
            description = f"leaf names {dns_name} and {addresses[0]}, not this address"
        endpoints.append(
            LabEndpoint(
                name=name,
                address=address,
                port=port,
                description=description,
                expect=expect,
                service=service,
                chain=chain,
                dns_name=dns_name,
                alt_chain=maker.alt_chain(name, address),
            )
        )
    return Lab(endpoints=tuple(endpoints), ca=maker.root)
