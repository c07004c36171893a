"""Certificate files in the inventory (scanner.files, scanner.sweep.files, certscan import): real
files on disk in every format, hostile ones included (a truncated DER, a 50 MB file, a symlink
loop, a path outside the roots), a JKS made by Debian's keytool, and file_not_deployed against a
real TLS server on loopback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    pkcs7,
    pkcs12,
)

from reports import assess
from reports.policy import Policy
from reports.trust import TrustStore
from scanner.files.decode import Unreadable, decode
from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.lab.certgen import Issued
from scanner.models import EngineLimits
from scanner.sweep.events import SilentEvents
from scanner.sweep.files import ImportOptions, import_files
from scanner.sweep.options import SweepOptions
from scanner.sweep.run import run
from tests import peers
from tests.conftest import require_tool
from tests.scanner.cli.test_app import run_main

DAY = timedelta(days=1)
NAME = "files.example.test"


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


@pytest.fixture(scope="module")
def ca() -> tuple[Issued, Issued]:
    root = certgen.make_ca("Files Root")
    return root, certgen.make_ca("Files CA", issuer=root)


def leaf(issuer: Issued, days_left: float) -> Issued:
    now = datetime.now(UTC)
    return certgen.make_leaf(
        issuer,
        cn=NAME,
        dns_names=[NAME],
        not_before=now - (90 - days_left) * DAY,
        not_after=now + days_left * DAY,
    )


def criteria(root: Issued) -> assess.Criteria:
    return assess.Criteria(policy=Policy(), trust=TrustStore.from_pem(root.cert_pem, mozilla=False))


def write_tree(base: Path, ca: tuple[Issued, Issued]) -> dict[str, Path]:
    _root, inter = ca
    expiring = leaf(inter, 5)
    base.mkdir()
    (base / "sub").mkdir()
    files = {
        "pem": base / "site.pem",
        "der": base / "sub" / "site.der",
        "p7b": base / "sub" / "chain.p7b",
        "p12": base / "sub" / "site.p12",
        "truncated": base / "sub" / "cut.der",
        "big": base / "big.pem",
        "notes": base / "README.txt",
    }
    files["pem"].write_bytes(certgen.chain_pem(expiring, inter))
    files["der"].write_bytes(expiring.der)
    files["p7b"].write_bytes(
        pkcs7.serialize_certificates([expiring.cert, inter.cert], Encoding.DER)
    )
    files["p12"].write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"site", expiring.key, expiring.cert, [inter.cert], BestAvailableEncryption(b"s3cret")
        )  # type: ignore[arg-type]
    )
    files["truncated"].write_bytes(expiring.der[: len(expiring.der) // 2])
    with files["big"].open("wb") as handle:  # 50 MB: refused without being read whole
        handle.truncate(50 * 1024 * 1024)
    files["notes"].write_text("no certificates here\n")
    (base / "loop-a").symlink_to(base / "loop-b")
    (base / "loop-b").symlink_to(base / "loop-a")
    (base / "sub" / "up").symlink_to(base)  # a directory loop: never descended
    return files


def test_every_format_and_every_failure(tmp_path: Path, ca: tuple[Issued, Issued]) -> None:
    root, inter = ca
    files = write_tree(tmp_path / "certs", ca)
    outside = tmp_path / "outside.pem"
    outside.write_bytes(root.cert_pem)
    (tmp_path / "certs" / "escape.pem").symlink_to(outside)
    url = db_url(str(tmp_path / "inv.db"))
    options = ImportOptions(
        paths=(str(tmp_path / "certs"),), password="s3cret", criteria=criteria(root)
    )
    with Inventory(url) as inv:
        done = import_files(inv, options)
        views = {
            v.address: v
            for v in assess.read_views(inv, criteria=options.criteria, now=datetime.now(UTC))
        }
    status = {a.removeprefix(f"file:{tmp_path}/certs/"): s for a, (s, _) in done.endpoints.items()}
    assert status == {
        "site.pem": "ok",
        "sub/site.der": "ok",
        "sub/chain.p7b": "ok",
        "sub/site.p12#site": "ok",
        "sub/cut.der": "unreadable",
        "big.pem": "unreadable",
        "README.txt": "unreadable",
    }
    details = {a: d for a, (_, d) in done.endpoints.items()}
    assert "larger than 4,194,304 bytes" in (details[f"file:{files['big']}"] or "")
    assert "truncated" in (details[f"file:{files['truncated']}"] or "")
    refused = {r.path.name: r.reason for r in done.refused}
    assert refused["loop-a"] == refused["loop-b"] == "cannot resolve: a symlink loop"
    assert refused["outside.pem"] == "outside the configured roots"
    # judged like swept endpoints: the bundle is a chain, in file order
    pem = views[f"file:{files['pem']}"]
    assert [c.sha256 for c in pem.chain][1] == parse_sha(inter)
    assert {f.kind for f in pem.findings} == {"expiring"}
    assert {f.kind for f in views[f"file:{files['der']}"].findings} == {
        "expiring",
        "incomplete_chain",
    }
    assert views[f"file:{files['big']}"].status == "unreadable"


def parse_sha(issued: Issued) -> str:
    return hashlib.sha256(issued.der).hexdigest()


def test_a_wrong_password_is_an_outcome(tmp_path: Path, ca: tuple[Issued, Issued]) -> None:
    _root, inter = ca
    site = leaf(inter, 60)
    data = pkcs12.serialize_key_and_certificates(
        b"site",
        site.key,
        site.cert,
        None,
        BestAvailableEncryption(b"right"),  # type: ignore[arg-type]
    )
    for password in (None, "wrong"):
        found = decode(data, password=password)
        assert isinstance(found, Unreadable)
        assert "wrong or missing password" in found.reason
    found = decode(data, password="right")
    assert not isinstance(found, Unreadable)
    assert [b.ders for b in found] == [(site.der,)]


def test_a_jks_made_by_keytool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keytool = require_tool("keytool")
    store = tmp_path / "keys" / "web.jks"
    store.parent.mkdir()
    subprocess.run(
        [keytool, "-genkeypair", "-keystore", str(store), "-storetype", "JKS",
         "-storepass", "changeit", "-keypass", "changeit", "-alias", "web",
         "-keyalg", "EC", "-groupname", "secp256r1", "-startdate", "-85d", "-validity", "90",
         "-dname", f"CN={NAME}", "-ext", f"SAN=dns:{NAME}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    url = str(tmp_path / "jks.db")
    code, out, err = run_main(["import", str(store.parent), "--db", url], capsys)
    assert code == 0
    assert (
        out
        == f"file:{store}: unreadable (Java keystore: wrong or missing password (--password-env))\n"
    )
    os.environ["CERTSCAN_TEST_STOREPASS"] = "changeit"
    try:
        args = ["import", str(store), "--password-env", "CERTSCAN_TEST_STOREPASS", "--db", url]
        code, out, err = run_main(args, capsys)
    finally:
        del os.environ["CERTSCAN_TEST_STOREPASS"]
    assert (code, out) == (0, f"file:{store}#web: ok\n")
    code, out, _ = run_main(["report", "--format", "json", "--db", url], capsys)
    (endpoint,) = [e for e in json.loads(out)["endpoints"] if e["status"] == "ok"]
    assert endpoint["chain"][0]["subject"] == f"CN={NAME}"
    assert {f["kind"] for f in endpoint["findings"]} == {"self_signed", "expiring"}
    code, _, err = run_main(
        ["import", str(store), "--password-env", "NOPE_UNSET", "--db", url], capsys
    )
    assert code == 2
    assert "NOPE_UNSET is not set" in err


FAST = EngineLimits(connect_timeout=2, handshake_timeout=2, target_deadline=3, concurrency=4)


async def test_a_renewed_file_that_was_never_loaded(
    tmp_path: Path, ca: tuple[Issued, Issued]
) -> None:
    root, inter = ca
    old, new = leaf(inter, 10), leaf(inter, 80)
    disk = tmp_path / "deploy"
    disk.mkdir()
    (disk / "site.pem").write_bytes(certgen.chain_pem(new, inter))
    url = db_url(str(tmp_path / "deploy.db"))
    judge = criteria(root)
    async with peers.serve(
        "127.18.8.1", peers.tls_server(peers.server_context([old, inter]))
    ) as peer:
        options = SweepOptions(
            specs=(peer.address,), ports=(peer.port,), sni=NAME, limits=FAST, db_url=url,
            db_label="t", progress=False, summary=False, criteria=judge,
        )  # fmt: skip
        await run(options, out=io.StringIO(), events=SilentEvents())

    def imported() -> dict[str, list[str]]:
        with Inventory(url) as inv:
            import_files(inv, ImportOptions(paths=(str(disk),), criteria=judge))
            views = assess.read_views(inv, criteria=judge, now=datetime.now(UTC))
        return {
            v.address: [f.message for f in v.findings if f.kind == "file_not_deployed"]
            for v in views
        }

    found = await trio.to_thread.run_sync(imported)
    (on_server,) = found["127.18.8.1"]
    assert f"certificate on disk in file:{disk}/site.pem" in on_server
    assert "reload or redeploy" in on_server
    (on_disk,) = found[f"file:{disk}/site.pem"]
    assert "is on disk but no endpoint serving its names serves it: 127.18.8.1:" in on_disk
