"""The probe: tasks/runtime/probe.py run on this machine against a scratch server (its os-release, app
directories, nginx config, package lists, a package query, systemctl and supervisord stand-ins, all under
tmp_path), the facts it prints read back by tasks.facts.Facts and tasks.probe.parse, and the script
tasks.probe.script sends: what it includes, and that it runs (locally, with bash) to the probe's exit code.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest

from tasks import lock, probe, runtime
from tasks.facts import Facts, PathState, Program, Release, Unit
from tasks.layout import META, app_paths
from tasks.settings import Settings
from tasks.shell import Script, Var, line
from tests.polling import wait_until
from tests.unit.serverside import run_bash

PROBE = runtime.HERE / "probe.py"
APP = "fd-test-nobody"  # the app's name: no such user on this machine (checked below)
T0 = 1_700_000_000  # mtimes the nginx tests set explicitly
OLD, FAILED, BARE = "20261125T090000Z-aaaaaaaaaaaa", "20261126T100000Z-bbbbbbbbbbbb", "20261124T080000Z-cccc"
DEBIAN_12 = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n'
UBUNTU = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40 (Server Edition)"\n'
# The package manager's answer for each package it is asked about ("NAME<TAB>STATUS" lines).
STATUSES = {"nginx": "installed", "supervisor": "config-files", "python3-venv": "installed"}
QUERY = "import json, sys\nfor n in sys.argv[2:]: print(n, json.loads(sys.argv[1]).get(n, '?'), sep='\\t')"
PACKAGE_QUERY = [sys.executable, "-c", QUERY, json.dumps(STATUSES)]  # the names asked about are appended
SYSTEMCTL = """#!/bin/sh
# systemctl show --property=... UNIT...: one block per unit, blank lines between them
shift 2  # show --property=...
first=1
for unit; do
    [ "$first" = 1 ] || echo
    first=0
    case $unit in
        nginx.service) printf 'ActiveState=active\\nId=nginx.service\\nUnitFileState=enabled\\n' ;;
        *) printf 'Id=%s\\nActiveState=inactive\\nUnitFileState=disabled\\n' "$unit" ;;
    esac
done
"""


class Server:
    """A scratch server under root: where each of the probe's questions points."""

    def __init__(self, root: Path):
        self.root = root
        self.os_release = root / "etc" / "os-release"
        self.srv = root / "srv" / APP
        self.releases = self.srv / "releases"
        self.venvs = self.srv / "venvs"
        self.current = self.srv / "current"
        self.nginx = root / "etc" / "nginx"
        self.nginx_pid = root / "run" / "nginx.pid"
        self.stamp = root / "run" / "flaskdeploy-nginx.loaded"
        self.socket = root / "run" / "supervisor.sock"
        self.lists = root / "var" / "lib" / "apt" / "lists"
        self.bin = root / "bin"
        for directory in (self.os_release.parent, self.releases, self.venvs, self.nginx, self.stamp.parent,
                          self.lists, self.bin):  # fmt: skip
            directory.mkdir(parents=True, exist_ok=True)
        self.os_release.write_text(DEBIAN_12)
        (self.bin / "systemctl").write_text(SYSTEMCTL)
        (self.bin / "systemctl").chmod(0o755)
        self.described = {
            name: str(root / "described" / name)
            for name in ("absent", "file", "dir", "link", "dirlink", "fifo")
        }

    def entry(self, real: dict) -> dict:
        """A platform entry of tasks.probe.questions with every server path pointed under root."""
        fake = {
            **real,
            "paths": list(self.described.values()),
            "releases_dir": str(self.releases),
            "venvs_dir": str(self.venvs),
            "current": str(self.current),
            "nginx_conf_dir": str(self.nginx),
            "nginx_pid": str(self.nginx_pid),
            "nginx_loaded_stamp": str(self.stamp),
            "supervisor_socket": str(self.socket),
            "package_lists": str(self.lists),
            "package_query": PACKAGE_QUERY,
        }
        assert set(fake) == set(real), "the entry asks something new: point it into the scratch server"
        return fake

    def questions(self, s: Settings, **app) -> dict:
        return {
            "os_release": str(self.os_release),
            "app": {"name": APP, "meta": META, **app},
            "platforms": [self.entry(real) for real in probe.questions(s)["platforms"]],
        }

    def run(self, questions: dict) -> subprocess.CompletedProcess:
        leaked = [p for p in strings(questions) if p.startswith("/") and not self.local(p)]
        assert not leaked, f"the probe would read this machine's {leaked}"
        environment = {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}  # the fake systemctl
        return subprocess.run(
            [sys.executable, "-I", str(PROBE), json.dumps(questions)],
            capture_output=True, text=True, env=environment, timeout=10,
        )  # fmt: skip

    def local(self, path: str) -> bool:
        return path.startswith(str(self.root) + "/") or path == sys.executable

    def facts(self, questions: dict) -> dict:
        done = self.run(questions)
        assert done.returncode == 0, done.stderr
        (printed,) = done.stdout.splitlines()
        return json.loads(printed)


def strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.fixture
def server(tmp_path) -> Server:
    with pytest.raises(KeyError):
        pwd.getpwnam(APP)
    return Server(tmp_path)


def fill(server: Server) -> None:
    """A server with releases, venvs, a live release and the described paths in every state."""
    venv1, venv2 = server.venvs / "v1", server.venvs / "v2"
    for venv in (venv1, venv2, server.venvs / ".partial-v3"):
        venv.mkdir()
    (venv1 / ".complete").touch()
    (server.venvs / ".partial-v3" / ".complete").touch()
    old, failed, bare = (server.releases / name for name in (OLD, FAILED, BARE))
    for release in (old, failed):
        (release / META).mkdir(parents=True)
    bare.mkdir()
    (server.releases / ".partial-20261126T110000Z-dddddddddddd" / META).mkdir(parents=True)
    (server.releases / "stray.txt").write_text("not a release\n")
    (old / ".venv").symlink_to(venv1)
    (old / META / "release.json").write_text(json.dumps({"id": OLD, "venv": "v1", "user": "alice"}))
    (failed / ".venv").symlink_to(f"{venv2}/")
    (failed / META / "release.json").write_text("{not json")
    (failed / META / "failed").write_text("health: 502 after 30 s\nTraceback...\n")
    (failed / META / "fingerprint").write_text("f1ng3rpr1nt\n")
    server.current.symlink_to(failed)
    described = server.root / "described"
    (described / "dir").mkdir(parents=True)
    (described / "dir").chmod(0o750)
    (described / "file").write_bytes(b"server { listen 80; }\n" * 5000)
    (described / "link").symlink_to("/srv/app/releases/x")
    (described / "dirlink").symlink_to(described / "dir")
    os.mkfifo(described / "fifo")


def owner_and_group(path: str) -> tuple[str, str]:
    return Path(path).owner(), Path(path).group()


def test_a_debian_12_server_gets_the_debian_12_entry_and_its_facts(server, settings):
    facts = server.facts(server.questions(settings))
    assert (facts["platform"], facts["system"]) == ("debian-12", "Debian GNU/Linux 12 (bookworm)")
    assert facts["python"] == "{}.{}".format(*sys.version_info[:2])
    assert facts["machine"] == os.uname().machine
    assert facts["cpus"] == len(os.sched_getaffinity(0))
    assert facts["app_user_shell"] is None  # no such user
    assert facts["program"] is None  # no supervisord socket
    assert facts["units"] == {
        "nginx": {"active": "active", "enabled": "enabled"},
        "supervisor": {"active": "inactive", "enabled": "disabled"},
    }


@pytest.mark.parametrize(
    ("os_release", "expected"),
    [
        ('ID=debian\nVERSION_ID="13"\n', "debian-13"),
        (UBUNTU, "debian-like"),
        ("ID=debian\nVERSION_ID=11\n", "debian-like"),  # a family entry matches the ID itself, too
        ('ID=linuxmint\nID_LIKE="ubuntu debian"\n', "debian-like"),
        ("# ID=debian\nID=alpine\n", None),
    ],
)
def test_the_probe_picks_the_first_entry_whose_match_fits_os_release(os_release, expected, server, settings):
    server.os_release.write_text(os_release)
    assert server.facts(server.questions(settings))["platform"] == expected


def test_a_system_no_entry_matches_gets_no_platform_and_no_platform_facts(server, settings):
    server.os_release.write_text(FEDORA)
    fill(server)
    facts = server.facts(server.questions(settings))
    assert facts["platform"] is None
    assert facts["system"] == "Fedora Linux 40 (Server Edition)"
    assert set(facts) == {"platform", "system", "python", "machine", "glibc", "cpus"}
    assert probe.parse(json.dumps(facts)).platform is None


def test_a_missing_os_release_matches_no_entry(server, settings):
    server.os_release.unlink()
    assert server.facts(server.questions(settings))["platform"] is None


def test_paths_are_described_as_absent_file_dir_link_or_other(server, settings):
    fill(server)
    paths = server.facts(server.questions(settings))["paths"]
    named = server.described
    content = Path(named["file"]).read_bytes()
    owner, group = owner_and_group(named["dir"])
    assert paths == {
        named["absent"]: {"kind": "absent"},
        named["file"]: {"kind": "file", "sha256": hashlib.sha256(content).hexdigest()},
        named["dir"]: {"kind": "dir", "owner": owner, "group": group, "mode": "750"},
        named["link"]: {"kind": "link", "target": "/srv/app/releases/x"},
        named["dirlink"]: {"kind": "link", "target": named["dir"]},  # the link, not what it points at
        named["fifo"]: {"kind": "other"},
    }


def unnamed(lookup) -> int:
    """An id no user (or group) has."""
    return next(number for number in range(54321, 60000) if not known(lookup, number))


def known(lookup, number: int) -> bool:
    try:
        lookup(number)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown to an id nobody has")
def test_a_dir_whose_owner_has_no_name_is_described_with_unknown_names_and_its_full_mode(server, settings):
    fill(server)
    os.chown(server.described["dir"], unnamed(pwd.getpwuid), unnamed(grp.getgrgid))
    Path(server.described["dir"]).chmod(0o2775)
    paths = server.facts(server.questions(settings))["paths"]
    expected = {"kind": "dir", "owner": "UNKNOWN", "group": "UNKNOWN", "mode": "2775"}
    assert paths[server.described["dir"]] == expected


def test_an_existing_app_user_s_shell_is_reported(server, settings):
    facts = server.facts(server.questions(settings, name="root"))
    assert facts["app_user_shell"] == pwd.getpwnam("root").pw_shell


def test_releases_venvs_and_fingerprint(server, settings):
    fill(server)
    facts = server.facts(server.questions(settings))
    assert facts["releases"] == [  # sorted, hidden .partial-* and files left out
        {"id": BARE, "venv": "", "record": None, "failed": ""},
        {"id": OLD, "venv": str(server.venvs / "v1"), "record": {"id": OLD, "venv": "v1", "user": "alice"},
         "failed": ""},
        {"id": FAILED, "venv": f"{server.venvs}/v2/", "record": None, "failed": "health: 502 after 30 s"},
    ]  # fmt: skip
    assert (facts["venv_dirs"], facts["venvs"]) == (["v1", "v2"], ["v1"])
    assert facts["fingerprint"] == "f1ng3rpr1nt"


def test_an_empty_server_has_no_releases_venvs_or_fingerprint(server, settings):
    facts = server.facts(server.questions(settings))
    assert (facts["releases"], facts["venvs"], facts["venv_dirs"], facts["fingerprint"]) == ([], [], [], "")


def test_installed_are_the_packages_whose_status_is_the_entry_s_installed_status(server, settings):
    questions = server.questions(settings)
    assert server.facts(questions)["installed"] == ["nginx", "python3-venv"]
    for entry in questions["platforms"]:
        entry["installed"] = "config-files"
    assert server.facts(questions)["installed"] == ["supervisor"]


def test_installed_is_empty_when_the_package_query_cannot_run(server, settings):
    questions = server.questions(settings)
    for entry in questions["platforms"]:
        entry["package_query"] = [str(server.root / "no-such-query")]
    assert server.facts(questions)["installed"] == []


def test_package_lists_age_is_none_without_package_lists_and_the_newest_one_s_age_with_some(server, settings):
    (server.lists / "lock").touch()
    (server.lists / "partial").mkdir()
    questions = server.questions(settings)
    assert server.facts(questions)["package_lists_age"] is None
    now = time.time()
    for name, age in (("deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages", 100),
                      ("security_dists_bookworm-security_main_binary-amd64_Packages.lz4", 5000)):  # fmt: skip
        (server.lists / name).touch()
        os.utime(server.lists / name, (now - age, now - age))
    assert 100 <= server.facts(questions)["package_lists_age"] <= 110


def age_nginx_config(server: Server, mtime: int) -> None:
    for path in [server.nginx, *server.nginx.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def set_mtime(path: Path, mtime: int) -> None:
    path.touch()
    os.utime(path, (mtime, mtime))


@pytest.mark.parametrize(
    ("pid", "stamp", "changed", "stale"),
    [
        (None, None, "nginx.conf", False),  # neither mark: nginx never ran, nothing to reload
        (T0 + 100, None, None, False),  # started after the config was written
        (T0 + 100, None, "nginx.conf", True),  # the config changed after the start
        (T0 + 100, None, "sites-enabled/app", True),  # a file deeper down
        (T0 + 100, None, "sites-enabled", True),  # a directory (a file removed from it)
        (T0 + 100, None, "", True),  # the config directory itself
        (None, T0 + 100, "sites-enabled/app", True),  # the kit's reload stamp alone
        (T0 + 100, T0 + 300, "sites-enabled/app", False),  # reloaded after the change: the later mark
        (T0 + 300, T0 + 100, "sites-enabled/app", False),  # started after the change: the later mark
    ],
)
def test_nginx_is_stale_when_its_config_changed_after_the_later_of_its_start_and_reload(
    pid, stamp, changed, stale, server, settings
):
    (server.nginx / "sites-enabled").mkdir()
    (server.nginx / "nginx.conf").write_text("events {}\n")
    (server.nginx / "sites-enabled" / "app").symlink_to("../sites-available/app")
    age_nginx_config(server, T0)
    for mark, mtime in ((server.nginx_pid, pid), (server.stamp, stamp)):
        if mtime is not None:
            set_mtime(mark, mtime)
    if changed is not None:
        os.utime(server.nginx / changed, (T0 + 200, T0 + 200), follow_symlinks=False)
    assert server.facts(server.questions(settings))["nginx_stale"] is stale


class Handler(SimpleXMLRPCRequestHandler):
    disable_nagle_algorithm = False  # TCP_NODELAY: not on a unix socket


class Supervisord(SimpleXMLRPCServer):
    """supervisord's XML-RPC interface on a unix socket, knowing one program."""

    address_family = socket.AF_UNIX

    def __init__(self, path: Path):
        super().__init__(str(path), Handler, logRequests=False)
        self.register_function(self.process_info, "supervisor.getProcessInfo")
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def process_info(self, name: str) -> dict:
        if name != APP:
            raise xmlrpc.client.Fault(10, f"BAD_NAME: {name}")
        return {"name": APP, "statename": "RUNNING", "pid": 427, "description": "pid 427, uptime 0:01:00"}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.shutdown()
        self.server_close()
        self.thread.join(5)


def test_program_is_supervisor_s_view_of_the_app_s_program(server, settings):
    with Supervisord(server.socket):
        assert server.facts(server.questions(settings))["program"] == {
            "state": "RUNNING", "pid": 427, "description": "pid 427, uptime 0:01:00",
        }  # fmt: skip
        assert server.facts(server.questions(settings, name="other-app"))["program"] is None


def test_program_is_none_when_supervisord_is_not_listening_on_its_socket(server, settings):
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(server.socket))  # a socket file left behind, nobody accepting on it
        assert server.facts(server.questions(settings))["program"] is None


def test_the_facts_read_back_as_typed_facts(server, settings):
    fill(server)
    document = server.facts(server.questions(settings))
    document["releases"].reverse()  # Facts sorts them itself
    facts = Facts.from_json(document)
    named = server.described
    assert facts.platform == "debian-12"
    assert facts.installed == frozenset({"nginx", "python3-venv"})
    assert facts.app_user_shell is None
    assert facts.path(named["absent"]) == PathState("absent")
    assert not facts.exists(named["absent"])
    assert facts.sha256(named["file"]) == hashlib.sha256(Path(named["file"]).read_bytes()).hexdigest()
    assert facts.directory(named["dir"]) == "{}:{}:750".format(*owner_and_group(named["dir"]))
    assert facts.path(named["fifo"]).kind == "other" and facts.directory(named["fifo"]) is None
    assert facts.path(named["dirlink"]) == PathState.link(named["dir"])
    assert facts.link_name(named["link"]) == "x"
    assert facts.releases == (
        Release(BARE, "", {}, ""),
        Release(OLD, "v1", {"id": OLD, "venv": "v1", "user": "alice"}),
        Release(FAILED, "v2", {}, "health: 502 after 30 s"),
    )
    assert facts.release_venv(BARE) is None
    assert facts.fingerprint == "f1ng3rpr1nt"
    assert (facts.venvs, facts.venv_dirs) == (frozenset({"v1"}), frozenset({"v1", "v2"}))
    assert facts.program is None and facts.program_state is None
    assert facts.units == {"nginx": Unit("active", "enabled"), "supervisor": Unit("inactive", "disabled")}
    assert facts.active("nginx") and not facts.active("supervisor")
    assert facts.nginx_stale is False
    assert facts.health is None and not facts.healthy


def test_a_program_reads_back_with_pid_0_as_none():
    stopped = Facts.from_json({"program": {"state": "STOPPED", "pid": 0, "description": "Not started"}})
    assert stopped.program == Program("STOPPED", None, "Not started")


def test_parse_merges_the_json_lines_of_the_output_and_ignores_the_rest(server, settings):
    printed = server.run(server.questions(settings)).stdout
    output = f"starting\n{json.dumps({'health': '200'})}\n{printed}::note probe done\n"
    facts = probe.parse(output)
    assert (facts.platform, facts.health, facts.healthy) == ("debian-12", "200", True)
    assert facts.installed == frozenset({"nginx", "python3-venv"})
    assert not probe.parse(output.replace('"200"', '"502"')).healthy


def test_the_probe_script_includes_the_lock_and_the_health_check_only_when_asked(settings):
    last = line("run_py", Var("PY_PROBE"), Var("PROBE_QUESTIONS"))
    health = line("run_py", Var("PY_HEALTH"), Var("HEALTH_URL"), Var("HEALTH_HOST"), 0, "--json")
    plain = probe.script(settings)
    assert (list(plain.includes), list(plain.lines)) == (["python.sh", "probe.py"], [last])
    assert json.loads(plain.values["PROBE_QUESTIONS"]) == probe.questions(settings)
    locked = probe.script(settings, holder="alice@laptop", action="deploy")
    assert list(locked.includes) == ["python.sh", "probe.py", "lock.sh"]
    assert list(locked.lines) == ["take_lock", last]
    assert locked.values["LOCK_DIR"] == app_paths(settings).lock_dir
    assert locked.values["LOCK_HOLDER"] == "alice@laptop (deploy)"
    checked = probe.script(settings, health=True)
    assert list(checked.includes) == ["python.sh", "probe.py", "health.py"]
    assert list(checked.lines) == [health, last]
    both = probe.script(settings, holder="alice@laptop", action="deploy", health=True)
    assert (tuple(both.includes), list(both.lines)) == (runtime.PROBE, ["take_lock", health, last])
    assert (plain.title, both.title) == ("probe for a look", "probe for deploy")


class Healthy(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


@pytest.fixture
def site() -> Iterator[str]:
    """The app's health URL, answering 200."""
    http = ThreadingHTTPServer(("127.0.0.1", 0), Healthy)
    thread = threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_address[1]}/health"
    finally:
        http.shutdown()
        http.server_close()
        thread.join(5)


def local_script(s: Settings, server: Server, questions: dict, url: str) -> Script:
    """The probe script for a deploy, its values pointed at the scratch server."""
    sent = probe.script(s, holder="alice@laptop", action="deploy", health=True)
    return replace(sent, values={
        **sent.values, "PROBE_QUESTIONS": json.dumps(questions), "LOCK_DIR": str(server.root / "lock"),
        "HEALTH_URL": url,
    })  # fmt: skip


def run_script(server: Server, script: Script) -> subprocess.CompletedProcess:
    fake = f'export PATH={server.bin}:"$PATH"\n'  # the fake systemctl, as in Server.run
    return run_bash(fake + script.render(), timeout=20)


def test_the_probe_script_takes_the_lock_checks_health_and_prints_the_facts(server, settings, site):
    done = run_script(server, local_script(settings, server, server.questions(settings), site))
    assert done.returncode == 0, done.stderr
    facts = probe.parse(done.stdout)
    assert (facts.platform, facts.healthy) == ("debian-12", True)
    assert facts.installed == frozenset({"nginx", "python3-venv"})
    assert (server.root / "lock" / "owner").read_text().startswith("alice@laptop (deploy) since ")


def test_the_probe_script_exits_with_the_probe_s_exit_code(server, settings, site):
    broken = {k: v for k, v in server.questions(settings).items() if k != "app"}
    done = run_script(server, local_script(settings, server, broken, site))
    assert done.returncode == 1
    assert "KeyError: 'app'" in done.stderr
    assert json.loads(done.stdout) == {"health": "200"}  # the lock and the health check went well


def test_the_probe_script_stops_before_probing_when_the_lock_is_held(server, settings, site, tmp_path):
    sshd = tmp_path / "sshd"
    sshd.write_bytes(Path("/bin/sleep").read_bytes())
    sshd.chmod(0o755)
    held = subprocess.Popen([str(sshd), "60"])
    try:
        (server.root / "lock").mkdir()
        (server.root / "lock" / "owner").write_text("bob@desk (restart) since 2026-11-26T09:00:00Z\n")
        (server.root / "lock" / "conn").write_text(f"{held.pid}\n")
        wait_until(lambda: Path(f"/proc/{held.pid}/comm").read_text() == "sshd\n", 5, "the fake sshd runs")
        done = run_script(server, local_script(settings, server, server.questions(settings), site))
    finally:
        held.kill()
        held.wait()
    assert done.returncode == lock.LOCKED_EXIT
    assert done.stdout == (
        "::fail lock locked by bob@desk (restart) since 2026-11-26T09:00:00Z: wait for that run to finish\n"
    )
