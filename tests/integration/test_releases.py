"""Releases, rollback and restart on a sandbox server: health-gated, zero-downtime, locked, scriptable.

Black-box acceptance tests of issue 5: they run `fab` as a user does, from the repo root, with a runtime
config (`-f override.yaml`) that points app.src at a version of the test app in tests/apps/, materialised
into a temporary directory. One server (module scope) serves every test; each test first deploys the
versions it needs, so none depends on another's leftovers. The module runs once per Debian suite (the
`suite` fixture: [debian-12], then [debian-13]). Load comes from tests/load.py: 20 clients
requesting / through nginx without pause, each request on a new connection.
"""

from __future__ import annotations

import getpass
import http.client
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import fab as fab_cli
from tests.apps.versions import AppVersions, Version
from tests.fab import FAB, ROOT, Run
from tests.load import Load
from tests.polling import wait_until
from tests.sandbox.lab import Lab, Sandbox

pytestmark = pytest.mark.sandbox

APP, PORT = "reltest", 8090
BASE = f"/srv/{APP}"
INSTANCE = f"{BASE}/shared/instance"
RELEASE_ID = re.compile(r"\b\d{8}T\d{6}Z-[0-9A-Za-z]+\b")
LOCKED = 75


@dataclass
class Site:
    """The sandbox server with the test app deployed, and the ways to drive and observe it."""

    server: Sandbox
    cold_deploy_seconds: float = 0.0
    # The settings of commands given no version (releases, rollback, restart, history): they must name
    # the test app (app.name reltest), or fab acts on invoke.yaml's default app.
    default: Version | None = None

    @property
    def url(self) -> str:
        return f"http://{self.server.address}/"

    def options(self, version: Version | None) -> list[str]:
        version = version or self.default
        return ["-f", str(version.override)] if version else []

    def fab(self, *args: str, version: Version | None = None, timeout: float = 240) -> Run:
        return fab_cli.run(
            self.server.lab.ssh_config, self.server.name, *self.options(version), *args, timeout=timeout
        )

    def start_fab(self, *args: str, version: Version | None = None) -> subprocess.Popen:
        """fab in the background, in its own process group (so a test can kill it like Ctrl-C can't)."""
        return fab_cli.start(self.server.lab.ssh_config, self.server.name, *self.options(version), *args)

    def deploy(self, version: Version) -> str:
        """Deploy `version`, check it is served, return its release id."""
        run = self.fab("deploy", version=version)
        assert run.code == 0, str(run)
        assert self.get("/") == (200, version.page), f"after deploying {version.label}"
        return self.current_id()

    def releases(self) -> list[dict]:
        run = self.fab("releases", "--json")
        assert run.code == 0, str(run)
        document = json.loads(run.stdout)  # stdout is the JSON document and nothing else
        assert list(document) == [self.server.name], run.stdout  # keyed by host
        releases = document[self.server.name]
        assert isinstance(releases, list), run.stdout
        return releases

    def current_id(self) -> str:
        current = [r["id"] for r in self.releases() if r["current"]]
        assert len(current) == 1, f"not exactly one current release: {current}"
        return current[0]

    def history(self) -> list[dict]:
        run = self.fab("history", "--json")
        assert run.code == 0, str(run)
        return json.loads(run.stdout)[self.server.name]  # one document keyed by host

    def get(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection(self.server.address, 80, timeout=10)
        try:
            conn.request("GET", path)
            reply = conn.getresponse()
            return reply.status, reply.read().decode(errors="replace")
        finally:
            conn.close()

    def ssh(self, command: str, check: bool = True) -> str:
        return self.server.ssh(command, check=check).stdout

    def release_dirs(self) -> list[str]:
        return sorted(self.ssh(f"ls -1 {BASE}/releases").split())


@pytest.fixture(scope="module")
def site(lab: Lab, suite: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A fresh server of the suite with a first (cold) deploy of the test app, shared by the tests of this
    module."""
    (server,) = lab.start(1, suite)
    try:
        first = AppVersions(tmp_path_factory.mktemp("cold"), APP, PORT).make("cold")
        site = Site(server, default=first)
        run = site.fab("deploy", version=first, timeout=600)
        assert run.code == 0, f"the cold deploy failed: {run}"
        site.cold_deploy_seconds = run.seconds
        yield site
    finally:
        lab.remove(server)


@pytest.fixture
def versions(tmp_path: Path) -> AppVersions:
    return AppVersions(tmp_path, APP, PORT)


# ---- load helpers --------------------------------------------------------------------------------------


def keep_loading(load: Load, after: float, seconds: float = 1.0) -> None:
    """Return once the load has sent requests for `seconds` past the moment `after`."""
    until = after + seconds
    load.wait_for(lambda r: r.started >= until, timeout=seconds + 30)


def bodies_between(load: Load, start: float, end: float = float("inf")) -> set[str]:
    """Distinct bodies of the responses to requests sent in [start, end)."""
    return {r.body for r in list(load.responses) if start <= r.started < end}


def assert_nothing_failed(load: Load) -> None:
    failed = load.failed
    assert len(load.responses) > 100, f"too little load to prove anything: {len(load.responses)} requests"
    assert not failed, f"{len(failed)} of {len(load.responses)} requests failed, e.g. {failed[:3]}"


def worker_pids(site: Site, requests: int = 40) -> set[str]:
    return {site.get("/pid")[1] for _ in range(requests)}


def release_time(release_id: str) -> datetime:
    return datetime.strptime(release_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


# ---- 1, 2: zero downtime -------------------------------------------------------------------------------


def test_deploy_under_load_drops_no_request_and_serves_only_the_new_version_after(site: Site, versions):
    v1, v2 = versions.make("zd-v1"), versions.make("zd-v2")
    site.deploy(v1)
    v1_workers = worker_pids(site)

    with Load(site.url, clients=20) as load:
        load.wait_for(lambda r: r.body == v1.page)
        run = site.fab("deploy", version=v2)
        done = time.monotonic()
        keep_loading(load, after=done, seconds=1.5)

    assert run.code == 0, str(run)
    assert_nothing_failed(load)
    assert bodies_between(load, done) == {v2.page}, "a request sent after deploy returned got another version"
    # The old workers left without Python's teardown (configs/gunicorn.conf.py.j2), but ran the app's atexit.
    exits = set(site.ssh(f"cat {BASE}/shared/instance/exits.log").splitlines())
    assert {f"zd-v1 {pid}" for pid in v1_workers} <= exits, (v1_workers, exits)


def test_rollback_and_restart_under_load_drop_no_request(site: Site, versions):
    a, b, c = versions.make("rb-a"), versions.make("rb-b"), versions.make("rb-c")
    ids = {v.label: site.deploy(v) for v in (a, b, c)}
    expected_after: list[tuple[tuple[str, ...], Version]] = [
        (("rollback",), b),  # to the previous release
        (("rollback",), c),  # a rollback of a rollback goes back
        (("rollback", f"--to={ids['rb-a']}"), a),
    ]
    windows = []  # (sent from, sent until, expected page)
    with Load(site.url, clients=20, max_seconds=300) as load:
        load.wait_for(lambda r: r.body == c.page)
        for args, target in expected_after:
            if windows:
                windows[-1][1] = time.monotonic()
            run = site.fab(*args)
            done = time.monotonic()
            assert run.code == 0, str(run)
            releases = site.releases()
            assert [r["id"] for r in releases if r["current"]] == [ids[target.label]], (args, releases)
            windows.append([done, float("inf"), target.page])
            keep_loading(load, after=done, seconds=0.5)
        assert [r["id"] for r in site.releases() if r["previous"]] == [ids["rb-c"]], "rollback target"

        old_workers = worker_pids(site)
        windows[-1][1] = time.monotonic()
        run = site.fab("restart")
        restarted = time.monotonic()
        assert run.code == 0, str(run)
        assert site.get("/health") == (200, "ok")
        wait_until(
            lambda: not (worker_pids(site, 20) & old_workers), 15, "only new workers answer after restart"
        )
        keep_loading(load, after=restarted, seconds=0.5)

    assert_nothing_failed(load)
    for sent_from, sent_until, page in windows:
        assert bodies_between(load, sent_from, sent_until) == {page}
    assert bodies_between(load, restarted) == {a.page}

    history = site.history()
    c_id = ids["rb-c"]
    deploys_of_c = [i for i, e in enumerate(history) if e["release"] == c_id and "deploy" in e["action"]]
    deployed_c = deploys_of_c[-1]
    rollbacks = [e for e in history[deployed_c + 1 :] if "rollback" in e["action"]]
    targets = [ids["rb-b"], ids["rb-c"], ids["rb-a"]]
    assert len(rollbacks) == 3, history[deployed_c:]
    assert all(want in e["release"] for e, want in zip(rollbacks, targets, strict=True)), rollbacks
    assert all(e["user"] == getpass.getuser() for e in rollbacks), rollbacks


def test_hard_restart_goes_through_supervisor_and_ends_healthy(site: Site, versions):
    v = versions.make("hard")
    site.deploy(v)
    master = site.ssh(f"supervisorctl pid {APP}").strip()
    old_workers = worker_pids(site)

    run = site.fab("restart", "--hard")

    assert run.code == 0, str(run)
    assert site.get("/health") == (200, "ok")
    assert site.get("/") == (200, v.page)
    assert site.ssh(f"supervisorctl pid {APP}").strip() not in ("", "0", master), "no new gunicorn master"
    assert not worker_pids(site) & old_workers


# ---- 3: health gate --------------------------------------------------------------------------------------


def test_a_release_failing_its_health_gate_is_switched_back_and_named(site: Site, versions):
    good, broken = versions.make("gate-v2"), versions.make("gate-v3", broken=True)
    good_id = site.deploy(good)
    known = {r["id"] for r in site.releases()}
    history_before = site.history()
    assert history_before[-1]["release"] == good_id, history_before[-1]
    ok_result = history_before[-1]["result"]
    started = datetime.now(UTC) - timedelta(seconds=2)

    run = site.fab("deploy", version=broken)

    assert run.code == 1, str(run)
    new_ids = set(RELEASE_ID.findall(run.output)) - known
    assert len(new_ids) == 1, f"the output should name the failed release, once: {new_ids}\n{run}"
    failed_id = new_ids.pop()
    assert release_time(failed_id) >= started, f"{failed_id} is not the release of this deploy"
    assert good_id in run.output, f"the output should name the live release {good_id}\n{run}"
    assert "broken on purpose" in run.output or re.search(r"\b5\d\d\b|no answer", run.output), (
        f"the output should say why the release failed (status or the app's error)\n{run}"
    )
    assert site.get("/") == (200, good.page)
    releases = site.releases()
    assert [r["id"] for r in releases if r["current"]] == [good_id]
    assert not [r for r in releases if r["id"] == failed_id and r["current"]]

    recorded = [e for e in site.history()[len(history_before) :] if e["release"] == failed_id]
    assert recorded and all(e["result"] != ok_result for e in recorded), recorded
    assert failed_id in site.fab("history").stdout


def test_a_release_that_does_not_import_fails_before_its_switch_under_load(site: Site, versions):
    # On the live venv, the import trial is a child of the live gunicorn master (Flask imported already);
    # on a venv of its own, a python of its own. Either way the broken release never goes live.
    good = versions.make("import-v1")
    same_venv = versions.make("import-v2", broken=True)
    own_venv = versions.make("import-v3", broken=True, requirements_note="import trial apart")
    good_id = site.deploy(good)
    master = site.ssh(f"supervisorctl pid {APP}").strip()

    with Load(site.url, clients=20, max_seconds=300) as load:
        load.wait_for(lambda r: r.body == good.page)
        runs = [site.fab("deploy", version=v, timeout=600) for v in (same_venv, own_venv)]
        done = time.monotonic()
        keep_loading(load, after=done)

    for run, version in zip(runs, (same_venv, own_venv), strict=True):
        assert run.code == 1, str(run)
        why = f"it does not load: RuntimeError: release {version.label} is broken on purpose"
        assert why in run.output and f"live: {good_id}" in run.output, str(run)
    assert_nothing_failed(load)
    assert bodies_between(load, done) == {good.page}
    assert [r["id"] for r in site.releases() if r["current"]] == [good_id]
    importers: dict[str, set[tuple[str, str]]] = {}  # version -> (PID, parent PID) of each importer
    for line in site.ssh(f"cat {INSTANCE}/imports.log").splitlines():
        label, pid, parent = line.split()
        importers.setdefault(label, set()).add((pid, parent))
    assert {parent for _, parent in importers[same_venv.label]} == {master}, importers
    assert master not in {parent for _, parent in importers[own_venv.label]}, importers
    trials = " ".join(pid for pid, _ in importers[same_venv.label])
    assert site.ssh(f"ps -o pid= -p {trials}", check=False).strip() == "", "the trial's child is left"
    assert site.ssh(f"supervisorctl pid {APP}").strip() == master, "the master was restarted"


def test_a_release_failing_the_health_gate_is_switched_back_under_load(site: Site, versions):
    good, sick = versions.make("sick-v1"), versions.make("sick-v2", unhealthy=True)
    good_id = site.deploy(good)

    with Load(site.url, clients=20) as load:
        load.wait_for(lambda r: r.body == good.page)
        run = site.fab("deploy", version=sick)
        done = time.monotonic()
        keep_loading(load, after=done)

    assert run.code == 1, str(run)
    assert "500" in run.output and good_id in run.output, f"the output should say why and what is live\n{run}"
    assert_nothing_failed(load)
    assert bodies_between(load, done) == {good.page}, "the failed release still answered after the run"
    assert [r["id"] for r in site.releases() if r["current"]] == [good_id]


def test_a_deploy_failing_after_its_switch_puts_the_live_release_back(site: Site, versions):
    good, moved = versions.make("late-a"), versions.make("late-b", port=PORT + 2)
    good_id = site.deploy(good)
    # A stray site claiming port 80's default server too: nginx -t now rejects every config, so the
    # deploy of `moved` (a new port, so a new nginx site) fails in enable_site, after push switched.
    stray = "/etc/nginx/sites-enabled/zz-stray"
    site.ssh(f"printf 'server {{ listen 80 default_server; }}\\n' > {stray}")
    try:
        run = site.fab("deploy", version=moved)
    finally:
        site.ssh(f"rm -f {stray}")

    assert run.code == 1, str(run)
    assert "enable_site" in run.output and f"switched back to {good_id}" in run.output, str(run)
    assert [r["id"] for r in site.releases() if r["current"]] == [good_id]
    assert site.get("/") == (200, good.page)
    listening = site.ssh("ss -ltn")
    assert f"127.0.0.1:{PORT} " in listening and f"127.0.0.1:{PORT + 2} " not in listening, listening


def test_rollback_brings_back_the_nginx_site_and_program_of_the_release(site: Site, versions):
    before, moved = versions.make("port-a"), versions.make("port-b", port=PORT + 1)
    before_id = site.deploy(before)
    site.deploy(moved)
    assert f"127.0.0.1:{PORT + 1}" in site.ssh("ss -ltn")

    run = site.fab("rollback", f"--to={before_id}", version=moved)

    assert run.code == 0, str(run)
    assert site.get("/") == (200, before.page)
    listening = site.ssh("ss -ltn")
    assert f"127.0.0.1:{PORT} " in listening and f"127.0.0.1:{PORT + 1} " not in listening, listening
    assert f"proxy_pass http://127.0.0.1:{PORT};" in site.ssh(f"cat /etc/nginx/sites-enabled/{APP}")


# ---- 4: lock -------------------------------------------------------------------------------------------


def test_a_second_deploy_or_rollback_fails_at_once_while_one_runs(site: Site, versions):
    site.deploy(versions.make("lock-a"))
    held = versions.make("lock-b", release_command="python3 hold.py")  # holds the deploy until we let go
    site.ssh(f"rm -f {INSTANCE}/hold.started {INSTANCE}/hold.go")
    user = getpass.getuser()
    started = time.monotonic()
    first, second = site.start_fab("deploy", version=held), site.start_fab("deploy", version=held)
    try:
        loser = wait_until(
            lambda: next((p for p in (first, second) if p.poll() is not None), None),
            30, "one of two simultaneous deploys exits at once",
        )  # fmt: skip
        loser_seconds = time.monotonic() - started
        winner = second if loser is first else first
        loser_output = loser.communicate()[0]
        assert loser.returncode == LOCKED, f"exit {loser.returncode}:\n{loser_output}"
        assert "locked by" in loser_output and user in loser_output and "since" in loser_output, loser_output
        assert winner.poll() is None, "the winner should still hold its deploy (hold.py)"
        print(f"\nthe second deploy failed after {loser_seconds:.1f} s")

        hold_started = f"test -e {INSTANCE}/hold.started"
        wait_until(
            lambda: site.server.ssh(hold_started, check=False).returncode == 0,
            60, "the winning deploy runs its release command",
        )  # fmt: skip
        rollback = site.fab("rollback", timeout=60)
        assert rollback.code == LOCKED, str(rollback)
        assert "locked by" in rollback.output and user in rollback.output, str(rollback)
    finally:
        site.ssh(f"mkdir -p {INSTANCE} && touch {INSTANCE}/hold.go", check=False)
        outputs = {}
        for process in (first, second):
            try:
                outputs[process.pid] = process.communicate(timeout=120)[0]
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                outputs[process.pid] = process.communicate()[0]
    assert winner.returncode == 0, outputs[winner.pid]
    assert site.get("/") == (200, held.page)
    site.ssh(f"rm -f {INSTANCE}/hold.started {INSTANCE}/hold.go")


# ---- 6: pruning ----------------------------------------------------------------------------------------


def test_seven_deploys_keep_five_releases_with_current_and_previous(site: Site, versions):
    ids = [site.deploy(versions.make(f"keep-v{n}", keep_releases=5)) for n in range(1, 8)]

    assert len(set(ids)) == 7, ids
    releases = site.releases()
    listed = [r["id"] for r in releases]
    assert listed == ids[-5:], "the five newest releases, oldest first"
    assert site.release_dirs() == ids[-5:]
    assert [r["id"] for r in releases if r["current"]] == [ids[6]]
    assert [r["id"] for r in releases if r["previous"]] == [ids[5]]
    assert all(r["user"] == getpass.getuser() and r["time"] for r in releases), releases
    table = site.fab("releases")
    assert table.code == 0, str(table)
    assert all(i in table.stdout for i in ids[-5:]) and getpass.getuser() in table.stdout, table.stdout


# ---- 7: code-only deploys reuse the venv -----------------------------------------------------------------


def venvs_snapshot(site: Site) -> dict[str, list[str]]:
    """Per venv: the venv, its site-packages and its flask and gunicorn packages, with inode and mtime."""
    listing = site.ssh(f"cd {BASE}/venvs && find . -mindepth 1 -maxdepth 5 -printf '%d %p %i %T@\\n'")
    venvs: dict[str, list[str]] = {}
    for line in sorted(listing.splitlines()):
        depth, path, inode, mtime = line.split(" ")
        wanted = ("/site-packages", "/site-packages/flask", "/site-packages/gunicorn")
        if depth == "1" or path.endswith(wanted):
            venvs.setdefault(path.split("/")[1], []).append(f"{path} {inode} {mtime}")
    return venvs


def test_a_code_only_deploy_reuses_the_installed_dependencies(site: Site, versions):
    site.deploy(versions.make("code-a"))
    before = venvs_snapshot(site)
    with_flask = [v for v, lines in before.items() if any("/site-packages/flask " in line for line in lines)]
    assert with_flask, f"no venv with flask installed in {BASE}/venvs: {before}"

    code_only = versions.make("code-b")
    run = site.fab("deploy", version=code_only)

    assert run.code == 0, str(run)
    assert site.get("/") == (200, code_only.page)
    print(f"\ncold first deploy: {site.cold_deploy_seconds:.2f} s; code-only deploy: {run.seconds:.2f} s")
    after = venvs_snapshot(site)
    assert after, "no venv left"
    assert set(after) <= set(before), f"a new venv was built: {set(after) - set(before)}"
    # Unused venvs may be pruned; the ones left must be untouched (same inodes and mtimes: no reinstall).
    assert {v: before[v] for v in after} == after, "dependencies were installed again"


# ---- 8: shared data and the release command --------------------------------------------------------------


def migration_runs(site: Site) -> list[tuple[str, str, str, str]]:
    """(version, cwd, user, env) of every recorded run of migrate.py."""
    script = (
        "import json, sqlite3, sys; db = sqlite3.connect(sys.argv[1]);"
        " print(json.dumps(db.execute('SELECT version, cwd, user, env FROM runs').fetchall()))"
    )
    rows = json.loads(site.ssh(f"python3 -c {shlex.quote(script)} {INSTANCE}/migrations.db"))
    return [tuple(row) for row in rows]


def test_instance_data_survives_deploy_rollback_and_pruning_and_the_release_command_runs_once(
    site: Site, versions
):
    def counter(label: str, **options) -> Version:
        return versions.make(
            label, release_command="python3 migrate.py", keep_releases=2,
            env={"RELEASE_TEST_ENV": "from app.env"}, **options,
        )  # fmt: skip

    def runs_of(version: Version) -> list[tuple[str, str, str, str]]:
        return [run for run in migration_runs(site) if run[0] == version.label]

    def count() -> int:
        status, body = site.get("/count")
        assert status == 200, body
        return int(body)

    c1 = counter("data-c1")
    c1_id = site.deploy(c1)
    assert site.ssh(f"readlink -f {BASE}/current/instance").strip() == INSTANCE
    assert runs_of(c1) == [("data-c1", f"{BASE}/releases/{c1_id}", APP, "from app.env")], migration_runs(site)
    written = [count() for _ in range(3)][-1]

    c2 = counter("data-c2")
    site.deploy(c2)
    assert count() == written + 1, "data written before the deploy is gone"
    assert len(runs_of(c2)) == 1 and len(runs_of(c1)) == 1

    assert site.fab("rollback").code == 0
    assert site.current_id() == c1_id
    assert count() == written + 2, "data is gone after the rollback"

    c3, c4 = counter("data-c3"), counter("data-c4")
    site.deploy(c3)
    c4_id = site.deploy(c4)
    assert c1_id not in [r["id"] for r in site.releases()] and c1_id not in site.release_dirs(), "not pruned"
    assert count() == written + 3, "data is gone after pruning"
    assert len(runs_of(c3)) == 1 and len(runs_of(c4)) == 1

    failing = counter("data-c5", migration_fails=True)
    run = site.fab("deploy", version=failing)
    assert run.code == 1, str(run)
    assert "migrate.py" in run.output or "table visits is locked" in run.output, f"no reason given\n{run}"
    assert site.current_id() == c4_id
    assert site.get("/") == (200, c4.page)
    assert count() == written + 4


# ---- 9: the README's rollback script ---------------------------------------------------------------------

SCRIPT_HEADING = "### Scripted rollback"


def fenced_script(markdown: str) -> str | None:
    """The ```sh block that follows the heading `### Scripted rollback` within its section."""
    match = re.search(
        rf"^{re.escape(SCRIPT_HEADING)}[ \t]*\n(?P<prose>.*?)^```sh[ \t]*\n(?P<script>.*?)^```[ \t]*$",
        markdown,
        re.MULTILINE | re.DOTALL,
    )
    if not match or re.search(r"^#{1,3} ", match["prose"], re.MULTILINE):
        return None
    return match["script"]


def rollback_script() -> str:
    """The script exactly as README.md shows it."""
    script = fenced_script((ROOT / "README.md").read_text())
    assert script, f"no ```sh block under {SCRIPT_HEADING!r} in README.md"
    return script


def test_the_readme_rollback_script_deploys_detects_a_bad_release_and_rolls_back(
    site: Site, versions, tmp_path: Path
):
    script = rollback_script()
    path = tmp_path / "deploy-or-rollback.sh"
    path.write_text(script)

    def run_script(version: Version) -> subprocess.CompletedProcess:
        fab_options = ["-S", str(site.server.lab.ssh_config), "-f", str(version.override)]
        return subprocess.run(
            ["sh", str(path), site.server.name, site.url, version.expected, *fab_options],
            cwd=ROOT, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL,
            env={**os.environ, "FAB": str(FAB)},
        )  # fmt: skip

    good = versions.make("script-v1")
    done = run_script(good)
    assert done.returncode == 0, done.stdout + done.stderr
    assert site.get("/") == (200, good.page)
    good_id = site.current_id()

    wrong_page = versions.make("script-v2", page="maintenance page")  # healthy, but not what users expect
    done = run_script(wrong_page)
    assert done.returncode == 2, done.stdout + done.stderr
    assert site.get("/") == (200, good.page)
    assert site.current_id() == good_id

    broken = versions.make("script-v3", broken=True)
    done = run_script(broken)
    assert done.returncode == 1, done.stdout + done.stderr
    assert site.get("/") == (200, good.page)
    assert site.current_id() == good_id


# ---- 5: an interrupted deploy ----------------------------------------------------------------------------

# Runs on the server as root: prints a JSON line whenever what `current` points at, whether that target is
# a complete release, or the entries of the app's directories change (and every 0.5 s, so that it dies
# of a broken pipe soon after the test goes away).
WATCHER = r"""
import json, os, sys, time
base = sys.argv[1]
def entries(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
def complete(target):
    files = ("app.py", "release.json", "requirements.txt")
    return all(os.path.isfile(os.path.join(target, f)) for f in files)
last, beat, deadline = None, 0.0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        target = os.readlink(base + "/current")
    except OSError:
        target = ""
    full = os.path.join(base, target) if target else ""
    state = {"current": target, "complete": bool(full) and complete(full),
             "releases": entries(base + "/releases"), "venvs": entries(base + "/venvs"), "top": entries(base)}
    if state != last or time.monotonic() - beat > 0.5:
        print(json.dumps(state), flush=True)
        last, beat = state, time.monotonic()
    time.sleep(0.005)
"""


@dataclass
class Watcher:
    """What the server's app directory looked like, sampled every 5 ms over a second SSH connection."""

    site: Site
    states: list[dict] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __enter__(self) -> Watcher:
        command = f"python3 -u -c {shlex.quote(WATCHER)} {BASE} 280"
        self.process = subprocess.Popen(
            ["ssh", "-F", str(self.site.server.lab.ssh_config), "-o", "BatchMode=yes",
             f"root@{self.site.server.name}", command],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if self.wait_for(lambda state: True, timeout=30) is None:
            self.__exit__()
            raise AssertionError(f"the watcher on {self.site.server.name} printed nothing within 30 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()
        self.reader.join(timeout=5)

    def _read(self) -> None:
        for line in self.process.stdout:
            try:
                state = json.loads(line)
            except ValueError:  # a line cut short when the watcher is stopped
                continue
            with self.changed:
                self.states.append(state)
                self.changed.notify_all()

    def wait_for(self, predicate, timeout: float) -> dict | None:
        """The first state, from the latest one on, that satisfies predicate; None after timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            index = max(0, len(self.states) - 1)
            while True:
                while index < len(self.states):
                    if predicate(self.states[index]):
                        return self.states[index]
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(timeout=min(left, 0.1))


def push_started(baseline: dict, process: subprocess.Popen):
    """Predicate on watcher states: something new in the app's directories, or the deploy already over."""

    def started(state: dict) -> bool:
        grown = any(set(state[k]) - set(baseline[k]) for k in ("releases", "venvs", "top"))
        return grown or process.poll() is not None

    return started


def test_a_deploy_killed_during_push_never_exposes_a_half_built_release_and_a_rerun_converges(
    site: Site, versions
):
    before_id = site.deploy(versions.make("kill-a"))
    with Watcher(site) as watcher:
        for attempt in range(1, 4):
            # Other requirements: the push builds a new venv, which widens the window to kill it in.
            version = versions.make(f"kill-b{attempt}", requirements_note=f"kill test, attempt {attempt}")
            process = site.start_fab("deploy", version=version)
            started = watcher.wait_for(push_started(watcher.states[-1], process), timeout=120)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                print(f"\nkilled the deploy of {version.label} when the server showed {started}")
                break
            process.wait()
            print(f"\nattempt {attempt}: the deploy finished before the push was seen; trying again")
        else:
            pytest.fail("three deploys finished before the watcher saw their push start; nothing was killed")

        deadline = time.monotonic() + 20
        while True:  # a dead run's lock must not block (at most briefly, until the server notices)
            rerun = site.fab("deploy", version=version)
            if rerun.code != LOCKED or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert rerun.code == 0, str(rerun)
        assert site.get("/") == (200, version.page)
        final_id = site.current_id()
        watcher.wait_for(lambda s: s["current"].rstrip("/").endswith(final_id), timeout=10)
        states = list(watcher.states)

    listed = {r["id"] for r in site.releases()}
    targets = {s["current"].rstrip("/").rsplit("/", 1)[-1] for s in states}
    assert all(s["current"] for s in states), "current was missing at some moment"
    incomplete = [s["current"] for s in states if not s["complete"]]
    assert not incomplete, f"current pointed at an incomplete release: {incomplete}"
    assert targets <= listed | {before_id}, f"current pointed at releases that are not listed: {targets}"
    assert final_id != before_id and final_id in site.release_dirs()
