"""The platform table: one entry per server system, chosen by the probe, refused with a clear line; the
oldest python3 the kit runs on, the same on servers as on the control machine."""

import tomllib
from dataclasses import asdict
from pathlib import Path

import pytest

from tasks.facts import Facts
from tasks.layout import layout
from tasks.platform import (
    DEBIAN_12,
    DEBIAN_13,
    MIN_PYTHON,
    PLATFORMS,
    UnsupportedPlatform,
    by_id,
    python_refusal,
)
from tasks.steps import provision

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_entries_are_found_by_the_id_the_probe_reports():
    assert by_id("debian-12") is DEBIAN_12 and by_id("debian-13") is DEBIAN_13
    assert len({p.id for p in PLATFORMS}) == len(PLATFORMS)


def test_an_unknown_system_is_one_line_naming_it_and_what_is_supported():
    with pytest.raises(UnsupportedPlatform) as error:
        by_id(None, "Fedora Linux 40")
    message = str(error.value)
    assert message.startswith(
        "unsupported server system Fedora Linux 40: flaskdeploy runs on Debian 12 (bookworm) and Debian 13"
        " (trixie) (and is expected to work on Debian-like systems such as Ubuntu 24.04 LTS)"
    )
    assert "\n" not in message


def test_debian_12_and_13_are_tested_and_13_differs_only_where_trixie_does():
    assert [p.id for p in PLATFORMS if p.tested] == ["debian-12", "debian-13"]  # the sandboxes' suites
    twelve, thirteen = asdict(DEBIAN_12), asdict(DEBIAN_13)
    differs = {key: thirteen[key] for key in twelve if twelve[key] != thirteen[key]}
    assert differs == {
        "id": "debian-13", "name": "Debian 13 (trixie)", "match": {"ID": "debian", "VERSION_ID": "13"},
        "nginx_http2": "directive",  # nginx 1.26: `http2 on;`, not `listen ... http2`
    }  # fmt: skip


def test_exact_entries_come_before_the_family_that_would_also_match():
    families = [i for i, p in enumerate(PLATFORMS) if "ID_LIKE" in p.match]
    exact = [i for i, p in enumerate(PLATFORMS) if "VERSION_ID" in p.match]
    assert max(exact) < min(families)


def test_what_the_probe_is_told_of_an_entry(settings):
    entry = DEBIAN_12.probe_entry()
    assert entry["units"] == ["nginx", "supervisor", "certbot.timer"]
    # provision's part asks about the packages
    asked = provision.PROBE.asks(settings, layout(settings, DEBIAN_12), DEBIAN_12)
    assert asked["packages"] == [
        "nginx",
        "supervisor",
        "certbot",
        "postgresql",
        "redis-server",
    ]  # needed when set
    assert asked["installed"] == "installed" and asked["query"][0] == "dpkg-query"


def test_the_install_waits_for_anothers_dpkg_and_the_repair_keeps_changed_config_files_as_it_does():
    for platform in PLATFORMS:
        # A new server's first unattended upgrades hold dpkg's lock for minutes: the install waits.
        assert "DPkg::Lock::Timeout=300" in platform.install_command
        # What a cut-off dpkg left is finished without a question, as the install answers it.
        assert "Dpkg::Options::=--force-confold" in platform.install_command
        assert platform.repair_command[:3] == ("dpkg", "--configure", "-a")
        assert "--force-confold" in platform.repair_command


@pytest.mark.parametrize("version", ["3.9.2", "3.10.12", "3.8.10", "2.7.18"])
def test_a_server_python_older_than_the_tested_ones_is_one_line_naming_it_and_what_is_needed(version):
    assert python_refusal(Facts(python=version).python) == (
        f"python3 on the server is {version}; flaskdeploy runs on Python 3.11 and later, as on Debian 12"
        " (bookworm) and Debian 13 (trixie): upgrade the server"
    )


@pytest.mark.parametrize("version", ["3.11.2", "3.13.5", "3.14.0", "4.0.0", ""])
def test_a_server_python_of_3_11_or_later_is_not_refused_nor_a_probe_that_named_none(version):
    assert python_refusal(version) == ""


def test_servers_and_the_control_machine_need_the_python_ci_runs_the_tests_on():
    """CI makes its venv with Debian 12's python3 (3.11) and the sandboxes run Debian 12 and 13: 3.11 is
    the oldest proven, on both sides; ruff lints the kit for it (the probe's start excepted)."""
    config = tomllib.loads(PYPROJECT.read_text())
    floor = "{}.{}".format(*MIN_PYTHON)
    assert config["project"]["requires-python"] == f">={floor}"
    assert config["tool"]["ruff"]["target-version"] == f"py{floor.replace('.', '')}"
