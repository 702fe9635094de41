"""runtime/switch.sh and apply.sh run here under a scratch root: links switched atomically, a failure
after a switch undone exactly once, the health gate's rule and its message, files replaced only when
they differ."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.unit.serverside import run_functions

LIVE, OLD, NEW = "20261126T100000Z-live", "20261125T090000Z-old", "20261127T110000Z-new"


def scratch_values(root: Path) -> dict[str, str]:
    releases = root / "releases"
    for release in (LIVE, OLD, NEW):
        (releases / release / ".deploy").mkdir(parents=True, exist_ok=True)
    if not (root / "current").is_symlink():
        (root / "current").symlink_to(releases / LIVE)
        (root / "previous").symlink_to(releases / OLD)
    return {
        "CURRENT": str(root / "current"), "PREVIOUS": str(root / "previous"), "RELEASES_DIR": str(releases),
        "META": ".deploy", "APP": "app", "HISTORY_FILE": str(root / "history.log"), "ACTION": "deploy",
        "WHO": "alice", "ERROR_LOG": str(root / "error.log"),
    }  # fmt: skip


def target(link: Path) -> str:
    return os.readlink(link).rstrip("/").rsplit("/", 1)[-1]


def test_switch_to_moves_current_and_previous(tmp_path):
    values = scratch_values(tmp_path)
    done = run_functions(
        values, ["note_live_release", f'switch_to "$RELEASES_DIR/{NEW}"', 'echo "$SWITCHED"']
    )
    assert done.stdout == "1\n", done.stderr
    assert (target(tmp_path / "current"), target(tmp_path / "previous")) == (NEW, LIVE)
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failure_after_a_switch_switches_back_and_marks_the_release_failed(tmp_path):
    values = scratch_values(tmp_path)
    done = run_functions(values, [
        "reload_app() { :; }  # stub: no gunicorn here",
        "note_live_release", "begin_step push", f"note_release {NEW}", f'BUILT="$RELEASES_DIR/{NEW}"',
        'switch_to "$BUILT"', 'die "boom"',
    ])  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == f"::fail push boom; switched back to {LIVE}\n"
    assert (target(tmp_path / "current"), target(tmp_path / "previous")) == (LIVE, OLD)
    assert (tmp_path / "releases" / NEW / ".deploy" / "failed").read_text() == "push: boom\n"
    assert '"result": "failed"' in (tmp_path / "history.log").read_text()


def test_a_failure_while_switching_back_is_reported_once_and_ends_the_run(tmp_path):
    values = scratch_values(tmp_path)
    # The reload fails whichever release it goes to: switching back must not try again (and again).
    done = run_functions(values, [
        'reload_app() { die "graceful reload failed"; }',
        "note_live_release", "begin_step push", f'switch_to "$RELEASES_DIR/{NEW}"', 'reload_app "" ""',
    ], timeout=10)  # fmt: skip
    assert done.returncode == 1
    assert done.stdout.count("::fail push") == 1, done.stdout
    assert target(tmp_path / "current") == LIVE


class Statuses(BaseHTTPRequestHandler):
    """GET /STATUS answers STATUS (GET /302 redirects to /200)."""

    def do_GET(self):
        self.send_response(int(self.path.strip("/")))
        if self.path == "/302":
            self.send_header("Location", "/200")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def statuses() -> Iterator[str]:
    """The base URL of a server answering GET /STATUS with STATUS."""
    http = ThreadingHTTPServer(("127.0.0.1", 0), Statuses)
    http.daemon_threads = True
    thread = threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()
    http.server_close()
    thread.join(5)


def gate(root: Path, url: str, rule: str, *before: str) -> tuple[int, str]:
    """The health gate run against `url` under `rule` (after `before`): its exit code and output."""
    values = scratch_values(root) | {
        "HEALTH_URL": url, "HEALTH_HOST": "localhost", "HEALTH_RULE": rule, "HEALTH_TIMEOUT": 30,
        "W": str(root),
    }  # fmt: skip
    done = run_functions(values, [
        "port_taken_by_others() { return 1; }  # stub: no ss here", "reload_app() { :; }",
        "note_live_release", "begin_step health", *before, "gate", 'echo "::step health ok"',
    ], timeout=20)  # fmt: skip
    return done.returncode, done.stdout


ANSWERED = "no app.health_path: any answer below 500 passes"
TWO_XX = "app.health_path must answer 2xx"


@pytest.mark.parametrize("status", [200, 302, 404])
def test_with_no_health_path_the_gate_passes_when_the_app_answered_below_500(tmp_path, statuses, status):
    assert gate(tmp_path, f"{statuses}/{status}", "answered") == (0, "::step health ok\n")


def test_with_no_health_path_a_500_fails_the_gate_naming_the_rule(tmp_path, statuses):
    code, output = gate(tmp_path, f"{statuses}/500", "answered")
    assert code == 1
    assert output.startswith(
        f"::fail health GET {statuses}/500 (Host: localhost) answered 500 ({ANSWERED}); "
    )
    assert "last lines of" in output


@pytest.mark.parametrize("status, passes", [(204, True), (200, True), (404, False), (302, False)])
def test_with_a_health_path_the_gate_wants_2xx(tmp_path, statuses, status, passes):
    code, output = gate(tmp_path, f"{statuses}/{status}", "2xx")
    if passes:
        assert (code, output) == (0, "::step health ok\n")
    else:
        assert code == 1
        assert output.startswith(
            f"::fail health GET {statuses}/{status} (Host: localhost) answered {status} ({TWO_XX}); "
        )


def test_a_gate_failing_after_a_switch_switches_back_and_names_the_rule_of_both_checks(tmp_path, statuses):
    code, output = gate(
        tmp_path, f"{statuses}/404", "2xx", f"note_release {NEW}", f'switch_to "$RELEASES_DIR/{NEW}"'
    )
    assert code == 1
    assert f"answered 404 ({TWO_XX}); " in output and f"; {LIVE} fails too: 404 ({TWO_XX})" in output
    assert target(tmp_path / "current") == LIVE


@pytest.mark.skipif(os.geteuid() != 0, reason="install -o root needs root")
def test_install_file_replaces_a_file_only_when_its_content_differs(tmp_path):
    source, dest = tmp_path / "new.conf", tmp_path / "live.conf"
    source.write_text("same\n")
    dest.write_text("same\n")
    os.utime(dest, (1_000_000_000, 1_000_000_000))
    check = f'install_file {source} {dest} 640; echo "$CHANGED"'
    assert run_functions({}, ["begin_step t", check]).stdout == "0\n"
    assert dest.stat().st_mtime == 1_000_000_000
    source.write_text("other\n")
    assert run_functions({}, ["begin_step t", check]).stdout == "1\n"
    assert dest.read_text() == "other\n" and oct(dest.stat().st_mode & 0o777) == "0o640"
    assert not (tmp_path / "live.conf.tmp").exists()


def port_questions(root: Path, app: str, port: int) -> tuple[str, str]:
    """What supervisor.sh's port_taken_by_others and listens answer for `app` on `port`, with an `ss` of
    this test's on PATH that notes the options it is asked with."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "bin" / "ss").write_text(f'#!/bin/sh\necho "$1" >>"{root}/ss.asked"\nexec /usr/bin/ss "$@"\n')
    (root / "bin" / "ss").chmod(0o755)
    values = scratch_values(root) | {"APP": app, "APP_PORT": port}
    done = run_functions(values, [
        f'PATH="{root}/bin:$PATH"',
        'if others=$(port_taken_by_others); then echo "taken by $others"; else echo "not taken"; fi',
        'if listens; then echo "listens"; else echo "does not listen"; fi',
    ])  # fmt: skip
    assert done.returncode == 0, done.stderr
    asked = (root / "ss.asked").read_text() if (root / "ss.asked").exists() else ""
    return done.stdout, asked


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a process listens as nobody")
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_the_port_questions_ask_ss_for_the_owners_and_to_name_processes_only_of_another_user(tmp_path, host):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        ours = socket.create_server((host, 0), family=family)
    except OSError:
        pytest.skip(f"cannot listen on {host} here")
    with ours:  # root's: the app's when APP is root
        port = ours.getsockname()[1]
        owners = "-Hltne\n"  # who owns the port's listening sockets (port_uids): one question each
        assert port_questions(tmp_path, "root", port) == ("not taken\nlistens\n", owners * 2)
        taken, asked = port_questions(tmp_path / "other", "nobody", port)
    assert taken == f"taken by python (pid {os.getpid()}, user root)\ndoes not listen\n".replace(
        "python", Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    )
    assert asked == owners + "-Hltnp\n" + owners  # and once to name who else listens
    # (No socket at all: the ss stand-in's tests below. The port just closed here may be any process's
    # again by the time ss looks: the whole suite's runner held another socket on it once.)


def fake_ss(root: Path, output: str, code: int = 0) -> str:
    """An `ss` on PATH that notes its arguments and prints `output`: the PATH line for run_functions."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "ss.out").write_text(output)
    script = f'#!/bin/sh\nprintf "%s|" "$@" >"{root}/ss.asked"\ncat "{root}/ss.out"\nexit {code}\n'
    (root / "bin" / "ss").write_text(script)
    (root / "bin" / "ss").chmod(0o755)
    return f'PATH="{root}/bin:$PATH"'


ROOTS = (
    "LISTEN 0      511          0.0.0.0:8000      0.0.0.0:* ino:4472470 sk:143 cgroup:/system.slice/x <->\n"
)
APPS = "LISTEN 0      2048       127.0.0.1:8000      0.0.0.0:* uid:998 ino:4478351 sk:1158 <->\n"
V6 = "LISTEN 0      511             [::]:8000         [::]:* uid:7 ino:4472471 sk:144 v6only:1 <->\n"


@pytest.mark.parametrize(
    ("output", "uids"),
    [
        ("", ""),  # nothing listens
        (APPS, "998"),
        (ROOTS + APPS, "0 998"),  # root's sockets: ss shows no uid
        (APPS + V6, "998 7"),
    ],
)
def test_port_uids_are_the_owners_of_the_port_s_listening_sockets_as_ss_shows_them(tmp_path, output, uids):
    values = scratch_values(tmp_path) | {"APP_PORT": 8000}
    done = run_functions(values, [fake_ss(tmp_path, output), 'port_uids && echo "ok ${PORT_UIDS[*]}"'])
    assert done.stdout == f"ok {uids}\n", done.stderr
    assert (tmp_path / "ss.asked").read_text() == "-Hltne|sport = :8000|"  # listening TCP sockets, the port's


def test_port_uids_fails_when_ss_cannot_tell(tmp_path):
    values = scratch_values(tmp_path) | {"APP_PORT": 8000}
    done = run_functions(values, [fake_ss(tmp_path, "", code=1), 'port_uids || echo "cannot tell"'])
    assert done.stdout == "cannot tell\n", done.stderr
