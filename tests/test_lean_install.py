"""A fresh virtual environment with certscan's core only (no extras): sweep, report and the
textfile export work against a real TLS server, and the commands that need an extra exit 2
with one line naming it. Bounded: one ``pip install`` from the local cache (timeout 300 s)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from scanner.lab import catalogue as lab_mod

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def core_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("core") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ]
    done = subprocess.run([*pip, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.lower()
    for extra_only in ("celery", "redis", "acme", "hypercorn", "starlette", "httpx", "psycopg"):
        assert f"\n{extra_only}==" not in f"\n{listed}", extra_only
    assert "\nalembic==" in f"\n{listed}"
    return venv


async def _run(venv: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(120):
        return await trio.run_process(
            [str(venv / "bin" / "certscan"), *args],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def test_core_commands_work(core_venv: Path, lab: lab_mod.Lab, tmp_path: Path) -> None:
    good = lab.by_name("healthy-rsa")
    db = str(tmp_path / "core.db")
    swept = await _run(
        core_venv, "sweep", f"{good.address}:{good.port}", "--db", db, "--no-progress", "--json"
    )
    assert swept.returncode == 0, swept.stderr
    assert b'"status":"ok"' in swept.stdout
    report = await _run(core_venv, "report", "--db", db, "-o", str(tmp_path / "r.html"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "r.html").stat().st_size > 10_000
    prom = tmp_path / "c.prom"
    exported = await _run(core_venv, "export", "prometheus", "--db", db, "-o", str(prom))
    assert exported.returncode == 0, exported.stderr
    assert "certscan_certificate_not_after_timestamp_seconds{" in prom.read_text()


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("serve", "--once"), "serve"),
        (("agent", "--zone", "z"), "zones"),
        (
            ("sweep", "127.0.0.1", "-p", "9", "--db", "postgresql+psycopg://u@127.0.0.1/x"),
            "postgres",
        ),
    ],
)
async def test_missing_extra_is_one_line_exit_2(
    core_venv: Path, tmp_path: Path, args: tuple[str, ...], extra: str
) -> None:
    if args[0] == "serve":
        args = (*args, "--db", str(tmp_path / "x.db"))
    proc = await _run(core_venv, *args)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.count("\n") == 1, err
    assert f"pip install 'certscan[{extra}]'" in err
    assert "Traceback" not in err
