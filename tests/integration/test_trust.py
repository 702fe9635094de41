"""Trust on sandbox servers: host keys verified, bad settings refused with nothing changed, no way from the
app's user to root, secrets kept, and runs that stop halfway leaving the site as it was.

One server (module scope) has the test app deployed with a secret in app.env; the tests that attack it
as the app's user come after the ones that only look.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.apps.wheels import pure_wheel
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "trustapp", 8093
SECRET = f"s3cr3t-{uuid.uuid4().hex}"
# What a refused run must leave as it was. The lock's two records (who holds it, on which connection)
# are written by every run's probe and are stale once its connection closed: they are left out.
WATCHED = "/etc/nginx /etc/supervisor /etc/tmpfiles.d /srv /run/flaskdeploy /run/lock"


@dataclass
class Server:
    sandbox: Sandbox
    versions: AppVersions
    live: Version
    work: Path

    @property
    def name(self) -> str:
        return self.sandbox.name

    def ssh(self, command: str, check: bool = True) -> str:
        return self.sandbox.ssh(command, check=check).stdout

    def fab(
        self, *args: str, version: Version | None = None, config: Path | None = None, **options
    ) -> fab_cli.Run:
        override = ["-f", str((version or self.live).override)] if config is None else ["-f", str(config)]
        return fab_cli.run(
            options.pop("ssh_config", self.sandbox.lab.ssh_config),
            options.pop("host", self.name),
            *override,
            *args,
        )

    def state(self) -> str:
        """Owner, mode, link target and content hash of everything under the watched directories."""
        listing = (
            f"find {WATCHED} -xdev ! -name '*.owner' ! -name '*.conn' -printf '%p %y %u %g %m %l\\n'"
            " 2>/dev/null | sort"
        )
        hashes = (
            f"find {WATCHED} -xdev -type f ! -name '*.owner' ! -name '*.conn' -exec sha256sum {{}} + | sort"
        )
        return self.ssh(f"{listing}; {hashes}")

    def current(self) -> str:
        return self.ssh(f"readlink /srv/{APP}/current").strip().rsplit("/", 1)[-1]

    def get(self, path: str = "/") -> str:
        return self.ssh(f"curl -s -m 5 http://127.0.0.1{path}", check=False)

    def config(self, **sections) -> Path:
        """A runtime config: the live version's settings with `sections` laid over them."""
        return self.live.overlaid(self.work, **sections)


@pytest.fixture(scope="module")
def server(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    (sandbox,) = lab.start(1)
    work = tmp_path_factory.mktemp("trust")
    versions = AppVersions(work, APP, PORT)
    live = versions.make("t1", env={"SECRET_KEY": SECRET})
    try:
        served = Server(sandbox, versions, live, work)
        run = served.fab("deploy")
        assert run.code == 0, str(run)
        assert SECRET not in run.output
        yield served
    finally:
        lab.remove(sandbox)


# ---- refused, with nothing changed -----------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    name: str
    code: int  # 2: refused before connecting; 1: refused by what the probe found
    expected: str  # a regex the one error line matches
    run: Callable[[Server], fab_cli.Run]


def with_ssh_config(server: Server, known_hosts: str, hostname: str | None = None) -> Path:
    """A copy of the lab's SSH config for the server with its own known_hosts (and address)."""
    text = server.sandbox.lab.ssh_config.read_text()
    entry = next(e for e in text.split("\n\n") if e.startswith(f"Host {server.name}\n"))
    known = server.work / f"known_hosts-{uuid.uuid4().hex[:8]}"
    known.write_text(known_hosts)
    entry = re.sub(r"UserKnownHostsFile .*", f"UserKnownHostsFile {known}", entry)
    if hostname:
        entry = re.sub(r"HostName .*", f"HostName {hostname}", entry)
    path = server.work / f"ssh_config-{uuid.uuid4().hex[:8]}"
    path.write_text(entry + "\n")
    return path


def host_key(server: Server) -> tuple[str, str]:
    """The server's host key line (type, base64) and its fingerprint as `ssh-keygen -lf` prints it."""
    pub = server.sandbox.dir / "ssh_host_ed25519_key.pub"
    printed = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    ).stdout
    return " ".join(pub.read_text().split()[:2]), printed.split()[1]


def unknown_key(server: Server) -> fab_cli.Run:
    return server.fab("deploy", ssh_config=with_ssh_config(server, ""))


def changed_key(server: Server) -> fab_cli.Run:
    other = server.work / "other_key"
    if not other.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    line = f"{server.sandbox.address} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n"
    return server.fab("deploy", "--trust-new-host-key", ssh_config=with_ssh_config(server, line))


def unreachable(server: Server) -> fab_cli.Run:
    ghost = re.sub(r"\.\d+$", ".250", server.sandbox.address)  # on the lab's bridge, no one there
    return server.fab("-t", "2", "deploy", ssh_config=with_ssh_config(server, "", hostname=ghost))


def port_taken(server: Server) -> fab_cli.Run:
    listen = "runuser -u nobody -- python3 -m http.server 8097 --bind 127.0.0.1"
    server.ssh(f"setsid {listen} </dev/null >/dev/null 2>&1 &")
    pid = wait_until(
        lambda: re.findall(r"pid=(\d+)", server.ssh("ss -Hltnp 'sport = :8097'")), 15, "a listener on 8097"
    )[0]
    try:
        return server.fab("deploy", config=server.config(app={"name": "otherapp", "port": 8097}))
    finally:
        server.ssh(f"kill {pid}", check=False)


def foreign_user(server: Server) -> fab_cli.Run:
    server.ssh("id legacy >/dev/null 2>&1 || useradd --system --home-dir /home/legacy legacy")
    return server.fab("deploy", config=server.config(app={"name": "legacy"}))


def foreign_run_dir(server: Server) -> fab_cli.Run:
    server.ssh("mkdir -p /run/otherthing && chown nobody /run/otherthing")
    return server.fab("deploy", config=server.config(app={"name": "otherthing", "port": 8098}))


def bad_yaml(text: str) -> Callable[[Server], fab_cli.Run]:
    def run(server: Server) -> fab_cli.Run:
        path = server.work / f"bad-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(text)
        return server.fab("deploy", config=path)

    return run


NESTED = {"shared_dirs": ["instance", "instance/uploads"]}
UNREACHABLE = r"connect  failed: (no answer from|cannot connect to) 198\.18\.\d+\.250 port 22 .*2 s"
REFUSALS = [
    Refusal("name root", 2, r"^app\.name: 'root' is a name the system uses", bad_yaml("app: {name: root}\n")),
    Refusal("name www-data", 2, r"^app\.name: 'www-data' is a name", bad_yaml("app: {name: www-data}\n")),
    Refusal(
        "name of the login user", 2, r"^app\.name: 'deploy' is the SSH login user",
        lambda s: s.fab("deploy", config=s.config(app={"name": "deploy"}), host=f"deploy@{s.name}"),
    ),
    Refusal("nested shared dirs", 2, r"^deploy\.shared_dirs: 'instance' holds 'instance/uploads'",
            lambda s: s.fab("deploy", config=s.config(deploy=NESTED))),
    Refusal("server_name x\\", 2, r"^app\.server_name: must be host names",
            lambda s: s.fab("deploy", config=s.config(app={"server_name": "x\\"}))),
    Refusal("server_name $(id)", 2, r"^app\.server_name: must be host names",
            lambda s: s.fab("deploy", config=s.config(app={"server_name": "$(id)"}))),
    Refusal("port ²", 2, r"^app\.port: must be an integer 1024-65535", bad_yaml('app: {port: "²"}\n')),
    Refusal("a section that is no mapping", 2, r"^app: must be a section of", bad_yaml("app: oops\n")),
    Refusal("a misspelt section", 2, r"^htps: unknown section \(did you mean https\?",
            bad_yaml("htps: {mode: acme, domains: [example.org], email: ops@example.org}\n")),
    Refusal("a health path that is not ASCII", 2, r"^app\.health_path: must be a URL path starting with '/'"
            r" \(ASCII",
            lambda s: s.fab("deploy", config=s.config(app={"health_path": "/\u5065\u5eb7"}))),
    Refusal("a shared directory that is not ASCII", 2, r"^deploy\.shared_dirs: 'd\u00e4ta' is no plain",
            lambda s: s.fab("deploy", config=s.config(deploy={"shared_dirs": ["instance", "d\u00e4ta"]}))),
    Refusal("a static directory that is no string", 2, r"^app\.static: 1 is no plain relative directory",
            bad_yaml("app: {static: {/static/: 1}}\n")),
    Refusal("a release command with a NUL", 2, r"^deploy\.release_command: holds the control character"
            r" U\+0000",
            lambda s: s.fab("deploy", config=s.config(deploy={"release_command": "flask\0db upgrade"}))),
    Refusal("a user the kit did not make", 1, r"guard  failed: app\.name: the server has a user legacy that"
            r" flaskdeploy did not make \(its home is /home/legacy\)", foreign_user),
    Refusal("a runtime directory of another owner", 1,
            r"guard  failed: app\.name: /run/otherthing exists but the server has no user otherthing",
            foreign_run_dir),
    Refusal("a port another process listens on", 1,
            r"guard  failed: app\.port: 8097 is taken by python3 \(pid \d+, user nobody\)", port_taken),
    Refusal("an unknown host key", 1, r"connect  failed: unknown host key ED25519 key SHA256:\S+ for",
            unknown_key),
    Refusal("a changed host key, even with --trust-new-host-key", 1, r"connect  failed: HOST KEY CHANGED for",
            changed_key),
    Refusal("an unreachable address", 1, UNREACHABLE, unreachable),
]  # fmt: skip


@pytest.mark.parametrize("case", REFUSALS, ids=[c.name for c in REFUSALS])
def test_a_bad_setting_or_host_is_one_line_and_changes_nothing(server: Server, case: Refusal):
    before = server.state()
    run = case.run(server)
    assert run.code == case.code, str(run)
    line = run.one_error_line()
    assert re.search(case.expected, line), f"{line!r} does not match {case.expected!r}\n{run}"
    assert server.state() == before, f"{case.name} changed the server"
    if case.name == "an unknown host key":
        assert host_key(server)[1] in line, "the fingerprint is not the one ssh-keygen -lf prints"


def test_an_unknown_host_is_deployed_to_once_trusted_explicitly(server: Server):
    config = with_ssh_config(server, "")
    key, fingerprint = host_key(server)
    trusted = server.fab("deploy", "--trust-new-host-key", ssh_config=config)
    assert trusted.code == 0, str(trusted)
    assert f"trusted: ED25519 key {fingerprint} recorded in" in trusted.output
    known_hosts = Path(re.search(r"UserKnownHostsFile (\S+)", config.read_text())[1])
    assert known_hosts.read_text() == f"{server.sandbox.address} {key}\n"
    again = server.fab("deploy", ssh_config=config)  # known now: no flag needed
    assert again.code == 0 and "trusted:" not in again.output, str(again)


# ---- the app's user cannot steer root -------------------------------------------------------------------


def as_app(server: Server, command: str, check: bool = False) -> subprocess.CompletedProcess:
    return server.sandbox.ssh(f"runuser -u {APP} -- /bin/sh -c {shlex.quote(command)}", check=check)


def as_nobody(server: Server, command: str) -> subprocess.CompletedProcess:
    return server.sandbox.ssh(f"runuser -u nobody -- /bin/sh -c {shlex.quote(command)}", check=False)


def test_the_app_user_can_write_nothing_root_uses_and_others_read_nothing_of_the_app(server: Server):
    mine = " ".join(
        f"/srv/{APP}/{name}"
        for name in ("releases", "venvs", "wheels", "tools", "gunicorn.conf.py", "history.log")
    )
    configs = f"/etc/nginx /etc/supervisor /etc/tmpfiles.d /var/log/{APP} /run/flaskdeploy"
    # (links left out: a release's link to its shared directory leads to what the app may write)
    writable = as_app(server, f"find {mine} {configs} ! -type l -writable 2>/dev/null; echo searched")
    assert writable.stdout == "searched\n", f"the app's user can write:\n{writable.stdout}{writable.stderr}"
    for path in (f"/srv/{APP}/current/.deploy/fingerprint", f"/srv/{APP}/history.log"):
        assert as_app(server, f"cat {path}").returncode != 0, f"the app's user reads {path}"
    assert as_app(server, f"cat /srv/{APP}/current/app.py").returncode == 0  # its own code, through its group
    readable = as_nobody(server, f"find /srv/{APP}/releases -type f -readable 2>/dev/null; echo searched")
    assert readable.stdout == "searched\n", f"other users read files of the app:\n{readable.stdout}"
    # The shared directory's leaves are the app's; shared/ itself is root's: no link can be planted there.
    assert as_app(server, f"ln -s /etc /srv/{APP}/shared/etc").returncode != 0


# Where a secret is looked for; with the pattern in a file, so that no command line holds it: the journal
# keeps those of runuser's sessions (a search as `nobody`).
EVERYWHERE = "/srv /var/log /etc /run /tmp /var/tmp /root"
PATTERN = "/dev/shm/flaskdeploy-test-pattern"


def holding_the_secret(server: Server, user: str = "root") -> list[str]:
    """The files under EVERYWHERE that hold SECRET and that `user` can read."""
    server.ssh(f"umask 022; printf %s {SECRET} > {PATTERN}")
    search = f"grep -rlF -f {PATTERN} {EVERYWHERE} 2>/dev/null; true"
    return (server.ssh(search) if user == "root" else as_nobody(server, search).stdout).split()


def test_a_secret_of_app_env_shows_nowhere_but_in_the_apps_own_file(server: Server):
    runs = [server.fab("releases"), server.fab("history"), server.fab("status"), server.fab("logs")]
    assert all(SECRET not in run.output for run in runs)
    found = holding_the_secret(server)
    assert found and all(path.endswith("/.deploy/env.json") for path in found), found
    assert all(server.ssh(f"stat -c %U:%G:%a {path}").strip() == f"root:{APP}:640" for path in found)
    assert holding_the_secret(server, "nobody") == []


TARGET = "/etc/flaskdeploy-attack-target"


def target_state(server: Server) -> str:
    return server.ssh(f"stat -c '%U %G %a %s %Y' {TARGET}; sha256sum {TARGET}")


def test_links_planted_by_the_app_user_are_never_followed_by_root(server: Server):
    server.ssh(f"printf 'root only\\n' > {TARGET} && chmod 600 {TARGET}")
    before = target_state(server)
    # As an earlier version left it: shared/ and the log directory writable by the app's user.
    server.ssh(f"chown {APP}:{APP} /srv/{APP}/shared /var/log/{APP}")
    as_app(server, f"mv /srv/{APP}/shared/instance /srv/{APP}/shared/instance.real", check=True)
    as_app(server, f"ln -s {TARGET} /srv/{APP}/shared/instance", check=True)
    as_app(server, f"rm -f /var/log/{APP}/out.log && ln -s {TARGET} /var/log/{APP}/out.log", check=True)

    run = server.fab("deploy")
    assert run.code == 1, str(run)
    refused = f"/srv/{APP}/shared/instance is a symbolic link, which root will not follow"
    assert refused in run.one_error_line()
    assert target_state(server) == before

    server.ssh(
        f"rm /srv/{APP}/shared/instance && mv /srv/{APP}/shared/instance.real /srv/{APP}/shared/instance"
    )
    server.live = server.versions.make("t2", env={"SECRET_KEY": SECRET})
    fixed = server.fab("deploy")
    assert fixed.code == 0, str(fixed)
    assert server.ssh(f"stat -c %U:%G /srv/{APP}/shared /var/log/{APP}").split() == [
        f"root:{APP}",
        "root:adm",
    ]
    assert server.ssh(f"find /var/log/{APP} -type l") == ""  # the planted link is gone
    assert target_state(server) == before


def test_a_forged_pidfile_makes_root_signal_nothing_else(server: Server):
    # A process of root's that a HUP ends; the app's user (who owns /run/APP) names it in gunicorn's pidfile.
    victim = server.ssh("setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!").strip()
    try:
        as_app(server, f"echo {victim} > /run/{APP}/gunicorn.pid", check=True)
        server.live = server.versions.make("t3", env={"SECRET_KEY": SECRET})
        run = server.fab("deploy")  # a code change: a graceful reload (HUP) of the app's gunicorn
        assert run.code == 0, str(run)
        assert server.ssh(f"ps -o comm= -p {victim}", check=False).strip() == "sleep", "root signalled it"
        assert server.get() == "version t3"
    finally:
        server.ssh(f"kill {victim}", check=False)


def test_a_lock_directory_that_is_not_roots_alone_fails_the_run_closed(server: Server):
    server.ssh(f"chown {APP} /run/flaskdeploy")
    try:
        before = server.state()
        run = server.fab("deploy")
        assert run.code == 1, str(run)
        assert "/run/flaskdeploy is not a directory only root may use" in run.one_error_line()
        assert server.state() == before
    finally:
        server.ssh("chown root /run/flaskdeploy")
    assert as_app(server, "touch /run/flaskdeploy/x").returncode != 0


# ---- runs that stop halfway ---------------------------------------------------------------------------


def history(server: Server) -> list[dict]:
    run = server.fab("history", "--json")
    assert run.code == 0, str(run)
    return json.loads(run.stdout)[server.name]  # one document keyed by host


def test_a_run_cut_off_after_its_switch_puts_the_live_release_back_and_records_it(server: Server):
    live = server.current()
    waiting = server.versions.make("cut", env={"SECRET_KEY": SECRET}, health_waits=True)
    process = fab_cli.start(server.sandbox.lab.ssh_config, server.name, "-f", str(waiting.override), "deploy")
    try:
        wait_until(lambda: server.current() != live, 120, "the deploy switches to the new release")
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # as a cut link: the connection goes, the run is stopped
        process.communicate()
    wait_until(lambda: server.current() == live, 30, "the release that was live is put back")
    last = wait_until(lambda: [e for e in history(server) if e["result"] == "failed"][-1:], 10, "recorded")[0]
    assert "stopped: the connection was lost" in last["detail"], last
    assert "version" in server.get() and server.get() != "version cut"


def test_a_health_request_answered_500_fails_at_once(server: Server):
    live = server.current()
    sick = server.versions.make("sick", env={"SECRET_KEY": SECRET}, unhealthy=True)
    run = server.fab("deploy", version=sick)
    assert run.code == 1 and "answered 500" in run.output, str(run)
    assert run.seconds < 10, f"waited {run.seconds:.1f} s for a 500 that waiting cannot change"
    assert server.current() == live


def test_a_command_that_outlives_the_command_timeout_ends_the_run_and_then_frees_the_lock(server: Server):
    live = server.current()
    stalled = server.versions.make(
        "stalled", env={"SECRET_KEY": SECRET}, release_command="sleep 60", release_timeout=6
    )
    run = server.fab("-T", "2", "deploy", version=stalled)
    assert run.code == 1, str(run)
    stopped = "the server did not finish within 2 s (the command timeout: fab -T SECONDS)"
    assert stopped in run.one_error_line()
    assert run.seconds < 15
    # On the server, the run goes on until its release command is stopped (deploy.release_timeout); until
    # then it holds the lock, and a next run is told to try again rather than run beside it.
    retried = wait_until(lambda: (r := server.fab("deploy")).code != 75 and r, 60, "the lock is free again")
    assert retried.code == 0, str(retried)
    assert server.current() == live


# ---- what comes with the app never runs as root, never holds a run ------------------------------------


def left_behind(server: Server) -> str:
    """The processes of the app's user that a release command or `exec` started (named `sleep`)."""
    return server.ssh(f"pgrep -a -u {APP} sleep", check=False).strip()


def lock_is_free(server: Server) -> None:
    """A next run takes the lock at once: `exec` exits 75 when another run holds it."""
    run = server.fab("exec", "true")
    assert run.code == 0, str(run)


@pytest.mark.parametrize(
    ("command", "code", "said"),
    [
        # A daemon started with the command's output: it held the deploy's pipe open for ever.
        ("setsid sleep 600 & echo started", 0, "push  changed"),
        ("setsid sleep 600 & sleep 300", 1, "did not end within 3 s (deploy.release_timeout)"),
    ],
    ids=["leaves a daemon holding its output", "hangs"],
)
def test_a_release_command_ends_with_everything_it_started_within_its_time(server, command, code, said):
    live = server.current()
    version = server.versions.make(
        "daemon", env={"SECRET_KEY": SECRET}, release_command=command, release_timeout=3
    )
    run = fab_cli.run(
        server.sandbox.lab.ssh_config, server.name, "-f", str(version.override), "deploy", timeout=60
    )
    assert run.code == code and said in run.output, str(run)
    assert run.seconds < 3 + 12, f"the deploy took {run.seconds:.1f} s"
    assert left_behind(server) == ""
    assert server.current() != live if code == 0 else server.current() == live
    lock_is_free(server)
    if code == 0:
        server.live = version


def test_exec_ends_with_everything_its_command_started(server: Server):
    run = server.fab("exec", "setsid sleep 600 >/dev/null 2>&1 & echo started")
    assert (run.code, run.stdout) == (0, "started\n"), str(run)
    assert left_behind(server) == ""


def test_a_lost_connection_stops_a_release_command_at_once_and_frees_the_lock(server: Server):
    live = server.current()
    slow = server.versions.make(
        "slow", env={"SECRET_KEY": SECRET}, release_command="setsid sleep 600 & sleep 600 # token-5e1",
        release_timeout=600,
    )  # fmt: skip
    process = fab_cli.start(server.sandbox.lab.ssh_config, server.name, "-f", str(slow.override), "deploy")
    try:
        wait_until(lambda: left_behind(server), 120, "the release command runs")
        # The line reaches the shell in its environment: no process's arguments show it to other users.
        assert "token-5e1" not in as_nobody(server, "ps -eo args").stdout
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # as a cut link
        process.communicate()
    wait_until(lambda: left_behind(server) == "", 20, "the release command ended, all of it")
    lock_is_free(server)
    assert server.current() == live


def test_an_app_env_value_the_release_command_prints_shows_nowhere(server: Server):
    failing = server.versions.make(
        "prints", env={"SECRET_KEY": SECRET},
        release_command='echo "Error: cannot reach db with $SECRET_KEY" >&2; exit 1',
    )  # fmt: skip
    run = server.fab("deploy", version=failing)
    assert run.code == 1 and "Error: cannot reach db with ****" in run.one_error_line(), str(run)
    assert SECRET not in run.output
    assert SECRET not in json.dumps(history(server)) and SECRET not in server.fab("releases").output
    assert [path for path in holding_the_secret(server) if not path.endswith("/.deploy/env.json")] == []


def directories_outside(server: Server) -> str:
    """Owner, group and mode of the directories a root that followed a link could be made to change (those
    that nothing else on the sandbox changes while a test runs)."""
    return server.ssh(
        f"find /etc /opt /root /home /usr/local /var/lib /srv -xdev -path /srv/{APP} -prune"
        " -o -type d -printf '%p %u %g %m\\n' | sort"
    )


def test_the_app_user_switching_a_shared_dir_for_a_link_never_steers_roots_chown(server: Server):
    # instance/ is the app's: it may switch instance/uploads for a link at any moment, as a deploy makes it.
    shared = f"/srv/{APP}/shared/instance/uploads"
    server.ssh("install -d -m 700 /etc/flaskdeploy-victim")
    before = directories_outside(server)
    flip = f"while :; do rm -rf {shared}; ln -s /etc/flaskdeploy-victim {shared}; rm -f {shared}; done"
    server.ssh(
        f"setsid -f runuser -u {APP} -- timeout 40 bash -c {shlex.quote(flip)} </dev/null >/dev/null 2>&1"
    )
    racer = wait_until(
        lambda: server.ssh(f"pgrep -n -u {APP} -x timeout", check=False).strip(), 10, "the app's user races"
    )
    try:
        deadline, deploys = time.monotonic() + 30, 0
        while time.monotonic() < deadline:
            version = server.versions.make("race", env={"SECRET_KEY": SECRET})
            config = version.overlaid(server.work, deploy={"shared_dirs": ["instance/uploads"]})
            run = server.fab("deploy", config=config)
            assert run.code in (0, 1) and "Traceback" not in run.output, str(run)
            deploys += 1
    finally:
        server.ssh(f"kill {racer}", check=False)
    assert deploys >= 5
    assert directories_outside(server) == before
    outside = f"\\( -path /srv/{APP} -o -path /var/log/{APP} -o -path /run/{APP} -o -path /proc \\) -prune"
    owned = server.ssh(f"find / -xdev {outside} -o -type d \\( -user {APP} -o -group {APP} \\) -print")
    assert owned == "", f"directories of the app's outside its places:\n{owned}"


def test_no_code_of_a_dependency_runs_as_root(server: Server):
    # A dependency whose .pth file notes the uid of every python that starts with it in site-packages:
    # the venv's python, which uv starts to compile the venv, the app's gunicorn, its import trial.
    marks = "/var/tmp/flaskdeploy-pth-marks"
    server.ssh(f"install -d -m 1777 {marks}")
    note = f"import os; open('{marks}/uid-%d' % os.getuid(), 'a').close()\n"
    links = server.work / "pth-links"
    pure_wheel(links, "kitmark", "1.0", more={"kitmark.pth": note})
    versions = AppVersions(server.work / "pth", "pthapp", 8094)

    def with_the_dependency(label: str) -> Path:
        version = versions.make(label)
        with (version.src / "requirements.txt").open("a") as requirements:
            requirements.write(f"--find-links {links}\nkitmark==1.0\n")
        return version.overlaid(server.work, app={"server_name": "pth.example"})  # beside trustapp's site

    cold, change = with_the_dependency("m1"), with_the_dependency("m2")
    for config, task in ((cold, "deploy"), (change, "deploy"), (change, "rollback")):
        run = fab_cli.run(server.sandbox.lab.ssh_config, server.name, "-f", str(config), task)
        assert run.code == 0, str(run)
    app_uid = server.ssh("id -u pthapp").strip()
    uids = server.ssh(f"ls {marks}").split()
    assert f"uid-{app_uid}" in uids, "the .pth file never ran: the test proves nothing"
    assert uids == [f"uid-{app_uid}"], f"a dependency's code ran as {uids}"
    # The venv and the wheels are nobody's but root's to change, and the app's group's alone to read.
    venvs = server.ssh("stat -c '%U:%G:%a' /srv/pthapp/venvs /srv/pthapp/wheels /srv/pthapp/venvs/*").split()
    assert set(venvs) == {"root:pthapp:750"}, venvs
    anyones = (
        "find /srv/pthapp/venvs /srv/pthapp/wheels ! -type l \\( ! -user root -o -perm /o=rwx \\) -print"
    )
    assert server.ssh(anyones) == ""
