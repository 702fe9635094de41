"""The app's dependencies as wheels for the server, made on the control machine.

The server never needs an index: it builds its venvs from these with uv, shipped as its wheel. Three
tools, each for what it does well:
- `uv pip compile` resolves for the server: every environment marker (python_full_version,
  sys_platform, platform_machine, ...) is evaluated for the server's Python and platform as probed,
  which pip cannot do (`pip download --python-version` changes tags, not markers);
- `pip download --no-deps` fetches exactly those pins, a wheel for the server where one is published,
  else the sdist;
- `uv build` turns a pure-Python sdist (and the app itself, when it is an installable project, and the
  local packages it depends on) into a wheel. One with native code is refused: it would be built for the
  control machine.
Everything is cached per declaration and server kind, so a repeat deploy needs no index.

The tools read no configuration file, neither the app's (its uv.toml or `[tool.uv]` could swap the index
for plain http) nor this machine's: where packages come from is what the app's requirements files say and
the deployer's UV_* and PIP_* variables (tasks/dependencies.py validates both before anything connects).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from uv import find_uv_bin

from tasks.dependencies import Declared
from tasks.source import AppSource

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "flaskdeploy" / "wheels"
UV_VERSION = version("uv")  # the uv the server gets is the one that resolves here
UV = [find_uv_bin()]
# For every tool the kit runs: no uv.toml or [tool.uv] (the app's, from its directory, or the deployer's),
# no pip.conf.
TOOLS_ENVIRONMENT = {"UV_NO_CONFIG": "1", "PIP_CONFIG_FILE": os.devnull}
# The manylinux levels uv can resolve for (`uv pip compile --python-platform MACHINE-manylinux_2_N`).
UV_MANYLINUX = (17, 28, *range(31, 41))
UV_MACHINES = ("x86_64", "aarch64")


class WheelError(RuntimeError):
    """The dependencies could not be made into wheels for the server; one line naming why."""


@dataclass(frozen=True)
class Target:
    """The kind of server a venv is for: its Python (full version), machine and C library."""

    python: str  # "3.11.2"
    machine: str  # "x86_64"
    glibc: str  # "2.36"

    @property
    def minor(self) -> str:
        return ".".join(self.python.split(".")[:2])

    def __str__(self) -> str:
        return f"cp{self.minor.replace('.', '')}-{self.machine}-glibc{self.glibc}-python{self.python}"

    @property
    def glibc_minor(self) -> int:
        return int(self.glibc.split(".")[1]) if self.glibc.count(".") == 1 else 17

    def resolver_platform(self) -> str:
        """The platform `uv pip compile` resolves for: the newest manylinux the server's glibc runs."""
        if self.machine not in UV_MACHINES:
            raise WheelError(
                f"the server's machine is {self.machine}: the kit resolves for {' and '.join(UV_MACHINES)}"
                " servers only"
            )
        level = max(m for m in UV_MANYLINUX if m <= max(self.glibc_minor, 17))
        return f"{self.machine}-manylinux_2_{level}"

    def platforms(self) -> list[str]:
        """Every platform tag the server accepts: manylinux up to its glibc, and plain linux."""
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(5, self.glibc_minor + 1)]
        return [*tags, f"manylinux2014_{self.machine}", f"linux_{self.machine}"]


def venv_id(declared: Declared, target: Target) -> str:
    """Names the venv for these dependencies on this kind of server (the app's own wheel is not in it:
    each release holds its own, so a code change reuses the venv and reloads gracefully)."""
    return hashlib.sha256(f"{target}\n{declared.digest}".encode()).hexdigest()[:16]


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    environment = {**os.environ, **TOOLS_ENVIRONMENT}
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=environment)
    if done.returncode != 0:
        raise WheelError(f"{what}: {reason(done.stderr + done.stdout) or f'exit code {done.returncode}'}")


def reason(output: str) -> str:
    """One line from a resolver's or installer's complaint: its error lines, joined."""
    lines = [text.strip(" ×╰─▶│|").strip() for text in output.splitlines()]
    lines = [text for text in lines if text and not text.startswith(("hint:", "WARNING", "warning:"))]
    errors = [i for i, text in enumerate(lines) if "error" in text.lower() or "because" in text.lower()]
    chosen = lines[errors[0] :] if errors else lines[-1:]
    return " ".join(chosen)[:400]


def _compile(declared: Declared, target: Target, work: Path) -> Path:
    """The pins for the server: `name==version` lines, markers already evaluated for it."""
    extra = work / "kit-requirements.in"
    extra.write_text("".join(f"{line}\n" for line in declared.extra))
    pinned = work / "requirements.txt"
    _run(
        [
            *UV, "pip", "compile", "--quiet", "--no-header", "--no-annotate",
            "--emit-find-links", "--emit-index-url",  # for pip download: where the pins are found
            "--python-version", target.python, "--python-platform", target.resolver_platform(),
            *map(str, declared.inputs), str(extra), "-o", str(pinned),
        ],
        f"the dependencies ({declared.source}) do not resolve for the server's Python {target.python}",
        cwd=declared.inputs[0].parent,
    )  # fmt: skip
    return pinned


def _download(pinned: Path, target: Target, dest: Path, cwd: Path) -> None:
    """The pins' files; run where the resolver ran, so that the relative paths it wrote (find-links,
    local packages) read the same."""
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
        "--implementation", "cp", "--python-version", target.minor, "-r", str(pinned), "-d", str(dest),
    ]  # fmt: skip
    for tag in target.platforms():
        command += ["--platform", tag]
    _run(command, f"no wheels for {target}", cwd=cwd)


def _is_pure(wheel: Path) -> bool:
    try:
        return all(tag.platform == "any" for tag in parse_wheel_filename(wheel.name)[3])
    except InvalidWheelFilename:
        return False


def _build(project: Path, out: Path, what: str) -> Path:
    """A wheel built from an sdist or a project directory, on this machine; only a pure-Python one."""
    out.mkdir(parents=True, exist_ok=True)
    _run([*UV, "build", "--quiet", "--wheel", "--out-dir", str(out), str(project)], what)
    built = sorted(out.glob("*.whl"), key=lambda p: p.stat().st_mtime)
    if not built:
        raise WheelError(f"{what}: no wheel came out")
    return built[-1]


def _sdist_name(sdist: Path) -> str:
    stem = sdist.name.removesuffix(".tar.gz").removesuffix(".zip")
    name, _, release = stem.rpartition("-")
    return f"{name} {release}"


def _pure_wheel(source: Path, folder: Path, target: Target, what: str, fix: str) -> None:
    """source (an sdist, or a project's directory) built into a wheel in folder, when that is pure Python;
    else a refusal saying `what` it is and the fix."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            wheel = _build(source, Path(scratch), what)
        except WheelError as error:
            raise WheelError(f"{error}; it does not build here: {fix}") from None
        if not _is_pure(wheel):
            raise WheelError(
                f"{what}, with native code, which the kit cannot build for the server ({target.machine},"
                f" glibc {target.glibc}): {fix}"
            )
        shutil.move(wheel, folder / wheel.name)


def _wheels_for_sdists(folder: Path, target: Target) -> None:
    """Each sdist downloaded replaced by its wheel, when it is pure Python; else a refusal."""
    for sdist in sorted(p for p in folder.iterdir() if p.name.endswith((".tar.gz", ".zip"))):
        package = _sdist_name(sdist)
        fix = (
            f"pin a version of {package.split()[0]} that publishes a wheel for {target.machine} Linux"
            " (manylinux), or remove it"
        )
        _pure_wheel(sdist, folder, target, f"{package} publishes only a source distribution", fix)
        sdist.unlink()


def _local_projects(pins: str, where: Path) -> list[Path]:
    """The pinned packages that are directories on this machine, relative to where the resolver ran
    (`./libs/pkg`, `-e ./pkg`, `pkg @ file:///...`): pip download saves nothing for those."""
    projects = []
    for text in pins.splitlines():
        text = text.removeprefix("-e ").strip()
        if not text or text.startswith(("-", "#")):
            continue
        location = urlsplit(text.split(" @ ", 1)[-1].split(";", 1)[0].strip())
        path = where / url2pathname(location.path)
        if location.scheme in ("", "file") and path.is_dir():
            projects.append(path)
    return projects


def _wheels_for_local_projects(projects: list[Path], folder: Path, target: Target) -> None:
    """Each local package the app depends on, built into its wheel when it is pure Python; else a refusal."""
    for project in projects:
        fix = "make it build as a pure-Python wheel, or depend on published wheels of it instead"
        _pure_wheel(project, folder, target, f"the local package {project}", fix)


# One lock a cache key: the hosts of a run deployed at once (threads) make a key's wheels once, the
# others wait for them.
_making: dict[str, threading.Lock] = {}
_making_lock = threading.Lock()


def _cached(key: str, make) -> Path:  # noqa: ANN001 - make(work: Path) fills work
    """CACHE/key, made once by make() in a scratch directory and renamed into place when complete."""
    cached = CACHE / key
    with _making_lock:
        lock = _making.setdefault(key, threading.Lock())
    with lock:
        if not (cached / ".complete").exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
                work = Path(scratch) / "out"
                work.mkdir()
                make(work)
                (work / ".complete").touch()
                shutil.rmtree(cached, ignore_errors=True)
                work.rename(cached)
    return cached


def dependencies(declared: Declared, target: Target) -> tuple[Path, ...]:
    """The wheels of the app's dependencies (with their pins, requirements.txt) for target."""
    key = hashlib.sha256(f"{target}\n{declared.digest}".encode()).hexdigest()[:16]

    def make(work: Path) -> None:
        where = declared.inputs[0].parent
        with tempfile.TemporaryDirectory() as scratch:
            pinned = _compile(declared, target, Path(scratch))
            _download(pinned, target, work, where)
            projects = _local_projects(pinned.read_text(), where)
        _wheels_for_sdists(work, target)
        _wheels_for_local_projects(projects, work, target)

    return tuple(sorted(p for p in _cached(key, make).iterdir() if p.suffix == ".whl"))


def app_wheel(app: AppSource, project: str) -> Path:
    """The app built as a wheel, from the files a release holds (the local directory stays untouched)."""

    def make(work: Path) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            copy = Path(scratch) / "app"
            for name in app.files:
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(app.root / name, copy / name)
            _build(copy, work, f"the app ({project}) does not build as a wheel")

    built = _cached(f"app-{app.content_hash[:16]}", make)
    return next(p for p in built.iterdir() if p.suffix == ".whl")


def uv_wheel(machine: str) -> Path:
    """uv itself, as the wheel for the server's machine: it builds venvs there."""

    def make(work: Path) -> None:
        tags = [f"--platform=manylinux2014_{machine}", f"--platform=manylinux_2_17_{machine}"]
        _run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--only-binary=:all:", *tags, f"uv=={UV_VERSION}", "-d", str(work),
            ],
            f"no uv {UV_VERSION} wheel for {machine}",
        )  # fmt: skip

    return next(p for p in _cached(f"uv-{UV_VERSION}-{machine}", make).iterdir() if p.suffix == ".whl")
