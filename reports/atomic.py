"""Write a report file so that readers see the old file or the new one, never half of either.

The bytes go to a fresh temporary file in the target's directory (same filesystem, so the final
``os.replace`` is an atomic rename), are flushed and fsynced, and only then replace the target;
the directory is fsynced afterwards so the rename itself survives a crash. On any failure the
temporary file is removed and the target is untouched.

The temporary file is created with mode 0o666 filtered by the process umask, like any new file;
when it replaces an existing regular file, that file's permission bits are kept (a report
deliberately made private stays private). A target that is a device or a pipe (``/dev/null``,
a FIFO) is written into, not replaced. ``-`` (stdout) is the caller's business: passing it
here is an error rather than a file literally named ``-``.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file at ``path`` with ``data`` atomically (temp file, fsync, rename)."""
    if os.fspath(path) == "-":
        raise ValueError("'-' means stdout: write it there instead of calling write_atomic")
    target = Path(path)
    if _is_special(target):
        # A device or a pipe (``-o /dev/null``, a FIFO): renaming over it would put a regular
        # file in its place (as root, a regular file at /dev/null); write into it instead.
        with open(target, "wb") as out:
            out.write(data)
        return
    directory = target.parent
    temp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(temp, flags, 0o666)
    try:
        try:
            _keep_mode(fd, target)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)


def _is_special(target: Path) -> bool:
    """True for an existing target that is neither a regular file nor a directory."""
    try:
        mode = os.stat(target).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _keep_mode(fd: int, target: Path) -> None:
    try:
        current = os.stat(target)
    except FileNotFoundError:
        return
    if stat.S_ISREG(current.st_mode):
        os.fchmod(fd, stat.S_IMODE(current.st_mode))


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
