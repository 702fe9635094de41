"""app_command.py, the main process of the app's own processes and scheduled jobs: a command line from
root's file, run by bash -c in the release it starts in, with the release's venv and app.env."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tasks import runtime
from tasks.layout import META

APP_COMMAND = Path(runtime.__file__).parent / "app_command.py"


def release(tmp_path: Path, env: dict[str, str]) -> Path:
    """A release as push leaves it: a venv with one script on its bin, app.env in its env.json."""
    directory = tmp_path / "releases" / "20261207-1"
    (directory / META).mkdir(parents=True)
    (directory / META / "env.json").write_text(json.dumps(env))
    bin_dir = directory / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    tool = bin_dir / "which-venv"
    tool.write_text("#!/bin/sh\necho venv tool\n")
    tool.chmod(0o755)
    return directory


def run(tmp_path: Path, command: str, cwd: Path) -> subprocess.CompletedProcess:
    command_file = tmp_path / "command"
    command_file.write_text(command + "\n")
    return subprocess.run(
        [sys.executable, "-I", "-S", str(APP_COMMAND), str(command_file)],
        cwd=cwd, capture_output=True, text=True, timeout=30, env={"HOME": "/nonexistent"},
    )  # fmt: skip


def test_the_line_runs_with_sh_in_the_release_with_its_venv_first_and_app_env(tmp_path):
    directory = release(tmp_path, {"GREETING": "hello", "REDIS_URL": "unix:///run/x.sock"})
    done = run(tmp_path, 'which-venv && echo "$GREETING $REDIS_URL $VIRTUAL_ENV" && pwd', directory)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "venv tool",
        f"hello unix:///run/x.sock {directory}/.venv",
        str(directory),
    ]


def test_characters_supervisor_and_systemd_would_read_reach_the_shell_as_written(tmp_path):
    directory = release(tmp_path, {})
    done = run(tmp_path, "printf '%s;%%(here)s $$HOME %%n\\n' a ; exit 3", directory)
    assert (done.returncode, done.stdout) == (3, "a;%(here)s $$HOME %n\n")


def test_an_app_env_value_wins_over_the_kits_as_for_the_release_command(tmp_path):
    directory = release(tmp_path, {"LANG": "de_DE.UTF-8"})
    assert run(tmp_path, 'echo "$LANG"', directory).stdout == "de_DE.UTF-8\n"


def test_its_meta_is_the_layouts():
    namespace: dict = {}
    exec(compile(APP_COMMAND.read_text().split("\ndef ", 1)[0], str(APP_COMMAND), "exec"), namespace)
    assert namespace["META"] == META


def test_a_single_command_replaces_the_shell_so_it_is_the_process_supervisor_signals(tmp_path):
    directory = release(tmp_path, {})
    command_file = tmp_path / "command"
    command_file.write_text('python3 -c "import os; print(os.getpid())"\n')
    started = subprocess.Popen(
        [sys.executable, "-I", "-S", str(APP_COMMAND), str(command_file)],
        cwd=directory, stdout=subprocess.PIPE, text=True, env={"HOME": "/nonexistent"},
    )  # fmt: skip
    out, _ = started.communicate(timeout=30)
    assert int(out) == started.pid
