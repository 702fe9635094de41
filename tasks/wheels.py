"""The app's dependencies as wheels, resolved on the control machine for the server's Python and platform.

The server never needs PyPI: it builds its venv from these with `pip install --no-index`. Wheels are
cached per requirements and target, so a repeat deploy needs no index either.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "flaskdeploy" / "wheels"


class WheelError(RuntimeError):
    """The requirements could not be resolved to wheels for the server."""


@dataclass(frozen=True)
class Target:
    python: str  # "3.11"
    machine: str  # "x86_64"
    glibc: str  # "2.36"

    def __str__(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.machine}-glibc{self.glibc}"


def venv_id(requirements: str, target: Target) -> str:
    """Names the venv (and the wheel cache) for these requirements on this kind of server."""
    return hashlib.sha256(f"{target}\n{requirements}".encode()).hexdigest()[:16]


def platforms(target: Target) -> list[str]:
    """Every platform tag the server accepts: manylinux up to its glibc, and plain linux."""
    glibc_minor = int(target.glibc.split(".")[1]) if "." in target.glibc else 17
    tags = [f"manylinux_2_{minor}_{target.machine}" for minor in range(5, glibc_minor + 1)]
    return [*tags, f"manylinux2014_{target.machine}", f"linux_{target.machine}"]


def download_command(requirements_file: Path, target: Target, dest: Path) -> list[str]:
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", target.python,
        "-r", str(requirements_file), "-d", str(dest),
    ]  # fmt: skip
    for tag in platforms(target):
        command += ["--platform", tag]
    return command


def resolve(requirements: str, target: Target) -> tuple[Path, ...]:
    """The wheel files for `requirements` on `target`, downloaded once into the local cache."""
    cached = CACHE / venv_id(requirements, target)
    if not (cached / ".complete").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
            work = Path(scratch)
            (work / "requirements.txt").write_text(requirements)
            (work / "wheels").mkdir()
            done = subprocess.run(
                download_command(work / "requirements.txt", target, work / "wheels"),
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode != 0:
                lines = [line for line in done.stderr.splitlines() if line.strip()]
                reason = lines[-1] if lines else f"pip exited {done.returncode}"
                raise WheelError(f"no wheels for {target}: {reason}")
            (work / "wheels" / ".complete").touch()
            shutil.rmtree(cached, ignore_errors=True)
            (work / "wheels").rename(cached)
    return tuple(sorted(p for p in cached.iterdir() if p.suffix == ".whl"))
