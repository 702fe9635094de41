"""Third-party code in units of its own (runtime/units.sh, bounded.py), shared directories made without
following a link (shared_dirs.py), and what the app printed masked before it is shown or kept (mask.py,
apply.sh's `masked`): run here, the way the server runs them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks import runtime
from tests.unit.serverside import run_functions

RUNTIME = Path(runtime.__file__).parent
SECRET = "postgres://app:hunter22@db/app"


def bounded(*args: str, timeout: float = 30, **options) -> subprocess.CompletedProcess:
    """bounded.py as a unit's main process runs it."""
    return subprocess.run(
        [sys.executable, "-I", "-S", str(RUNTIME / "bounded.py"), *args],
        capture_output=True, text=True, timeout=timeout, **options,
    )  # fmt: skip


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, ended but not yet reaped by its parent, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_a_command_ends_as_an_exit_code_a_signal_too(tmp_path):
    # systemd counts a main process that SIGTERM ended as a clean exit: bounded.py never ends by one.
    assert bounded("0", "-", "sh", "-c", "exit 7").returncode == 7
    assert bounded("0", "-", "sh", "-c", "kill -TERM $$").returncode == 128 + 15
    assert bounded("0", "-", "no-such-command-here").returncode == 127


def test_app_env_comes_from_its_file_into_the_environment(tmp_path):
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"DATABASE_URL": SECRET}))
    done = bounded("0", str(env), "sh", "-c", 'printf %s "$DATABASE_URL"')
    assert (done.returncode, done.stdout) == (0, SECRET)


def test_at_its_time_limit_the_command_and_its_process_group_end_and_it_exits_124(tmp_path):
    pids = tmp_path / "pids"
    started = time.monotonic()
    # A child that ignores SIGTERM, and a grandchild: SIGKILL reaches both once the grace is over.
    command = f"trap '' TERM; sleep 300 & echo $$ $! > {pids}; wait"
    done = bounded("1", "-", "sh", "-c", command, timeout=60)
    assert done.returncode == 124
    assert time.monotonic() - started < 1 + 10 + 5  # the limit, the grace, slack
    assert not any(alive(int(pid)) for pid in pids.read_text().split())


def fake_systemd_run(tmp_path: Path) -> list[str]:
    """Lines defining a systemd-run that records its arguments and runs nothing."""
    record = tmp_path / "systemd-run.args"
    return [f"systemd-run() {{ printf '%s\\0' \"$@\" > {record}; return 0; }}"]


@pytest.mark.parametrize("word", ["echo $HOME $$ ${X:-y}", "a$", "$$$", "100% of $(id)"])
def test_every_word_reaches_the_unit_as_written_though_systemd_expands_dollar_signs(tmp_path, word):
    source = (RUNTIME / "bounded.py").read_text()  # which holds a $NAME of its own
    lines = [*fake_systemd_run(tmp_path), f"run_unit check 5 --uid=app -- - /bin/echo {shlex.quote(word)}"]
    done = run_functions({"APP": "app", "PY_BOUNDED": source}, lines)
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "systemd-run.args").read_bytes().decode().split("\0")[:-1]
    words = args[args.index("--") + 1 :]
    # systemd turns $$ into $ and expands $NAME: what it runs is the command, word for word.
    assert [w.replace("$$", "$") for w in words] == [
        "/usr/bin/python3", "-I", "-S", "-c", source, "5", "-", "/bin/echo", word,
    ]  # fmt: skip
    assert all("$" not in w.replace("$$", "") for w in words)
    assert "--uid=app" in args and any(a.startswith("--unit=flaskdeploy-app-check-") for a in args)


def test_a_line_of_the_users_runs_with_sh_and_is_no_processs_argument(tmp_path):
    # The release command and exec's command come on stdin: `ps` shows the arguments of every process.
    line = "echo \"$0 ran: $(tr '\\0' ' ' </proc/$$/cmdline) ${FLASKDEPLOY_LINE:-unset}\" # token-5e1"
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(RUNTIME / "bounded.py"), "0", "-", "-"],
        input=f"{line}\n", capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("/bin/sh ran: /bin/sh -c ") and done.stdout.endswith(" unset\n")
    assert "token-5e1" not in done.stdout  # not in the shell's arguments


def test_a_failure_stops_the_unit_it_waits_on_before_anything_else(tmp_path):
    stopped = tmp_path / "stopped"
    lines = [
        f'systemctl() {{ echo "systemctl $*" >> {stopped}; }}',
        "UNIT=flaskdeploy-app-release-command-1.service",
        'W=""',
        'die "the connection was lost"',
    ]
    values = {"APP": "app", "META": ".deploy", "RELEASES_DIR": str(tmp_path), "ACTION": ""}
    done = run_functions(values, ["STEP=apply LIVE_DIR='' SWITCHED=''", *lines])
    assert stopped.read_text() == "systemctl stop flaskdeploy-app-release-command-1.service\n"
    assert done.stdout == "::fail apply the connection was lost\n"


# ---- shared directories ------------------------------------------------------------------------------


def shared_dirs(shared: Path, *dirs: str) -> subprocess.CompletedProcess:
    user = "nobody"
    return subprocess.run(
        [sys.executable, "-I", "-S", str(RUNTIME / "shared_dirs.py"), str(shared), user, *dirs],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("making directories of another user's needs root")
    path = tmp_path / "shared"
    path.mkdir(mode=0o750)
    return path


def owner(path: Path) -> tuple[int, int, int]:
    info = path.lstat()
    return info.st_uid, info.st_gid, info.st_mode & 0o7777


def test_a_shared_dir_is_the_apps_and_the_parents_made_for_it_roots(shared):
    nobody = __import__("pwd").getpwnam("nobody")
    done = shared_dirs(shared, "instance/uploads", "data/files/big")
    assert done.returncode == 0, done.stderr
    assert owner(shared / "instance") == (0, nobody.pw_gid, 0o750)
    assert owner(shared / "instance" / "uploads") == (nobody.pw_uid, nobody.pw_gid, 0o750)
    assert owner(shared / "data" / "files") == (0, nobody.pw_gid, 0o750)
    assert owner(shared / "data" / "files" / "big") == (nobody.pw_uid, nobody.pw_gid, 0o750)


def test_a_link_anywhere_on_the_way_is_refused_and_what_it_names_left_alone(shared, tmp_path):
    elsewhere = tmp_path / "etc-of-root"
    elsewhere.mkdir(mode=0o700)
    before = owner(elsewhere)
    (shared / "instance").mkdir()
    (shared / "instance" / "uploads").symlink_to(elsewhere)  # the app's user switched it
    done = shared_dirs(shared, "instance/uploads")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"{shared}/instance/uploads is a symbolic link or no directory, which root will not follow: remove it"
        " (the app's user may have made it)"
    )
    (shared / "data").symlink_to(elsewhere)
    assert shared_dirs(shared, "data/files").returncode == 1
    assert owner(elsewhere) == before and not (elsewhere / "files").exists()


def test_a_fifo_where_a_shared_dir_goes_is_refused_without_waiting(shared):
    os.mkfifo(shared / "uploads")
    started = time.monotonic()
    done = shared_dirs(shared, "uploads")
    assert done.returncode == 1 and time.monotonic() - started < 5


def test_a_unit_that_could_not_start_its_command_is_failed_with_systemds_reason(tmp_path):
    # The builder's group gone, say: systemd fails the unit before the command runs, which writes nothing.
    journal = [
        "Started flaskdeploy-app-venv-1.service - flaskdeploy: venv of app.",
        "flaskdeploy-app-venv-1.service: Failed to determine supplementary groups: No such process",
        "flaskdeploy-app-venv-1.service: Failed at step GROUP spawning /usr/bin/python3: No such process",
        "flaskdeploy-app-venv-1.service: Main process exited, code=exited, status=216/GROUP",
    ]
    (tmp_path / "empty.out").write_text("")
    (tmp_path / "said.out").write_text("error: uv could not read the wheel\n")
    lines = [
        'journalctl() { [ "${*: -1}" = flaskdeploy-app-venv-1.service ] && printf "%s\\n" "${JOURNAL[@]}"; }',
        f"JOURNAL=({' '.join(shlex.quote(x) for x in journal)})",
        "LAST_UNIT=flaskdeploy-app-venv-1.service",
        f'echo "uv venv failed$(unit_reason {tmp_path}/empty.out)"',
        f'echo "uv venv failed$(unit_reason {tmp_path}/said.out)"',
    ]
    done = run_functions({"APP": "app"}, lines)
    assert done.stdout.splitlines() == [
        "uv venv failed: Failed to determine supplementary groups: No such process",
        "uv venv failed: error: uv could not read the wheel",
    ]
