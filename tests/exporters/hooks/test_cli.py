"""``certscan hooks`` as a user runs it: a real sweep of the lab fills a SQLite inventory, then
list, run --dry-run, run, history, approve and reject.

``hooks run`` and ``sweep`` run in a subprocess (``trio.run`` cannot nest inside these trio
tests); the commands that do no networking run in-process through ``scanner.cli.app.main``.
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from scanner.lab import servers as lab_mod
from tests.scanner.cli.test_app import certscan, one_line_error, run_main

FAST = ("--no-progress", "--handshake-timeout", "1", "--deadline", "2")
#: Appends the CERTSCAN_* environment to the file named in argv[1].
SCRIPT = """
import json, os, sys
with open(sys.argv[1], "a") as out:
    env = {k: v for k, v in os.environ.items() if k.startswith("CERTSCAN_")}
    out.write(json.dumps(env) + "\\n")
"""


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CERTSCAN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def config_file(tmp_path: Path) -> Path:
    def argv(name: str) -> str:
        return json.dumps([sys.executable, "-c", SCRIPT, str(tmp_path / f"{name}.jsonl")])

    path = tmp_path / "config.toml"
    path.write_text(
        "[hooks.renew]\n"
        'action = "command"\n'
        'kinds = ["expiring"]\n'
        'addresses = ["127.0.0.0/8"]\n'
        f"command = {argv('renew')}\n"
        "[hooks.gate]\n"
        'action = "command"\n'
        'kinds = ["expired"]\n'
        "approval = true\n"
        f"command = {argv('gate')}\n"
    )
    return path


def calls(tmp_path: Path, name: str) -> list[dict[str, str]]:
    path = tmp_path / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def history(db: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, Any]]:
    code, out, err = run_main(["hooks", "history", "--json", "--db", str(db)], capsys)
    assert code == 0, err
    return {row["hook"]: row for row in map(json.loads, out.splitlines())}


async def test_hooks_round_trip(
    lab: lab_mod.Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = tmp_path / "inv.db", config_file(tmp_path)
    by_name = {e.name: e for e in lab.endpoints}
    expiring, expired = by_name["expiring"], by_name["expired"]
    specs = [f"{e.address}:{e.port}" for e in (expiring, expired, by_name["healthy-rsa"])]
    proc = await certscan("sweep", *specs, "--db", str(db), *FAST, "--quiet")
    assert proc.returncode == 0, proc.stderr.decode()

    code, out, err = run_main(["hooks", "list", "--config", str(config)], capsys)
    assert code == 0, err
    assert "renew" in out
    assert "gate" in out

    hooks = ("hooks", "run", "--db", str(db), "--config", str(config))
    dry = await certscan(*hooks, "--dry-run")
    assert dry.returncode == 0, dry.stderr.decode()
    lines = dry.stdout.decode().splitlines()
    assert len(lines) == 2, lines
    assert any(
        f"would run hook renew [command] for expiring on {expiring.address}" in ln for ln in lines
    )
    assert any("would queue for approval hook gate" in ln for ln in lines)
    assert calls(tmp_path, "renew") == []
    assert history(db, capsys) == {}

    first = await certscan(*hooks)
    assert first.returncode == 0, first.stderr.decode()
    (env,) = calls(tmp_path, "renew")
    assert env["CERTSCAN_ADDRESS"] == expiring.address
    assert env["CERTSCAN_PORT"] == str(expiring.port)
    assert env["CERTSCAN_FINDING"] == "expiring"
    assert len(env["CERTSCAN_SHA256"]) == 64
    assert env["CERTSCAN_NOT_AFTER"].endswith("Z")
    assert calls(tmp_path, "gate") == []
    runs = history(db, capsys)
    assert runs["renew"]["status"] == "succeeded"
    assert runs["renew"]["sha256"] == env["CERTSCAN_SHA256"]
    assert runs["gate"]["status"] == "pending"
    assert runs["gate"]["address"] == expired.address

    again = await certscan(*hooks)
    assert again.returncode == 0, again.stderr.decode()
    assert again.stdout.decode().strip() == "nothing to do"
    assert len(calls(tmp_path, "renew")) == 1

    gate = str(runs["gate"]["id"])
    code, out, err = run_main(["hooks", "approve", gate, "--by", "alice", "--db", str(db)], capsys)
    assert code == 0, err
    assert "approved by local:" in out
    assert "(for alice)" in out
    code, _, err = run_main(["hooks", "reject", gate, "--db", str(db)], capsys)
    assert code == 2
    one_line_error(err)
    assert f"hook run {gate}" in err

    only = await certscan(*hooks, "--hook", "gate")
    assert only.returncode == 0, only.stderr.decode()
    assert len(calls(tmp_path, "gate")) == 1
    runs = history(db, capsys)
    user = getpass.getuser()
    assert runs["gate"]["status"] == "succeeded"
    assert (
        runs["gate"]["decided_by"] == f"local:{user} (for alice)"
    )  # who ran it, not who is claimed

    code, out, err = run_main(["hooks", "history", "--db", str(db)], capsys)
    assert code == 0, err
    assert "succeeded" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["hooks", "run", "--hook", "nosuch"], "--hook nosuch"),
        (["hooks", "list"], "hooks.bad.action"),
    ],
)
def test_usage_errors_are_one_line(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[hooks.bad]\naction = "shell"\n' if argv[1] == "list" else "")
    code, _, err = run_main([*argv, "--config", str(config)], capsys)
    assert code == 2
    one_line_error(err)
    assert needle in err


def test_a_reject_without_an_inventory_is_operational(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(["hooks", "reject", "1", "--db", str(tmp_path / "none.db")], capsys)
    assert code == 3
    one_line_error(err)


async def test_sweep_run_hooks_acts_right_after_the_sweep(
    lab: lab_mod.Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, config = tmp_path / "inv.db", config_file(tmp_path)
    expiring = next(e for e in lab.endpoints if e.name == "expiring")
    spec = f"{expiring.address}:{expiring.port}"
    proc = await certscan(
        "sweep", spec, "--db", str(db), *FAST, "--config", str(config), "--run-hooks"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"hooks: 1 succeeded, 0 failed, 0 queued" in proc.stderr
    (call,) = calls(tmp_path, "renew")
    assert call["CERTSCAN_FINDING"] == "expiring"
    assert call["CERTSCAN_PORT"] == str(expiring.port)
    # A second sweep does not act again on the same certificate.
    proc = await certscan(
        "sweep", spec, "--db", str(db), *FAST, "--config", str(config), "--run-hooks"
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(calls(tmp_path, "renew")) == 1
