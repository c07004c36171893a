"""Path building: which presented certificate issued which, and where the path from the leaf ends.

Theory of operation
-------------------
The first presented certificate is the leaf (a TLS server signs its handshake with the first
certificate's key, so a chain that completed a handshake cannot start with anything else). From the
leaf, :func:`build_path` walks issuers depth first. A certificate is an issuer of another when its
subject equals the other's issuer name (the Names' DER as the certificates encode them) and its key
verifies the other's signature -- any hash, SHA-1 and MD5 included, since weak signatures are a
finding of their own; when the algorithm is not supported, matching key identifiers stand in. At
each step the trust anchors are tried before the presented certificates, so the first path that
reaches a trusted root is the shortest the server's certificates allow. A certificate that *is* an
anchor (same DER, or same subject and key) ends the path there. A walk that reaches no anchor keeps
the deepest dead end: a self-signed root that is not trusted, or a certificate whose issuer was
neither sent nor trusted (there is no network here to fetch AIA, so "missing" means exactly that).

Depth, steps and signature checks are bounded, so a crafted chain (dozens of certificates that
all claim to issue each other) costs bounded time; signature results are cached across chains,
since a sweep presents the same intermediates thousands of times.

Order and extras: the presented certificates on the path must be sent first and in path order
(positions 0, 1, 2...). A presented certificate off the path is *related* -- not extra -- when it
is another version of a certificate on the path or of the anchor (same subject and key: a
cross-signed root) or carries the name of a path certificate's issuer; a second copy of a path
certificate, or anything else, is extra.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from scanner.models import CertInfo
from scanner.parse import WARNINGS_LOCK  # one lock for the process-wide warnings filters

__all__ = ["MAX_DEPTH", "MAX_PRESENTED", "Anchors", "Cert", "Path", "build_path", "quiet"]

MAX_DEPTH = 8  # certificates on a path, anchor included (cryptography's default)
MAX_PRESENTED = 32  # presented certificates considered as issuers
_MAX_CHECKS = 64  # new signature checks for one chain
_MAX_STEPS = 256  # path-building steps for one chain
_CACHE_ENTRIES = 20_000
#: Loaded certificates kept for path building: each holds a parsed ``x509.Certificate`` (tens
#: of KB), and a sweep's leaves are each loaded once, so only a few (the intermediates) pay
#: to keep. 20,000 of them held about 200 MB after a 10,000-endpoint sweep.
_LOADED_ENTRIES = 1024

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True, eq=False)
class Cert:
    """A loaded certificate with what path building compares.

    ``position`` is the index in the presented chain, -1 for a trust anchor from the store.
    """

    sha256: str
    cert: x509.Certificate
    subject: bytes  # DER of the subject Name
    issuer: bytes  # DER of the issuer Name
    spki: bytes | None  # DER of the SubjectPublicKeyInfo; None when the key type is unknown
    position: int
    name: str  # the subject as an RFC 4514 string (attacker-controlled)
    issuer_name: str  # the issuer, likewise


def _load(
    sha256: str, cert: x509.Certificate, position: int, names: tuple[str, str] | None = None
) -> Cert | None:
    """Call with warnings :func:`quiet`: reading names may warn about non-conforming ones.

    The subject, issuer and key are the DER elements as the certificate encodes them, sliced out
    of its TBS (:func:`_tbs_elements`), which costs a tenth of re-encoding them through
    ``cryptography``'s objects; a TBS that cannot be walked falls back to those. ``names`` are
    the RFC 4514 subject and issuer when the caller has them (``CertInfo`` does)."""
    elements = _tbs_elements(cert.tbs_certificate_bytes)
    try:
        if names is None:
            names = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
        if elements is None:
            subject, issuer = cert.subject.public_bytes(), cert.issuer.public_bytes()
        else:
            issuer, subject, _ = elements
    except (ValueError, TypeError):
        return None
    spki: bytes | None = None
    try:
        cert.public_key()  # a key type cryptography cannot load has no usable identity
        spki = elements[2] if elements is not None else _spki_der(cert)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        spki = None
    return Cert(sha256, cert, subject, issuer, spki, position, names[0], names[1])


def _spki_der(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _element(data: bytes, offset: int) -> int:
    """The end of the DER element at ``offset`` (definite lengths of at most 4 bytes);
    ``ValueError`` when it runs past ``data``."""
    if offset + 2 > len(data):
        raise ValueError("truncated element")
    first = data[offset + 1]
    if first < 0x80:
        end = offset + 2 + first
    else:
        width = first & 0x7F
        if not 1 <= width <= 4 or offset + 2 + width > len(data):
            raise ValueError("unsupported length")
        end = offset + 2 + width + int.from_bytes(data[offset + 2 : offset + 2 + width], "big")
    if end > len(data):
        raise ValueError("element runs past its container")
    return end


def _tbs_elements(tbs: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(issuer, subject, subjectPublicKeyInfo) DER elements of a TBSCertificate, or None when it
    is not laid out as RFC 5280 section 4.1 says."""
    try:
        if not tbs or tbs[0] != 0x30:
            return None
        _element(tbs, 0)  # the outer SEQUENCE fits; its content follows the header
        pos = 2 + (tbs[1] & 0x7F if tbs[1] >= 0x80 else 0)
        if tbs[pos] == 0xA0:  # [0] EXPLICIT version
            pos = _element(tbs, pos)
        out: list[bytes] = []
        for tag in (0x02, 0x30, 0x30, 0x30, 0x30, 0x30):  # serial, sig alg, issuer, validity,
            if pos >= len(tbs) or tbs[pos] != tag:  # subject, subjectPublicKeyInfo
                return None
            end = _element(tbs, pos)
            out.append(tbs[pos:end])
            pos = end
    except (ValueError, IndexError):
        return None
    return out[2], out[4], out[5]


class Anchors:
    """Trust anchors indexed by subject and by (subject, key), with the path-building caches."""

    def __init__(self, certificates: Iterable[x509.Certificate]) -> None:
        with quiet():
            loaded = [_load(c.fingerprint(hashes.SHA256()).hex(), c, -1) for c in certificates]
        self._by_sha = {a.sha256: a for a in loaded if a is not None}
        self._by_subject: dict[bytes, list[Cert]] = {}
        self._by_identity: dict[tuple[bytes, bytes], Cert] = {}
        for anchor in self._by_sha.values():
            self._by_subject.setdefault(anchor.subject, []).append(anchor)
            if anchor.spki is not None:
                self._by_identity.setdefault((anchor.subject, anchor.spki), anchor)
        self._loaded: dict[str, Cert | None] = {}
        self._issued: dict[tuple[str, str], bool] = {}

    def __len__(self) -> int:
        return len(self._by_sha)

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._by_sha

    @property
    def certificates(self) -> list[x509.Certificate]:
        return [a.cert for a in self._by_sha.values()]

    def same_as(self, cert: Cert) -> Cert | None:
        """The anchor ``cert`` *is*: same DER, or same subject and key."""
        if cert.sha256 in self._by_sha:
            return self._by_sha[cert.sha256]
        return None if cert.spki is None else self._by_identity.get((cert.subject, cert.spki))

    def named(self, subject: bytes) -> Sequence[Cert]:
        return self._by_subject.get(subject, ())

    def load(self, info: CertInfo, position: int) -> Cert | None:
        """``info`` loaded for path building; ``None`` when it cannot be (cached by SHA-256)."""
        if info.error is not None:
            return None
        if info.sha256 not in self._loaded:
            try:
                cert = x509.load_der_x509_certificate(info.der)
                names = (info.subject or "", info.issuer or "")
                loaded = _load(info.sha256, cert, 0, names)
            except ValueError:
                loaded = None
            _remember(self._loaded, info.sha256, loaded, limit=_LOADED_ENTRIES)
        found = self._loaded[info.sha256]
        return None if found is None else replace(found, position=position)

    def knows(self, child: Cert, parent: Cert) -> bool:
        return (child.sha256, parent.sha256) in self._issued

    def issued(self, child: Cert, parent: Cert) -> bool:
        """Whether ``parent`` issued ``child`` (name and signature; cached)."""
        key = (child.sha256, parent.sha256)
        if key not in self._issued:
            result = False
            if child.issuer == parent.subject:
                verified = _signature_ok(child.cert, parent.cert)
                result = verified if verified is not None else _key_ids_match(child, parent)
            _remember(self._issued, key, result)
        return self._issued[key]


@dataclass(frozen=True, slots=True, kw_only=True)
class Path:
    """Where the walk from the leaf went.

    ``certs`` runs from the leaf up; its last element is ``anchor`` when a trusted root was
    reached (``position`` -1 when the anchor came from the store rather than the chain).
    ``dead_end_is_root``: no anchor was reached and the last certificate is self-signed.
    ``extras`` and ``duplicates`` are positions in the presented chain.
    """

    certs: tuple[Cert, ...]
    anchor: Cert | None
    self_signed: bool
    pinned: bool
    dead_end_is_root: bool
    ordered: bool
    extras: tuple[int, ...]
    duplicates: tuple[int, ...]
    presented: tuple[Cert | None, ...]

    @property
    def leaf(self) -> Cert:
        return self.certs[0]

    @property
    def on_path(self) -> tuple[Cert, ...]:
        """The presented certificates on the path, leaf first."""
        return tuple(c for c in self.certs if c.position >= 0)


def build_path(anchors: Anchors, chain: Sequence[CertInfo]) -> Path | None:
    """The path from ``chain[0]`` (see the module docstring); ``None`` if the leaf won't load."""
    with quiet():
        return _Walker(anchors, chain).run()


class _Walker:
    def __init__(self, anchors: Anchors, chain: Sequence[CertInfo]) -> None:
        self.anchors = anchors
        self.presented = tuple(anchors.load(info, i) for i, info in enumerate(chain))
        self.checks, self.steps = _MAX_CHECKS, _MAX_STEPS
        self.dead_end: list[Cert] | None = None

    def run(self) -> Path | None:
        leaf = self.presented[0] if self.presented else None
        if leaf is None:
            return None
        found = self.walk([leaf])
        certs = found if found is not None else (self.dead_end or [leaf])
        end = certs[-1]
        anchor = self.anchors.same_as(end) if found is not None else None
        self_signed = leaf.issuer == leaf.subject and self.anchors.issued(leaf, leaf)
        on_path = [c for c in certs if c.position >= 0]
        extras, duplicates = self.extras(on_path, anchor)
        return Path(
            certs=tuple(certs),
            anchor=anchor,
            self_signed=self_signed,
            pinned=self.anchors.same_as(leaf) is not None,
            dead_end_is_root=anchor is None
            and end.issuer == end.subject
            and self.anchors.issued(end, end),
            ordered=[c.position for c in on_path] == list(range(len(on_path))),
            extras=extras,
            duplicates=duplicates,
            presented=self.presented,
        )

    def issued(self, child: Cert, parent: Cert) -> bool:
        if not self.anchors.knows(child, parent):
            if self.checks <= 0:
                return False
            self.checks -= 1
        return self.anchors.issued(child, parent)

    def walk(self, path: list[Cert]) -> list[Cert] | None:
        """``path`` extended up to a trusted root, anchors tried first; ``None`` if none."""
        node = path[-1]
        self.steps -= 1
        if self.anchors.same_as(node) is not None:
            return path
        for anchor in self.anchors.named(node.issuer):
            if self.issued(node, anchor):
                return [*path, anchor]
        if len(path) < MAX_DEPTH - 1 and self.steps > 0:
            seen = {c.sha256 for c in path}
            for candidate in self.presented[:MAX_PRESENTED]:
                if (
                    candidate is None
                    or candidate.sha256 in seen
                    or candidate.subject != node.issuer
                    or not self.issued(node, candidate)
                ):
                    continue
                found = self.walk([*path, candidate])
                if found is not None:
                    return found
        if self.dead_end is None or len(path) > len(self.dead_end):
            self.dead_end = path
        return None

    def extras(self, on_path: list[Cert], anchor: Cert | None) -> tuple[tuple[int, ...], ...]:
        ends = [*on_path, *([anchor] if anchor is not None else [])]
        path_shas = {c.sha256 for c in on_path}
        identities = {(c.subject, c.spki) for c in ends if c.spki is not None}
        issuers = {c.issuer for c in ends}
        used = {c.position for c in on_path}
        extras: list[int] = []
        duplicates: list[int] = []
        for cert in self.presented:
            if cert is None or cert.position in used:
                continue
            if cert.sha256 in path_shas:
                duplicates.append(cert.position)
                extras.append(cert.position)
            elif (cert.subject, cert.spki) not in identities and cert.subject not in issuers:
                extras.append(cert.position)
        return tuple(extras), tuple(duplicates)


def _signature_ok(child: x509.Certificate, parent: x509.Certificate) -> bool | None:
    """Whether ``parent``'s key made ``child``'s signature; ``None`` when that cannot be told."""
    try:
        key = parent.public_key()
        signature, data = child.signature, child.tbs_certificate_bytes
        params = child.signature_algorithm_parameters
        digest = child.signature_hash_algorithm
        match key:
            case rsa.RSAPublicKey() if digest is not None and isinstance(
                params, padding.PKCS1v15 | padding.PSS
            ):
                key.verify(signature, data, params, digest)
            case ec.EllipticCurvePublicKey() if isinstance(params, ec.ECDSA):
                key.verify(signature, data, params)
            case ed25519.Ed25519PublicKey() | ed448.Ed448PublicKey():
                key.verify(signature, data)
            case dsa.DSAPublicKey() if digest is not None:
                key.verify(signature, data, digest)
            case _:
                return False
    except InvalidSignature:
        return False
    except (UnsupportedAlgorithm, ValueError, TypeError):
        return None
    return True


def _key_ids_match(child: Cert, parent: Cert) -> bool:
    try:
        aki = child.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        ski = parent.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except (x509.ExtensionNotFound, ValueError, x509.DuplicateExtension):
        return False
    return aki.value.key_identifier is not None and aki.value.key_identifier == ski.value.digest


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the warnings ``cryptography`` raises about non-conforming certificates.

    Certificates are judged here, not linted (``scanner.parse`` records those warnings), and
    under ``-W error`` a warning would become an exception.
    """
    with WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _remember(cache: dict[K, V], key: K, value: V, *, limit: int = _CACHE_ENTRIES) -> None:
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
