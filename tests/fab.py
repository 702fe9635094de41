"""`fab` run as a user runs it, from the repo root, against sandbox servers: for the integration tests,
the benchmarks and the sandbox demo."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAB = Path(sys.executable).with_name("fab")


def command(ssh_config: Path, host: str, *args: str) -> list[str]:
    """fab -S SSH_CONFIG -H HOST ARGS..."""
    return [str(FAB), "-S", str(ssh_config), "-H", host, *args]


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        tail = "\n".join(self.output.splitlines()[-40:])
        return f"fab {' '.join(self.args)} exited {self.code} after {self.seconds:.1f} s:\n{tail}"

    def one_error_line(self) -> str:
        """The run's one line saying what is wrong (a step's failure, or the settings error); it fails the
        test when there is a traceback, or not exactly one such line."""
        assert "Traceback" not in self.output, str(self)
        failures = [line for line in self.output.splitlines() if "  failed: " in line]
        if self.code == 2:  # refused before connecting: Invoke prints the message alone
            failures = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(failures) == 1, f"not one error line:\n{self}"
        return failures[0]


def run(ssh_config: Path, host: str, *args: str, timeout: float = 300) -> Run:
    """Run fab to the end, without a terminal or stdin, as a script would."""
    started = time.monotonic()
    done = subprocess.run(
        command(ssh_config, host, *args),
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return Run(args, done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def start(ssh_config: Path, host: str, *args: str) -> subprocess.Popen:
    """fab in the background, in its own process group (so a test can kill it as Ctrl-C cannot)."""
    return subprocess.Popen(
        command(ssh_config, host, *args), cwd=ROOT, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
