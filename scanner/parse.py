"""DER certificate -> :class:`scanner.models.CertInfo`, one field at a time.

Theory of operation
-------------------
Every certificate a server sends is attacker-controlled, and ``cryptography`` parses lazily:
``load_der_x509_certificate`` checks the outer structure, but ``.subject``, ``.extensions``,
``.public_key()`` and friends decode their part only when asked and may raise then. So
:func:`parse_certificate` loads once (a failure there sets ``CertInfo.error`` and nothing else) and
then reads each field through :func:`_read`, which turns any exception into a
``"field: reason"`` line in ``field_errors`` and carries on. The net is deliberately wide: on
crafted input ``cryptography`` raises ``ValueError``, ``TypeError``, ``KeyError``,
``UnsupportedAlgorithm``, ``DuplicateExtension``... (the test vectors and fuzzing show each),
and one odd field must not cost the rest of the certificate. Bugs in the readers themselves
still surface: the tests assert that well-formed certificates yield no ``field_errors``.

``cert.extensions`` is all or nothing: one bad extension hides the good ones. When it fails,
:func:`_salvage_extensions` splits the raw extension list out of the TBS bytes with a small DER
walker and parses each extension alone, grafted into a fixed minimal certificate, so a broken SCT
list or certificate policy does not cost the SANs, AIA or key usage. The graft is built around a
tiny template rather than the original TBS, so the work stays linear in the certificate's size,
and at most ``_MAX_SALVAGED`` extensions are tried.

The same walker yields the raw issuer, subject and SubjectPublicKeyInfo bytes: ``self_issued``
compares raw names (as RFC 5280 path building does) and ``spki_sha256`` hashes the SPKI exactly as
sent, also for key types ``cryptography`` cannot load.

``cryptography`` also *warns* about some non-conforming input (a non-positive serial, a country
name that is not two letters, UTF-8 in a VisibleString). Warnings are captured for the duration
of a parse and recorded as ``"field: warning: ..."`` so they neither reach the terminal nor turn
into exceptions under ``-W error``. ``warnings.catch_warnings`` mutates process-wide state, so
parses are serialised by a lock; they hold the GIL throughout anyway.

Values are kept exactly as the certificate states them; renderers escape. No step is worse than
linear in the input, so a crafted certificate costs time proportional to its size.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from scanner.models import CertInfo

__all__ = ["CertCache", "parse_certificate", "sha256_hex"]

_MAX_REASON = 300  # characters of an exception message kept in field_errors
_MAX_SALVAGED = 256  # extensions tried one by one when the extension list does not parse
_MAX_OID_BYTES = 63  # longer encodings are not rendered as dotted OIDs (cryptography's bound)
WARNINGS_LOCK = threading.Lock()

T = TypeVar("T")


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data``: a certificate's identity throughout certscan."""
    return hashlib.sha256(data).hexdigest()


def parse_certificate(der: bytes) -> CertInfo:
    """Every field certscan knows of the certificate ``der``; never raises for bad input.

    If ``der`` is not a certificate at all, only ``der``, ``sha256`` and ``error`` are set.
    """
    return _parse(der, sha256_hex(der))


class CertCache:
    """Parse once per SHA-256 fingerprint; keep the most recently used results within a budget
    of bytes (and of entries).

    A certificate's cost (:func:`entry_cost`) is its DER plus an estimate of its parsed text: a
    hostile host serving 5,000-SAN certificates on many ports fills the budget, not the
    machine. A certificate costing more than ``max_entry_bytes`` is parsed every time and never
    kept. Safe to share between threads; ``hits`` and ``misses`` count lookups and ``size`` is
    the cost held now.
    """

    def __init__(
        self,
        max_entries: int = 100_000,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_entry_bytes: int = 1024 * 1024,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or max_entry_bytes < 1:
            raise ValueError("max_entries, max_bytes and max_entry_bytes must be at least 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.hits = 0
        self.misses = 0
        self.size = 0
        self._entries: OrderedDict[str, tuple[CertInfo, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, der: bytes) -> CertInfo:
        """The parsed certificate for ``der``, parsing it only if its fingerprint is new."""
        digest = sha256_hex(der)
        with self._lock:
            cached = self._entries.get(digest)
            if cached is not None:
                self._entries.move_to_end(digest)
                self.hits += 1
                return cached[0]
        info = _parse(der, digest)  # outside the lock: a rare double parse is harmless
        cost = entry_cost(info)
        with self._lock:
            self.misses += 1
            if cost > self.max_entry_bytes or digest in self._entries:
                return info
            self._entries[digest] = (info, cost)
            self.size += cost
            while len(self._entries) > self.max_entries or self.size > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.size -= dropped
        return info


#: Bytes a parsed certificate holds beyond its DER and names (object headers, fields).
_ENTRY_OVERHEAD = 2048
#: Bytes one name of a tuple field costs beyond its characters (str object, tuple slot).
_PER_NAME = 64


def entry_cost(info: CertInfo) -> int:
    """An estimate of the memory ``info`` holds: DER, every name and URL, fixed overhead."""
    names = (
        info.san_dns,
        info.san_ip,
        info.san_email,
        info.san_uri,
        info.ocsp_urls,
        info.ca_issuer_urls,
        info.crl_urls,
        info.field_errors,
    )
    text = sum(len(n) + _PER_NAME for group in names for n in group)
    return _ENTRY_OVERHEAD + len(info.der) + text


# --- field reading -------------------------------------------------------------------------


class _Notes:
    """The ``field_errors`` of one parse, with captured warnings attributed to a field."""

    def __init__(self, caught: list[warnings.WarningMessage]) -> None:
        self.lines: list[str] = []
        self._caught = caught
        self._seen = 0
        self._warned: set[str] = set()  # cryptography may repeat a warning on each access

    def add(self, where: str, problem: BaseException | str) -> None:
        self.lines.append(f"{where}: {_reason(problem)}")

    def flush_warnings(self, where: str) -> None:
        for caught in self._caught[self._seen :]:
            message = str(caught.message)
            if message not in self._warned:
                self._warned.add(message)
                self.add(where, f"warning: {message}")
        self._seen = len(self._caught)


def _reason(problem: BaseException | str) -> str:
    if isinstance(problem, str):
        text = problem
    elif isinstance(problem, ValueError):  # cryptography's usual "bad input": message says all
        text = str(problem) or type(problem).__name__
    else:  # KeyError: 1 or DuplicateExtension: ... need the class name to make sense
        text = f"{type(problem).__name__}: {problem}"
    return text if len(text) <= _MAX_REASON else text[:_MAX_REASON] + "…"


def _read(notes: _Notes, where: str, read: Callable[[], T], default: T) -> T:
    try:
        return read()
    except Exception as exc:
        notes.add(where, exc)
        return default
    finally:
        notes.flush_warnings(where)


def _parse(der: bytes, digest: str) -> CertInfo:
    with WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cert = x509.load_der_x509_certificate(der)
        except Exception as exc:  # any failure to load means "not a certificate"
            return CertInfo(der=der, sha256=digest, error=_reason(exc))
        notes = _Notes(caught)
        notes.flush_warnings("certificate")
        return _fields(cert, der, digest, notes)


def _fields(cert: x509.Certificate, der: bytes, digest: str, notes: _Notes) -> CertInfo:
    subject = _read(notes, "subject", lambda: cert.subject, None)
    issuer = _read(notes, "issuer", lambda: cert.issuer, None)
    s_text, s_cn, s_o = _name_fields(notes, "subject", subject)
    i_text, i_cn, i_o = _name_fields(notes, "issuer", issuer)
    serial = _read(notes, "serial", lambda: format(cert.serial_number, "x"), None)
    version = _read(notes, "version", lambda: cert.version.value + 1, None)
    not_before = _read(notes, "not_before", lambda: cert.not_valid_before_utc, None)
    not_after = _read(notes, "not_after", lambda: cert.not_valid_after_utc, None)
    key_type, key_bits, key_curve = _read(notes, "public_key", lambda: _key(cert), _NO_KEY)
    algorithm = _read(
        notes, "signature_algorithm", lambda: _oid_name(cert.signature_algorithm_oid), None
    )
    hash_name = _read(notes, "signature_hash", lambda: _hash_name(cert), None)
    raw = _read(notes, "spki", lambda: _tbs_parts(cert.tbs_certificate_bytes), None)
    ext = _read_extensions(cert, notes)
    return CertInfo(
        der=der,
        sha256=digest,
        field_errors=tuple(notes.lines),
        subject=s_text,
        subject_cn=s_cn,
        subject_o=s_o,
        issuer=i_text,
        issuer_cn=i_cn,
        issuer_o=i_o,
        serial=serial,
        version=version,
        not_before=not_before,
        not_after=not_after,
        san_dns=tuple(ext.san_dns),
        san_ip=tuple(ext.san_ip),
        san_email=tuple(ext.san_email),
        san_uri=tuple(ext.san_uri),
        key_type=key_type,
        key_bits=key_bits,
        key_curve=key_curve,
        signature_algorithm=algorithm,
        signature_hash=hash_name,
        is_ca=ext.is_ca,
        path_length=ext.path_length,
        key_usage=ext.key_usage,
        extended_key_usage=ext.extended_key_usage,
        subject_key_id=ext.subject_key_id,
        authority_key_id=ext.authority_key_id,
        ocsp_urls=tuple(ext.ocsp_urls),
        ca_issuer_urls=tuple(ext.ca_issuer_urls),
        crl_urls=tuple(ext.crl_urls),
        sct_count=ext.sct_count,
        spki_sha256=None if raw is None else sha256_hex(raw[2]),
        self_issued=raw is not None and raw[0] == raw[1],
    )


def _name_fields(
    notes: _Notes, where: str, name: x509.Name | None
) -> tuple[str | None, str | None, str | None]:
    if name is None:
        return None, None, None
    return (
        _read(notes, where, name.rfc4514_string, None),
        _read(notes, f"{where}_cn", lambda: _first(name, NameOID.COMMON_NAME), None),
        _read(notes, f"{where}_o", lambda: _first(name, NameOID.ORGANIZATION_NAME), None),
    )


def _first(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    for attribute in name.get_attributes_for_oid(oid):
        value = attribute.value
        # BIT STRING-typed values come back as bytes: RFC 4514's "#hex" form, like rfc4514_string.
        return value if isinstance(value, str) else "#" + bytes(value).hex()
    return None


def _oid_name(oid: x509.ObjectIdentifier) -> str:
    name = oid._name
    return oid.dotted_string if name == "Unknown OID" else name


def _hash_name(cert: x509.Certificate) -> str | None:
    algorithm = cert.signature_hash_algorithm
    return None if algorithm is None else algorithm.name


_NO_KEY: tuple[str | None, int | None, str | None] = (None, None, None)


def _key(cert: x509.Certificate) -> tuple[str | None, int | None, str | None]:
    """(key_type, key_bits, key_curve). EdDSA/XDH bits are the public key's length."""
    match cert.public_key():
        case rsa.RSAPublicKey() as key:
            return "RSA", key.key_size, None
        case ec.EllipticCurvePublicKey() as key:
            return "EC", key.key_size, key.curve.name
        case dsa.DSAPublicKey() as key:
            return "DSA", key.key_size, None
        case ed25519.Ed25519PublicKey():
            return "Ed25519", 256, None
        case ed448.Ed448PublicKey():
            return "Ed448", 456, None
        case x25519.X25519PublicKey():
            return "X25519", 256, None
        case x448.X448PublicKey():
            return "X448", 448, None
        case other:  # ML-DSA, ML-KEM and whatever cryptography learns next
            return type(other).__name__.removesuffix("PublicKey"), None, None


# --- extensions ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Extensions:
    san_dns: list[str] = field(default_factory=list)
    san_ip: list[str] = field(default_factory=list)
    san_email: list[str] = field(default_factory=list)
    san_uri: list[str] = field(default_factory=list)
    is_ca: bool | None = None
    path_length: int | None = None
    key_usage: tuple[str, ...] = ()
    extended_key_usage: tuple[str, ...] = ()
    subject_key_id: str | None = None
    authority_key_id: str | None = None
    ocsp_urls: list[str] = field(default_factory=list)
    ca_issuer_urls: list[str] = field(default_factory=list)
    crl_urls: list[str] = field(default_factory=list)
    sct_count: int = 0


_KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


def _read_extensions(cert: x509.Certificate, notes: _Notes) -> _Extensions:
    out = _Extensions()
    try:
        extensions: list[x509.Extension[x509.ExtensionType]] = list(cert.extensions)
    except Exception as exc:
        extensions, pinpointed = _salvage_extensions(cert, notes)
        if not pinpointed:  # no single extension failed (duplicates, or beyond the cap)
            notes.add("extensions", exc)
    finally:
        notes.flush_warnings("extensions")
    seen: set[x509.ObjectIdentifier] = set()
    for extension in extensions:
        if extension.oid in seen:  # duplicates were reported above; the first one counts
            continue
        seen.add(extension.oid)
        where = f"extension {_oid_name(extension.oid)}"
        _read(notes, where, partial(_apply, extension.value, out), None)
    return out


def _apply(value: x509.ExtensionType, out: _Extensions) -> None:
    match value:
        case x509.SubjectAlternativeName():
            for name in value:
                match name:
                    case x509.DNSName():
                        out.san_dns.append(name.value)
                    case x509.IPAddress():
                        out.san_ip.append(str(name.value))
                    case x509.RFC822Name():
                        out.san_email.append(name.value)
                    case x509.UniformResourceIdentifier():
                        out.san_uri.append(name.value)
                    # otherName, directoryName and registeredID have no CertInfo field
        case x509.BasicConstraints():
            out.is_ca, out.path_length = value.ca, value.path_length
        case x509.KeyUsage():
            names = [n for n in _KEY_USAGES if getattr(value, n)]
            if value.key_agreement:  # the other two are only defined with key agreement
                names += [n for n in ("encipher_only", "decipher_only") if getattr(value, n)]
            out.key_usage = tuple(names)
        case x509.ExtendedKeyUsage():
            out.extended_key_usage = tuple(_oid_name(oid) for oid in value)
        case x509.SubjectKeyIdentifier():
            out.subject_key_id = value.digest.hex()
        case x509.AuthorityKeyIdentifier():
            key_id = value.key_identifier
            out.authority_key_id = None if key_id is None else key_id.hex()
        case x509.AuthorityInformationAccess():
            for description in value:
                location = description.access_location
                if not isinstance(location, x509.UniformResourceIdentifier):
                    continue
                if description.access_method == AuthorityInformationAccessOID.OCSP:
                    out.ocsp_urls.append(location.value)
                elif description.access_method == AuthorityInformationAccessOID.CA_ISSUERS:
                    out.ca_issuer_urls.append(location.value)
        case x509.CRLDistributionPoints():
            for point in value:
                for name in point.full_name or ():
                    if isinstance(name, x509.UniformResourceIdentifier):
                        out.crl_urls.append(name.value)
        case x509.PrecertificateSignedCertificateTimestamps():
            out.sct_count = len(value)
        case _:
            pass


def _salvage_extensions(
    cert: x509.Certificate, notes: _Notes
) -> tuple[list[x509.Extension[x509.ExtensionType]], bool]:
    """The extensions that parse on their own, and whether one that does not was noted."""
    try:
        raws = _tbs_extensions(cert.tbs_certificate_bytes)
    except ValueError as exc:
        notes.add("extensions", f"cannot split the extension list: {exc}")
        return [], True
    if len(raws) > _MAX_SALVAGED:
        notes.add("extensions", f"{len(raws)} extensions, only the first {_MAX_SALVAGED} read")
        raws = raws[:_MAX_SALVAGED]
    salvaged: list[x509.Extension[x509.ExtensionType]] = []
    pinpointed = False
    for raw in raws:
        try:
            salvaged.extend(x509.load_der_x509_certificate(_graft(raw)).extensions)
        except Exception as exc:
            notes.add(f"extension {_raw_extension_oid(raw)}", exc)
            pinpointed = True
    return salvaged, pinpointed


# --- a minimal DER walker for the TBSCertificate (RFC 5280 4.1) -------------------------------


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """(tag, start, content_start, content_end) of the element at ``pos``; ValueError if bad."""
    if pos + 2 > end:
        raise ValueError("truncated element")
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    if first < 0x80:
        length, head = first, 2
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or pos + 2 + count > end:
            raise ValueError("bad length")
        length, head = int.from_bytes(buf[pos + 2 : pos + 2 + count], "big"), 2 + count
    if pos + head + length > end:
        raise ValueError("element overruns its container")
    return tag, pos, pos + head, pos + head + length


def _tbs_fields(tbs: bytes) -> list[tuple[int, int, int, int]]:
    """The top-level elements inside the TBSCertificate SEQUENCE."""
    tag, _, pos, end = _tlv(tbs, 0, len(tbs))
    if tag != 0x30:
        raise ValueError("TBSCertificate is not a SEQUENCE")
    elements = []
    while pos < end:
        element = _tlv(tbs, pos, end)
        elements.append(element)
        pos = element[3]
    return elements


def _tbs_parts(tbs: bytes) -> tuple[bytes, bytes, bytes]:
    """Raw (issuer, subject, subjectPublicKeyInfo) elements, tag and length included."""
    elements = _tbs_fields(tbs)
    if elements and elements[0][0] == 0xA0:  # explicit version
        elements = elements[1:]
    if len(elements) < 6:  # serial, signature, issuer, validity, subject, spki
        raise ValueError("TBSCertificate too short")
    issuer, subject, spki = (tbs[e[1] : e[3]] for e in (elements[2], elements[4], elements[5]))
    return issuer, subject, spki


def _tbs_extensions(tbs: bytes) -> list[bytes]:
    """Each raw Extension SEQUENCE of the [3] extensions field, in order."""
    wrapper = [e for e in _tbs_fields(tbs) if e[0] == 0xA3]
    if not wrapper:
        return []
    tag, _, pos, end = _tlv(tbs, wrapper[0][2], wrapper[0][3])
    if tag != 0x30:
        raise ValueError("extensions are not a SEQUENCE")
    raws = []
    while pos < end:
        _, start, _, pos = _tlv(tbs, pos, end)
        raws.append(tbs[start:pos])
    return raws


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


_ED25519 = _der(0x30, _der(0x06, bytes.fromhex("2b6570")))  # AlgorithmIdentifier 1.3.101.112
_GRAFT_HEAD = (  # version v3, serial 1, empty names, a fixed validity and an all-zero key
    _der(0xA0, _der(0x02, b"\x02"))
    + _der(0x02, b"\x01")
    + _ED25519
    + _der(0x30, b"")
    + _der(0x30, _der(0x17, b"000101000000Z") * 2)
    + _der(0x30, b"")
    + _der(0x30, _ED25519 + _der(0x03, bytes(33)))
)
_GRAFT_TAIL = _ED25519 + _der(0x03, bytes(65))


def _graft(raw_extension: bytes) -> bytes:
    """A throwaway certificate whose only extension is ``raw_extension``."""
    tbs = _der(0x30, _GRAFT_HEAD + _der(0xA3, _der(0x30, raw_extension)))
    return _der(0x30, tbs + _GRAFT_TAIL)


def _raw_extension_oid(raw: bytes) -> str:
    """The extnID of a raw Extension as a dotted string (or its name), "?" if unreadable."""
    try:
        _, _, pos, end = _tlv(raw, 0, len(raw))
        tag, _, start, stop = _tlv(raw, pos, end)
        if tag != 0x06 or not 0 < stop - start <= _MAX_OID_BYTES:
            return "?"
        arcs, value = [], 0
        for byte in raw[start:stop]:
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                arcs.append(value)
                value = 0
        first = min(arcs[0] // 40, 2)
        dotted = ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))
        return _oid_name(x509.ObjectIdentifier(dotted))
    except (ValueError, IndexError):
        return "?"
