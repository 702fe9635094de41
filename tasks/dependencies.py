"""What the app depends on, as its directory declares it: its requirements.txt, else its pyproject.toml.

gunicorn is the kit's choice of server, not the app's: `app.gunicorn` is added to the app's own
requirements unless they name gunicorn themselves, which then wins. An app directory that is an
installable project (a pyproject.toml with a build backend) is also built as a wheel and installed.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"


class DependencyError(ValueError):
    """The app's declaration of its dependencies cannot be read; one line naming the file and the fix."""


@dataclass(frozen=True)
class Declared:
    """The app's dependencies as declared, before they are resolved for a server."""

    source: str  # for people: "requirements.txt", "pyproject.toml [project].dependencies"
    inputs: tuple[Path, ...]  # what the resolver reads
    extra: tuple[str, ...]  # requirement lines the kit adds: its gunicorn
    requires_python: str  # the project's requires-python ("" when it says none)
    project: str  # the project's name when the app directory is an installable project, else ""
    digest: str  # names this declaration: the inputs' contents and the extra lines

    def fits(self, python: str) -> bool:
        """Whether a server Python ("3.11.2") meets requires-python."""
        try:
            return not self.requires_python or Version(python) in SpecifierSet(self.requires_python)
        except InvalidVersion:
            return True  # a Python that does not say its version: the install will tell

    def describe(self) -> str:
        """One line: where the dependencies came from."""
        parts = [f"dependencies from {self.source}"]
        parts += [f"{line} (the kit's: app.gunicorn)" for line in self.extra]
        if self.project:
            parts.append(f"{self.project} built as a wheel")
        return ", ".join(parts)


def _names(lines: list[str]) -> set[str]:
    """The canonical names of the requirement lines among lines (options and comments skipped)."""
    names = set()
    for text in lines:
        text = text.split(" #", 1)[0].strip()
        if not text or text.startswith(("#", "-")):
            continue
        try:
            names.add(canonicalize_name(Requirement(text).name))
        except InvalidRequirement:
            continue  # a URL or path line: the resolver says what it makes of it
    return names


def _pyproject(root: Path) -> dict:
    path = root / PYPROJECT
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise DependencyError(f"{path} is no valid TOML ({error}): fix it") from None


def declared(root: Path, gunicorn: str) -> Declared:
    """The dependencies of the app in root, with the kit's gunicorn unless the app names one."""
    pyproject = _pyproject(root)
    project = pyproject.get("project") if isinstance(pyproject.get("project"), dict) else {}
    if (root / REQUIREMENTS).is_file():
        source, inputs = REQUIREMENTS, (root / REQUIREMENTS,)
        names = _names((root / REQUIREMENTS).read_text().splitlines())
    elif PYPROJECT in {p.name for p in root.iterdir()}:
        dependencies = project.get("dependencies", [])
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            raise DependencyError(f"{root / PYPROJECT}: [project].dependencies must be a list of strings")
        source, inputs, names = (
            f"{PYPROJECT} [project].dependencies",
            (root / PYPROJECT,),
            _names(dependencies),
        )
    else:
        raise DependencyError(f"{root} holds neither {REQUIREMENTS} nor {PYPROJECT}: add one")
    requires_python = project.get("requires-python", "")
    try:
        SpecifierSet(requires_python if isinstance(requires_python, str) else "?")
    except InvalidSpecifier:
        raise DependencyError(
            f"{root / PYPROJECT}: requires-python {requires_python!r} is no version range"
        ) from None
    installable = "build-system" in pyproject and isinstance(project.get("name"), str)
    extra = () if "gunicorn" in names else (f"gunicorn=={gunicorn}",)
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(path.read_bytes() + b"\0")
    digest.update("\n".join(extra).encode())
    return Declared(
        source, inputs, extra, requires_python, project["name"] if installable else "", digest.hexdigest()
    )
