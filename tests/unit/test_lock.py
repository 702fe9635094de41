"""tasks/runtime/lock.sh, the deploy lock, run by bash on this machine with its root directory under a
scratch directory: which SSH connection a run belongs to (connection_id, is_connection), the lock root
(made root's, refused when it is anything else), taking the lock (failing closed without a connection; a
free, held, stale or already ours lock; one an interrupted apply still holds), holding it for an apply,
dropping it, and the watchdog that ends a run whose connection is gone.

An "sshd process" is faked by a copy of a program named sshd: its /proc/PID/comm reads "sshd". A copy of
/bin/sleep stands for another run's open connection; a copy of bash, running the script as its child,
for this run's own. A connection is "PID START": its sshd's PID and start time (field 22 of
/proc/PID/stat).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks import lock
from tasks.platform import SSHD_PROCESS_NAMES
from tasks.shell import Script
from tests.polling import wait_until
from tests.unit.serverside import library, run_functions

INCLUDES = ("python.sh", "lock.sh")
APP = "myapp"
HOLDER = "alice@laptop (deploy)"
OTHER_OWNER = "bob@desk (restart) since 2026-11-26T09:00:00Z"
LOCK_LINE = re.compile(re.escape(HOLDER) + r" since (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\n")
NO_SSHD = ("no-such-daemon",)  # names no ancestor of the tests has, even when pytest runs over SSH
# What a fake sshd bash prints first: its own connection, "PID START" (its comm, sshd, has no space).
PRINT_CONNECTION = "echo \"$$ $(cut -d' ' -f22 /proc/$$/stat)\""
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: the lock root must be root's")


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 first); None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(") ", 1)[1].split()


def comm(pid: int | str) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def conn_of(pid: int) -> str:
    """A running process as lock.sh records a connection: "PID START"."""
    fields = stat_fields(pid)
    assert fields is not None, f"process {pid} is gone"
    return f"{pid} {fields[19]}"


def gone(pid: int | str) -> bool:
    """Whether a process has ended (exited, whether or not its parent has reaped it yet)."""
    fields = stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def stop(pid: int | str) -> None:
    """End a process this test started (directly or through its scripts), if it still runs."""
    if not gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def values(tmp_path: Path, names: tuple[str, ...] = SSHD_PROCESS_NAMES) -> dict:
    return lock.values(str(lock_root(tmp_path)), APP, "alice@laptop", "deploy") | {
        "SSHD_PROCESS_NAMES": names
    }


def lock_root(tmp_path: Path) -> Path:
    return tmp_path / "locks"


def lock_file(tmp_path: Path, kind: str) -> Path:
    """One of the lock's files: owner, conn, run."""
    return lock_root(tmp_path) / f"{APP}.{kind}"


def loaded(tmp_path: Path, lines: list[str]) -> str:
    """A script file's text: the lock's functions loaded with these values, then `lines`."""
    return library(Script("test", values(tmp_path), INCLUDES, ())) + "\n".join(lines) + "\n"


def sshd_shell(tmp_path: Path) -> Path:
    """A copy of bash named sshd: what it runs has an sshd ancestor, as a command of an SSH connection."""
    fake = tmp_path / "connection" / "sshd"
    if not fake.exists():
        fake.parent.mkdir(exist_ok=True)
        shutil.copy("/bin/bash", fake)
    return fake


@dataclass
class Connection:
    conn: str  # "PID START" of its fake sshd
    printed: list[str]  # each script's output, then `exit CODE`
    stderr: str


def open_connection(tmp_path: Path, name: str, *scripts: list[str]) -> subprocess.Popen:
    """Scripts (each its lines, after the lock's functions) run one after another as the commands of one
    SSH connection, in a session of their own (a watchdog's `kill 0` stays in it): it prints its
    "PID START", then each script's output and `exit CODE`."""
    commands = [PRINT_CONNECTION]
    for number, lines in enumerate(scripts):
        script = tmp_path / f"{name}-{number}.sh"
        script.write_text(loaded(tmp_path, lines))
        commands.append(f'bash {shlex.quote(str(script))}; echo "exit $?"')
    return subprocess.Popen(
        [str(sshd_shell(tmp_path)), "-c", "; ".join(commands)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def finish(process: subprocess.Popen, timeout: float = 20) -> Connection:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the session open_connection made: only its processes
        out, err = process.communicate()
        raise AssertionError(f"the connection did not end within {timeout:g} s:\n{out}{err}") from None
    conn, *printed = out.splitlines()
    return Connection(conn, printed, err)


def connection(tmp_path: Path, *scripts: list[str], name: str = "run", timeout: float = 20) -> Connection:
    return finish(open_connection(tmp_path, name, *scripts), timeout)


def write_lock(tmp_path: Path, owner: str, conn: str | None) -> None:
    """A lock as another run leaves it, in a lock root as take_lock makes it."""
    root = lock_root(tmp_path)
    root.mkdir(mode=0o700)
    lock_file(tmp_path, "owner").write_text(owner + "\n")
    if conn is not None:
        lock_file(tmp_path, "conn").write_text(conn + "\n")


def lock_state(tmp_path: Path) -> tuple[str | None, str | None]:
    """The texts of APP.owner and APP.conn (None for a missing file)."""
    found = []
    for kind in ("owner", "conn"):
        path = lock_file(tmp_path, kind)
        found.append(path.read_text() if path.exists() else None)
    return found[0], found[1]


def strays(tmp_path: Path) -> list[str]:
    """Files written aside and never renamed into place."""
    return sorted(p.name for p in lock_root(tmp_path).iterdir() if p.name.endswith(".new"))


def run_free(tmp_path: Path) -> bool:
    """Whether no process holds APP.run (no apply command runs)."""
    return subprocess.run(["flock", "-n", str(lock_file(tmp_path, "run")), "true"]).returncode == 0


@pytest.fixture
def sshd(tmp_path) -> Iterator[subprocess.Popen]:
    """Another run's open SSH connection: a process whose comm is "sshd"."""
    copy = tmp_path / "other" / "sshd"
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


@contextlib.contextmanager
def holding(tmp_path: Path, name: str = "holder") -> Iterator[tuple[subprocess.Popen, list[str]]]:
    """A run holding the lock as apply.sh does (hold_lock, drop_lock on EXIT, `exit` on TERM) under a fake
    sshd of its own, until the test ends it. Yields that sshd's process and the PIDs of the run's bash,
    its watchdog and the command it runs; stops them all when the test is done."""
    pids = tmp_path / f"{name}.pids"
    script = tmp_path / f"{name}.sh"
    quoted = shlex.quote(str(pids))
    lines = [
        "hold_lock",
        "trap drop_lock EXIT",
        "trap 'exit 143' TERM HUP",
        f'sleep 30 & echo "$$ $LOCK_WATCHDOG $!" >{quoted}.new && mv {quoted}.new {quoted}',
        "wait $!",
        "echo not stopped >&2",
    ]
    script.write_text(loaded(tmp_path, lines))
    process = subprocess.Popen(
        [str(sshd_shell(tmp_path)), "-c", f"bash {shlex.quote(str(script))}; exit $?"],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    started: list[str] = []
    try:
        started = wait_until(lambda: pids.exists() and pids.read_text().split(), 5, f"{name} holds the lock")
        yield process, started
    finally:
        process.kill()
        process.wait()
        for pid in started:
            stop(pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its session: whatever of the run is left


# ---- which connection


def test_connection_id_is_empty_when_no_ancestor_is_an_sshd_process(tmp_path):
    done = run_functions(values(tmp_path, NO_SSHD), ['echo "[$(connection_id)]"'], includes=INCLUDES)
    assert (done.returncode, done.stdout) == (0, "[]\n"), done.stderr


def test_connection_id_is_the_nearest_sshd_ancestor_and_its_start_time(tmp_path):
    fake = shlex.quote(str(sshd_shell(tmp_path)))
    script = tmp_path / "script.sh"
    script.write_text(loaded(tmp_path, ["connection_id"]))
    # sshd (outer) -> sshd (inner, the script's parent) -> bash script; "; exit" keeps each a process.
    inner = shlex.quote(f"{PRINT_CONNECTION}; bash {shlex.quote(str(script))}; exit $?")
    done = subprocess.run(
        [str(sshd_shell(tmp_path)), "-c", f"{PRINT_CONNECTION}; {fake} -c {inner}; exit $?"],
        capture_output=True, text=True, timeout=20, start_new_session=True,
    )  # fmt: skip
    outer, inner_conn, found = done.stdout.splitlines()
    assert found == inner_conn != outer
    assert re.fullmatch(r"\d+ \d+", found)


def test_connection_id_finds_the_sshd_above_a_parent_whose_name_holds_spaces_and_parentheses(tmp_path):
    odd = tmp_path / "x) y) z"  # /proc/PID/stat shows "(x) y) z)": fields split on spaces would be off
    shutil.copy("/bin/bash", odd)
    script = tmp_path / "script.sh"
    script.write_text(loaded(tmp_path, ['echo "$(cat /proc/$PPID/comm)"', "connection_id"]))
    middle = f"{shlex.quote(str(odd))} -c {shlex.quote(f'bash {shlex.quote(str(script))}; exit $?')}"
    done = subprocess.run(
        [str(sshd_shell(tmp_path)), "-c", f"{PRINT_CONNECTION}; {middle}; exit $?"],
        capture_output=True, text=True, timeout=20, start_new_session=True,
    )  # fmt: skip
    sshd_conn, parent, found = done.stdout.splitlines()
    assert parent == "x) y) z"
    assert found == sshd_conn


def test_is_connection_is_true_only_for_a_live_sshd_process_with_that_start_time(sshd, dead_pid, tmp_path):
    pid, start = conn_of(sshd.pid).split()
    asked = {
        "sshd": f"{pid} {start}",
        "sshd, another start time (a reused PID)": f"{pid} {int(start) + 1}",
        "dead": f"{dead_pid} {start}",
        "not sshd": conn_of(os.getpid()),
        "this bash": "$$ $(cut -d' ' -f22 /proc/$$/stat)",
    }
    done = run_functions(
        values(tmp_path),
        [f'is_connection "{conn}" && echo yes || echo no' for conn in asked.values()],
        includes=INCLUDES,
    )
    answers = dict(zip(asked, done.stdout.splitlines(), strict=True))
    assert answers == {what: "yes" if what == "sshd" else "no" for what in asked}


def test_is_connection_accepts_every_name_in_sshd_process_names(sshd, tmp_path):
    asked = [f"is_connection '{conn_of(sshd.pid)}'"]
    named = run_functions(values(tmp_path, ("sshd-session", "sshd")), asked, includes=INCLUDES)
    other = run_functions(values(tmp_path, ("sshd-session",)), asked, includes=INCLUDES)
    assert (named.returncode, other.returncode) == (0, 1)


# ---- the lock root


@needs_root
def test_take_lock_makes_a_missing_lock_root_a_directory_only_root_may_use(tmp_path):
    done = connection(tmp_path, ["umask 000", "take_lock", "echo took"])
    assert done.printed == ["took", "exit 0"], done.stderr
    made = os.lstat(lock_root(tmp_path))
    assert stat.S_ISDIR(made.st_mode)
    assert (stat.S_IMODE(made.st_mode), made.st_uid, made.st_gid) == (0o700, 0, 0)
    assert lock_state(tmp_path)[1] == done.conn + "\n"


@needs_root
@pytest.mark.parametrize("kind", ["symlink to a directory", "file", "mode 755", "other owner", "other group"])
def test_take_lock_refuses_a_lock_root_that_is_not_a_directory_only_root_may_use(kind, tmp_path):
    root = lock_root(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)  # a directory take_lock would accept
    nobody = pwd.getpwnam("nobody")
    if kind == "symlink to a directory":
        root.symlink_to(elsewhere)
    elif kind == "file":
        root.write_text("")
    else:
        root.mkdir(mode=0o700)
        if kind == "mode 755":
            root.chmod(0o755)
        elif kind == "other owner":
            os.chown(root, nobody.pw_uid, 0)
        else:
            os.chown(root, 0, nobody.pw_gid)
    before = os.lstat(root)
    done = connection(tmp_path, ["trap drop_lock EXIT", "take_lock", "echo took"])
    message = f"::fail probe {root} is not a directory only root may use (root:root, mode 700): remove it"
    assert done.printed == [message, "exit 1"], done.stderr
    after = os.lstat(root)
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)
    assert list(elsewhere.iterdir()) == []  # nothing written through the link
    if kind == "file":
        assert root.read_text() == ""
    elif kind != "symlink to a directory":
        assert list(root.iterdir()) == []


# ---- taking the lock


@needs_root
@pytest.mark.parametrize("function", ["take_lock", "hold_lock"])
def test_the_lock_is_not_taken_without_an_sshd_process_above_the_run(function, tmp_path):
    """Fails closed: a run that cannot tell its connection could never be told stale."""
    lines = ["trap drop_lock EXIT", function, "echo took"]
    done = run_functions(values(tmp_path, NO_SSHD), lines, includes=INCLUDES)
    message = "::fail probe no SSH connection above this run (no sshd process): the lock is not taken"
    assert (done.returncode, done.stdout) == (1, message + "\n"), done.stderr
    assert list(lock_root(tmp_path).iterdir()) == []


@needs_root
def test_take_lock_takes_a_free_lock_for_its_owner_and_this_connection(tmp_path):
    before = datetime.now(UTC).replace(microsecond=0)
    done = connection(tmp_path, ["take_lock", "echo took"])
    assert done.printed == ["took", "exit 0"], done.stderr
    owner, conn = lock_state(tmp_path)
    match = LOCK_LINE.fullmatch(owner or "")
    assert match, owner
    since = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= since <= datetime.now(UTC) + timedelta(seconds=1)
    assert conn == done.conn + "\n"
    assert strays(tmp_path) == []


@needs_root
def test_take_lock_exits_75_naming_the_owner_while_an_open_connection_holds_the_lock(sshd, tmp_path):
    write_lock(tmp_path, OTHER_OWNER, conn_of(sshd.pid))
    done = connection(tmp_path, ["take_lock", "echo took"])
    assert lock.LOCKED_EXIT == 75
    assert done.printed == [f"::fail lock locked by {OTHER_OWNER}: wait for that run to finish", "exit 75"]
    assert lock_state(tmp_path) == (OTHER_OWNER + "\n", conn_of(sshd.pid) + "\n")
    assert strays(tmp_path) == []


@needs_root
@pytest.mark.parametrize("holder", ["dead", "not sshd", "sshd started at another time", "no conn"])
def test_take_lock_takes_over_a_lock_whose_connection_is_gone(holder, dead_pid, tmp_path, request):
    if holder == "dead":
        conn = f"{dead_pid} 1"
    elif holder == "not sshd":
        conn = conn_of(os.getpid())
    elif holder == "sshd started at another time":  # its PID now names another sshd process
        pid, start = conn_of(request.getfixturevalue("sshd").pid).split()
        conn = f"{pid} {int(start) - 1}"
    else:
        conn = None
    write_lock(tmp_path, OTHER_OWNER, conn)
    done = connection(tmp_path, ["take_lock", "echo took"])
    assert done.printed == ["took", "exit 0"], done.stderr
    owner, taken = lock_state(tmp_path)
    assert LOCK_LINE.fullmatch(owner or ""), owner
    assert taken == done.conn + "\n"
    assert strays(tmp_path) == []


@needs_root
def test_take_lock_again_on_the_same_connection_keeps_the_lock_as_it_is(tmp_path):
    """As a run's commands (the probe's, then the apply script's) take the lock, each on its own."""
    # The owner line as it was taken, stamped with a time of its own: rewriting it would show.
    stamped = f"{HOLDER} since 2026-11-26T09:30:00Z"
    stamp = f'echo {shlex.quote(stamped)} >"$LOCK_ROOT/$APP.owner"'
    done = connection(tmp_path, ["take_lock", stamp, "take_lock", "echo twice"], ["take_lock", "echo again"])
    assert done.printed == ["twice", "exit 0", "again", "exit 0"], done.stderr
    assert lock_state(tmp_path) == (stamped + "\n", done.conn + "\n")
    assert strays(tmp_path) == []


@needs_root
def test_take_lock_exits_75_while_a_run_whose_connection_is_gone_still_applies(dead_pid, tmp_path):
    """Its lock is stale, but its apply command (still stopping) holds APP.run: nothing is taken over."""
    write_lock(tmp_path, OTHER_OWNER, f"{dead_pid} 1")
    applying = subprocess.Popen(  # one process: bash holds APP.run on fd 9, then becomes sleep
        ["bash", "-c", 'exec 9>>"$1" && flock 9 && exec sleep 30', "bash", str(lock_file(tmp_path, "run"))]
    )
    try:
        wait_until(lambda: not run_free(tmp_path), 5, "the other run's apply command holds APP.run")
        done = connection(tmp_path, ["take_lock", "echo took"])
        message = f"::fail lock a run of {APP} whose connection is gone is still stopping: try again"
        assert done.printed == [message, "exit 75"], done.stderr
        assert lock_state(tmp_path) == (OTHER_OWNER + "\n", f"{dead_pid} 1\n")
    finally:
        applying.kill()
        applying.wait()


@needs_root
def test_two_runs_taking_a_stale_lock_at_once_leave_it_to_exactly_one(dead_pid, tmp_path):
    """Each run, on finding the stale lock, waits for the other to find it too, or to wait for the flock
    that makes taking it atomic (a blocked flock in /proc/locks): without it both would take it over.
    Both connections stay open until one run has ended (the other's held lock must not go stale meanwhile)."""
    stale = f"{dead_pid} 1"
    write_lock(tmp_path, OTHER_OWNER, stale)
    looking = tmp_path / "looking"
    looking.mkdir()
    meet = [
        "waited_for() {  # whether a flock on the lock root or a file in it is blocked, waiting",
        '    local inodes="" path',
        '    for path in "$LOCK_ROOT" "$LOCK_ROOT"/*; do inodes="$inodes|$(stat -c %i "$path")"; done',
        '    grep -Eq -- "-> FLOCK .*:(${inodes#|}) " /proc/locks',
        "}",
        'eval "looked_$(declare -f is_connection)"',
        "is_connection() {",
        f"    if [ \"$1\" = '{stale}' ]; then",
        f"        : >{looking}/$$",
        "        local tries=0",
        f'        until [ "$(ls {looking} | wc -l)" -ge 2 ] || waited_for; do',
        "            [ $((tries += 1)) -le 250 ] || break",
        "            sleep 0.02",
        "        done",
        "    fi",
        '    looked_is_connection "$1"',
        "}",
    ]
    release = tmp_path / "release"
    stay = f"until [ -e {release} ]; do sleep 0.02; done"  # the connection stays open till the test is done
    runs = [
        open_connection(tmp_path, name, [*meet, "take_lock", "echo took", stay]) for name in ("one", "two")
    ]
    try:
        wait_until(
            lambda: any(run.poll() is not None for run in runs), 10, "one run ends, finding the lock held"
        )
    finally:
        release.touch()
    done = [finish(run) for run in runs]
    took, locked = sorted(done, key=lambda d: d.printed[-1])
    assert (took.printed[-1], locked.printed[-1]) == ("exit 0", "exit 75"), [d.printed for d in done]
    owner, conn = lock_state(tmp_path)
    assert conn == took.conn + "\n"
    assert LOCK_LINE.fullmatch(owner or ""), owner
    assert locked.printed == [
        f"::fail lock locked by {owner.strip()}: wait for that run to finish",
        "exit 75",
    ]
    assert len(list(looking.iterdir())) == 1  # only the run that took the lock found it stale


# ---- holding and dropping it


@needs_root
def test_hold_lock_from_another_connection_exits_75_while_a_run_holds_the_lock(tmp_path):
    with holding(tmp_path) as (holder, _):
        held = lock_state(tmp_path)
        assert held[1] == conn_of(holder.pid) + "\n"
        assert not run_free(tmp_path)
        done = connection(tmp_path, ["trap drop_lock EXIT", "hold_lock", "echo took"], name="second")
        owner = (held[0] or "").strip()
        assert done.printed == [f"::fail lock locked by {owner}: wait for that run to finish", "exit 75"]
        assert lock_state(tmp_path) == held
        assert not run_free(tmp_path)  # the first run applies on


@needs_root
def test_drop_lock_removes_the_lock_this_connection_holds(tmp_path):
    done = connection(tmp_path, ["take_lock", "drop_lock", "echo dropped"])
    assert done.printed == ["dropped", "exit 0"], done.stderr
    assert lock_state(tmp_path) == (None, None)
    assert strays(tmp_path) == []


@needs_root
def test_drop_lock_leaves_a_lock_another_connection_holds(sshd, tmp_path):
    write_lock(tmp_path, OTHER_OWNER, conn_of(sshd.pid))
    # As an apply script's EXIT trap runs it after take_lock found the lock held.
    done = connection(tmp_path, ["trap drop_lock EXIT", "take_lock"])
    assert done.printed[-1] == "exit 75"
    assert lock_state(tmp_path) == (OTHER_OWNER + "\n", conn_of(sshd.pid) + "\n")


@needs_root
def test_hold_lock_then_drop_lock_leave_no_lock_no_watchdog_and_apply_free(tmp_path):
    # `wait` for the watchdog would block for as long as the connection lives, were it not stopped.
    run = 'flock -n "$LOCK_ROOT/$APP.run" true && echo run free || echo applying'
    lines = ["hold_lock", run, "drop_lock", 'wait "$LOCK_WATCHDOG"; echo "watchdog ended $?"', run]
    done = connection(tmp_path, lines, timeout=10)
    assert done.printed == ["applying", "watchdog ended 143", "run free", "exit 0"], done.stderr
    assert lock_state(tmp_path) == (None, None)


@needs_root
def test_the_watchdog_ends_a_run_whose_connection_is_gone_and_its_lock_goes_with_it(tmp_path):
    with holding(tmp_path) as (holder, started):
        assert lock_state(tmp_path)[1] == conn_of(holder.pid) + "\n"
        holder.kill()  # the SSH connection is cut
        holder.wait()
        for pid in started:  # the run's bash, its watchdog, what it was running
            wait_until(lambda pid=pid: gone(pid), 3, f"process {pid} of the run ends")
        wait_until(lambda: lock_state(tmp_path) == (None, None), 3, "the run's EXIT trap drops its lock")
        assert run_free(tmp_path)
