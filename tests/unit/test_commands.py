"""exec: the script that runs a user's command in the live release, the task, its output and exit code.

The command is a value of the script, never part of its code: hostile text stays data. The script runs
here with the server-side functions that need a server (the lock, as_app) replaced by stubs.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

from tasks import commands, namespace, recap, runtime
from tasks.cli import TRUST
from tasks.converge import RECORDED
from tasks.fleet import PARALLEL
from tasks.remote import collect
from tasks.shell import VALUES_BEGIN, VALUES_END, Script, assignment
from tests.unit.conftest import PLATFORM, paths_of
from tests.unit.serverside import library, run_bash, shellcheck
from tests.unit.test_remote import FakeChannel
from tests.unit.test_values_as_data import hostile_texts

COMMAND = "flask --app flaskr init-db"


def exec_script(s, command: str = COMMAND) -> Script:
    return commands.script(s, paths_of(s), PLATFORM, command, "alice@laptop")


def test_the_command_is_a_value_of_the_script_and_the_lock_is_held_for_exec(settings):
    script = exec_script(settings)
    assert script.values["EXEC_COMMAND"] == COMMAND
    assert script.values["LOCK_HOLDER"] == "alice@laptop (exec)"
    assert tuple(script.includes) == runtime.EXEC
    assert list(script.lines) == ["exec_in_live_release"]
    assert "exec" not in RECORDED  # no history entry: a command is no deploy


def test_the_script_is_valid_bash_and_passes_shellcheck(settings):
    text = exec_script(settings, "echo out; echo err >&2; exit 3").render()
    checked = run_bash(f"bash -n <<'END_OF_SCRIPT'\n{text}\nEND_OF_SCRIPT")
    assert checked.returncode == 0, checked.stderr
    assert shellcheck(text) == ""


def code_of(text: str) -> str:
    """A rendered script without its values block: the code."""
    return text[: text.index(VALUES_BEGIN)] + text[text.index(VALUES_END) :]


@pytest.mark.parametrize("command", hostile_texts(Path("/tmp/pwned")), ids=range(10))
def test_a_hostile_command_appears_only_in_the_values_block(settings, command):
    text = exec_script(settings, command).render()
    values = text[text.index(VALUES_BEGIN) : text.index(VALUES_END)]
    assert assignment("EXEC_COMMAND", command) in values
    assert command not in code_of(text)
    assert shellcheck(text) == ""


# Stand-ins for what needs a server: the lock (lock.sh) and the app's unit (units.sh's in_release_unit,
# which prints each argument it is given, NUL-separated, then what comes on its stdin, and exits 3).
STUBS = """
hold_lock() { echo "hold_lock" >&2; }
drop_lock() { echo "drop_lock" >&2; }
in_release_unit() { printf '%s\\0' "$@" >"$CALLED"; cat >>"$CALLED"; return 3; }
"""


def run_exec(settings, tmp_path: Path, command: str, live: bool = True):
    """The exec script, run here: `current` a link to a release under tmp_path (or no link at all)."""
    release = tmp_path / "releases" / "20261126T101500Z-0123456789ab"
    release.mkdir(parents=True)
    current = tmp_path / "current"
    if live:
        current.symlink_to(release)
    script = exec_script(settings, command)
    script = Script(script.title, {**script.values, "CURRENT": str(current)}, script.includes, script.lines)
    called = tmp_path / "called"
    text = library(script) + f"CALLED={shlex.quote(str(called))}\n{STUBS}\n" + "\n".join(script.lines) + "\n"
    done = run_bash(text, cwd=tmp_path)
    *args, stdin = called.read_bytes().split(b"\0") if called.exists() else [None]
    if stdin is None:
        return done, release, None, None
    return done, release, [a.decode() for a in args], stdin.decode()


@pytest.mark.parametrize("command", hostile_texts(Path("MARKER")), ids=range(10))
def test_a_hostile_command_reaches_sh_c_as_one_word_and_nothing_else_runs_it(settings, tmp_path, command):
    marker = tmp_path / "pwned"
    command = command.replace("MARKER", str(marker))
    done, release, args, stdin = run_exec(settings, tmp_path, command)
    assert args == ["exec", "0", str(release.resolve()), "-"], done.stderr
    assert stdin == f"{command}\n"  # the line, never an argument
    assert not marker.exists()
    assert done.returncode == 3, "the script exits with the command's exit code"
    assert done.stderr.splitlines() == ["hold_lock", "drop_lock"]  # the lock held around the command
    assert done.stdout == ""


def test_with_no_live_release_the_script_says_so_and_runs_nothing(settings, tmp_path):
    done, _, args, _ = run_exec(settings, tmp_path, "touch should-not-exist", live=False)
    assert done.returncode == 1
    assert args is None and not (tmp_path / "should-not-exist").exists()
    assert "no live release" in done.stderr and "run fab deploy first" in done.stderr
    assert "hold_lock" not in done.stderr


def test_the_task_is_named_exec_takes_the_command_as_its_argument_and_reads_well_in_the_list():
    task = namespace()["exec"]
    assert task is commands.exec_
    assert task.positional == ["command"]
    assert {arg.name for arg in task.get_arguments()} == {"command", TRUST, PARALLEL}
    first_line = task.__doc__.splitlines()[0]
    assert len(first_line) <= 110 and "live release" in first_line and "app user" in first_line


def test_output_is_passed_on_as_it_comes_not_collected_at_the_end():
    channel = FakeChannel(b"first line\n", b"", None)  # it prints, then never ends
    quiet, unused = os.pipe()
    channel.fileno = lambda: quiet
    seen: list[tuple[str, bytes]] = []
    try:
        with pytest.raises(TimeoutError):
            collect(channel, time.monotonic() + 0.3, lambda b: seen.append(("out", b)), None)
    finally:
        channel.close()
        os.close(quiet)
        os.close(unused)
    assert seen == [("out", b"first line\n")]


def test_both_streams_go_to_their_sinks_in_order_and_come_back_empty():
    channel = FakeChannel(b"o" * 10_000, b"e" * 10_000, 3, piece=1000)
    out, err = bytearray(), bytearray()
    try:
        got = collect(channel, time.monotonic() + 30, out.extend, err.extend)
    finally:
        channel.close()
    assert got == (b"", b"", 3)
    assert (bytes(out), bytes(err)) == (b"o" * 10_000, b"e" * 10_000)


def exit_code(outcomes: dict[str, int | str]) -> int:
    """The exit code of a run whose hosts, in this order, ended so: their command's exit code, `locked`
    (another run's lock) or `down` (a failure of another kind)."""
    run = recap.Run()
    for host, outcome in outcomes.items():
        if outcome == "locked":
            run.locked(host, "locked by alice@laptop (deploy)")
        elif outcome == "down":
            run.report(host, "connect", "failed", "no answer")
        else:
            run.exited(host, "exec", outcome)
    return run.exit_code()


def test_the_run_exits_with_the_commands_exit_code(capsys):
    recap.exited("h-ok", "exec", 0)
    recap.exited("h-3", "exec", 3)
    assert recap.exit_code() == 3
    assert capsys.readouterr().out.splitlines() == [
        "h-ok  exec  ok",
        "h-3  exec  failed: the command exited 3",
    ]
    assert exit_code({"h-ok": 0, "h-3": 3, "h-7": 7}) == 3, "several hosts: the first one's"
    assert exit_code({"h-300": 300}) == 1, "no exit code above 255"
    assert exit_code({"h-locked": "locked"}) == recap.LOCKED_EXIT
    assert exit_code({"h-3": 3, "h-locked": "locked"}) == 1, "mixed failures: 1"
    assert exit_code({"h-3": 3, "h-down": "down"}) == 1
