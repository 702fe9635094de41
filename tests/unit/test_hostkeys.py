"""Host keys checked as OpenSSH checks them: known_hosts files from the SSH config, plain, hashed,
[host]:port, HostKeyAlias and wildcard entries, unknown keys refused or (when asked) recorded, changed and
revoked keys refused naming the line to check, lines that cannot be read skipped one by one."""

from __future__ import annotations

import pytest
from paramiko import ECDSAKey, HostKeys, SSHClient

from tasks.hostkeys import HostKeyError, KnownHosts, describe, lookup_name, prepare


@pytest.fixture(scope="module")
def keys() -> tuple[ECDSAKey, ECDSAKey]:
    return ECDSAKey.generate(), ECDSAKey.generate()


def line(names: str, key) -> str:
    return f"{names} {key.get_name()} {key.get_base64()}\n"


def options(tmp_path, **more) -> dict:
    return {"userknownhostsfile": str(tmp_path / "known_hosts"), "globalknownhostsfile": "none", **more}


def test_the_files_and_modes_come_from_the_ssh_config(tmp_path):
    known = KnownHosts.from_ssh_config({})
    assert [p.name for p in known.user_files] == ["known_hosts", "known_hosts2"] and known.strict == "yes"
    assert str(known.global_files[0]) == "/etc/ssh/ssh_known_hosts"
    quoted = KnownHosts.from_ssh_config(
        {"userknownhostsfile": f'"{tmp_path}/a b" ~/c', "stricthostkeychecking": "accept-new"}
    )
    assert [str(p) for p in quoted.user_files][0] == f"{tmp_path}/a b" and quoted.strict == "accept-new"
    assert KnownHosts.from_ssh_config({"stricthostkeychecking": "ask"}).strict == "yes"  # nobody answers
    assert KnownHosts.from_ssh_config({"stricthostkeychecking": "off"}).strict == "no"


def test_the_name_a_key_is_filed_under():
    assert lookup_name("198.18.1.11", 22) == "198.18.1.11"
    assert lookup_name("198.18.1.11", 2222) == "[198.18.1.11]:2222"
    assert lookup_name("198.18.1.11", 2222, "web1") == "web1"  # HostKeyAlias, as OpenSSH: no port


def test_plain_hashed_port_and_alias_entries_are_found_with_their_line(tmp_path, keys):
    key, other = keys
    (tmp_path / "known_hosts").write_text(
        "# a comment\n"
        + line("other.example", other)
        + line(HostKeys.hash_host("10.0.0.5"), key)
        + line("[10.0.0.6]:2222,web6", key)
        + "@revoked * ssh-ed25519 AAAA\n"
    )
    known = KnownHosts.from_ssh_config(options(tmp_path))
    (hashed,) = known.entries("10.0.0.5")
    assert (hashed.line, hashed.key) == (3, key) and str(hashed) == f"{tmp_path / 'known_hosts'}:3"
    assert [k.line for k in known.entries("[10.0.0.6]:2222")] == [4]
    assert [k.line for k in known.entries("web6")] == [4]
    assert known.entries("10.0.0.6") == [] and known.entries("10.0.0.7") == []


def connect_policy(tmp_path, key, *, trust=False, **more):
    client = SSHClient()
    policy = prepare(client, options(tmp_path, **more), "10.0.0.9", 22, trust)
    return client, policy


def test_an_unknown_key_is_refused_with_its_fingerprint_and_how_to_trust_it(tmp_path, keys):
    key, _ = keys
    client, policy = connect_policy(tmp_path, key)
    with pytest.raises(HostKeyError) as refused:
        policy.missing_host_key(client, "10.0.0.9", key)
    message = str(refused.value)
    assert f"unknown host key ECDSA key {key.fingerprint} for 10.0.0.9" in message
    assert "--trust-new-host-key" in message and "StrictHostKeyChecking accept-new" in message
    assert "\n" not in message and not (tmp_path / "known_hosts").exists()


@pytest.mark.parametrize("how", [{"trust": True}, {"stricthostkeychecking": "accept-new"}])
def test_an_unknown_key_is_recorded_when_trusting_it_was_asked_for(tmp_path, keys, how):
    key, _ = keys
    client, policy = connect_policy(tmp_path, key, **how)
    policy.missing_host_key(client, "10.0.0.9", key)
    known_hosts = tmp_path / "known_hosts"
    assert known_hosts.read_text() == line("10.0.0.9", key)
    assert oct(known_hosts.stat().st_mode & 0o777) == "0o600"
    assert policy.recorded == f"{describe(key)} recorded in {known_hosts}"
    assert [k.key for k in KnownHosts.from_ssh_config(options(tmp_path)).entries("10.0.0.9")] == [key]


def test_a_key_met_by_several_hosts_runs_at_once_is_recorded_once(tmp_path, keys):
    # A fleet behind one jump host: each host's thread meets the jump host's new key.
    key, _ = keys
    policies = [connect_policy(tmp_path, key, trust=True) for _ in range(2)]
    for client, policy in policies:
        policy.missing_host_key(client, "10.0.0.9", key)
    assert (tmp_path / "known_hosts").read_text() == line("10.0.0.9", key)


def test_a_recorded_key_is_hashed_when_the_config_says_so(tmp_path, keys):
    key, _ = keys
    client, policy = connect_policy(tmp_path, key, trust=True, hashknownhosts="yes")
    policy.missing_host_key(client, "10.0.0.9", key)
    assert (tmp_path / "known_hosts").read_text().startswith("|1|")
    assert KnownHosts.from_ssh_config(options(tmp_path)).entries("10.0.0.9")[0].key == key


def test_known_keys_are_what_paramiko_checks_the_server_against(tmp_path, keys):
    key, _ = keys
    (tmp_path / "known_hosts").write_text(line("web1", key))
    client = SSHClient()
    prepare(client, options(tmp_path, hostkeyalias="web1"), "10.0.0.9", 2222, trust_new=True)
    # paramiko looks the server up as [10.0.0.9]:2222; the alias's key is filed there for it.
    assert client.get_host_keys().lookup("[10.0.0.9]:2222")[key.get_name()] == key


def test_a_changed_key_is_refused_naming_the_line_to_check(tmp_path, keys):
    key, other = keys
    (tmp_path / "known_hosts").write_text("# first\n" + line("10.0.0.9", key))
    client = SSHClient()
    message = str(prepare(client, options(tmp_path), "10.0.0.9", 22, trust_new=True).refused(other))
    assert message.startswith(
        f"HOST KEY CHANGED for 10.0.0.9: the server offers ECDSA key {other.fingerprint}"
    )
    assert f"known_hosts has {key.fingerprint} ({tmp_path / 'known_hosts'}:2)" in message
    assert "ssh-keygen -R 10.0.0.9" in message and "\n" not in message


def test_patterns_match_as_openssh_matches_them(tmp_path, keys):
    key, _ = keys
    (tmp_path / "known_hosts").write_text(line("*.example.org,!bad.example.org", key) + line("10.0.0.?", key))
    known = KnownHosts.from_ssh_config(options(tmp_path))
    assert [k.line for k in known.entries("web.example.org")] == [1]
    assert [k.line for k in known.entries("WEB.Example.org")] == [1]  # names are not case-sensitive
    assert known.entries("bad.example.org") == []  # a negated pattern wins
    assert [k.line for k in known.entries("10.0.0.5")] == [2]
    assert known.entries("10.0.0.55") == [] and known.entries("example.org") == []


def test_fields_apart_by_more_than_one_space_are_read(tmp_path, keys):
    key, _ = keys
    (tmp_path / "known_hosts").write_text(f"web1  {key.get_name()}\t {key.get_base64()}   a comment\n")
    assert [k.key for k in KnownHosts.from_ssh_config(options(tmp_path)).entries("web1")] == [key]


def test_a_line_that_cannot_be_read_is_skipped_not_its_file(tmp_path, keys):
    key, _ = keys
    (tmp_path / "known_hosts").write_bytes(
        b"caf\xe9.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n"  # Latin-1, not UTF-8
        + b"10.0.0.9 ssh-ed25519 AAAA\n"  # base64, but no ed25519 key in it
        + b"10.0.0.9 ssh-ed25519 not-base64!\n"
        + b"|1|abc|def,|1|@@@|x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n"  # hashed, with broken salts
        + line("10.0.0.9", key).encode()
    )
    assert [k.line for k in KnownHosts.from_ssh_config(options(tmp_path)).entries("10.0.0.9")] == [5]


def revoked(tmp_path, key, *, known: bool, trust: bool = False, **more):
    """The policy for 10.0.0.9, with `key` revoked for every host (and also listed as 10.0.0.9's)."""
    text = line("10.0.0.9", key) if known else ""
    (tmp_path / "known_hosts").write_text(text + line("@revoked *", key))
    client = SSHClient()
    return client, prepare(client, options(tmp_path, **more), "10.0.0.9", 22, trust)


@pytest.mark.parametrize("known", [True, False], ids=["also known", "unknown"])
@pytest.mark.parametrize("how", [{}, {"trust": True}, {"stricthostkeychecking": "accept-new"}])
def test_a_revoked_key_is_refused_whatever_else_says_yes(tmp_path, keys, known, how):
    key, _ = keys
    client, policy = revoked(tmp_path, key, known=known, **how)
    # paramiko accepts, without asking, a key it has for the host: a revoked one it never has.
    assert client.get_host_keys().lookup("10.0.0.9") is None
    with pytest.raises(HostKeyError) as refused:
        policy.missing_host_key(client, "10.0.0.9", key)
    message = str(refused.value)
    assert message.startswith(
        f"REVOKED HOST KEY for 10.0.0.9: the server offers ECDSA key {key.fingerprint}, revoked in"
        f" {tmp_path / 'known_hosts'}:{2 if known else 1}"
    )
    assert "\n" not in message and policy.recorded == ""
    assert (tmp_path / "known_hosts").read_text().count("\n") == (2 if known else 1)  # nothing recorded


def test_a_revoked_key_offered_instead_of_the_known_one_is_refused_as_revoked(tmp_path, keys):
    key, other = keys
    (tmp_path / "known_hosts").write_text(line("10.0.0.9", key) + line("@revoked 10.0.0.*", other))
    client = SSHClient()
    policy = prepare(client, options(tmp_path), "10.0.0.9", 22, trust_new=False)
    assert client.get_host_keys().lookup("10.0.0.9")[key.get_name()] == key  # the known one is accepted
    assert str(policy.refused(other)).startswith("REVOKED HOST KEY for 10.0.0.9")
    assert str(policy.refused(ECDSAKey.generate())).startswith("HOST KEY CHANGED for 10.0.0.9")


def test_a_revoked_line_for_other_hosts_leaves_this_one_alone(tmp_path, keys):
    key, _ = keys
    (tmp_path / "known_hosts").write_text(line("10.0.0.9", key) + line("@revoked web1", key))
    client = SSHClient()
    prepare(client, options(tmp_path), "10.0.0.9", 22, trust_new=False)
    assert client.get_host_keys().lookup("10.0.0.9")[key.get_name()] == key


def test_a_host_known_only_through_a_certificate_authority_is_unknown(tmp_path, keys):
    key, ca = keys
    (tmp_path / "known_hosts").write_text(line("@cert-authority *", ca))
    client, policy = connect_policy(tmp_path, key)
    assert client.get_host_keys().lookup("10.0.0.9") is None
    with pytest.raises(HostKeyError, match="^unknown host key"):
        policy.missing_host_key(client, "10.0.0.9", key)
