"""Running a script on a host: the command line, and the marker lines it reports with."""

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from fabric import Config, Connection
from paramiko import ECDSAKey, PKey

from tasks.remote import (
    Marker,
    RemoteError,
    Result,
    collect,
    command_line,
    connect,
    framed,
    host_name,
    jump_hosts,
    parse_markers,
    trust_new_host_key,
)
from tasks.settings import parse
from tests.unit.conftest import default_config
from tests.unit.sshserver import Network, network


def test_markers_are_parsed_and_other_output_ignored():
    out = "noise\n::step provision changed\n  ::fail enable_site nginx -t rejected: unknown directive\n"
    assert parse_markers(out) == [
        Marker("step", "provision", "changed"),
        Marker("fail", "enable_site", "nginx -t rejected: unknown directive"),
    ]


def test_a_step_marker_carries_its_time_and_a_message_never_one():
    out = "::step provision changed 3.142\n::step push ok\n::fail push took 12.5\n::note push 1 2\n"
    assert parse_markers(out) == [
        Marker("step", "provision", "changed", 3.142),
        Marker("step", "push", "ok"),  # a server script of before: no time
        Marker("fail", "push", "took 12.5"),
        Marker("note", "push", "1 2"),
    ]


def run_framed(stdin: bytes, cwd: Path) -> subprocess.CompletedProcess:
    """The command line of every run, run here by a shell as sshd runs it, reading `stdin`."""
    return subprocess.run(["sh", "-c", command_line("root")], input=stdin, cwd=cwd, capture_output=True)


def test_the_script_travels_on_stdin_ahead_of_what_it_reads_there_never_on_the_command_line(tmp_path):
    secret = "flask db upgrade --password=s3cr3t"
    script = f'COMMAND={shlex.quote(secret)}\necho "read $(wc -c) bytes"\n# {"x" * 200_000}'
    assert "s3cr3t" not in command_line("root") and "s3cr3t" not in command_line("deploy")
    done = run_framed(framed(script, b"t" * 70_000), tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, b"read 70000 bytes\n", b"")  # past 128 KiB
    assert command_line("deploy") == f"sudo -n {command_line('root')}"  # never prompting


@pytest.mark.parametrize("cut", [8, 4, 1, 20], ids=["gzip's trailer", "its length", "a byte", "the data"])
def test_a_script_cut_short_runs_none_of_it(tmp_path, cut):
    whole = framed("touch first\ntouch second\n")
    done = run_framed(whole[:-cut], tmp_path)  # the block never closes
    assert done.returncode != 0 and not list(tmp_path.iterdir())
    assert run_framed(whole, tmp_path).returncode == 0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "first", "second",
    ]  # fmt: skip


def test_a_script_travels_gzipped():
    script = "\n".join(
        f"step_{n}() {{  # a function of the kit's, with its comment\n    :\n}}" for n in range(500)
    )
    assert len(framed(script)) < len(script.encode()) / 5


def test_the_last_error_line_is_what_a_failure_says():
    assert Result(1, "", "warning\n\nreal error\n  \n").last_error() == "real error"
    assert Result(1, "", "").last_error(otherwise="exited 1") == "exited 1"


class FakeChannel:
    """A channel whose command writes `stdout` and `stderr` in small pieces, interleaved, then exits
    (or never does); it can be select()ed on like paramiko's."""

    def __init__(self, stdout: bytes, stderr: bytes, code: int | None, piece: int = 4096) -> None:
        self.out = [stdout[i : i + piece] for i in range(0, len(stdout), piece)]
        self.err = [stderr[i : i + piece] for i in range(0, len(stderr), piece)]
        self.code = code
        self.read, self.write = os.pipe()
        os.write(self.write, b"x")  # always "readable": the loop asks the buffers what there is

    def fileno(self) -> int:
        return self.read

    def recv_ready(self) -> bool:
        # stdout's next piece only once stderr's is taken, as a command blocked on a full stderr would
        return bool(self.out) and len(self.err) <= len(self.out)

    def recv(self, size: int) -> bytes:
        return self.out.pop(0)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv_stderr(self, size: int) -> bytes:
        return self.err.pop(0)

    def exit_status_ready(self) -> bool:
        return self.code is not None and not self.out and not self.err

    def recv_exit_status(self) -> int:
        return self.code

    def close(self) -> None:
        os.close(self.read)
        os.close(self.write)


def test_stdout_and_stderr_are_read_together_whatever_their_size():
    channel = FakeChannel(b"o" * 3_000_000, b"e" * 3_000_000, 3)
    try:
        out, err, code = collect(channel, time.monotonic() + 30)
    finally:
        channel.close()
    assert (len(out), len(err), code) == (3_000_000, 3_000_000, 3)


def test_a_command_that_does_not_end_stops_at_the_deadline():
    channel = FakeChannel(b"started\n", b"", None)
    quiet, unused = os.pipe()
    channel.fileno = lambda: quiet  # nothing more comes: select waits
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            collect(channel, time.monotonic() + 0.3)
    finally:
        channel.close()
        os.close(quiet)
        os.close(unused)
    assert time.monotonic() - started < 2


# ---- connect: every host's key checked, jump hosts (ProxyJump) too, each as its own entry says ---------


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("client") / "id_ecdsa"
    ECDSAKey.generate().write_private_key_file(str(path))
    return path


def known(hosts: Network, name: str, key: PKey | None = None) -> str:
    """A known_hosts line for a host of the network, with its key (or `key`)."""
    key = key or hosts.keys[name]
    return f"[127.0.0.1]:{hosts.addresses[name][1]} {key.get_name()} {key.get_base64()}\n"


def connection(tmp_path: Path, client_key: Path, hosts: Network, target: str, **entries: str) -> Connection:
    """A Connection to `target` with an SSH config naming each host of the network, its known_hosts file
    tmp_path/known-NAME; `entries` adds lines to a host's entry (`jump="ProxyJump web1"`)."""
    config = "".join(
        f"Host {name}\n  {entries.get(name, '')}\n"  # first: the first value of an option wins
        f"  HostName {address}\n  Port {port}\n  User root\n  IdentityFile {client_key}\n"
        f"  UserKnownHostsFile {tmp_path / f'known-{name}'}\n  GlobalKnownHostsFile none\n"
        f"  StrictHostKeyChecking yes\n"
        for name, (address, port) in hosts.addresses.items()
    )
    (tmp_path / "ssh_config").write_text(config)
    for name in hosts.addresses:
        (tmp_path / f"known-{name}").touch()
    quiet = {"connect_kwargs": {"allow_agent": False, "look_for_keys": False}}  # the IdentityFile alone
    return Connection(target, config=Config(runtime_ssh_path=str(tmp_path / "ssh_config"), overrides=quiet))


def test_a_jump_host_with_an_unknown_key_is_refused_before_anyone_logs_in_to_it(tmp_path, client_key):
    with network("bastion", "web") as hosts:
        c = connection(tmp_path, client_key, hosts, "web", web="ProxyJump bastion")
        # The target's own known_hosts knows both: the jump host's entry, which has neither, is what counts.
        (tmp_path / "known-web").write_text(known(hosts, "web") + known(hosts, "bastion"))
        with pytest.raises(RemoteError) as refused:
            connect(c)
        bastion = hosts.keys["bastion"]
        assert str(refused.value).startswith(
            f"jump host bastion: unknown host key ECDSA key {bastion.fingerprint} for"
            f" [127.0.0.1]:{hosts.addresses['bastion'][1]} (not in {tmp_path / 'known-bastion'})"
        )
        assert hosts.log == []  # no login to the jump host, nothing forwarded through it
        assert (tmp_path / "known-bastion").read_text() == ""


def test_a_jump_host_whose_key_changed_is_refused_whatever_the_flag_says(tmp_path, client_key):
    with network("bastion", "web") as hosts:
        c = connection(tmp_path, client_key, hosts, "web", web="ProxyJump bastion")
        (tmp_path / "known-web").write_text(known(hosts, "web"))
        (tmp_path / "known-bastion").write_text(known(hosts, "bastion", ECDSAKey.generate()))
        trust_new_host_key(c)
        with pytest.raises(RemoteError, match=r"^jump host bastion: HOST KEY CHANGED for \[127\.0\.0\.1\]"):
            connect(c)
        assert hosts.log == []


@pytest.mark.parametrize(
    "bastion, known_bastion, trust",
    [
        ("", "known", False),
        ("HostKeyAlias bastion.example", "alias", False),
        ("", "", True),
        ("StrictHostKeyChecking accept-new", "", False),
    ],
    ids=["known", "HostKeyAlias", "--trust-new-host-key", "accept-new"],
)
def test_a_jump_host_is_checked_as_its_own_entry_says_then_the_target_through_it(
    tmp_path, client_key, bastion, known_bastion, trust
):
    with network("bastion", "web") as hosts:
        c = connection(tmp_path, client_key, hosts, "web", web="ProxyJump bastion", bastion=bastion)
        (tmp_path / "known-web").write_text(known(hosts, "web"))
        key = hosts.keys["bastion"]
        lines = {
            "known": known(hosts, "bastion"),
            "alias": f"bastion.example {key.get_name()} {key.get_base64()}\n",
        }
        (tmp_path / "known-bastion").write_text(lines.get(known_bastion, ""))
        if trust:
            trust_new_host_key(c)
        recorded = connect(c)
        assert hosts.log == ["auth bastion", "forward bastion -> web", "auth web"]
        assert c.is_connected and c.gateway.is_connected
        if known_bastion:
            assert recorded == ""
        else:  # recorded in the jump host's own known_hosts, said with its name
            assert (
                recorded
                == f"jump host bastion: ECDSA key {key.fingerprint} recorded in {tmp_path / 'known-bastion'}"
            )
            assert (tmp_path / "known-bastion").read_text() == known(hosts, "bastion")
        c.close()
        c.gateway.close()


def test_proxy_jump_a_b_goes_to_a_then_to_b_through_a_as_openssh_does(tmp_path, client_key):
    # Only a answers directly: Fabric's own nesting would go to b first, and find nothing there.
    with network("a", "b", "web") as hosts:
        c = connection(tmp_path, client_key, hosts, "web", web="ProxyJump a,b")
        for name in ("a", "b", "web"):
            (tmp_path / f"known-{name}").write_text(known(hosts, name))
        assert connect(c) == ""
        assert hosts.log == ["auth a", "forward a -> b", "auth b", "forward b -> web", "auth web"]
        assert [host_name(hop) for hop in jump_hosts(c)] == ["a", "b"]  # the same chain once connected
        c.close()


def test_a_revoked_key_is_refused_even_where_known_hosts_also_has_it(tmp_path, client_key):
    with network("web") as hosts:
        c = connection(tmp_path, client_key, hosts, "web")
        key = hosts.keys["web"]
        (tmp_path / "known-web").write_text(
            known(hosts, "web") + f"@revoked * {key.get_name()} {key.get_base64()}\n"
        )
        trust_new_host_key(c)
        with pytest.raises(
            RemoteError, match=r"^REVOKED HOST KEY for \[127\.0\.0\.1\]:\d+: the server offers ECDSA"
        ):
            connect(c)
        assert hosts.log == []


def test_trusting_new_host_keys_leaves_the_settings_alone():
    c = Connection("web1", config=Config(overrides=default_config()))
    trust_new_host_key(c)
    parse(c.config)  # no unknown section "trust_new_host_key"
    assert "trust_new_host_key" not in c.config
