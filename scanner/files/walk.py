"""What to read: the files named, the files under the directories named, and glob matches,
inside the configured roots, bounded. Blocking I/O (``os.walk``, ``stat``, ``open``).

Every candidate is resolved to its real path (symlinks followed for *files* only; a symlink
to a directory is not descended, so a loop of symlinks cannot make the walk recurse, and a
symlink that loops on itself fails to resolve and is refused). A real path outside every root
is refused, as is anything that is not a regular file (a FIFO would block the read). At most
``max_files`` candidates are produced, and at most ``max_bytes`` are read from one file: a
bigger one is refused without reading it whole.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Candidate", "Refused", "find", "read_bounded"]

GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    """A regular file inside a root; ``path`` is its real, absolute path."""

    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    """A path not read, with why; ``path`` as named or found (not resolved when resolving
    failed)."""

    path: Path
    reason: str


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _check(path: Path, roots: Sequence[Path]) -> Candidate | Refused:
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        why = (
            "a symlink loop"
            if "loop" in str(exc).lower()
            else (getattr(exc, "strerror", None) or str(exc))
        )
        return Refused(path=path, reason=f"cannot resolve: {why}")
    if not _inside(real, roots):
        return Refused(path=real, reason="outside the configured roots")
    try:
        mode = real.stat().st_mode
    except OSError as exc:
        return Refused(path=real, reason=f"cannot stat: {exc.strerror or exc}")
    if not stat.S_ISREG(mode):
        return Refused(path=real, reason="not a regular file")
    return Candidate(path=real)


def _expand(name: str) -> Iterator[Path]:
    if GLOB_CHARS & set(name):
        for match in sorted(glob.iglob(name, recursive=True)):
            yield Path(match)
    else:
        yield Path(name)


def _tree(top: Path) -> Iterator[Path]:
    """Every file under ``top`` in name order, symlinked directories not descended."""
    for where, dirs, found in os.walk(top, followlinks=False):
        dirs.sort()
        for name in sorted(found):
            yield Path(where, name)


def find(
    names: Sequence[str], *, roots: Sequence[Path], max_files: int
) -> Iterator[Candidate | Refused]:
    """Candidates and refusals for ``names`` in order, each real path once; stops after
    ``max_files`` candidates with one final :class:`Refused` saying so."""
    real_roots = [r.resolve() for r in roots]
    seen: set[Path] = set()
    produced = 0
    for name in names:
        for path in _expand(name):
            is_tree = path.is_dir() and not path.is_symlink()
            files = _tree(path) if is_tree else iter((path,))
            for file in files:
                item = _check(file, real_roots)
                if isinstance(item, Candidate):
                    if item.path in seen:
                        continue
                    seen.add(item.path)
                    if produced >= max_files:
                        yield Refused(
                            path=item.path, reason=f"more than {max_files} files: stopped"
                        )
                        return
                    produced += 1
                yield item


def read_bounded(path: Path, max_bytes: int) -> bytes | str:
    """The file's bytes, or why not (too large, unreadable)."""
    try:
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > max_bytes:
                return f"larger than {max_bytes:,} bytes ({size:,}): not read"
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if len(data) > max_bytes:
        return f"larger than {max_bytes:,} bytes: not read"
    return data
