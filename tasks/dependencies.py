"""What the app depends on, as its directory declares it: its requirements.txt, else its pyproject.toml.

gunicorn is the kit's choice of server, not the app's: `app.gunicorn` is added to the app's own
requirements unless they name gunicorn themselves, which then wins. An app directory that is an
installable project (a pyproject.toml with a build backend) is also built as a wheel and installed.

The declaration is every file the resolver reads, followed as uv follows it: the files a requirements
file includes (-r, -c: relative to the including file) and the local path dependencies (`./libs/pkg`,
`-e ./pkg`, `file:` URLs, `name @ file:///...`, pyproject's `[tool.uv.sources]` paths: relative to the
app's directory, uv's working directory). Its digest names all of them, so that a change in any of them
makes a new venv. Every place packages are fetched from (index and find-links options, URLs of
requirements, the deployer's UV_* and PIP_* variables that name indexes) must be https, or plain http to
this machine only: a package changed on its way would run on the server, and its build code here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from tasks.source import EXCLUDED

REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
# Options of requirements files (short ones by their long names) that lead the resolver elsewhere.
SHORT_OPTIONS = {
    "-r": "--requirement", "-c": "--constraint", "-e": "--editable", "-i": "--index-url", "-f": "--find-links"
}  # fmt: skip
INCLUDES = ("--requirement", "--constraint")
LOCATIONS = ("--index-url", "--extra-index-url", "--find-links")
# The deployer's variables naming where uv (resolving) and pip (downloading) fetch packages from: theirs
# to set (a mirror), and validated as the app's options are.
LOCATION_VARIABLES = (
    "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_DEFAULT_INDEX", "UV_INDEX", "UV_FIND_LINKS",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS",
)  # fmt: skip
# What a local dependency's directory holds that is no input of its build: what builds leave at its top.
BUILD_OUTPUT = ("build", "dist")


class DependencyError(ValueError):
    """The app's declaration of its dependencies cannot be read; one line naming the file and the fix."""


@dataclass(frozen=True)
class Declared:
    """The app's dependencies as declared, before they are resolved for a server."""

    source: str  # for people: "requirements.txt", "pyproject.toml [project].dependencies"
    inputs: tuple[Path, ...]  # what the resolver is given (it reads what they include, too)
    extra: tuple[str, ...]  # requirement lines the kit adds: its gunicorn
    requires_python: str  # the project's requires-python ("" when it says none)
    project: str  # the project's name when the app directory is an installable project, else ""
    digest: str  # names this declaration: every file the resolver reads, and the extra lines

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


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """A requirements file's lines as pip and uv read them: (number, text), continued lines (a trailing
    backslash) joined, comments and blank lines left out."""
    joined, first = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        joined, first = joined + raw, first or number
        if joined.endswith("\\"):
            joined = joined[:-1]
            continue
        content = re.sub(r"(^|\s)#.*", "", joined).strip()
        if content:
            yield first, content
        joined, first = "", 0


def _option(text: str) -> tuple[str | None, str]:
    """A line's option (by its long name) and value, as `-r x`, `-rx`, `--requirement x` or
    `--requirement=x`; (None, text) for a requirement."""
    if not text.startswith("-"):
        return None, text
    word, _, rest = text.partition(" ")
    name, equals, value = word.partition("=")
    if not name.startswith("--") and len(name) > 2:  # -rbase.txt
        name, value, equals = name[:2], name[2:], "="
    return SHORT_OPTIONS.get(name, name), (value if equals else rest).strip()


def _is_local(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback  # 127.0.0.0/8, ::1
    except ValueError:
        return False


def _no_input(name: str, top: bool) -> bool:
    """A directory of a local dependency that is no input of its build: a cache, or what builds leave."""
    return name in EXCLUDED or name.endswith(".egg-info") or (top and name in BUILD_OUTPUT)


def _tree(directory: Path) -> bytes:
    """Names the content of a local dependency's directory: its files' paths and contents, without caches
    and what its builds leave in it (which would make every deploy after a build a new venv)."""
    lines = []
    for folder, dirs, files in os.walk(directory):
        at = Path(folder)
        dirs[:] = sorted(d for d in dirs if not _no_input(d, top=at == directory))
        for name in sorted(f for f in files if not f.endswith(".pyc") and (at / f).is_file()):
            content = hashlib.sha256((at / name).read_bytes()).hexdigest()
            lines.append(f"{(at / name).relative_to(directory).as_posix()} {content}")
    return "\n".join(lines).encode()


class _Reading:
    """What resolving the app's dependencies reads, followed from its declaration: the names it requires,
    the files and local trees besides the inputs (for the digest), each place packages come from validated."""

    def __init__(self, root: Path, inputs: tuple[Path, ...]) -> None:
        self.root, self.inputs = root, inputs
        self.names: set[str] = set()  # canonical names of the requirements (not of constraints)
        self.read: dict[str, bytes] = {}  # what else the resolver reads: its name -> its content's
        self.seen: set[Path] = set()

    def label(self, path: Path) -> str:
        """A path for people, and for the digest: relative to the app's directory when in it."""
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)

    def requirements(self, path: Path, where: str = REQUIREMENTS, constraints: bool = False) -> None:
        """A requirements file and what it includes; `where` names the line including it."""
        if path.resolve() in self.seen:
            return
        self.seen.add(path.resolve())
        if not path.is_file():
            raise DependencyError(f"{where}: {path} is no file: fix the path, or remove the line")
        data = path.read_bytes()
        if path not in self.inputs:
            self.read[self.label(path)] = data
        for number, text in _lines(data.decode(errors="replace")):
            here = f"{self.label(path)} line {number}"
            option, value = _option(text)
            if option in INCLUDES:
                if urlsplit(value).scheme:  # fetched by the resolver, which the digest cannot follow
                    self.fetched(value, here)
                else:
                    self.requirements(path.parent / value, here, constraints or option == "--constraint")
            elif option in LOCATIONS:
                self.location(value, here, path.parent, listed=option == "--find-links")
            elif option == "--editable":
                self.dependency(value, here)
            elif option is None:
                self.requirement(text.split(" -", 1)[0].strip(), here, constraints)

    def requirement(self, text: str, where: str, constraint: bool = False) -> None:
        """A requirement: a name from the indexes, or a package at a URL or a local path."""
        try:
            parsed = Requirement(text)
        except InvalidRequirement:  # a bare URL or path, as pip and uv take them
            self.dependency(text.split(";", 1)[0].strip(), where)
            return
        if not constraint:
            self.names.add(canonicalize_name(parsed.name))
        if parsed.url:
            self.dependency(parsed.url, where)

    def dependency(self, value: str, where: str) -> None:
        """A package at a URL, or at a local path (relative to the app's directory, uv's working one)."""
        parts = urlsplit(value)
        if parts.scheme == "file":
            self.local(self.root / url2pathname(parts.path))  # file:///abs, or uv's file:./rel
        elif parts.scheme:
            self.fetched(value, where)
        else:
            self.local(self.root / re.sub(r"\[[^\]]*\]$", "", parts.path))  # ./pkg[extra]

    def location(self, value: str, where: str, base: Path, listed: bool = False) -> None:
        """An index or find-links location; a local find-links directory (relative to the file naming it)
        is read for the names of its archives."""
        parts = urlsplit(value)
        if parts.scheme not in ("", "file"):
            self.fetched(value, where)
        elif listed:
            folder = base / url2pathname(parts.path)
            if folder.is_dir():
                self.read[f"find-links {self.label(folder)}"] = "\n".join(sorted(os.listdir(folder))).encode()

    def local(self, path: Path) -> None:
        if path.is_dir():
            self.read[self.label(path)] = _tree(path)
        elif path.is_file():
            self.read[self.label(path)] = path.read_bytes()  # an archive: a wheel or an sdist
        # else: the resolver says it finds nothing there

    def fetched(self, url: str, where: str) -> None:
        """A URL packages (or requirements) are fetched from: https, or plain http to this machine only."""
        parts = urlsplit(url)
        if parts.scheme.split("+")[-1] == "http" and not _is_local(parts.hostname):
            raise DependencyError(
                f"{where}: {url} is plain http to another machine: a package changed on the way would run"
                " on the server (and its build code here); use https:// (plain http only to localhost)"
            )

    def environment(self) -> None:
        """The deployer's variables that name indexes and find-links locations."""
        for variable in LOCATION_VARIABLES:
            for value in re.split(r"[\s,]+", os.environ.get(variable, "")):
                value = re.sub(r"^[\w.-]+=", "", value)  # UV_INDEX's `name=URL`
                if urlsplit(value).scheme not in ("", "file"):
                    self.fetched(value, f"{variable} in your environment")

    def pyproject(self, pyproject: dict, dependencies: list[str]) -> None:
        """[project].dependencies, and the places `[tool.uv.sources]` gives packages (uv reads them)."""
        where = f"{PYPROJECT} [project].dependencies"
        for text in dependencies:
            self.requirement(text, where)
        tool = pyproject.get("tool") if isinstance(pyproject.get("tool"), dict) else {}
        uv = tool.get("uv") if isinstance(tool.get("uv"), dict) else {}
        sources = uv.get("sources") if isinstance(uv.get("sources"), dict) else {}
        for name, given in sources.items():
            for source in given if isinstance(given, list) else [given]:
                if not isinstance(source, dict):
                    continue
                if isinstance(source.get("path"), str):
                    self.local(self.root / source["path"])
                for key in ("url", "git"):
                    if isinstance(source.get(key), str):
                        self.fetched(source[key], f"{PYPROJECT} [tool.uv.sources] {name}")


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
        reading = _Reading(root, inputs)
        reading.requirements(root / REQUIREMENTS)
    elif PYPROJECT in {p.name for p in root.iterdir()}:
        dependencies = project.get("dependencies", [])
        if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
            raise DependencyError(f"{root / PYPROJECT}: [project].dependencies must be a list of strings")
        source, inputs = f"{PYPROJECT} [project].dependencies", (root / PYPROJECT,)
        reading = _Reading(root, inputs)
        reading.pyproject(pyproject, dependencies)
    else:
        raise DependencyError(f"{root} holds neither {REQUIREMENTS} nor {PYPROJECT}: add one")
    requires_python = project.get("requires-python", "")
    try:
        SpecifierSet(requires_python if isinstance(requires_python, str) else "?")
    except InvalidSpecifier:
        raise DependencyError(
            f"{root / PYPROJECT}: requires-python {requires_python!r} is no version range"
        ) from None
    reading.environment()
    installable = "build-system" in pyproject and isinstance(project.get("name"), str)
    extra = () if "gunicorn" in reading.names else (f"gunicorn=={gunicorn}",)
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(path.read_bytes() + b"\0")
    for name, content in sorted(reading.read.items()):  # none for an app that includes nothing
        digest.update(f"{name}\0".encode() + hashlib.sha256(content).digest())
    digest.update("\n".join(extra).encode())
    return Declared(
        source, inputs, extra, requires_python, project["name"] if installable else "", digest.hexdigest()
    )
