"""The probe: tasks/runtime/probe.py run on this machine against a scratch server (its os-release, app
directories, nginx config, package lists, a package query, systemctl, ss and supervisord stand-ins, all
under tmp_path), the facts it prints read back by tasks.facts.Facts and tasks.probe.parse, what it never
reads (a file of the app's user's, one swapped in once looked at) and its time limit, the questions
tasks.probe.questions asks, the script tasks.probe.script sends: what it includes, and that it runs
(locally, with bash under a fake sshd, its lock under tmp_path) to the probe's exit code; and
tasks.probe.run and look over a fake connection (tasks.remote.connect and execute stood in for).

An "sshd process" is a copy of a program named sshd (its /proc/PID/comm reads "sshd"): a copy of bash
running the script stands for this run's SSH connection, a copy of sleep for another run's.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import grp
import hashlib
import json
import marshal
import os
import pwd
import runpy
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
import zlib
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest

from tasks import lock, probe, recap, remote, runtime
from tasks.facts import Facts, Lock, PathState, ReleaseDir, Unit, User
from tasks.layout import META, RELEASE_FILES, app_paths, health_host, layout
from tasks.platform import DEBIAN_12, PLATFORMS, SSHD_PROCESS_NAMES, python_refusal
from tasks.remote import RemoteError, Result
from tasks.settings import Settings
from tasks.shell import Script, Var, line
from tasks.steps import KINDS, PROBES, push
from tasks.steps.guards import Listener, Listeners
from tasks.steps.nginx import NginxConfig
from tasks.steps.provision import Packages
from tasks.steps.push import Releases
from tasks.steps.supervisor import Program
from tests.polling import wait_until
from tests.unit.conftest import default_config
from tests.unit.serverside import COSTLY_IMPORTS, run_bash, run_importing

PROBE = runtime.HERE / "probe.py"
APP = "fd-test-nobody"  # the app's name: no such user on this machine (checked below)
T0 = 1_700_000_000  # mtimes the nginx tests set explicitly
OLD, FAILED, BARE = "20261125T090000Z-aaaaaaaaaaaa", "20261126T100000Z-bbbbbbbbbbbb", "20261124T080000Z-cccc"
DEBIAN_12_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n'
UBUNTU = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\nPRETTY_NAME="Fedora Linux 40 (Server Edition)"\n'
# The package manager's answer for each package it is asked about ("NAME<TAB>STATUS" lines).
STATUSES = {"nginx": "installed", "supervisor": "config-files"}
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
# ss -Hltnp FILTER: records its arguments (one a line) and prints the sockets the test made it list.
SS = """#!/bin/sh
printf '%s\\n' "$@" >{argv}
cat {output} 2>/dev/null || true
"""
OTHER_OWNER = "bob@desk (restart) since 2026-11-26T09:00:00Z"
LOCKED = f"locked by {OTHER_OWNER}: wait for that run to finish"  # what a run finds when it holds the lock
NO_SSHD = "no SSH connection above this run (no sshd process): the lock is not taken"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: the lock's directory must be root's")


class Server:
    """A scratch server under root: where each of the probe's questions points."""

    def __init__(self, root: Path):
        self.root = root
        self.os_release = root / "etc" / "os-release"
        self.srv = root / "srv" / APP
        self.releases = self.srv / "releases"
        self.venvs = self.srv / "venvs"
        self.wheels, self.tools = self.srv / "wheels", self.srv / "tools"
        self.current = self.srv / "current"
        self.nginx = root / "etc" / "nginx"
        self.nginx_pid = root / "run" / "nginx.pid"
        self.stamp = root / "run" / "flaskdeploy-nginx.loaded"
        self.socket = root / "run" / "supervisor.sock"
        self.supervisor = root / "etc" / "supervisor" / "conf.d"
        self.lists = root / "var" / "lib" / "apt" / "lists"
        self.bin = root / "bin"
        self.units = root / "etc" / "systemd" / "system"
        self.ss_argv, self.ss_output = root / "ss.argv", root / "ss.out"
        self.locks = root / "locks"  # the deploy locks' directory (the lock_root fixture makes it)
        for directory in (self.os_release.parent, self.releases, self.venvs, self.nginx, self.stamp.parent,
                          self.lists, self.bin, self.supervisor):  # fmt: skip
            directory.mkdir(parents=True, exist_ok=True)
        self.os_release.write_text(DEBIAN_12_RELEASE)
        ss = SS.format(argv=shlex.quote(str(self.ss_argv)), output=shlex.quote(str(self.ss_output)))
        for name, text in (("systemctl", SYSTEMCTL), ("ss", ss)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.described = {
            name: str(root / "described" / name)
            for name in ("absent", "file", "dir", "link", "dirlink", "fifo", "app_file")
        }
        # The kit's own files, whose content the steps compare: all but app_file (a file the app's user
        # may write, as in its shared directories).
        self.hashed = [path for name, path in self.described.items() if name != "app_file"]

    def entry(self, real: dict, app: str) -> dict:
        """A platform entry of tasks.probe.questions with every server path pointed under root, and what
        it asks each step's part (its app named `app`)."""
        pointed = {
            "probe_packages": {"query": PACKAGE_QUERY, "lists": str(self.lists)},
            "probe_releases": {
                "releases_dir": str(self.releases), "venvs_dir": str(self.venvs),
                "wheels_dir": str(self.wheels), "tools_dir": str(self.tools), "current": str(self.current),
            },
            "probe_program": {"socket": str(self.socket), "name": app},
            "probe_nginx": {
                "conf_dir": str(self.nginx), "pid": str(self.nginx_pid), "loaded_stamp": str(self.stamp),
            },
            "probe_certificate": {},  # https.mode off: asked nothing
            "probe_listeners": {"app": app},
            "probe_processes": {
                "pidfile": str(self.root / "run" / "supervisord.pid"), "conf_dir": str(self.supervisor),
            },
            "probe_schedule": {"unit_dir": str(self.units), "jobs_dir": str(self.srv / "jobs")},
            "probe_postgresql": {},  # services.postgresql off: asked nothing
            "probe_redis": {},  # services.redis off: asked nothing
        }  # fmt: skip
        assert set(real["asks"]) == set(pointed), "a new part: point what it asks into the scratch server"
        asks = {name: {**asked, **pointed[name]} for name, asked in real["asks"].items()}
        for name, asked in asks.items():
            assert set(asked) == set(real["asks"][name]), f"{name} asks something new: point it in here"
        fake = {
            **real,
            "paths": list(self.described.values()),
            "hashed": self.hashed,
            "base_dir": str(self.srv),
            "current": str(self.current),
            "configs": [
                str(self.root / "configs" / name) for name in ("site", "program", "gunicorn", "tmpfiles")
            ],
            "asks": asks,
        }
        assert set(fake) == set(real), "the entry asks something new: point it into the scratch server"
        return fake

    def questions(self, s: Settings, **app) -> dict:
        """tasks.probe.questions(s) pointed at this server; the app named APP unless `app` says otherwise."""
        real = probe.questions(s)
        asked_of_all = {"os_release", "app", "platforms", "lock", "time_limit", "python_min", "parts"}
        assert set(real) == asked_of_all, "a new question: point it in here"
        asked = {**real["app"], "name": APP, **app}
        assert set(asked) == set(real["app"]), "the app is asked something new"
        return {
            "os_release": str(self.os_release),
            "app": asked,
            "platforms": [self.entry(entry, asked["name"]) for entry in real["platforms"]],
            "lock": {**real["lock"], "root": str(self.locks)},
            "time_limit": real["time_limit"],
            "python_min": real["python_min"],
            "parts": real["parts"],  # the steps' parts' sources
        }

    def guard(self, value) -> None:
        leaked = [p for p in strings(value) if p.startswith("/") and not self.local(p)]
        assert not leaked, f"the probe would read this machine's {leaked}"

    def run(self, questions: dict, path: str | None = None) -> subprocess.CompletedProcess:
        """The probe run with these questions; PATH: the fake systemctl and ss first, unless `path`."""
        self.guard(questions)
        environment = {**os.environ, "PATH": path or f"{self.bin}:{os.environ['PATH']}"}
        return subprocess.run(
            [sys.executable, "-I", str(PROBE), probe.encoded(questions)],
            capture_output=True, text=True, env=environment, timeout=10,
        )  # fmt: skip

    def local(self, path: str) -> bool:
        return path.startswith(str(self.root) + "/") or path == sys.executable

    def facts(self, questions: dict, path: str | None = None) -> dict:
        done = self.run(questions, path)
        assert done.returncode == 0, done.stderr
        (printed,) = done.stdout.splitlines()
        return json.loads(printed)

    def listening(self, text: str) -> None:
        """What the fake ss prints from now on."""
        self.ss_output.write_text(text)

    def ss_asked(self) -> list[str] | None:
        """The arguments the fake ss was last run with; None if it never ran."""
        return self.ss_argv.read_text().splitlines() if self.ss_argv.exists() else None


def strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
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
    for kept in (server.wheels, server.tools):
        kept.mkdir(parents=True)
    for name in ("flask-3.1.3-py3-none-any.whl", "gunicorn-23.0.0-py3-none-any.whl", ".hidden.whl"):
        (server.wheels / name).write_bytes(b"PK")
    for name in ("uv-0.9.0", ".uv-0.9.1.tmp"):
        (server.tools / name).write_bytes(b"\x7fELF")
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
    (described / "app_file").write_bytes(b"written by the app\n")
    (described / "link").symlink_to("/srv/app/releases/x")
    (described / "dirlink").symlink_to(described / "dir")
    os.mkfifo(described / "fifo")


def owner_and_group(path: str) -> tuple[str, str]:
    return Path(path).owner(), Path(path).group()


def comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def start_time(pid: int) -> str:
    """Field 22 of /proc/PID/stat: when the process started (what the lock records of a connection)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]


def no_such_pid() -> int:
    """A PID no process can have: above the kernel's limit."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def copy_of(program: str, path: Path) -> Path:
    """A copy of a program under another name: its processes' comm is that name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(program, path)
    return path


@contextlib.contextmanager
def running(program: Path, user: int | None = None) -> Iterator[int]:
    """A process of `program` (sleeping), started by this test and killed by its PID at the end."""
    process = subprocess.Popen([str(program), "60"], user=user)
    try:
        wait_until(lambda: comm(process.pid) == program.name, 5, f"{program.name} runs")
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_a_debian_12_server_gets_the_debian_12_entry_and_its_facts(server, settings):
    facts = server.facts(server.questions(settings))
    assert (facts["platform"], facts["system"]) == ("debian-12", "Debian GNU/Linux 12 (bookworm)")
    assert facts["python"] == "{}.{}.{}".format(*sys.version_info[:3])  # the full version: "3.11.2"
    assert facts["machine"] == os.uname().machine
    assert facts["cpus"] == len(os.sched_getaffinity(0))
    assert facts["app_user"] is None  # no such user
    assert "app_user_shell" not in facts  # app_user holds it now
    assert facts["listeners"] == []  # nobody listens on the port
    assert server.ss_asked() is None  # the kernel says so: ss is not asked
    assert facts["program"] is None  # no supervisord socket
    assert facts["units"] == {
        "nginx": {"active": "active", "enabled": "enabled"},
        "supervisor": {"active": "inactive", "enabled": "disabled"},
        "certbot.timer": {"active": "inactive", "enabled": "disabled"},  # a timer, asked by its full name
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
    assert server.ss_asked() is None  # nor asks for them
    assert probe.parse(json.dumps(facts)).platform is None


def test_a_missing_os_release_matches_no_entry(server, settings):
    server.os_release.unlink()
    assert server.facts(server.questions(settings))["platform"] is None


def test_the_questions_name_the_app_its_port_and_the_shared_dirs_with_their_parents(settings):
    s = replace(
        settings,
        app=replace(settings.app, port=8123),
        deploy=replace(settings.deploy, shared_dirs=("data/files", "uploads")),
    )
    asked = probe.questions(s)
    assert asked["os_release"] == "/etc/os-release"
    assert asked["app"] == {"name": s.app.name, "meta": META, "files": RELEASE_FILES, "port": 8123}
    assert [entry["id"] for entry in asked["platforms"]] == [platform.id for platform in PLATFORMS]
    for entry, platform in zip(asked["platforms"], PLATFORMS, strict=True):
        paths = layout(s, platform)
        assert entry == {**entry, **platform.probe_entry()}
        assert len(entry["paths"]) == len(set(entry["paths"]))
        under_shared = [p for p in entry["paths"] if p.startswith(f"{paths.shared_dir}/")]
        # each shared directory, its parents under shared/, and instance (always)
        expected = [paths.shared(d) for d in ("data", "data/files", "instance", "uploads")]
        assert sorted(under_shared) == expected
        assert {
            paths.base_dir, paths.releases_dir, paths.venvs_dir, paths.shared_dir, paths.log_dir,
            paths.run_dir, paths.tmpfiles_conf, paths.gunicorn_conf, paths.current, f"{paths.current}/.venv",
            paths.previous, paths.nginx_site, paths.nginx_link, paths.nginx_default,
            paths.nginx_default_backup, paths.nginx_default_link, paths.supervisor_conf,
        } <= set(entry["paths"])  # fmt: skip
        assert entry["base_dir"] == paths.base_dir  # the space free under it
        releases, nginx = entry["asks"]["probe_releases"], entry["asks"]["probe_nginx"]
        asked_dirs = [
            releases["releases_dir"],
            releases["venvs_dir"],
            releases["current"],
            nginx["loaded_stamp"],
        ]
        assert asked_dirs == [paths.releases_dir, paths.venvs_dir, paths.current, paths.nginx_loaded_stamp]
        assert entry["current"] == paths.current  # a check run reads the live release's files
        assert entry["asks"]["probe_program"]["name"] == s.app.name
        assert entry["asks"]["probe_listeners"] == {"port": 8123, "app": s.app.name}
    plain = probe.questions(settings)["platforms"][0]["paths"]  # shared_dirs: [instance]
    shared = app_paths(settings).shared_dir
    assert [p for p in plain if p.startswith(f"{shared}/")] == [f"{shared}/instance"]


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
        named["app_file"]: {"kind": "file"},  # not the kit's: its content is no concern of the steps
    }


@pytest.mark.parametrize("mode", ["off", "files", "acme"])
def test_the_probe_reads_the_content_only_of_the_kit_s_configs_and_certificate_files(mode, settings):
    s = replace(settings, https=replace(settings.https, mode=mode))
    paths = layout(s, DEBIAN_12)
    https_files = {"off": [], "files": [paths.tls_cert, paths.tls_key], "acme": [paths.acme_ca_bundle]}
    expected = [paths.tmpfiles_conf, paths.gunicorn_conf, paths.nginx_site, paths.supervisor_conf]
    hashed = set(probe.hashed_paths(s, paths))
    # The steps' own files (each step declares what it hashes), among them these; no other mode's.
    assert hashed == {path for asked in PROBES for path in asked.hashed(s, paths)}
    assert set(expected + https_files[mode]) <= hashed
    assert not hashed & {path for files in https_files.values() for path in files} - set(https_files[mode])
    assert not [p for p in hashed if p.startswith((f"{paths.shared_dir}/", f"{paths.run_dir}/"))]
    entry = next(e for e in probe.questions(s)["platforms"] if e["id"] == DEBIAN_12.id)
    assert entry["hashed"] == probe.hashed_paths(s, paths)
    assert set(entry["hashed"]) <= set(entry["paths"])
    assert not [p for p in entry["hashed"] if p.startswith(f"{paths.shared_dir}/")]


def test_a_terabyte_where_the_app_s_user_writes_is_not_read(server, settings):
    # Hashed, its zeros would keep the probe (root, no watchdog) busy for minutes: Server.run gives it 10 s.
    fill(server)
    os.truncate(server.described["app_file"], 1 << 40)  # sparse: no disk taken
    assert server.facts(server.questions(settings))["paths"][server.described["app_file"]] == {"kind": "file"}


# Run as the probe, with its os.lstat made to swap the file at PATH for a FIFO or a link to TARGET the
# moment it has looked at it, as the app's user could between the probe's lstat and its open.
SWAPPED_AFTER_LSTAT = """
import os, runpy, sys
path, swap, target, program = sys.argv[1:5]
lstat = os.lstat

def lstat_then_swap(name, *args, **kwargs):
    info = lstat(name, *args, **kwargs)
    if name == path and os.path.isfile(name):
        os.unlink(path)
        os.mkfifo(path) if swap == "fifo" else os.symlink(target, path)
    return info

os.lstat = lstat_then_swap
sys.argv = [program, *sys.argv[5:]]
runpy.run_path(program, run_name="__main__")
"""


@pytest.mark.parametrize(
    ("name", "swap", "expected"),
    [
        ("file", "fifo", {"kind": "other"}),  # the kit's file: opened without waiting for a writer
        ("file", "link", {"kind": "other"}),  # opened through no link: root's secret is not hashed
        ("app_file", "fifo", {"kind": "file"}),  # the app's: never opened
    ],
)
def test_a_file_swapped_for_a_fifo_or_a_link_once_looked_at_is_not_read_through_it(
    name, swap, expected, server, settings
):
    fill(server)
    secret = server.root / "secret"
    secret.write_text("root's own\n")
    questions = server.questions(settings)
    server.guard(questions)
    environment = {**os.environ, "PATH": f"{server.bin}:{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", SWAPPED_AFTER_LSTAT, server.described[name], swap, str(secret),
         str(PROBE), probe.encoded(questions)],
        capture_output=True, text=True, env=environment, timeout=10,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["paths"][server.described[name]] == expected


def unnamed(lookup) -> int:
    """An id no user (or group) has."""
    return next(number for number in range(54321, 60000) if not known(lookup, number))


def known(lookup, number: int) -> bool:
    try:
        lookup(number)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(not ROOT, reason="needs root: chown to an id nobody has")
def test_a_dir_whose_owner_has_no_name_is_described_with_unknown_names_and_its_full_mode(server, settings):
    fill(server)
    os.chown(server.described["dir"], unnamed(pwd.getpwuid), unnamed(grp.getgrgid))
    Path(server.described["dir"]).chmod(0o2775)
    paths = server.facts(server.questions(settings))["paths"]
    expected = {"kind": "dir", "owner": "UNKNOWN", "group": "UNKNOWN", "mode": "2775"}
    assert paths[server.described["dir"]] == expected


def test_an_existing_app_user_is_reported_with_its_home_shell_and_comment(server, settings):
    facts = server.facts(server.questions(settings, name="root"))
    root = pwd.getpwnam("root")
    assert facts["app_user"] == {"home": root.pw_dir, "shell": root.pw_shell, "comment": root.pw_gecos}
    read_back = probe.parse(json.dumps(facts))
    assert read_back.app_user == User(root.pw_dir, root.pw_shell, root.pw_gecos)
    assert read_back.app_user_shell == root.pw_shell


LISTENING = (  # ss -Hltnp as it lists a gunicorn master and worker on the port, over IPv4 and IPv6
    "LISTEN 0      2048       127.0.0.1:{port}      0.0.0.0:*    "
    'users:(("gunicorn",pid={second},fd=3),("gunicorn",pid={first},fd=3),("gunicorn",pid={gone},fd=3))\n'
    "LISTEN 0      2048           [::1]:{port}         [::]:*    "
    'users:(("gunicorn",pid={first},fd=4))\n'
)


@contextlib.contextmanager
def listening_on(port: int, host: str = "127.0.0.1", user: int | None = None) -> Iterator[None]:
    """A real socket listening on host:port, of this test's process or of a process of `user`'s."""
    if user is None:
        with socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET):
            yield
        return
    code = (
        "import socket, sys, time\n"
        "s = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
        "print(1, flush=True)\n"
        "time.sleep(60)"
    )
    process = subprocess.Popen(
        ["/usr/bin/python3", "-c", code, host, str(port)], user=user, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline() == "1\n", "the listener did not start"
        yield
    finally:
        process.kill()
        process.wait()


def ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not ROOT, reason="needs root: starts a process as nobody")
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_listeners_are_the_processes_of_other_users_ss_lists_on_the_port_with_user_and_command_from_proc(
    server, settings, tmp_path, host
):
    if host == "::1" and not ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    s = replace(settings, app=replace(settings.app, port=8123))
    nobody = pwd.getpwnam("nobody").pw_uid
    with (
        running(copy_of("/bin/sleep", tmp_path / "fd-listener")) as first,
        running(Path("/bin/sleep"), user=nobody) as second,
        running(Path("/bin/sleep"), user=nobody) as app_s,
        listening_on(8123, host),  # another user (root) listens: ss is asked who
    ):
        # ss names them "gunicorn"; /proc has their own command names and owners
        server.listening(LISTENING.format(port=8123, first=first, second=second, gone=no_such_pid()))
        facts = server.facts(server.questions(s))
        listed = server.ss_asked()
        server.listening(LISTENING.format(port=8123, first=first, second=app_s, gone=no_such_pid()))
        app_nobody = server.facts(server.questions(s, name="nobody"))
    assert listed == ["-Hltnp", "sport = :8123"]  # the app's port
    listening = [
        {"pid": first, "user": pwd.getpwuid(os.geteuid()).pw_name, "command": "fd-listener"},
        {"pid": second, "user": "nobody", "command": "sleep"},
    ]
    expected = sorted(listening, key=lambda listener: listener["pid"])
    assert facts["listeners"] == expected  # each once, by PID; one gone since ss looked is left out
    read_back = probe.parse(json.dumps(facts)).of(Listeners)
    assert read_back.found == tuple(Listener(**listener) for listener in expected)
    assert app_nobody["listeners"] == [listening[0]]  # the app's user's own processes are left out


@pytest.mark.skipif(not ROOT, reason="needs root: starts a process as nobody")
def test_a_port_only_the_app_s_user_listens_on_has_no_listeners_and_asks_ss_nothing(server, settings):
    s = replace(settings, app=replace(settings.app, port=8124))
    with listening_on(8124, user=pwd.getpwnam("nobody").pw_uid):
        ours = server.facts(server.questions(s, name="nobody"))
        assert server.ss_asked() is None  # the kernel shows the app's user only
        server.facts(server.questions(s))  # an app of another name: the port is another user's
        assert server.ss_asked() == ["-Hltnp", "sport = :8124"]
    assert ours["listeners"] == []


class KernelAnswers:
    """A netlink socket as the probe's listening_uids opens it, answering with `replies` (bytes each)."""

    def __init__(self, *replies: bytes) -> None:
        self.replies = list(replies)
        self.closed = False

    def __call__(self, family: int, kind: int, protocol: int) -> KernelAnswers:
        assert (family, kind, protocol) == (socket.AF_NETLINK, socket.SOCK_RAW, 4)  # NETLINK_SOCK_DIAG
        return self

    def close(self) -> None:
        self.closed = True

    def settimeout(self, _: float) -> None:
        return None

    def sendall(self, request: bytes) -> None:
        self.asked = request

    def recv(self, _: int) -> bytes:
        return self.replies.pop(0) if self.replies else b""


def netlink(kind: int, body: bytes = bytes(4)) -> bytes:
    """A netlink message of that type (2: an error, 3: the last one, 20: a socket's diagnostics)."""
    return (16 + len(body)).to_bytes(4, sys.byteorder) + kind.to_bytes(2, sys.byteorder) + bytes(10) + body


def diag_message(port: int, uid: int) -> bytes:
    """The inet_diag_msg of a socket listening on port, owned by uid, in its netlink message."""
    family_state = bytes([socket.AF_INET, 10, 0, 0])
    return netlink(
        20, family_state + port.to_bytes(2, "big") + bytes(58) + uid.to_bytes(4, sys.byteorder) + bytes(4)
    )


@pytest.mark.parametrize(
    ("replies", "uids"),
    [
        ([diag_message(8080, 999) + diag_message(8081, 5), netlink(3)], {999}),  # another port's left out
        ([diag_message(8080, 999) + netlink(3)], {999}),
        ([netlink(2)], None),  # an error
        ([diag_message(8080, 999)], None),  # the answer ends before its last message
    ],
)
def test_the_kernel_s_socket_diagnostics_are_read_to_their_last_message_or_give_no_answer(
    monkeypatch, replies, uids
):
    listening_uids = part_functions("probe_listeners.py", monkeypatch)["listening_uids"]
    kernel = KernelAnswers(*replies, *replies)  # the same for IPv4 and IPv6
    names = ("AF_INET", "AF_INET6", "AF_NETLINK", "SOCK_RAW", "IPPROTO_TCP")
    fake = SimpleNamespace(**{name: getattr(socket, name) for name in names}, socket=kernel)
    monkeypatch.setitem(listening_uids.__globals__, "_socket", fake)
    assert listening_uids(8080) == uids
    assert kernel.closed
    assert kernel.asked[16 + 8 : 16 + 10] == (8080).to_bytes(2, "big")  # the port, as the kernel filters it


def test_listeners_are_none_when_ss_is_missing(server, settings):
    (server.bin / "ss").unlink()
    path = str(server.bin)  # the fake systemctl, no ss
    assert shutil.which("ss", path=path) is None
    with listening_on(settings.app.port):  # another user than the app's listens: ss would be asked
        facts = server.facts(server.questions(settings), path=path)
    assert facts["listeners"] == []
    assert facts["units"]["nginx"] == {"active": "active", "enabled": "enabled"}  # the rest still answered


def test_a_check_run_is_told_the_configs_the_live_releases_files_and_app_env_as_salted_digests(
    server, settings
):
    fill(server)
    live = server.current / META
    (live / RELEASE_FILES).write_text(json.dumps({"app.py": "ab12"}))
    (live / "env.json").write_text(json.dumps({"SECRET_KEY": "s3cret-value"}))
    (server.root / "configs").mkdir()
    (server.root / "configs" / "site").write_text("server {}\n")
    questions = server.questions(settings)
    assert "release_files" not in server.facts(questions)  # a run that is no check is not told
    facts = server.facts({**questions, "salt": "pepper"})
    assert facts["release_files"] == {"app.py": "ab12"}
    assert facts["env_digests"] == {"SECRET_KEY": push.env_digest("pepper", "SECRET_KEY", "s3cret-value")}
    assert facts["env_salt"] == "pepper"
    assert "s3cret-value" not in json.dumps(facts)
    site, *others = (
        str(server.root / "configs" / name) for name in ("site", "program", "gunicorn", "tmpfiles")
    )
    assert facts["configs"] == {site: "server {}\n", **dict.fromkeys(others)}


def test_releases_venvs_and_fingerprint(server, settings):
    fill(server)
    facts = server.facts(server.questions(settings))
    record = json.dumps({"id": OLD, "venv": "v1", "user": "alice"})
    assert facts["releases"] == [  # sorted, hidden .partial-* and files left out; records as their text
        {"id": BARE, "venv": "", "record": "", "failed": ""},
        {"id": OLD, "venv": str(server.venvs / "v1"), "record": record, "failed": ""},
        {"id": FAILED, "venv": f"{server.venvs}/v2/", "record": "{not json",
         "failed": "health: 502 after 30 s"},
    ]  # fmt: skip
    # The control machine parses them: no record where the text is none, or no JSON object
    assert [r.record for r in Releases.from_json(facts).releases] == [{}, json.loads(record), {}]
    assert (facts["venv_dirs"], facts["venvs"]) == (["v1", "v2"], ["v1"])
    assert facts["fingerprint"] == "f1ng3rpr1nt"
    # The wheels and tools kept: names in wheels/ and tools/, hidden ones (unfinished) left out.
    assert facts["wheels"] == ["flask-3.1.3-py3-none-any.whl", "gunicorn-23.0.0-py3-none-any.whl"]
    assert facts["tools"] == ["uv-0.9.0"]


def test_an_empty_server_has_no_releases_venvs_or_fingerprint(server, settings):
    facts = server.facts(server.questions(settings))
    assert (facts["releases"], facts["venvs"], facts["venv_dirs"], facts["fingerprint"]) == ([], [], [], "")
    assert (facts["wheels"], facts["tools"]) == ([], [])  # no wheels/ or tools/ yet


def test_installed_are_the_packages_whose_status_is_the_entry_s_installed_status(server, settings):
    questions = server.questions(settings)
    assert server.facts(questions)["installed"] == ["nginx"]
    for entry in questions["platforms"]:
        entry["asks"]["probe_packages"]["installed"] = "config-files"
    assert server.facts(questions)["installed"] == ["supervisor"]


def test_installed_is_empty_when_the_package_query_cannot_run(server, settings):
    questions = server.questions(settings)
    for entry in questions["platforms"]:
        entry["asks"]["probe_packages"]["query"] = [str(server.root / "no-such-query")]
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
    """supervisord's XML-RPC interface on a unix socket, knowing one program: RUNNING as `pid` for a
    minute, unless another `state` (then with no pid)."""

    address_family = socket.AF_UNIX

    def __init__(self, path: Path, pid: int = 427, state: str = "RUNNING"):
        super().__init__(str(path), Handler, logRequests=False)
        self.pid, self.state = pid, state
        self.register_function(self.process_info, "supervisor.getProcessInfo")
        self.thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def process_info(self, name: str) -> dict:
        if name != APP:
            raise xmlrpc.client.Fault(10, f"BAD_NAME: {name}")
        if self.state != "RUNNING":
            return {"name": APP, "statename": self.state, "pid": 0, "description": "Not started", "start": 0,
                    "now": T0 + 60, "stop": 0}  # fmt: skip
        return {"name": APP, "statename": "RUNNING", "pid": self.pid, "start": T0, "now": T0 + 60,
                "description": f"pid {self.pid}, uptime 0:01:00"}  # fmt: skip

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.shutdown()
        self.server_close()
        self.thread.join(5)


@contextlib.contextmanager
def master(workers: int) -> Iterator[int]:
    """A process with `workers` children, as a gunicorn master has (killed, with them, at the end)."""
    process = subprocess.Popen(
        ["/bin/sh", "-c", "sleep 60 & " * workers + "wait"], start_new_session=True, stdout=subprocess.DEVNULL
    )
    try:
        wait_until(lambda: len(children(process.pid)) == workers, 5, f"{workers} children run")
        yield process.pid
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_program_is_supervisor_s_view_of_the_app_s_program_with_its_uptime_and_workers(server, settings):
    with master(3) as pid, Supervisord(server.socket, pid):
        assert server.facts(server.questions(settings))["program"] == {
            "state": "RUNNING", "pid": pid, "description": f"pid {pid}, uptime 0:01:00", "uptime": 60,
            "workers": 3,
        }  # fmt: skip
        assert server.facts(server.questions(settings, name="other-app"))["program"] is None
        read_back = probe.parse(server.run(server.questions(settings)).stdout).of(Program)
    assert read_back == Program("RUNNING", pid, f"pid {pid}, uptime 0:01:00", uptime=60, workers=3)


def test_a_program_that_does_not_run_has_no_uptime_and_no_workers(server, settings):
    with Supervisord(server.socket, state="STOPPED"):
        assert server.facts(server.questions(settings))["program"] == {
            "state": "STOPPED", "pid": 0, "description": "Not started", "uptime": None, "workers": None,
        }  # fmt: skip


def test_disk_free_is_the_space_available_under_the_app_s_base_dir_or_the_nearest_dir_above(server, settings):
    questions = server.questions(settings)
    free = server.facts(questions)["disk_free"]
    available = os.statvfs(server.srv)
    assert abs(free - available.f_bavail * available.f_frsize) < 256 << 20  # others write meanwhile
    for entry in questions["platforms"]:
        entry["base_dir"] = str(server.srv / "not" / "made" / "yet")  # a fresh server: no /srv/APP yet
    assert abs(server.facts(questions)["disk_free"] - free) < 256 << 20


def lock_records(server: Server, conn: str | None, owner: str = OTHER_OWNER) -> dict[str, tuple[str, int]]:
    """The app's lock records as runtime/lock.sh leaves them (no .conn when `conn` is None); what the
    lock's directory then holds: name -> (text, mtime), to show that the probe changes none of it."""
    server.locks.mkdir(exist_ok=True)
    (server.locks / f"{APP}.owner").write_text(owner + "\n")
    if conn is not None:
        (server.locks / f"{APP}.conn").write_text(conn + "\n")
    return lock_dir(server)


def lock_dir(server: Server) -> dict[str, tuple[str, int]]:
    return {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in server.locks.iterdir()}


def test_the_lock_holder_is_the_record_of_a_run_whose_connection_still_lives(server, settings):
    with running(copy_of("/bin/sleep", server.root / "held" / "sshd")) as held:
        before = lock_records(server, f"{held} {start_time(held)}")
        facts = server.facts(server.questions(settings))
    assert facts["lock"] == {"holder": "bob@desk (restart)", "since": "2026-11-26T09:00:00Z"}
    assert probe.parse(json.dumps(facts)).lock == Lock("bob@desk (restart)", "2026-11-26T09:00:00Z")
    assert lock_dir(server) == before  # looked at, not taken


def dead_connection(how: str, other: int) -> str | None:
    """A lock's connection record ("PID START") that names no live sshd, as `how` says; `other` is a
    running process (named sleep for "no sshd"). None: no record ("no .conn", "none")."""
    return {
        "the process is gone": f"{no_such_pid()} 1",
        "its start time differs (a reused PID)": f"{other} {int(start_time(other)) + 1}",
        "no sshd": f"{other} {start_time(other)}",
    }.get(how)


@pytest.mark.parametrize(
    "how", ["the process is gone", "its start time differs (a reused PID)", "no sshd", "no .conn", "none"]
)
def test_a_lock_record_whose_connection_is_gone_is_no_holder(how, server, settings):
    name = "sleep" if how == "no sshd" else "sshd"
    with running(copy_of("/bin/sleep", server.root / "held" / name)) as other:
        conn = dead_connection(how, other)
        before = lock_records(server, conn) if how != "none" else {}
        assert server.facts(server.questions(settings))["lock"] is None
    assert (lock_dir(server) if server.locks.exists() else {}) == before


def test_a_run_still_applying_after_its_connection_went_holds_the_lock(server, settings):
    lock_records(server, f"{no_such_pid()} 1", owner="alice@laptop (deploy)")  # no " since ": said as is
    with open(server.locks / f"{APP}.run", "a") as run_file:
        fcntl.flock(run_file, fcntl.LOCK_EX)  # as runtime/lock.sh's hold_lock holds it while applying
        held = server.facts(server.questions(settings))["lock"]
    assert held == {"holder": "alice@laptop (deploy)", "since": ""}
    assert server.facts(server.questions(settings))["lock"] is None  # it ended: the record is stale


def test_program_is_none_when_supervisord_is_not_listening_on_its_socket(server, settings):
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(server.socket))  # a socket file left behind, nobody accepting on it
        assert server.facts(server.questions(settings))["program"] is None


def test_the_facts_read_back_as_typed_facts(server, settings):
    fill(server)
    document = server.facts(server.questions(settings))
    document["releases"].reverse()  # Facts sorts them itself
    facts = Facts.from_json(document, KINDS)
    named = server.described
    assert facts.platform == "debian-12"
    assert facts.of(Packages).installed == frozenset({"nginx"})
    assert facts.app_user is None and facts.app_user_shell is None
    assert facts.of(Listeners).found == ()
    assert facts.path(named["absent"]) == PathState("absent")
    assert not facts.exists(named["absent"])
    assert facts.sha256(named["file"]) == hashlib.sha256(Path(named["file"]).read_bytes()).hexdigest()
    assert facts.directory(named["dir"]) == "{}:{}:750".format(*owner_and_group(named["dir"]))
    assert facts.path(named["fifo"]).kind == "other" and facts.directory(named["fifo"]) is None
    assert facts.path(named["dirlink"]) == PathState.link(named["dir"])
    assert facts.link_name(named["link"]) == "x"
    held = facts.of(Releases)
    assert held.releases == (
        ReleaseDir(BARE, "", {}, ""),
        ReleaseDir(OLD, "v1", {"id": OLD, "venv": "v1", "user": "alice"}),
        ReleaseDir(FAILED, "v2", {}, "health: 502 after 30 s"),
    )
    assert held.venv_of(BARE) is None
    assert held.fingerprint == "f1ng3rpr1nt"
    assert (held.venvs, held.venv_dirs) == (frozenset({"v1"}), frozenset({"v1", "v2"}))
    assert held.wheels == frozenset({"flask-3.1.3-py3-none-any.whl", "gunicorn-23.0.0-py3-none-any.whl"})
    assert held.tools == frozenset({"uv-0.9.0"})
    assert facts.of(Program) == Program() and facts.of(Program).state is None
    assert facts.units == {
        "nginx": Unit("active", "enabled"), "supervisor": Unit("inactive", "disabled"),
        "certbot.timer": Unit("inactive", "disabled"),
    }  # fmt: skip
    assert facts.active("nginx") and not facts.active("supervisor")
    assert facts.of(NginxConfig).stale is False
    assert facts.health is None and not facts.healthy and facts.health_ms is None
    assert facts.lock is None and facts.disk_free and facts.disk_free > 0


def test_a_program_reads_back_with_pid_0_as_none():
    stopped = Facts.from_json(
        {"program": {"state": "STOPPED", "pid": 0, "description": "Not started"}}, KINDS
    )
    assert stopped.of(Program) == Program("STOPPED", None, "Not started")


def test_an_app_user_and_listeners_read_back_as_typed_facts():
    facts = Facts.from_json({
        "app_user": {"home": "/srv/flaskdemo", "shell": "/usr/sbin/nologin", "comment": ""},
        "listeners": [{"pid": 1234, "user": "flaskdemo", "command": "gunicorn"}],
    }, KINDS)  # fmt: skip
    assert facts.app_user == User("/srv/flaskdemo", "/usr/sbin/nologin", "")
    assert facts.app_user_shell == "/usr/sbin/nologin"
    assert facts.of(Listeners).found == (Listener(1234, "flaskdemo", "gunicorn"),)
    assert Facts.from_json({"app_user": None, "listeners": []}, KINDS) == Facts.from_json({}, KINDS)
    assert Facts.from_json({}, KINDS) == Facts().having(*(kind() for kind in KINDS))


def test_parse_merges_the_json_lines_of_the_output_and_ignores_the_rest(server, settings):
    printed = server.run(server.questions(settings)).stdout
    output = f"starting\n{json.dumps({'health': '200', 'healthy': True})}\n{printed}::note probe done\n"
    facts = probe.parse(output)
    assert (facts.platform, facts.health, facts.healthy) == ("debian-12", "200", True)
    assert facts.of(Packages).installed == frozenset({"nginx"})
    unhealthy = probe.parse(output.replace('"200", "healthy": true', '"502", "healthy": false'))
    assert (unhealthy.health, unhealthy.healthy) == ("502", False)


def test_healthy_is_what_the_health_request_said_of_its_rule_not_a_status_read_here():
    # A 302 passes with no app.health_path (the request said so); a status without a verdict is no pass.
    assert Facts.from_json({"health": "302", "healthy": True}).healthy
    assert not Facts.from_json({"health": "200"}).healthy


def test_the_probe_script_includes_the_lock_and_the_health_request_only_when_asked(settings):
    last = line("run_py", Var("PY_PROBE"), Var("PROBE_QUESTIONS"))
    health = line(  # one try, by probe.py in its own interpreter
        "run_py", Var("PY_PROBE"), Var("PROBE_QUESTIONS"),
        Var("PY_HEALTH"), Var("HEALTH_URL"), Var("HEALTH_HOST"), Var("HEALTH_RULE"),
    )  # fmt: skip
    plain = probe.script(settings)
    assert (list(plain.includes), list(plain.lines)) == (["python.sh", "probe.py"], [last])
    asked = marshal.loads(zlib.decompress(base64.b64decode(plain.values["PROBE_QUESTIONS"])))
    assert asked == probe.questions(settings)
    assert not {"LOCK_ROOT", "APP", "LOCK_HOLDER", "HEALTH_URL"} & set(plain.values)
    locked = probe.script(settings, holder="alice@laptop", action="deploy")
    assert list(locked.includes) == ["python.sh", "probe.py", "lock.sh"]
    assert list(locked.lines) == ["take_lock", last]
    assert locked.values["LOCK_ROOT"] == app_paths(settings).lock_root
    assert locked.values["APP"] == settings.app.name
    assert locked.values["LOCK_HOLDER"] == "alice@laptop (deploy)"
    assert tuple(locked.values["SSHD_PROCESS_NAMES"]) == SSHD_PROCESS_NAMES
    assert "LOCK_DIR" not in locked.values
    checked = probe.script(settings, health=True)
    assert list(checked.includes) == ["python.sh", "probe.py", "health.py"]
    assert list(checked.lines) == [health]
    assert checked.values["HEALTH_HOST"] == health_host(settings)
    with_path = probe.script(replace(settings, app=replace(settings.app, health_path="/health")), health=True)
    rules = [(c.values["HEALTH_URL"], c.values["HEALTH_RULE"]) for c in (checked, with_path)]
    assert rules == [("http://127.0.0.1:80/", "answered"), ("http://127.0.0.1:80/health", "2xx")]
    both = probe.script(settings, holder="alice@laptop", action="deploy", health=True)
    assert (tuple(both.includes), list(both.lines)) == (runtime.PROBE, ["take_lock", health])
    assert (plain.title, both.title) == ("probe for a look", "probe for deploy")


class Site(ThreadingHTTPServer):
    """The app's health URL, answering `status`; it keeps the Host header of each request."""

    daemon_threads = True

    def __init__(self, status: int):
        super().__init__(("127.0.0.1", 0), Answer)
        self.status = status
        self.hosts: list[str | None] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}/health"


class Answer(BaseHTTPRequestHandler):
    server: Site

    def do_GET(self):
        self.server.hosts.append(self.headers.get("Host"))
        self.send_response(self.server.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


@contextlib.contextmanager
def serving(status: int) -> Iterator[Site]:
    http = Site(status)
    thread = threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield http
    finally:
        http.shutdown()
        http.server_close()
        thread.join(5)


@pytest.fixture
def site() -> Iterator[Site]:
    """The app's health URL, answering 200."""
    with serving(200) as http:
        yield http


@pytest.fixture
def lock_root(tmp_path) -> Path:
    """The locks' directory, as the lock wants it: root's, mode 700."""
    root = tmp_path / "locks"
    root.mkdir()
    root.chmod(0o700)
    return root


def local_script(s: Settings, server: Server, questions: dict, url: str, lock_root: Path) -> Script:
    """The probe script for a deploy, its values pointed at the scratch server."""
    sent = probe.script(s, holder="alice@laptop", action="deploy", health=True)
    pointed = {"PROBE_QUESTIONS": probe.encoded(questions), "LOCK_ROOT": str(lock_root), "HEALTH_URL": url}
    script = replace(sent, values={**sent.values, **pointed})
    server.guard(dict(script.values))
    server.guard(questions)
    return script


def run_script(server: Server, script: Script, *, sshd: bool = True) -> subprocess.CompletedProcess:
    """The script run by bash as over SSH: by a copy of bash named sshd (the connection's sshd process
    above it) unless not `sshd`, with the fake systemctl and ss first on PATH, as in Server.run."""
    text = f'export PATH={shlex.quote(str(server.bin))}:"$PATH"\n{script.render()}'
    if not sshd:
        return run_bash(text, timeout=20)
    shell = server.root / "sshd"
    if not shell.exists():
        copy_of("/bin/bash", shell)
    return run_bash(f"exec {shlex.quote(str(shell))} -c {shlex.quote(text)}", timeout=20)


def lock_files(lock_root: Path, app: str) -> dict[str, str]:
    return {p.name: p.read_text() for p in lock_root.iterdir() if p.name in (f"{app}.owner", f"{app}.conn")}


@needs_root
def test_the_probe_script_takes_the_lock_checks_health_and_prints_the_facts(
    server, settings, site, lock_root
):
    questions = server.questions(settings, name=settings.app.name)  # the lock's app: its records are found
    done = run_script(server, local_script(settings, server, questions, site.url, lock_root))
    assert done.returncode == 0, done.stderr
    facts = probe.parse(done.stdout)
    assert (facts.platform, facts.healthy) == ("debian-12", True)
    assert facts.of(Packages).installed == frozenset({"nginx"})
    assert site.hosts == [health_host(settings)]  # one check (timeout 0), with the site's Host
    owner, conn = (lock_root / f"{settings.app.name}.{name}" for name in ("owner", "conn"))
    assert owner.read_text().startswith("alice@laptop (deploy) since ")
    pid, start = conn.read_text().split()  # the fake sshd that ran the script: gone by now
    assert pid.isdigit() and start.isdigit()
    assert facts.lock and facts.lock.holder == "alice@laptop (deploy)"  # this run's, its connection alive
    assert facts.health_ms is not None and facts.health_ms >= 0


@needs_root
@pytest.mark.parametrize("status", [500, 503])
def test_the_probe_script_prints_the_facts_whatever_the_health(status, server, settings, lock_root):
    with serving(status) as http:
        questions = server.questions(settings)
        done = run_script(server, local_script(settings, server, questions, http.url, lock_root))
    assert done.returncode == 0, done.stderr
    facts = probe.parse(done.stdout)
    assert (facts.platform, facts.health, facts.healthy) == ("debian-12", str(status), False)
    assert len(http.hosts) == 1  # asked once: the probe waits for nothing


@needs_root
@pytest.mark.parametrize(
    "health_path, status, healthy",
    [(None, 302, True), (None, 404, True), ("/health", 404, False), ("/health", 204, True)],
)
def test_the_probe_script_reports_healthy_by_the_rule_of_the_health_path(
    health_path, status, healthy, server, settings, lock_root
):
    s = replace(settings, app=replace(settings.app, health_path=health_path))
    with serving(status) as http:
        done = run_script(server, local_script(s, server, server.questions(s), http.url, lock_root))
    assert done.returncode == 0, done.stderr
    facts = probe.parse(done.stdout)
    assert (facts.health, facts.healthy) == (str(status), healthy)


@needs_root
def test_the_probe_script_exits_with_the_probe_s_exit_code(server, settings, site, lock_root):
    broken = {k: v for k, v in server.questions(settings).items() if k != "app"}
    done = run_script(server, local_script(settings, server, broken, site.url, lock_root))
    assert done.returncode == 1
    assert "KeyError: 'app'" in done.stderr
    assert site.hosts == [health_host(settings)]  # the lock was taken and the health request made, before it


def sshd_above_us() -> bool:
    pid = os.getpid()
    while pid > 1:
        if comm(pid) in SSHD_PROCESS_NAMES:
            return True
        pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[1])
    return False


@needs_root
def test_the_probe_script_fails_closed_without_an_sshd_process_above_it(server, settings, site, lock_root):
    if sshd_above_us():
        pytest.skip("these tests run in an SSH session: its sshd is above every script")
    script = local_script(settings, server, server.questions(settings), site.url, lock_root)
    done = run_script(server, script, sshd=False)
    assert done.returncode == 1
    assert done.stdout == f"::fail probe {NO_SSHD}\n"  # no health request, no facts
    assert site.hosts == []
    assert lock_files(lock_root, settings.app.name) == {}


@needs_root
def test_the_probe_script_refuses_a_lock_root_others_may_use(server, settings, site, lock_root):
    lock_root.chmod(0o755)
    done = run_script(server, local_script(settings, server, server.questions(settings), site.url, lock_root))
    assert done.returncode == 1
    assert done.stdout.startswith(f"::fail probe {lock_root} is not a directory only root may use")
    assert done.stdout.count("\n") == 1 and site.hosts == []


@needs_root
def test_the_probe_script_stops_before_probing_when_the_lock_is_held(server, settings, site, lock_root):
    app = settings.app.name
    with running(copy_of("/bin/sleep", server.root / "held" / "sshd")) as held:
        (lock_root / f"{app}.owner").write_text(OTHER_OWNER + "\n")
        (lock_root / f"{app}.conn").write_text(f"{held} {start_time(held)}\n")
        before = lock_files(lock_root, app)
        questions = server.questions(settings)
        done = run_script(server, local_script(settings, server, questions, site.url, lock_root))
    assert done.returncode == lock.LOCKED_EXIT
    assert done.stdout == f"::fail lock {LOCKED}\n"
    assert site.hosts == []  # nor was the health request made
    assert lock_files(lock_root, app) == before


@needs_root
@pytest.mark.parametrize("how", ["its start time differs (a reused PID)", "the process is gone", "no sshd"])
def test_the_probe_script_takes_over_a_lock_whose_connection_is_gone(how, server, settings, site, lock_root):
    app = settings.app.name
    name = "sleep" if how == "no sshd" else "sshd"
    with running(copy_of("/bin/sleep", server.root / "held" / name)) as other:
        conn = dead_connection(how, other)
        assert conn is not None
        (lock_root / f"{app}.owner").write_text(OTHER_OWNER + "\n")
        (lock_root / f"{app}.conn").write_text(conn + "\n")
        questions = server.questions(settings)
        done = run_script(server, local_script(settings, server, questions, site.url, lock_root))
    assert done.returncode == 0, done.stdout + done.stderr
    assert probe.parse(done.stdout).platform == "debian-12"
    assert (lock_root / f"{app}.owner").read_text().startswith("alice@laptop (deploy) since ")
    assert (lock_root / f"{app}.conn").read_text() != conn + "\n"


def test_the_probe_script_of_a_look_takes_no_lock_and_needs_no_sshd(server, settings):
    sent = probe.script(settings)
    script = replace(
        sent, values={**sent.values, "PROBE_QUESTIONS": probe.encoded(server.questions(settings))}
    )
    server.guard(dict(script.values))
    done = run_script(server, script, sshd=False)
    assert done.returncode == 0, done.stderr
    facts = probe.parse(done.stdout)
    assert (facts.platform, facts.health) == ("debian-12", None)


# tasks.probe.run, reach and look over a fake connection: tasks.remote.connect and execute stood in for.

HOST = "h-probe"


class Remote:
    """tasks.remote.connect and execute as a test sets them: what they return or raise, and their calls."""

    def __init__(self):
        self.recorded: str | RemoteError = ""  # connect: the host key it recorded ("" none), or its error
        self.result: Result | RemoteError = Result(0, "", "")
        self.calls: list[tuple[str, object]] = []

    def connect(self, c) -> str:
        self.calls.append(("connect", c))
        if isinstance(self.recorded, RemoteError):
            raise self.recorded
        return self.recorded

    def execute(self, c, script: str, stdin: bytes = b"") -> Result:
        self.calls.append(("execute", script))
        if isinstance(self.result, RemoteError):
            raise self.result
        return self.result


@pytest.fixture
def fake_remote(monkeypatch) -> Remote:
    fake = Remote()
    monkeypatch.setattr(remote, "connect", fake.connect)
    monkeypatch.setattr(remote, "execute", fake.execute)
    return fake


@pytest.fixture
def printed(capsys):
    """The recap's lines (the run is the test's own: see fresh_run)."""
    return lambda: capsys.readouterr().out.splitlines()


@pytest.fixture
def connection() -> SimpleNamespace:
    """What run and look use of a Fabric connection (the rest goes to the stand-ins): host, config, user."""
    return SimpleNamespace(host=HOST, config=default_config(), user="alice")


def test_run_connects_then_sends_the_probe_script_and_parses_its_facts(
    connection, fake_remote, printed, server, settings
):
    probed = (
        server.run(server.questions(settings)).stdout + json.dumps({"health": "200", "healthy": True}) + "\n"
    )
    fake_remote.result = Result(0, probed, "")
    facts = probe.run(connection, HOST, settings, holder="alice@laptop", action="deploy", health=True)
    assert facts is not None and (facts.platform, facts.healthy) == ("debian-12", True)
    sent = probe.script(settings, holder="alice@laptop", action="deploy", health=True).render()
    assert fake_remote.calls == [("connect", connection), ("execute", sent)]
    assert printed() == [] and recap.current.hosts == {}


def test_run_notes_a_host_key_it_recorded(connection, fake_remote, printed, server, settings):
    fake_remote.recorded = "ssh-ed25519 SHA256:abc (new host, recorded)"
    fake_remote.result = Result(0, server.run(server.questions(settings)).stdout, "")
    assert probe.run(connection, HOST, settings) is not None
    assert printed() == [f"{HOST}  trusted: ssh-ed25519 SHA256:abc (new host, recorded)"]


def test_run_reports_a_host_it_cannot_reach_and_sends_nothing(connection, fake_remote, printed, settings):
    fake_remote.recorded = RemoteError("no answer from h-probe port 22 within 10 s")
    assert probe.run(connection, HOST, settings, holder="alice@laptop", action="deploy") is None
    assert [name for name, _ in fake_remote.calls] == ["connect"]
    assert printed() == [f"{HOST}  connect  failed: no answer from h-probe port 22 within 10 s"]
    assert recap.current.hosts[HOST].tally.failed == 1 and not recap.current.hosts[HOST].locked


def test_run_reports_a_connection_lost_while_probing(connection, fake_remote, printed, settings):
    fake_remote.result = RemoteError("connection lost before the command ended")
    assert probe.run(connection, HOST, settings) is None
    assert printed() == [f"{HOST}  connect  failed: connection lost before the command ended"]


@pytest.mark.parametrize(
    ("result", "reported", "locked"),
    [
        (Result(75, f"::fail lock {LOCKED}\n", ""), f"lock  failed: {LOCKED}", True),
        (Result(1, f"::fail probe {NO_SSHD}\n", ""), f"probe  failed: {NO_SSHD}", False),
        (Result(127, "", "bash: line 9: python3: command not found\n"),
         "probe  failed: python3 is missing on the server: install it first", False),
        (Result(1, '{"health": "200"}\n', "Traceback (most recent call last):\nKeyError: 'app'\n\n"),
         "probe  failed: KeyError: 'app'", False),
    ],
)  # fmt: skip
def test_run_reports_why_the_probe_failed(result, reported, locked, fake_remote, printed, settings):
    fake_remote.result = result
    assert probe.run(connection, HOST, settings, holder="alice@laptop", action="deploy", health=True) is None
    assert printed() == [f"{HOST}  {reported}"]
    assert recap.current.hosts[HOST].tally.failed == 1
    assert recap.current.hosts[HOST].locked == locked


def test_a_probe_out_of_time_stops_saying_where_and_the_run_reports_it(
    connection, fake_remote, printed, server, settings
):
    # An os-release that is a FIFO: open waits for a writer that never comes, as any read may hang.
    server.os_release.unlink()
    os.mkfifo(server.os_release)
    questions = {**server.questions(settings), "time_limit": 1}
    started = time.monotonic()
    done = server.run(questions)
    took = time.monotonic() - started
    why = "it did not end within 1 s: stopped in os_release"
    assert (done.returncode, done.stdout, done.stderr) == (1, "", why + "\n")
    assert took < 2, f"{took:.1f} s"  # the limit, and python3's start
    fake_remote.result = Result(done.returncode, done.stdout, done.stderr)
    assert probe.run(connection, HOST, settings) is None
    assert printed() == [f"{HOST}  probe  failed: {why}"]


def test_look_finds_the_platform_and_its_layout_and_reports_the_step(
    connection, fake_remote, printed, server, settings
):
    fake_remote.result = Result(0, server.run(server.questions(settings)).stdout, "")
    found = probe.look(connection, "status")
    assert found is not None
    assert (found.platform, found.facts.platform) == (DEBIAN_12, "debian-12")
    assert found.paths == layout(settings, DEBIAN_12)
    assert fake_remote.calls[-1] == ("execute", probe.script(settings).render())  # a look: no lock, no health
    assert printed() == [f"{HOST}  status  ok"]


def test_look_reports_an_unsupported_system(connection, fake_remote, printed, server, settings):
    server.os_release.write_text(FEDORA)
    fake_remote.result = Result(0, server.run(server.questions(settings)).stdout, "")
    assert probe.look(connection, "status") is None
    (reported,) = printed()
    assert reported.startswith(f"{HOST}  status  failed: unsupported server system Fedora Linux 40 (Server")


def test_look_finds_nothing_on_a_host_it_cannot_reach(connection, fake_remote, printed):
    fake_remote.recorded = RemoteError("cannot connect to h-probe port 22: refused")
    assert probe.look(connection, "status") is None
    assert printed() == [f"{HOST}  connect  failed: cannot connect to h-probe port 22: refused"]


# A server whose python3 is older than the kit's (tasks/platform.py MIN_PYTHON): the probe answers its version
# only, before anything else it does (its health check included), and every task that probes stops there.
# CI has no old python3: this one runs probe.py as an old one would, its sys.version_info made old before its
# code runs; where pyenv keeps old pythons (developers' machines), they run it too.

AS_OLD = """import runpy, sys
sys.version_info = tuple(int(n) for n in sys.argv.pop(1).split(".")) + ("final", 0)
sys.argv.pop(0)  # -c
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def probe_as(python: list[str], server: Server, questions: dict) -> subprocess.CompletedProcess:
    """probe.py run by `python` (and its arguments), as the server runs it, with a health check to run."""
    server.guard(questions)
    health = [(runtime.HERE / "health.py").read_text(), "http://127.0.0.1:9/", "localhost", "answered"]
    return subprocess.run(
        [*python, str(PROBE), probe.encoded(questions), *health],
        capture_output=True, text=True, timeout=10, env={**os.environ, "PATH": f"{server.bin}:/usr/bin:/bin"},
    )  # fmt: skip


def as_old(version: str) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", AS_OLD, version]


def installed_python(version: str) -> str | None:
    """A python3 of that minor version on this machine ("3.9"): pyenv's, or one on PATH; None if none runs."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = [
        *map(str, sorted(pyenv.glob(f"versions/{version}.*/bin/python{version}"))),
        shutil.which(f"python{version}"),
    ]
    for candidate in filter(None, candidates):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                  capture_output=True, text=True, timeout=10)  # fmt: skip
            if done.returncode == 0 and done.stdout.strip() == version:
                return candidate
    return None


@pytest.mark.parametrize("version", ["3.9.2", "3.10.12", "3.8.10"])
def test_on_a_python3_older_than_the_kit_s_the_probe_answers_its_version_only(version, server, settings):
    done = probe_as(as_old(version), server, server.questions(settings))
    assert (done.returncode, done.stdout, done.stderr) == (0, f'{{"python": "{version}"}}\n', "")


def test_on_the_oldest_python3_of_the_kit_s_the_probe_answers_it_all(server, settings):
    done = probe_as(as_old("3.11.0"), server, server.questions(settings))
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert (facts["python"], facts["platform"], facts["healthy"]) == ("3.11.0", "debian-12", False)


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10"])
def test_a_real_old_python3_runs_the_probe_to_its_version(version, server, settings):
    python = installed_python(version)
    if python is None:
        pytest.skip(f"no python{version} on this machine (CI has none): the simulated runs above stand in")
    done = probe_as([python, "-I", "-S"], server, server.questions(settings))
    assert (done.returncode, done.stderr) == (0, "")
    (printed,) = done.stdout.splitlines()
    assert json.loads(printed)["python"].startswith(f"{version}.")
    assert set(json.loads(printed)) == {"python"}


@pytest.mark.parametrize(
    "task",
    [
        lambda c, s: probe.run(c, HOST, s, holder="alice@laptop", action="deploy", health=True),  # deploy
        lambda c, s: probe.run(c, HOST, s, holder="alice@laptop", action="push"),  # a step, exec
        lambda c, s: probe.run(c, HOST, s, salt="s4lt"),  # --check
        lambda c, s: probe.look(c, "status", health=True),  # status, releases
    ],
    ids=["deploy", "step", "check", "status"],
)
@pytest.mark.parametrize("version", ["3.9.2", "3.10.12"])
def test_a_server_with_too_old_a_python3_is_refused_in_one_line_by_every_task_that_probes(
    version, task, connection, fake_remote, printed, server, settings
):
    done = probe_as(as_old(version), server, server.questions(settings))
    fake_remote.result = Result(done.returncode, done.stdout, done.stderr)
    assert task(connection, settings) is None
    assert printed() == [f"{HOST}  probe  failed: {python_refusal(version)}"]
    assert python_refusal(version).startswith(f"python3 on the server is {version}; ")
    assert recap.current.hosts[HOST].tally.failed == 1  # the run exits non-zero


def probe_functions() -> dict:
    return runpy.run_path(str(PROBE), run_name="probe")


def part_functions(part: str, monkeypatch) -> dict:
    """A step's part of the probe, as a module: it imports what it shares from runtime/probe.py."""
    monkeypatch.syspath_prepend(str(runtime.HERE))
    return runpy.run_path(str(runtime.HERE / part), run_name=part.removesuffix(".py"))


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, -2, 3.5, True, False, None], "b": {"c": "", "d": []}, "e": {}},
        ['quote " backslash \\ tab \t newline \n nul \0 bell \x07', "é ü 中 \U0001f600", "\ud800"],
        {'k"ey': 2**70, "": [[], [{}]]},
    ],
)
def test_the_facts_print_as_json_dumps_prints_them(value):
    assert probe_functions()["to_json"](value) == json.dumps(value)


@pytest.mark.parametrize(
    "value",
    ['"Debian GNU/Linux 12 (bookworm)"', "debian", "'single quoted'", '"a  b"', '"with \\"escaped\\" quotes"',
     '"a $dollar"', "two words", "'it'\\''s'", '"back\\\\slash"', "12", '""', "a;b"],
)  # fmt: skip
def test_os_release_values_read_as_the_shell_reads_them(value):
    assert probe_functions()["shell_value"](value) == " ".join(shlex.split(value))


def test_the_probe_imports_none_of_the_modules_that_cost_it_its_start(server, settings):
    """json, re, socket, hashlib, shlex, urllib, the idna codec: each costs a probe more to import than
    what it is used for takes to run. The health request included (a port nothing listens on)."""
    server.listening("")
    questions = server.questions(settings)
    server.guard(questions)
    health = [(runtime.HERE / "health.py").read_text(), "http://127.0.0.1:9/", "localhost", "answered"]
    environment = {**os.environ, "PATH": f"{server.bin}:/usr/bin:/bin"}
    done, imported = run_importing(PROBE, probe.encoded(questions), *health, timeout=10, env=environment)
    assert done.returncode == 0, done.stderr
    assert {"struct", "_socket"} <= imported  # the list is there to read
    assert not imported & COSTLY_IMPORTS
    facts = json.loads(done.stdout)
    assert (facts["platform"], facts["healthy"]) == ("debian-12", False)
    assert facts["health"].startswith("no answer")


def test_supervisor_s_answer_reads_as_xmlrpc_client_reads_it(monkeypatch):
    rpc_struct = part_functions("probe_program.py", monkeypatch)["rpc_struct"]
    info = {
        "name": "a<b>&'\"c",
        "pid": 427,
        "exitstatus": -1,
        "spawnerr": "",
        "description": "pid 427, uptime 0:01:00",
    }
    answer = xmlrpc.client.dumps(({**info, "running": True, "ratio": 0.5},), methodresponse=True)
    assert rpc_struct(answer) == {**info, "running": 1}  # a double left out
    assert rpc_struct("<struct><member><name>bare</name><value>text</value></member>") == {
        "bare": "text"  # a value with no type is a string
    }
