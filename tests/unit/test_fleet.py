"""Fleets: hosts from the settings, batches, the pool's size, a rollout stopped by a failed host, lines
written whole by threads, the --json documents keyed by host (tasks/fleet.py, tasks/cli.py)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import threading
import time
from types import SimpleNamespace

import fabric
import pytest
from invoke.exceptions import Exit

from tasks import cli, fleet, recap, releases, settings, status
from tests import fab as fab_cli
from tests.unit.conftest import default_config as load_defaults


def with_deploy(**values) -> dict:
    config = load_defaults()
    config["deploy"] = {**config["deploy"], **values}
    return config


# Settings ------------------------------------------------------------------------------------------


def test_hosts_groups_and_parallel_default_to_none_and_ten():
    s = settings.parse(load_defaults())
    assert (s.deploy.hosts, s.deploy.groups, s.deploy.group, s.deploy.parallel) == ((), {}, None, 10)
    assert fleet.hosts_of(s) == ()


def test_the_group_named_wins_over_hosts_and_entries_take_user_and_port():
    s = settings.parse(
        with_deploy(
            hosts=["web1", "deploy@web2.example.org:2222"],
            groups={"db": ["root@10.0.0.5:22", "db2"], "all": ["web1", "db2"]},
            group="db",
        )
    )
    assert s.deploy.hosts == ("web1", "deploy@web2.example.org:2222")
    assert fleet.hosts_of(s) == ("root@10.0.0.5:22", "db2")
    assert fleet.hosts_of(settings.parse(with_deploy(hosts=["a", "b", "a"]))) == ("a", "b")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"hosts": "web1"}, "deploy.hosts: must be a list of hosts"),
        ({"hosts": ["web 1"]}, "deploy.hosts: 'web 1' is no host like web1"),
        ({"hosts": ["web1:99999"]}, "deploy.hosts: 'web1:99999' is no host"),
        ({"hosts": ["a;rm -rf /"]}, "deploy.hosts: 'a;rm -rf /' is no host"),
        ({"groups": ["web1"]}, "deploy.groups: must map group names to lists of hosts"),
        ({"groups": {"web": []}}, "deploy.groups: group 'web' must be a non-empty list of hosts"),
        ({"groups": {"web": ["-oProxyCommand=x"]}}, "deploy.groups: '-oProxyCommand=x' is no host"),
        ({"group": "web"}, "deploy.group: no group 'web' in deploy.groups (known: none)"),
        (
            {"groups": {"db": ["d"]}, "group": "web"},
            "deploy.group: no group 'web' in deploy.groups (known: db)",
        ),
        ({"parallel": 0}, "deploy.parallel: must be an integer 1-1000, got 0"),
        ({"parallel": "many"}, "deploy.parallel: must be an integer 1-1000, got 'many'"),
    ],
)
def test_bad_fleet_settings_are_one_line_naming_the_key(values, message):
    with pytest.raises(settings.SettingError) as raised:
        settings.parse(with_deploy(**values))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert str(raised.value).endswith(settings.WHERE)


def test_env_var_strings_select_a_group_and_set_parallel():
    s = settings.parse(with_deploy(groups={"web": ["w1"]}, group="web", parallel="4"))
    assert (s.deploy.group, s.deploy.parallel) == ("web", 4)


# Batches, --parallel, --max-failures ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "hosts", "size"),
    [("", 4, 4), ("2", 4, 2), ("50%", 4, 2), ("25%", 3, 1), ("34%", 3, 2), ("100%", 5, 5), ("9", 3, 9)],
)
def test_batch_sizes(given, hosts, size):
    assert fleet.batch_size(given, hosts) == size


@pytest.mark.parametrize("given", ["0", "x", "150%", "-1", "2.5"])
def test_a_bad_batch_is_exit_2(given):
    with pytest.raises(Exit) as raised:
        fleet.batch_size(given, 4)
    assert raised.value.code == 2 and "--batch" in raised.value.message


def test_batches_keep_the_order_and_the_last_may_be_smaller():
    assert fleet.batches(list("abcde"), 2) == [["a", "b"], ["c", "d"], ["e"]]
    assert fleet.batches(list("abc"), 5) == [["a", "b", "c"]]


def test_parallel_comes_from_the_flag_else_the_setting_and_serial_tasks_take_one():
    s = settings.parse(with_deploy(parallel=7))
    assert (
        fleet.parallel(0, s) == 7 and fleet.parallel("3", s) == 3 and fleet.parallel(0, s, serial=True) == 1
    )
    assert fleet.parallel(2, s, serial=True) == 2
    for bad in ("x", "-1", 1001):
        with pytest.raises(Exit):
            fleet.parallel(bad, s)
    assert fleet.max_failures(0) == 0 and fleet.max_failures("2") == 2
    with pytest.raises(Exit):
        fleet.max_failures("-1")


# The executor's pool and rollouts --------------------------------------------------------------------


class FakeConnection:
    def __init__(self, host: str) -> None:
        self.host, self.original_host, self.closed = host, host, 0

    def close(self) -> None:
        self.closed += 1


class Concurrency:
    """A task body recording how many hosts run at once, each reporting one step."""

    def __init__(self, fail: set[str] = frozenset(), seconds: float = 0.05) -> None:
        self.fail, self.seconds = set(fail), seconds
        self.now = self.most = 0
        self.ran: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, c: FakeConnection) -> str:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.ran.append(c.host)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        recap.report(
            c.host, "deploy", "failed" if c.host in self.fail else "changed", "boom" * (c.host in self.fail)
        )
        recap.release(c.host, f"old-{c.host}" if c.host in self.fail else "new")
        return c.host


def runs(task, hosts):
    call = SimpleNamespace(task=task, args=(), kwargs={})
    return [(call, FakeConnection(host)) for host in hosts]


@pytest.mark.parametrize(("workers", "hosts", "most"), [(10, 4, 4), (2, 5, 2), (1, 3, 1), (3, 1, 1)])
def test_the_pool_runs_as_many_hosts_at_once_as_it_may(workers, hosts, most):
    task = Concurrency()
    given = runs(task, [f"h{i}" for i in range(hosts)])
    cli.roll(given, hosts, workers, 0)
    assert task.most == most and sorted(task.ran) == sorted(c.host for _, c in given)
    assert all(c.closed == 1 for _, c in given)  # each host's connection ends with its run


def test_a_failed_host_stops_the_rollout_before_the_next_batch_and_says_who_has_what(capsys):
    task = Concurrency(fail={"b"})
    cli.roll(runs(task, list("abcd")), 2, 10, 0)
    assert sorted(task.ran) == ["a", "b"]  # batch 2 (c, d) never started
    out = capsys.readouterr().out
    assert "rollout stopped: 1 host(s) failed (b)" in out
    assert "done, on the new release: a (new)" in out and "failed, live release: b (old-b)" in out
    assert "not started, unchanged: c, d" in out
    recap.print_recap()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "a  ok=0 changed=1 failed=0",
        "c  not started: the rollout stopped after batch 1 of 2",
        "d  not started: the rollout stopped after batch 1 of 2",
        "b  ok=0 changed=0 failed=1  (deploy: boom)",
    ]


def test_max_failures_lets_the_rollout_go_on_past_that_many_failed_hosts(capsys):
    task = Concurrency(fail={"a"})
    cli.roll(runs(task, list("abcd")), 1, 10, 1)
    assert task.ran == list("abcd")
    assert "rollout stopped" not in capsys.readouterr().out
    task = Concurrency(fail={"e", "f"})
    cli.roll(runs(task, list("efgh")), 1, 10, 1)
    assert task.ran == list("ef")


def test_a_host_whose_run_raises_fails_alone_and_its_recap_says_why(capsys):
    def body(c):
        if c.host == "bad":
            raise OSError("no route to host")
        recap.report(c.host, "deploy", "ok")

    cli.roll(runs(body, ["good1", "bad", "good2"]), 3, 3, 0)
    recap.print_recap()
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == [
        "good1  ok=1 changed=0 failed=0",
        "good2  ok=1 changed=0 failed=0",
        "bad  ok=0 changed=0 failed=1  (run: OSError: no route to host)",
    ]


def test_an_exit_on_one_host_lets_the_others_finish_then_ends_the_run():
    finished = []

    def body(c):
        if c.host == "x":
            raise Exit("app.name: bad", code=2)
        time.sleep(0.05)
        finished.append(c.host)

    with pytest.raises(Exit):
        cli.roll(runs(body, ["x", "y", "z"]), 3, 3, 0)
    assert sorted(finished) == ["y", "z"]


# Lines whole -------------------------------------------------------------------------------------------


class Writes(io.StringIO):
    """A stream recording each write, slowly: writes of threads would mix if lines took several."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        time.sleep(0.0005)
        return super().write(text)


def test_lines_of_hosts_at_once_are_written_whole(monkeypatch, fresh_run):
    stream = Writes()
    monkeypatch.setattr("sys.stdout", stream)
    hosts = [f"host{i}" for i in range(8)]

    def steps(host: str) -> None:
        for n in range(25):
            recap.report(host, f"step{n}", "ok", f"{host} message {n} " + "x" * 200)

    threads = [threading.Thread(target=steps, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(text.endswith("\n") and text.count("\n") == 1 for text in stream.writes)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 * 25
    for line in lines:
        host = line.split("  ", 1)[0]
        assert line.startswith(f"{host}  step") and f": {host} message " in line
    assert {name: host.tally.ok for name, host in fresh_run.hosts.items()} == dict.fromkeys(hosts, 25)


# One document for all hosts ---------------------------------------------------------------------------


def test_releases_json_is_one_document_keyed_by_host_in_the_order_given(capsys):
    recap.order(["web1", "web2", "web3"])
    documents = releases.Documents()
    for host in ("web3", "web1", "web2"):  # the order the hosts' runs ended in
        documents.expect(host)
    documents.add("web3", [{"id": "r3"}])
    documents.add("web1", [{"id": "r1"}])
    documents.show()
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert list(json.loads(out).items()) == [
        ("web1", [{"id": "r1"}]),
        ("web2", None),
        ("web3", [{"id": "r3"}]),
    ]


def test_status_json_stays_a_list_a_host_in_the_order_given(monkeypatch, capsys):
    monkeypatch.setattr(status, "_rows", [])
    monkeypatch.setattr(status, "_as_json", False)
    recap.order(["a", "b"])
    status.add(status.HostStatus("b", reachable=False, error="down"), as_json=True)
    status.add(status.HostStatus("a", reachable=False, error="down"), as_json=True)
    status.show()
    assert [row["host"] for row in json.loads(capsys.readouterr().out)] == ["a", "b"]


# The hosts a `fab` run acts on -----------------------------------------------------------------------

GROUPS = """\
deploy:
  hosts: ["root@127.0.0.1:1"]
  groups: {web: ["root@127.0.0.2:1", "root@127.0.0.3:1"]}
"""


def fab(tmp_path, *args, env=None):
    """fab status on hosts of the loopback at a port nothing listens on: each fails at once to connect."""
    config = tmp_path / "fleet.yaml"
    config.write_text(GROUPS)
    done = subprocess.run(
        [str(fab_cli.FAB), "-f", str(config), *args], cwd=fab_cli.ROOT, capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
    )  # fmt: skip
    failed = re.findall(r"^(\S+)  ok=\d+ changed=\d+ failed=1", done.stdout + done.stderr, re.MULTILINE)
    return done, failed


def test_without_h_the_settings_hosts_else_the_group_and_h_wins(tmp_path):
    done, failed = fab(tmp_path, "status")
    assert (done.returncode, failed) == (1, ["127.0.0.1"]), done.stdout + done.stderr
    done, failed = fab(tmp_path, "status", env={"FABRIC_DEPLOY_GROUP": "web"})
    assert (done.returncode, failed) == (1, ["127.0.0.2", "127.0.0.3"]), done.stdout + done.stderr
    done, failed = fab(tmp_path, "-H", "root@127.0.0.4:1", "status", env={"FABRIC_DEPLOY_GROUP": "web"})
    assert (done.returncode, failed) == (1, ["127.0.0.4"]), done.stdout + done.stderr
    done, _ = fab(tmp_path, "status", env={"FABRIC_DEPLOY_GROUP": "db"})
    assert done.returncode == 2 and "deploy.group: no group 'db' in deploy.groups (known: web)" in done.stderr
    assert "Traceback" not in done.stderr
    done, _ = fab(tmp_path, "status", env={"FABRIC_DEPLOY_PARALLEL": "many"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    done, _ = fab(tmp_path, "-H", "root@127.0.0.4:1", "deploy", "--batch", "0")
    assert done.returncode == 2 and "--batch: must be a number of hosts" in done.stderr


def test_each_host_gets_its_own_copy_of_the_config_and_no_copy_makes_the_next_bigger(tmp_path):
    # Fabric's Config.clone() parses the SSH config files again into the config it copies: copying the
    # run's config once a host grew it by the whole file each time (3, 6, 9, ... Host entries here), and
    # every later copy and lookup with it.
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        "".join(f"Host web{i}\n  HostName 198.18.0.{i}\n  Port 220{i}\n" for i in (1, 2, 3))
    )
    config = fabric.Config(runtime_ssh_path=str(ssh_config))
    one_read = len(config.base_ssh_config._config)  # paramiko's parsed entries: no public count
    hosts = cli.copies(config, 12)
    assert [len(c.base_ssh_config._config) for c in hosts] == [one_read] * 12
    assert len(config.base_ssh_config._config) <= 2 * one_read  # read again once, for the first copy
    assert [c.base_ssh_config.lookup(f"web{i % 3 + 1}")["port"] for i, c in enumerate(hosts)] == [
        f"220{i % 3 + 1}" for i in range(12)
    ]
    hosts[0].connect_kwargs["key_filename"] = "/only/this/host"  # a copy each: nothing shared
    assert all("key_filename" not in c.connect_kwargs for c in hosts[1:])
