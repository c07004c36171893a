"""``certscan export prometheus`` run in-process through ``scanner.cli.app.main``: the file it
writes, standard output, and the exit codes of its failures (with the old file left alone)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from scanner.inventory.store import Inventory, db_url
from scanner.lab import certgen
from scanner.models import FailureKind
from tests.exporters.test_prometheus import failure, handshake, promtool_accepts, record_scan
from tests.scanner.cli.test_app import one_line_error, run_main


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite inventory with one healthy endpoint and one that answered without a chain."""
    path = tmp_path / "inventory.db"
    leaf = certgen.make_leaf(certgen.make_ca(), cn="export.example")
    with Inventory(db_url(str(path))) as inv:
        record_scan(
            inv,
            [handshake("127.0.9.1", leaf), failure("127.0.9.2", FailureKind.NOT_TLS)],
        )
    return str(path)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_writes_the_metrics_file(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "textfile"
    out_dir.mkdir()
    target = out_dir / "certscan.prom"
    code, out, err = run_main(["export", "prometheus", "-o", str(target), "--db", db], capsys)
    assert (code, out, err) == (0, "", "")
    data = target.read_bytes()
    got = samples(data.decode("utf-8"))
    up = (("address", "127.0.9.1"), ("port", "443"), ("sni", ""))
    assert got[("certscan_endpoint_up", up)] == 1
    assert got[("certscan_scan_endpoints", (("job", "sweep"), ("status", "ok")))] == 1
    promtool_accepts(data)
    assert leftovers(out_dir) == []


def test_replaces_an_existing_file_by_rename_keeping_its_mode(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "certscan.prom"
    target.write_text("# old\n")
    target.chmod(0o640)
    before = target.stat()
    code, _, err = run_main(["export", "prometheus", "--output", str(target), "--db", db], capsys)
    assert code == 0, err
    after = target.stat()
    assert after.st_ino != before.st_ino  # a new file renamed over the old one
    assert after.st_mode & 0o777 == 0o640
    assert b"certscan_endpoint_up" in target.read_bytes()


def test_writes_to_stdout_by_default(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(["export", "prometheus", "--db", db], capsys)
    assert code == 0, err
    error = (("address", "127.0.9.2"), ("port", "443"), ("sni", ""), ("status", "not_tls"))
    assert samples(out)[("certscan_endpoint_error", error)] == 1


def test_env_var_selects_the_inventory(
    db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTSCAN_DB", db)
    code, out, _ = run_main(["export", "prometheus", "-o", "-"], capsys)
    assert code == 0
    assert "certscan_endpoint_up" in out


def test_notes_a_name_the_textfile_collector_ignores(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "metrics.txt"
    code, _, err = run_main(["export", "prometheus", "-o", str(target), "--db", db], capsys)
    assert code == 0
    assert target.exists()
    assert err.startswith("note: ")
    assert "*.prom" in err


@pytest.mark.parametrize("where", ["missing/dir/certscan.prom", "."])
def test_bad_output_is_a_usage_error(
    where: str, db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / where
    code, out, err = run_main(["export", "prometheus", "-o", str(target), "--db", db], capsys)
    assert code == 2, err
    assert out == ""
    one_line_error(err)
    assert not (tmp_path / "missing").exists()


def test_missing_inventory_is_operational_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "certscan.prom"
    missing = tmp_path / "nope.db"
    code, _, err = run_main(
        ["export", "prometheus", "-o", str(target), "--db", str(missing)], capsys
    )
    assert code == 3, err
    one_line_error(err)
    assert not target.exists()
    assert not missing.exists()


def test_database_failure_leaves_the_old_file(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "certscan.prom"
    target.write_text("# the previous export\n")
    engine = sa.create_engine(db_url(db))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE observation_certificate"))
    engine.dispose()
    code, _, err = run_main(["export", "prometheus", "-o", str(target), "--db", db], capsys)
    assert code == 3, err
    one_line_error(err)
    assert "cannot read metrics" in err
    assert target.read_text() == "# the previous export\n"
    assert leftovers(tmp_path) == []


def test_unwritable_directory_is_operational(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/certscan.prom")  # not even root may create files here
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "certscan.prom"
    code, _, err = run_main(["export", "prometheus", "-o", str(target), "--db", db], capsys)
    assert code == 3, err
    one_line_error(err)
    assert "cannot write" in err


def test_export_alone_shows_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["export"], capsys)
    assert code == 2
    assert "prometheus" in err
