"""The TLS details of revision 0003_tls_details stored and read back on both back ends."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

from scanner.inventory.store import Inventory
from scanner.lab import certgen
from scanner.models import FailureKind, Handshake, ScanFailure, Target
from scanner.parse import parse_certificate

T0 = datetime(2032, 7, 1, 8, 30, tzinfo=UTC)


def test_legacy_capture_group_and_scheme_round_trip(
    inventory: Inventory, pki: dict[str, certgen.Issued]
) -> None:
    leaf = pki["a"]
    info = parse_certificate(leaf.der)
    assert info.sha256 == hashlib.sha256(leaf.der).hexdigest()
    base = Handshake(
        target=Target(address="127.0.9.1", port=443), started_at=T0, chain=(leaf.der,),
        tls_version="TLSv1.3", cipher="TLS_AES_128_GCM_SHA256",
    )  # fmt: skip
    modern = dataclasses.replace(base, group="X25519MLKEM768")
    legacy = dataclasses.replace(
        base, target=Target(address="127.0.9.2", port=443), tls_version="SSLv3",
        cipher="TLS_RSA_WITH_RC4_128_MD5", legacy_capture=True, group="secp192r1",
        signature_scheme="ecdsa_sha256",
    )  # fmt: skip
    failed = ScanFailure(
        target=Target(address="127.0.9.3", port=443), started_at=T0,
        kind=FailureKind.TLS_ALERT, detail="handshake_failure (40)", connected=True,
    )  # fmt: skip
    scan = inventory.start_scan(spec={"targets": ["127.0.9.0/30"]}, total=3)
    inventory.record_batch(scan, [(modern, (info,)), (legacy, (info,)), (failed, ())], watermark=3)
    got = {r.address: r for r in inventory.latest_endpoints(include_failures=True)}
    assert (got["127.0.9.1"].legacy_capture, got["127.0.9.1"].group) == (False, "X25519MLKEM768")
    assert got["127.0.9.1"].signature_scheme is None
    two = got["127.0.9.2"]
    assert (two.legacy_capture, two.group, two.signature_scheme) == (
        True, "secp192r1", "ecdsa_sha256",
    )  # fmt: skip
    assert (two.tls_version, two.cipher) == ("SSLv3", "TLS_RSA_WITH_RC4_128_MD5")
    three = got["127.0.9.3"]
    assert (three.legacy_capture, three.group, three.signature_scheme) == (None, None, None)
