"""Installing certificate files safely, and keeping an issued certificate until it is installed.

Theory of operation
-------------------
A deploy directory may be shared with other users, so nothing here opens a predictable name:
:func:`install` writes every file of a set to a random name in its target's own directory,
created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a planted hard link or symlink makes the open
fail instead of receiving the key), with its final mode from the start, ``fsync``\\ s each, and
only when all of them are written renames them over their targets one after another, then
``fsync``\\ s each directory. Until the renames every target is untouched; a failure before them
removes the temporaries and leaves the old set in place. (The renames are separate system calls:
a reader between two of them sees the new certificate with the old key for a moment; a server
reloads after the deploy step, when all of them are done.)

A certificate the CA issued is first written to a private *stash* next to the key
(``.KEYNAME.certscan-issued/``, mode 0700, the key 0600): if installing or deploying fails, the
next attempt installs the stashed certificate instead of ordering a new one (a CA's rate limits
count orders). :func:`clear_stash` removes it once the deploy step succeeded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Stashed", "clear_stash", "install", "read_stash", "stash", "stash_dir"]

_KEY = "key.pem"
_FULLCHAIN = "fullchain.pem"


def _temporary(path: Path, data: bytes, mode: int) -> Path:
    """``data`` in a new random file beside ``path`` (mode ``mode``), fsynced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for _ in range(8):  # a clash of 128 random bits is not going to happen; bounded anyway
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(16)}.tmp")
        try:
            fd = os.open(tmp, flags, mode)
        except FileExistsError:
            continue
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), mode)  # the umask may have taken bits off
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install(files: Sequence[tuple[Path, bytes, int]]) -> None:
    """Replace every ``(path, data, mode)`` target: all written first, then all renamed."""
    written: list[tuple[Path, Path]] = []
    try:
        for path, data, mode in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            written.append((_temporary(path, data, mode), path))
    except BaseException:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in written:
        os.replace(tmp, path)
    for directory in dict.fromkeys(path.parent for _, path in written):
        _fsync_dir(directory)


def stash_dir(key_path: Path) -> Path:
    """Where an issued, not yet deployed certificate for ``key_path`` is kept."""
    return key_path.with_name(f".{key_path.name}.certscan-issued")


@dataclass(frozen=True, slots=True, kw_only=True)
class Stashed:
    """A certificate kept from an earlier attempt."""

    key_pem: bytes
    fullchain_pem: bytes


def _private_dir(directory: Path) -> None:
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700, parents=False)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise PermissionError(f"{directory} is not a directory of ours")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(directory, 0o700)


def stash(key_path: Path, key_pem: bytes, fullchain_pem: bytes) -> None:
    """Keep ``key_pem`` and ``fullchain_pem`` until :func:`clear_stash`."""
    directory = stash_dir(key_path)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    _private_dir(directory)
    install([(directory / _KEY, key_pem, 0o600), (directory / _FULLCHAIN, fullchain_pem, 0o600)])


def read_stash(key_path: Path) -> Stashed | None:
    """The stashed certificate for ``key_path``, or None when there is none (or it is unsafe:
    not our directory, a symlink, unreadable)."""
    directory = stash_dir(key_path)
    try:
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            return None
        parts = []
        for name in (_KEY, _FULLCHAIN):
            fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                parts.append(handle.read(1 << 20))
    except OSError:
        return None
    return Stashed(key_pem=parts[0], fullchain_pem=parts[1])


def clear_stash(key_path: Path) -> None:
    """Remove the stash (nothing when there is none)."""
    directory = stash_dir(key_path)
    for name in (_KEY, _FULLCHAIN):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()
    with contextlib.suppress(FileNotFoundError, OSError):
        directory.rmdir()
