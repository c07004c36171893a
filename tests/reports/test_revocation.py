"""Revocation from the OCSP staple: the pure judging (reports.revocation, scanner.staple) on
responses signed with ``cryptography``, hostile bytes under hypothesis, and real stapling
servers (``openssl s_server -status_file``) swept end to end into findings and metrics."""

from __future__ import annotations

import hashlib
import io
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509 import ReasonFlags, ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from exporters.prometheus import CertscanCollector
from reports.revocation import judge
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import EngineLimits, Severity, Target
from scanner.parse import parse_certificate
from scanner.staple import answer_for, must_staple, next_update_for, parse_staple
from scanner.sweep.events import SilentEvents
from scanner.sweep.options import SweepOptions
from scanner.sweep.run import run
from tests import peers

NOW = datetime.now(UTC).replace(microsecond=0)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def ca() -> tuple[certgen.Issued, certgen.Issued]:
    root = certgen.make_ca("certscan OCSP test root")
    return root, certgen.make_ca("certscan OCSP test CA", issuer=root)


def staple(
    leaf: certgen.Issued,
    issuer: certgen.Issued,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    *,
    this_update: datetime = NOW - HOUR,
    next_update: datetime | None = NOW + 24 * HOUR,
    revoked_at: datetime | None = None,
    reason: ReasonFlags | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """An OCSP response about ``leaf`` signed by its issuer (a CA that is its own responder)."""
    return (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf.cert,
            issuer=issuer.cert,
            algorithm=algorithm or hashes.SHA1(),  # what most responders use
            cert_status=status,
            this_update=this_update,
            next_update=next_update,
            revocation_time=revoked_at,
            revocation_reason=reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
        .sign(issuer.key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def chain(*certs: certgen.Issued) -> tuple:  # type: ignore[type-arg]
    return tuple(parse_certificate(c.der) for c in certs)


def kinds(found: tuple) -> list[tuple[str, Severity]]:  # type: ignore[type-arg]
    return [(v.kind, v.severity) for v in found]


# --- judging (pure) -----------------------------------------------------------------------------


def test_good_staple_no_staple_and_must_staple(ca: tuple[certgen.Issued, certgen.Issued]) -> None:
    _, inter = ca
    leaf = certgen.make_leaf(inter, dns_names=["good.test"])
    strict = certgen.make_leaf(inter, dns_names=["strict.test"], must_staple=True)
    assert judge(chain(leaf, inter), staple(leaf, inter), NOW) == ()
    assert judge(chain(leaf, inter), None, NOW) == ()
    assert must_staple(strict.der)
    assert not must_staple(leaf.der)
    found = judge(chain(strict, inter), None, NOW)
    assert kinds(found) == [("must_staple_missing", Severity.HIGH)]
    assert "status_request" in found[0].message
    assert judge(chain(strict, inter), staple(strict, inter), NOW) == ()


def test_revoked_names_the_time_and_reason(ca: tuple[certgen.Issued, certgen.Issued]) -> None:
    _, inter = ca
    leaf = certgen.make_leaf(inter, dns_names=["revoked.test"])
    when = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
    response = staple(
        leaf, inter, ocsp.OCSPCertStatus.REVOKED, revoked_at=when, reason=ReasonFlags.key_compromise
    )
    found = judge(chain(leaf, inter), response, NOW)
    assert kinds(found) == [("revoked", Severity.CRITICAL)]
    assert found[0].message == (
        "revoked at 2026-11-02T08:30:00Z (reason: keyCompromise) per the stapled OCSP response"
    )


def test_stale_staple(ca: tuple[certgen.Issued, certgen.Issued]) -> None:
    _, inter = ca
    leaf = certgen.make_leaf(inter, dns_names=["stale.test"])
    old = staple(leaf, inter, this_update=NOW - 10 * 24 * HOUR, next_update=NOW - 3 * 24 * HOUR)
    found = judge(chain(leaf, inter), old, NOW)
    assert kinds(found) == [("ocsp_staple_stale", Severity.MEDIUM)]
    assert "expired at" in found[0].message
    no_expiry = staple(leaf, inter, next_update=None)
    assert judge(chain(leaf, inter), no_expiry, NOW) == ()


def test_mismatch_for_another_certificate_or_issuer(
    ca: tuple[certgen.Issued, certgen.Issued],
) -> None:
    root, inter = ca
    leaf = certgen.make_leaf(inter, dns_names=["a.test"])
    other = certgen.make_leaf(inter, dns_names=["b.test"])
    found = judge(chain(leaf, inter), staple(other, inter), NOW)
    assert kinds(found) == [("ocsp_staple_mismatch", Severity.MEDIUM)]
    assert "for another certificate" in found[0].message
    # The same serial under another issuer key: only the issuer-key hash tells them apart.
    twin_ca = certgen.make_ca("certscan OCSP test CA", issuer=root)
    forged = staple(leaf, twin_ca)
    assert kinds(judge(chain(leaf, inter), forged, NOW)) == [
        ("ocsp_staple_mismatch", Severity.MEDIUM)
    ]
    # Without the issuer in the chain, serial and issuer name are all there is to compare.
    assert judge(chain(leaf), forged, NOW) == ()
    # SHA-256 CertIDs match as well as SHA-1 ones.
    sha256 = staple(leaf, inter, algorithm=hashes.SHA256())
    assert judge(chain(leaf, inter), sha256, NOW) == ()


def responder(
    issuer: certgen.Issued,
    *,
    eku: bool = True,
    days: tuple[int, int] = (-1, 30),
    key: object = None,
) -> certgen.Issued:
    """A delegated OCSP responder certificate issued by ``issuer`` (OCSPSigning unless not
    ``eku``), valid from ``days[0]`` to ``days[1]`` days from now."""
    own = key or certgen.make_key("ec")
    usage = [ExtendedKeyUsageOID.OCSP_SIGNING if eku else ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "certscan responder")]))
        .issuer_name(issuer.cert.subject)
        .public_key(own.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + timedelta(days=days[0]))
        .not_valid_after(NOW + timedelta(days=days[1]))
        .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        .sign(issuer.key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return certgen.Issued(cert, own)  # type: ignore[arg-type]


def signed_by(
    leaf: certgen.Issued,
    issuer: certgen.Issued,
    signer: certgen.Issued,
    *,
    send: tuple[certgen.Issued, ...] = (),
    by_name: bool = False,
    status: ocsp.OCSPCertStatus = ocsp.OCSPCertStatus.GOOD,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """An OCSP response about ``leaf`` (issued by ``issuer``) signed with ``signer``'s key, its
    responder ID naming ``signer``, carrying the certificates ``send``."""
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf.cert,
            issuer=issuer.cert,
            algorithm=hashes.SHA1(),
            cert_status=status,
            this_update=NOW - HOUR,
            next_update=NOW + 24 * HOUR,
            revocation_time=NOW - HOUR if status is ocsp.OCSPCertStatus.REVOKED else None,
            revocation_reason=None,
        )
        .responder_id(
            ocsp.OCSPResponderEncoding.NAME if by_name else ocsp.OCSPResponderEncoding.HASH,
            signer.cert,
        )
    )
    if send:
        builder = builder.certificates([c.cert for c in send])
    chosen = None if isinstance(signer.key, ed25519.Ed25519PrivateKey) else algorithm
    if chosen is None and not isinstance(signer.key, ed25519.Ed25519PrivateKey):
        chosen = hashes.SHA256()
    return builder.sign(signer.key, chosen).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


def test_staple_signature_must_be_the_issuers_or_its_delegated_responders(
    ca: tuple[certgen.Issued, certgen.Issued],
) -> None:
    root, inter = ca
    leaf = certgen.make_leaf(inter, dns_names=["sig.test"])
    path = chain(leaf, inter)
    # The issuer itself, identified by key hash or by name: vouched for.
    assert judge(path, signed_by(leaf, inter, inter), NOW) == ()
    assert judge(path, signed_by(leaf, inter, inter, by_name=True), NOW) == ()
    # A delegated responder the issuer certified for OCSP signing, sent along: vouched for, and
    # a revoked answer from it counts.
    delegate = responder(inter)
    assert judge(path, signed_by(leaf, inter, delegate, send=(delegate,)), NOW) == ()
    revoked = signed_by(leaf, inter, delegate, send=(delegate,), status=ocsp.OCSPCertStatus.REVOKED)
    assert kinds(judge(path, revoked, NOW)) == [("revoked", Severity.CRITICAL)]

    def problem(response: bytes) -> str:
        found = judge(path, response, NOW)
        assert kinds(found) == [("ocsp_staple_mismatch", Severity.MEDIUM)], found
        assert "signature does not vouch for it" in found[0].message
        return found[0].message

    # Anyone else's signature, even over a revoked answer: a mismatch and nothing more.
    stranger = certgen.make_ca("certscan OCSP test CA")  # same name, another key
    assert "issuer's key" in problem(signed_by(leaf, inter, stranger, by_name=True))
    forged = signed_by(leaf, inter, stranger, status=ocsp.OCSPCertStatus.REVOKED)
    assert "responder ID names neither" in problem(forged)
    # A responder certificate the issuer never signed, or without OCSPSigning, or expired.
    rogue = responder(root)
    assert "not issued by the leaf's issuer" in problem(
        signed_by(leaf, inter, rogue, send=(rogue,))
    )
    plain = responder(inter, eku=False)
    assert "OCSPSigning" in problem(signed_by(leaf, inter, plain, send=(plain,)))
    old = responder(inter, days=(-30, -2))
    assert "not valid when" in problem(signed_by(leaf, inter, old, send=(old,)))
    # The responder ID names the delegated responder, whose certificate is sent, but another
    # key (of a certificate with the same name) signed: caught by the signature.
    impostor = responder(root)
    forged = signed_by(leaf, inter, impostor, send=(delegate,), by_name=True)
    assert "responder's key" in problem(forged)
    # The responder named but its certificate not sent: nothing to check the key against.
    assert "responder ID names neither" in problem(signed_by(leaf, inter, delegate))
    # Without the issuer in the chain there is no key to check: judged as it reads.
    assert judge(chain(leaf), signed_by(leaf, inter, stranger), NOW) == ()
    # The metric ignores a staple whose signature fails.
    assert next_update_for(signed_by(leaf, inter, stranger), (leaf.der, inter.der)) is None
    assert next_update_for(signed_by(leaf, inter, inter), (leaf.der, inter.der)) is not None


def test_staple_signatures_of_every_key_type(ca: tuple[certgen.Issued, certgen.Issued]) -> None:
    root, _ = ca
    for make in (lambda: certgen.make_key("rsa"), lambda: certgen.make_key("ec", 384)):
        issuer = certgen.make_ca("certscan OCSP key-type CA", issuer=root, key=make())
        leaf = certgen.make_leaf(issuer, dns_names=["kt.test"])
        path = chain(leaf, issuer)
        assert judge(path, signed_by(leaf, issuer, issuer), NOW) == ()
        # A CA of the same name (so the responder ID, by name, matches the issuer) with a key
        # of the same type that is not the issuer's.
        twin = certgen.make_ca("certscan OCSP key-type CA", issuer=root, key=make())
        assert kinds(judge(path, signed_by(leaf, issuer, twin, by_name=True), NOW)) == [
            ("ocsp_staple_mismatch", Severity.MEDIUM)
        ]
        # Delegated responders with RSA, EC and Ed25519 keys.
        for key in (
            certgen.make_key("rsa"),
            certgen.make_key("ec"),
            ed25519.Ed25519PrivateKey.generate(),
        ):
            delegate = responder(issuer, key=key)
            assert judge(path, signed_by(leaf, issuer, delegate, send=(delegate,)), NOW) == ()


def test_unknown_unsuccessful_and_garbage_staples(
    ca: tuple[certgen.Issued, certgen.Issued],
) -> None:
    _, inter = ca
    leaf = certgen.make_leaf(inter, dns_names=["u.test"])
    unknown = staple(leaf, inter, ocsp.OCSPCertStatus.UNKNOWN)
    assert "does not know" in judge(chain(leaf, inter), unknown, NOW)[0].message
    later = ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
    found = judge(chain(leaf, inter), later.public_bytes(serialization.Encoding.DER), NOW)
    assert kinds(found) == [("ocsp_staple_mismatch", Severity.MEDIUM)]
    assert "try_later" in found[0].message
    found = judge(chain(leaf, inter), b"\x30\x03\x0a\x01\x00garbage", NOW)
    assert "unusable" in found[0].message


def test_next_update_is_that_of_the_answer_about_the_leaf(
    ca: tuple[certgen.Issued, certgen.Issued],
) -> None:
    _, inter = ca
    leaf = certgen.make_leaf(inter, dns_names=["n.test"])
    other = certgen.make_leaf(inter, dns_names=["o.test"])
    expiry = NOW + 5 * HOUR
    assert next_update_for(staple(leaf, inter, next_update=expiry), (leaf.der, inter.der)) == expiry
    assert next_update_for(staple(other, inter), (leaf.der, inter.der)) is None
    assert next_update_for(None, (leaf.der,)) is None


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_no_bytes_make_the_staple_parser_raise(data: st.DataObject) -> None:
    base = _BASE
    mutated = bytearray(base)
    for _ in range(data.draw(st.integers(0, 6))):
        at = data.draw(st.integers(0, len(mutated) - 1))
        mutated[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    for blob in (bytes(mutated), bytes(mutated[:cut]), data.draw(st.binary(max_size=300))):
        parsed = parse_staple(blob)
        assert (parsed.error is None) or not parsed.answers
        answer_for(parsed, (_LEAF.der, _INTER.der))


_ROOT = certgen.make_ca("certscan OCSP fuzz root")
_INTER = certgen.make_ca("certscan OCSP fuzz CA", issuer=_ROOT)
_LEAF = certgen.make_leaf(_INTER, dns_names=["fuzz.test"])
_BASE = staple(_LEAF, _INTER, ocsp.OCSPCertStatus.REVOKED, revoked_at=NOW - HOUR)


# --- real stapling servers ----------------------------------------------------------------------


async def test_stapling_servers_are_judged_and_measured(
    ca: tuple[certgen.Issued, certgen.Issued], tmp_path: Path
) -> None:
    _, inter = ca
    leaves = {
        name: certgen.make_leaf(inter, cn=f"{name}.ocsp.test", dns_names=[f"{name}.ocsp.test"])
        for name in ("good", "revoked", "stale")
    }
    strict = certgen.make_leaf(inter, cn="strict.ocsp.test", must_staple=True)
    next_good = NOW + 36 * HOUR
    responses = {
        "good": staple(leaves["good"], inter, next_update=next_good),
        "revoked": staple(
            leaves["revoked"],
            inter,
            ocsp.OCSPCertStatus.REVOKED,
            revoked_at=NOW - 2 * HOUR,
            reason=ReasonFlags.superseded,
        ),
        "stale": staple(
            leaves["stale"], inter, this_update=NOW - 9 * 24 * HOUR, next_update=NOW - 2 * HOUR
        ),
    }
    addresses = {"good": "127.99.0.1", "revoked": "127.99.0.2", "stale": "127.99.0.3"}
    specs: dict[str, str] = {}
    url = db_url(str(tmp_path / "ocsp.db"))
    status = ("-status_file", "{dir}/r.der")

    def server(name: str) -> AbstractAsyncContextManager[Target]:
        files = {"r.der": responses[name]}
        return peers.openssl_server(addresses[name], (leaves[name], inter), *status, files=files)

    async with (
        server("good") as g,
        server("revoked") as r,
        server("stale") as s,
        peers.serve("127.99.0.4", peers.tls_server(peers.server_context([strict, inter]))) as m,
    ):
        for name, target in (("good", g), ("revoked", r), ("stale", s)):
            specs[name] = f"{target.address}:{target.port}"
        specs["strict"] = f"{m.address}:{m.port}"
        options = SweepOptions(
            specs=tuple(specs.values()),
            ports=(443,),
            limits=EngineLimits(connect_timeout=2, handshake_timeout=3, target_deadline=4),
            db_url=url,
            db_label="test",
            progress=False,
            summary=False,
        )
        await run(options, out=io.StringIO(), events=SilentEvents())
    with Inventory(url) as inventory:
        found = {
            (f.address, f.kind): f
            for f in inventory.findings()
            if f.kind in ("revoked", "ocsp_staple_stale", "ocsp_staple_mismatch",
                          "must_staple_missing")
        }  # fmt: skip
        registry = CollectorRegistry()
        registry.register(CertscanCollector(inventory))
    assert set(found) == {
        ("127.99.0.2", "revoked"),
        ("127.99.0.3", "ocsp_staple_stale"),
        ("127.99.0.4", "must_staple_missing"),
    }
    assert found[("127.99.0.2", "revoked")].severity is Severity.CRITICAL
    assert "reason: superseded" in found[("127.99.0.2", "revoked")].message
    assert found[("127.99.0.4", "must_staple_missing")].severity is Severity.HIGH

    def labels(name: str, leaf: certgen.Issued) -> dict[str, str]:
        address, port = specs[name].rsplit(":", 1)
        sha256 = hashlib.sha256(leaf.der).hexdigest()
        return {"address": address, "port": port, "sni": "", "sha256": sha256}

    metric = "certscan_ocsp_next_update_timestamp_seconds"
    assert registry.get_sample_value(metric, labels("good", leaves["good"])) == pytest.approx(
        next_good.timestamp(), abs=1
    )
    assert registry.get_sample_value(metric, labels("stale", leaves["stale"])) < NOW.timestamp()
    assert registry.get_sample_value(metric, labels("strict", strict)) is None
    error = "certscan_certificate_error"
    assert registry.get_sample_value(error, {**labels("revoked", leaves["revoked"]),
                                             "reason": "revoked"}) == 1  # fmt: skip
    assert registry.get_sample_value(error, {**labels("good", leaves["good"]),
                                             "reason": "revoked"}) is None  # fmt: skip
