"""Running server-side code on this machine, for unit tests: the runtime files under a scratch root.

The functions of tasks/runtime/*.sh are loaded as a script loads them (from a rendered Script), then
the test's own lines run with the paths pointed into a scratch directory and, where a function would
need a real server, a stub in its place.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tasks.shell import Script, Value
from tasks.steps import APPLY

SHELLCHECK = Path(sys.executable).with_name("shellcheck")
THIS_SCRIPT = "# ---- this script"


def library(script: Script) -> str:
    """A rendered script up to its own lines: its values and the runtime files, nothing run yet."""
    text = script.render()
    return text[: text.index(THIS_SCRIPT)]


def run_bash(
    text: str, stdin: bytes = b"", cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(
            ["bash", "-c", text], input=stdin, cwd=cwd, capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as expired:
        output = (expired.stdout or b"").decode(errors="replace")[-2000:]
        raise AssertionError(f"the script did not end within {timeout:g} s; its output:\n{output}") from None
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def run_functions(
    values: Mapping[str, Value], lines: Sequence[str], includes: Sequence[str] = APPLY, **options
) -> subprocess.CompletedProcess:
    """The runtime files loaded with these values, then `lines` run."""
    return run_bash(library(Script("test", values, includes, ())) + "\n".join(lines) + "\n", **options)


def shellcheck(text: str) -> str:
    """ShellCheck's warnings and errors (notes and style hints left out) on a bash script; "" when none."""
    done = subprocess.run(
        [str(SHELLCHECK), "--shell=bash", "--severity=warning", "--format=gcc", "-"],
        input=text, capture_output=True, text=True,
    )  # fmt: skip
    return done.stdout + done.stderr


# What the python3 programs a deploy runs on every host would import at a cost: the modules' Python
# halves, each taking longer to import than the program takes to run.
COSTLY_IMPORTS = frozenset(
    {"json", "re", "socket", "signal", "hashlib", "shlex", "urllib.parse", "enum", "ssl", "encodings.idna"}
)


def run_importing(
    program: Path, *arguments: str, timeout: float = 20, **options
) -> tuple[subprocess.CompletedProcess, set[str]]:
    """A runtime program run as the server runs it (python3 -I -S), and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", str(program), *arguments],
        capture_output=True, text=True, timeout=timeout, **options,
    )  # fmt: skip
    return done, {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
