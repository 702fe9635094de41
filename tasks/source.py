"""The local app as it would be released: its files (caches and shared directories left out), their hash.

A link in the app's tree travels as a copy of what it points to (a link to a directory as the files under
it), as long as that lies in the app's directory too: a link out of it (`notes.txt -> ~/.ssh/id_ed25519`)
would ship a file of this machine to every server, and is refused before anything connects.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

# Never part of a release: caches and local venvs (and the shared directories, linked in instead).
EXCLUDED = {"__pycache__", ".git", ".venv", "venv", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


class SourceError(ValueError):
    """The app's directory cannot be released as it is; one line naming the path and the fix."""


@dataclass(frozen=True)
class AppSource:
    root: Path
    files: tuple[str, ...]  # relative POSIX paths
    content_hash: str  # sha256 over paths, exec bits and contents
    hashes: Mapping[str, str] = field(default_factory=dict)  # path -> sha256 of its content
    links: tuple[str, ...] = ()  # "path -> target" of each link released as a copy of its target
    left_out: tuple[str, ...] = ()  # "path -> target (why)" of each link whose target is not released

    def links_note(self) -> str:
        """One line on the links of the app's tree, for people; empty when it has none."""
        parts = [f"links travel as copies of their targets: {_listed(self.links)}"] if self.links else []
        parts += [f"links left out: {_listed(self.left_out)}"] if self.left_out else []
        return "; ".join(parts)


LISTED = 10  # links a note names, of each kind


def _listed(items: tuple[str, ...]) -> str:
    more = f", and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


class _Tree:
    """The files a release holds, found from the app's (resolved) root, following links within it."""

    def __init__(self, root: Path, shared_dirs: Iterable[str]) -> None:
        self.root = root
        self.shared = tuple(f"{d}/" for d in shared_dirs)
        self.found: dict[PurePosixPath, Path] = {}  # path in the release -> where its content is read
        self.links: list[str] = []
        self.left_out: list[str] = []

    def excluded(self, relative: PurePosixPath) -> bool:
        return (
            relative.suffix == ".pyc"
            or bool(EXCLUDED.intersection(relative.parts))
            or f"{relative.as_posix()}/".startswith(self.shared)
        )

    def walk(self, directory: Path, at: PurePosixPath, chain: tuple[Path, ...]) -> None:
        """Everything under `directory` (a real directory of the tree), as the release has it under `at`;
        `chain`: the real directories walked down to it, which a link back up must not walk again."""
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path, relative = Path(entry.path), at / entry.name
            # Excluded where the release has it, and where it really is (a linked directory's caches).
            if self.excluded(relative) or self.excluded(PurePosixPath(path.relative_to(self.root))):
                continue
            if entry.is_symlink():
                self.link(path, relative, chain)
            elif entry.is_dir():
                self.walk(path, relative, (*chain, path))
            elif entry.is_file():
                self.found[relative] = path

    def link(self, path: Path, relative: PurePosixPath, chain: tuple[Path, ...]) -> None:
        written = f"{relative} -> {os.readlink(path)}"
        try:
            target = path.resolve()  # through every link on the way; as far as it exists
        except RuntimeError:  # links pointing at each other: nothing there
            self.left_out.append(f"{written} (a loop of links)")
            return
        if not target.is_relative_to(self.root):
            raise SourceError(
                f"{relative} is a link to {target}, outside the app's directory {self.root}: a release would"
                " carry what it points to from this machine; copy what the app needs into the directory, or"
                " remove the link"
            )
        if self.excluded(PurePosixPath(target.relative_to(self.root))):
            self.left_out.append(f"{written} (a cache or a shared directory)")
        elif target in chain:
            self.left_out.append(f"{written} (a directory it is in: a loop)")
        elif target.is_dir():
            self.links.append(written)
            self.walk(target, relative, (*chain, target))
        elif target.is_file():
            self.links.append(written)
            self.found[relative] = path
        else:
            self.left_out.append(f"{written} (points to nothing)")


def read_source(root: Path, shared_dirs: Iterable[str] = ("instance",)) -> AppSource:
    """The files of a release: everything under root but caches and the shared directories, a link as a
    copy of its target; raise SourceError for a link that leads out of root."""
    tree = _Tree(root.resolve(), shared_dirs)
    tree.walk(tree.root, PurePosixPath(), (tree.root,))
    files, hashes = [], {}
    digest = hashlib.sha256()
    for relative in sorted(tree.found):  # by path components, as the release's files always were
        path, name = tree.found[relative], relative.as_posix()
        files.append(name)
        content = hashlib.sha256(path.read_bytes())
        hashes[name] = content.hexdigest()
        # The target's content and mode: what pack() sends for a link.
        digest.update(f"{name}\0{path.stat().st_mode & 0o100}\0".encode())
        digest.update(content.digest())
    return AppSource(root, tuple(files), digest.hexdigest(), hashes, tuple(tree.links), tuple(tree.left_out))
