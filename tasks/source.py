"""The local app as it would be released: its files (caches and shared directories left out), their hash."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Never part of a release: caches and local venvs (and the shared directories, linked in instead).
EXCLUDED = {"__pycache__", ".git", ".venv", "venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


@dataclass(frozen=True)
class AppSource:
    root: Path
    files: tuple[str, ...]  # relative POSIX paths
    content_hash: str  # sha256 over paths, exec bits and contents
    hashes: Mapping[str, str] = field(default_factory=dict)  # path -> sha256 of its content


def read_source(root: Path, shared_dirs: Iterable[str] = ("instance",)) -> AppSource:
    """The files of a release: everything under root but caches and the shared directories."""
    files, hashes = [], {}
    digest = hashlib.sha256()
    shared = tuple(f"{d}/" for d in shared_dirs)
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if (
            not path.is_file()
            or path.suffix == ".pyc"
            or EXCLUDED.intersection(relative.parts)
            or f"{relative.as_posix()}/".startswith(shared)
        ):
            continue
        files.append(relative.as_posix())
        content = hashlib.sha256(path.read_bytes())
        hashes[relative.as_posix()] = content.hexdigest()
        digest.update(f"{relative.as_posix()}\0{path.stat().st_mode & 0o100}\0".encode())
        digest.update(content.digest())
    return AppSource(root, tuple(files), digest.hexdigest(), hashes)
