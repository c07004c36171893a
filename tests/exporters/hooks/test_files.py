"""Installing certificate files: random O_EXCL temporaries, all written before any rename, and
the stash an issued certificate waits in."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from exporters.hooks import files


def test_a_planted_hard_link_never_receives_the_key(tmp_path: Path) -> None:
    """The old code wrote ``.key.pem.certscan-PID.tmp`` with O_TRUNC: a hard link planted under
    that name in a shared directory received the new key. Now every temporary name is random
    and opened O_EXCL, so no planted name is ever opened."""
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    victim = tmp_path / "attacker-readable"
    victim.write_bytes(b"")
    for pid in range(os.getpid() - 5, os.getpid() + 5):
        os.link(victim, deploy / f".key.pem.certscan-{pid}.tmp")
    files.install([(deploy / "key.pem", b"SECRET KEY", 0o600), (deploy / "cert.pem", b"C", 0o644)])
    assert victim.read_bytes() == b""
    assert (deploy / "key.pem").read_bytes() == b"SECRET KEY"
    assert stat.S_IMODE((deploy / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((deploy / "cert.pem").stat().st_mode) == 0o644
    assert (deploy / "key.pem").stat().st_nlink == 1
    left = sorted(p.name for p in deploy.iterdir() if not p.name.startswith(".key.pem.certscan-"))
    assert left == ["cert.pem", "key.pem"]


def test_nothing_is_replaced_unless_every_file_is_written(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_bytes(b"old key")
    (tmp_path / "cert.pem").write_bytes(b"old cert")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file, not a directory")
    with pytest.raises(FileExistsError):
        files.install(
            [
                (tmp_path / "key.pem", b"new key", 0o600),
                (tmp_path / "cert.pem", b"new cert", 0o644),
                (blocked / "chain.pem", b"chain", 0o644),
            ]
        )
    assert (tmp_path / "key.pem").read_bytes() == b"old key"
    assert (tmp_path / "cert.pem").read_bytes() == b"old cert"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "cert.pem", "key.pem"]


def test_a_symlink_target_is_replaced_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"untouched")
    (tmp_path / "key.pem").symlink_to(elsewhere)
    files.install([(tmp_path / "key.pem", b"new", 0o600)])
    assert elsewhere.read_bytes() == b"untouched"
    assert not (tmp_path / "key.pem").is_symlink()


def test_the_stash_is_private_and_cleared(tmp_path: Path) -> None:
    key = tmp_path / "out" / "key.pem"
    files.stash(key, b"K", b"FULLCHAIN")
    directory = files.stash_dir(key)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "key.pem").stat().st_mode) == 0o600
    kept = files.read_stash(key)
    assert kept == files.Stashed(key_pem=b"K", fullchain_pem=b"FULLCHAIN")
    files.clear_stash(key)
    assert files.read_stash(key) is None
    assert not directory.exists()


def test_a_planted_stash_symlink_is_not_read(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    elsewhere = tmp_path / "planted"
    elsewhere.mkdir()
    files.stash_dir(key).symlink_to(elsewhere)
    assert files.read_stash(key) is None
    with pytest.raises(PermissionError):
        files.stash(key, b"K", b"F")
