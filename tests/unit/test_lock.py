"""tasks/runtime/lock.sh, the deploy lock, run by bash on this machine with the lock under a scratch
directory: who holds it (connection_pid, is_connection), taking it (a fresh lock, a held one, a stale one,
one this run already holds), dropping it, and the watchdog that ends a run whose connection is gone.

An "sshd process" is faked by a copy of a program named sshd: its /proc/PID/comm reads "sshd". A copy of
/bin/sleep stands for another run's open connection; a copy of bash, running the script as its child,
for this run's own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks import lock
from tasks.platform import SSHD_PROCESS_NAMES
from tasks.shell import Script
from tests.polling import wait_until
from tests.unit.serverside import library, run_functions

INCLUDES = ("python.sh", "lock.sh")
HOLDER = "alice@laptop (deploy)"
OTHER_OWNER = "bob@desk (restart) since 2026-11-26T09:00:00Z"
LOCK_LINE = re.compile(re.escape(HOLDER) + r" since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\n")


def comm(pid: int | str) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(") ", 1)[1].split()[1])


def gone(pid: int | str) -> bool:
    """Whether a process has ended (exited, whether or not its parent has reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(") ", 1)[1].split()[0] in ("Z", "X")


def stop(pid: int | str) -> None:
    """End a process this test started (directly or through its scripts), if it still runs."""
    if not gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def our_connection() -> str:
    """What connection_pid prints in a bash this test process starts: its nearest sshd ancestor, else 1
    (1 in a sandbox or CI; a real sshd's PID when pytest runs in an SSH session)."""
    pid = os.getpid()
    while pid > 1 and comm(pid) not in SSHD_PROCESS_NAMES:
        pid = parent(pid)
    return str(pid)


def values(tmp_path: Path, names: tuple[str, ...] = SSHD_PROCESS_NAMES) -> dict:
    return lock.values(str(tmp_path / "lock"), "alice@laptop", "deploy") | {"SSHD_PROCESS_NAMES": names}


def loaded(tmp_path: Path, lines: list[str]) -> str:
    """A script file's text: the lock's functions loaded with these values, then `lines`."""
    return library(Script("test", values(tmp_path), INCLUDES, ())) + "\n".join(lines) + "\n"


def sshd_shell(tmp_path: Path) -> Path:
    """A copy of bash named sshd: what it runs has an sshd ancestor, as a command of an SSH connection."""
    fake = tmp_path / "sshd"
    if not fake.exists():
        shutil.copy("/bin/bash", fake)
    return fake


def connection(tmp_path: Path, *scripts: list[str]) -> subprocess.CompletedProcess:
    """Scripts (each its lines, after the lock's functions) run one after another as the commands of one
    SSH connection: it prints its PID, then each script's output and `exit CODE`."""
    commands = ['echo "$$"']
    for number, lines in enumerate(scripts):
        script = tmp_path / f"command{number}.sh"
        script.write_text(loaded(tmp_path, lines))
        commands.append(f'bash {script}; echo "exit $?"')
    return subprocess.run(
        [str(sshd_shell(tmp_path)), "-c", "; ".join(commands)], capture_output=True, text=True, timeout=20
    )


def write_lock(tmp_path: Path, owner: str, conn: str | None) -> Path:
    """A lock as another run leaves it."""
    lock_dir = tmp_path / "lock"
    lock_dir.mkdir()
    (lock_dir / "owner").write_text(owner + "\n")
    if conn is not None:
        (lock_dir / "conn").write_text(conn + "\n")
    return lock_dir


def read_lock(tmp_path: Path) -> tuple[str, str]:
    return (tmp_path / "lock" / "owner").read_text(), (tmp_path / "lock" / "conn").read_text()


def leftovers(tmp_path: Path) -> list[str]:
    """The lock's entries in the scratch directory: the lock itself and its .new/.stale/.done moves."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("lock"))


@pytest.fixture
def sshd(tmp_path) -> Iterator[subprocess.Popen]:
    """Another run's open SSH connection: a process whose comm is "sshd"."""
    copy = tmp_path / "bin" / "sshd"
    copy.parent.mkdir()
    shutil.copy("/bin/sleep", copy)
    process = subprocess.Popen([str(copy), "60"])
    try:
        wait_until(lambda: comm(process.pid) == "sshd", 5, "the fake sshd process runs")
        yield process
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def dead_pid() -> int:
    """The PID of a process that has ended and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_is_connection_is_true_only_for_a_live_process_named_like_sshd(sshd, dead_pid, tmp_path):
    done = run_functions(
        values(tmp_path),
        [f"is_connection {pid} && echo {what} yes || echo {what} no"
         for what, pid in (("sshd", sshd.pid), ("bash", "$$"), ("dead", dead_pid))],
        includes=INCLUDES,
    )  # fmt: skip
    assert done.stdout.split("\n") == ["sshd yes", "bash no", "dead no", ""]


def test_is_connection_accepts_every_name_in_sshd_process_names(sshd, tmp_path):
    asked = [f"is_connection {sshd.pid}"]
    named = run_functions(values(tmp_path, ("sshd-session", "sshd")), asked, includes=INCLUDES)
    other = run_functions(values(tmp_path, ("sshd-session",)), asked, includes=INCLUDES)
    assert (named.returncode, other.returncode) == (0, 1)


def test_connection_pid_is_1_when_no_ancestor_is_an_sshd_process(tmp_path):
    done = run_functions(values(tmp_path, ("no-such-daemon",)), ["connection_pid"], includes=INCLUDES)
    assert (done.returncode, done.stdout) == (0, "1\n")


def test_connection_pid_is_the_nearest_sshd_ancestor(tmp_path):
    fake = sshd_shell(tmp_path)
    script = tmp_path / "script.sh"
    script.write_text(loaded(tmp_path, ['echo "$(connection_pid) $PPID"']))
    # sshd (outer) -> sshd (inner, the script's parent) -> bash script; "; exit" keeps each a process.
    inner = f"{fake} -c 'bash {script}; exit $?'"
    done = subprocess.run([str(fake), "-c", f'{inner}; echo "outer $$"'], capture_output=True, text=True)
    found, inner_pid, _, outer_pid = done.stdout.split()
    assert found == inner_pid != outer_pid


def test_commands_of_one_connection_share_it_and_the_lock(tmp_path):
    """As a run's commands (the probe's, then the apply script's) take the lock, each on its own."""
    done = connection(tmp_path, ["take_lock", "take_lock", "echo twice"], ["take_lock", "echo again"])
    conn, *printed = done.stdout.splitlines()
    assert printed == ["twice", "exit 0", "again", "exit 0"], done.stderr
    owner, held = read_lock(tmp_path)
    assert (LOCK_LINE.fullmatch(owner) is not None, held) == (True, f"{conn}\n")
    assert leftovers(tmp_path) == ["lock"]


def test_take_lock_creates_the_lock_with_its_owner_and_this_connection(tmp_path):
    before = datetime.now(UTC).replace(microsecond=0)
    done = run_functions(values(tmp_path), ["take_lock", "echo took"], includes=INCLUDES)
    assert (done.returncode, done.stdout) == (0, "took\n"), done.stderr
    owner, conn = read_lock(tmp_path)
    match = LOCK_LINE.fullmatch(owner)
    assert match, owner
    since = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= since <= datetime.now(UTC) + timedelta(seconds=1)
    assert conn == our_connection() + "\n"
    assert leftovers(tmp_path) == ["lock"]


def test_take_lock_creates_the_lock_directory_s_parent_when_missing(tmp_path):
    nested = values(tmp_path) | {"LOCK_DIR": str(tmp_path / "run" / "lock" / "app")}
    done = run_functions(nested, ["take_lock"], includes=INCLUDES)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "lock" / "app" / "conn").read_text() == our_connection() + "\n"


def test_take_lock_exits_75_naming_the_owner_while_an_open_connection_holds_the_lock(sshd, tmp_path):
    write_lock(tmp_path, OTHER_OWNER, str(sshd.pid))
    done = run_functions(values(tmp_path), ["take_lock", "echo took"], includes=INCLUDES)
    assert done.returncode == lock.LOCKED_EXIT == 75
    assert done.stdout == f"::fail lock locked by {OTHER_OWNER}: wait for that run to finish\n"
    assert read_lock(tmp_path) == (OTHER_OWNER + "\n", f"{sshd.pid}\n")
    assert leftovers(tmp_path) == ["lock"]


@pytest.mark.parametrize("holder", ["dead", "not sshd", "no conn"])
def test_take_lock_takes_over_a_lock_whose_connection_is_gone(holder, dead_pid, tmp_path):
    conn = {"dead": str(dead_pid), "not sshd": str(os.getpid()), "no conn": None}[holder]
    write_lock(tmp_path, OTHER_OWNER, conn)
    done = run_functions(values(tmp_path), ["take_lock", "echo took"], includes=INCLUDES)
    assert (done.returncode, done.stdout) == (0, "took\n"), done.stderr
    owner, conn = read_lock(tmp_path)
    assert LOCK_LINE.fullmatch(owner), owner
    assert conn == our_connection() + "\n"
    assert leftovers(tmp_path) == ["lock"]


def test_take_lock_again_in_the_same_run_keeps_the_lock_as_it_is(tmp_path):
    first = run_functions(values(tmp_path), ["take_lock", "take_lock", "echo twice"], includes=INCLUDES)
    assert (first.returncode, first.stdout) == (0, "twice\n"), first.stderr
    taken = read_lock(tmp_path)
    later = run_functions(values(tmp_path), ["take_lock", "echo again"], includes=INCLUDES)
    assert (later.returncode, later.stdout) == (0, "again\n"), later.stderr
    assert read_lock(tmp_path) == taken
    assert leftovers(tmp_path) == ["lock"]


def test_another_connection_finds_the_lock_held_while_this_one_is_open(sshd, tmp_path):
    write_lock(tmp_path, OTHER_OWNER, str(sshd.pid))
    done = connection(tmp_path, ["take_lock", "echo took"])
    conn, *printed = done.stdout.splitlines()
    assert printed == [f"::fail lock locked by {OTHER_OWNER}: wait for that run to finish", "exit 75"]
    assert read_lock(tmp_path)[1] == f"{sshd.pid}\n" != f"{conn}\n"


def test_drop_lock_removes_the_lock_this_connection_holds(tmp_path):
    done = run_functions(values(tmp_path), ["take_lock", "drop_lock", "echo dropped"], includes=INCLUDES)
    assert (done.returncode, done.stdout) == (0, "dropped\n"), done.stderr
    assert leftovers(tmp_path) == []


def test_drop_lock_leaves_a_lock_another_connection_holds(sshd, tmp_path):
    write_lock(tmp_path, OTHER_OWNER, str(sshd.pid))
    # As an apply script's EXIT trap runs it after take_lock found the lock held.
    done = run_functions(values(tmp_path), ["trap drop_lock EXIT", "take_lock"], includes=INCLUDES)
    assert done.returncode == 75
    assert read_lock(tmp_path) == (OTHER_OWNER + "\n", f"{sshd.pid}\n")
    assert leftovers(tmp_path) == ["lock"]


def test_hold_lock_then_drop_lock_leave_no_lock_and_no_watchdog(tmp_path):
    done = run_functions(
        values(tmp_path),
        ["hold_lock", 'echo "$LOCK_WATCHDOG"', '[ -d "$LOCK_DIR" ] && echo held', "drop_lock"],
        includes=INCLUDES,
    )
    watchdog, held = done.stdout.split()
    try:
        assert (done.returncode, held) == (0, "held"), done.stderr
        assert leftovers(tmp_path) == []
        wait_until(lambda: gone(watchdog), 3, "the watchdog ends with drop_lock")
    finally:
        stop(watchdog)


def test_the_watchdog_ends_a_run_whose_connection_is_gone_and_its_lock_goes_with_it(tmp_path):
    """As apply.sh holds it: hold_lock, then an EXIT trap that drops the lock and `exit` on TERM."""
    fake = sshd_shell(tmp_path)
    pids = tmp_path / "pids"
    script = tmp_path / "script.sh"
    lines = [
        "hold_lock",
        "trap drop_lock EXIT",
        "trap 'exit 143' TERM HUP",
        f'sleep 30 & echo "$$ $LOCK_WATCHDOG $!" >{pids}',
        "wait $!",
        "echo not stopped >&2",
    ]
    script.write_text(loaded(tmp_path, lines))
    connection = subprocess.Popen(
        [str(fake), "-c", f"bash {script}; exit $?"], start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started: list[str] = []
    try:
        started = wait_until(lambda: pids.exists() and pids.read_text().split(), 5, "the run holds the lock")
        assert read_lock(tmp_path)[1] == f"{connection.pid}\n"
        connection.kill()  # the SSH connection is cut
        connection.wait()
        for pid in started:  # the run's bash, its watchdog, what it was running
            wait_until(lambda pid=pid: gone(pid), 3, f"process {pid} of the run ends")
        wait_until(lambda: leftovers(tmp_path) == [], 3, "the run's EXIT trap drops its lock")
    finally:
        connection.kill()
        connection.wait()
        for pid in started:
            stop(pid)


def test_a_stale_lock_another_run_just_took_over_stays_that_run_s(sshd, dead_pid, tmp_path):
    """Two runs find the same stale lock; the other one takes it over between this run's look at the lock
    (is_connection on its conn) and its move of the stale lock aside."""
    write_lock(tmp_path, OTHER_OWNER, str(dead_pid))
    meanwhile = [
        'eval "looked_$(declare -f is_connection)"',
        "is_connection() {",
        f'    if [ "$1" = {dead_pid} ]; then',
        '        mv -T "$LOCK_DIR" "$LOCK_DIR.stale.other" && rm -rf "$LOCK_DIR.stale.other"',
        '        mkdir "$LOCK_DIR.new.other"',
        '        echo "bob@desk (restart) since now" >"$LOCK_DIR.new.other/owner"',
        f'        echo {sshd.pid} >"$LOCK_DIR.new.other/conn" && mv -T "$LOCK_DIR.new.other" "$LOCK_DIR"',
        "    fi",
        '    looked_is_connection "$1"',
        "}",
    ]
    done = run_functions(values(tmp_path), [*meanwhile, "take_lock", "echo took"], includes=INCLUDES)
    assert read_lock(tmp_path) == ("bob@desk (restart) since now\n", f"{sshd.pid}\n")
    assert done.returncode == 75
