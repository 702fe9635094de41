"""tasks/wheels.py: naming targets and venvs, the platform tags and pip command for a server, and
resolve(), which downloads wheels once into a local cache. pip is faked throughout: no test reaches PyPI."""

import subprocess
from pathlib import Path

import pytest

from tasks import wheels
from tasks.wheels import Target, WheelError, download_command, platforms, resolve, venv_id

TARGET = Target("3.11", "x86_64", "2.36")
REQUIREMENTS = "flask==3.1.3\ngunicorn==23.0.0\n"


def option_values(command: list[str], option: str) -> list[str]:
    """Every value given to `option` (as `option VALUE`) in a command line."""
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == option]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The wheel cache, in tmp_path; pip is refused unless a test fakes it."""
    root = tmp_path / "cache" / "wheels"
    monkeypatch.setattr(wheels, "CACHE", root)

    def no_pip(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess.run{args}")

    monkeypatch.setattr(wheels.subprocess, "run", no_pip)
    return root


class FakePip:
    """Stands in for subprocess.run: writes wheels into the command's -d directory, or fails like pip."""

    def __init__(self, wheel_names=(), returncode=0, stderr=""):
        self.wheel_names = wheel_names
        self.returncode = returncode
        self.stderr = stderr
        self.commands: list[list[str]] = []

    def __call__(self, command, **kwargs):
        self.commands.append(list(command))
        (dest,) = option_values(command, "-d")
        (requirements_file,) = option_values(command, "-r")
        assert Path(requirements_file).read_text() == REQUIREMENTS
        for name in self.wheel_names:
            (Path(dest) / name).write_bytes(b"PK fake wheel")
        return subprocess.CompletedProcess(command, self.returncode, stdout="", stderr=self.stderr)


def test_a_target_reads_as_cpython_tag_machine_and_glibc():
    assert str(TARGET) == "cp311-x86_64-glibc2.36"
    assert str(Target("3.9", "aarch64", "2.31")) == "cp39-aarch64-glibc2.31"


def test_the_venv_id_is_stable_and_short():
    assert venv_id(REQUIREMENTS, TARGET) == venv_id(REQUIREMENTS, Target("3.11", "x86_64", "2.36"))
    assert len(venv_id(REQUIREMENTS, TARGET)) == 16
    int(venv_id(REQUIREMENTS, TARGET), 16)  # hex


def test_the_venv_id_changes_with_the_requirements_or_any_part_of_the_target():
    ids = {
        venv_id(REQUIREMENTS, TARGET),
        venv_id("flask==3.1.2\ngunicorn==23.0.0\n", TARGET),
        venv_id(REQUIREMENTS, Target("3.12", "x86_64", "2.36")),
        venv_id(REQUIREMENTS, Target("3.11", "aarch64", "2.36")),
        venv_id(REQUIREMENTS, Target("3.11", "x86_64", "2.31")),
    }
    assert len(ids) == 5


def test_platforms_run_from_manylinux_2_5_up_to_the_glibc_minor_then_manylinux2014_and_linux():
    tags = platforms(Target("3.11", "aarch64", "2.31"))
    assert tags == [
        *(f"manylinux_2_{minor}_aarch64" for minor in range(5, 32)),
        "manylinux2014_aarch64",
        "linux_aarch64",
    ]
    assert "manylinux_2_32_aarch64" not in tags


def test_a_newer_glibc_accepts_newer_manylinux_wheels():
    assert "manylinux_2_36_x86_64" in platforms(TARGET)
    assert "manylinux_2_37_x86_64" not in platforms(TARGET)


def test_a_glibc_without_a_minor_version_falls_back_to_manylinux2014s_glibc_2_17():
    tags = platforms(Target("3.11", "x86_64", "2"))
    assert tags[0] == "manylinux_2_5_x86_64"
    assert tags[-3:] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"]
    assert "manylinux_2_18_x86_64" not in tags


def test_the_download_command_asks_pip_for_binary_wheels_for_the_servers_python_and_platforms(tmp_path):
    requirements_file, dest = tmp_path / "requirements.txt", tmp_path / "wheels"
    command = download_command(requirements_file, TARGET, dest)
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--only-binary=:all:" in command
    assert option_values(command, "--python-version") == ["3.11"]
    assert option_values(command, "--implementation") == ["cp"]
    assert option_values(command, "--platform") == platforms(TARGET)
    assert option_values(command, "-r") == [str(requirements_file)]
    assert option_values(command, "-d") == [str(dest)]


def test_a_failing_pip_raises_a_wheel_error_naming_the_target_and_pips_last_line(cache, monkeypatch):
    stderr = (
        "ERROR: Could not find a version that satisfies the requirement nosuch==1\n"
        "ERROR: No matching distribution found for nosuch==1\n\n"
    )
    pip = FakePip(wheel_names=["half-1.0-py3-none-any.whl"], returncode=1, stderr=stderr)
    monkeypatch.setattr(wheels.subprocess, "run", pip)
    with pytest.raises(WheelError) as raised:
        resolve(REQUIREMENTS, TARGET)
    message = str(raised.value)
    assert str(TARGET) in message
    assert message.endswith("ERROR: No matching distribution found for nosuch==1")
    assert len(pip.commands) == 1
    # Nothing half-made is left: no scratch directory, no cache entry for these requirements.
    assert list(cache.iterdir()) == []
    assert not (cache / venv_id(REQUIREMENTS, TARGET)).exists()


def test_a_failing_pip_with_no_output_reports_its_exit_code(cache, monkeypatch):
    monkeypatch.setattr(wheels.subprocess, "run", FakePip(returncode=2, stderr="  \n"))
    with pytest.raises(WheelError, match="pip exited 2"):
        resolve(REQUIREMENTS, TARGET)


def test_resolved_wheels_come_back_sorted_from_a_complete_cache_entry(cache, monkeypatch):
    pip = FakePip(wheel_names=["gunicorn-23.0.0-py3-none-any.whl", "flask-3.1.3-py3-none-any.whl"])
    monkeypatch.setattr(wheels.subprocess, "run", pip)
    found = resolve(REQUIREMENTS, TARGET)
    entry = cache / venv_id(REQUIREMENTS, TARGET)
    assert found == (entry / "flask-3.1.3-py3-none-any.whl", entry / "gunicorn-23.0.0-py3-none-any.whl")
    assert all(p.read_bytes() == b"PK fake wheel" for p in found)
    assert (entry / ".complete").exists()
    assert [p.name for p in cache.iterdir()] == [entry.name]  # the scratch directory is gone
    (command,) = pip.commands
    assert option_values(command, "--platform") == platforms(TARGET)


def test_a_second_resolve_of_the_same_requirements_is_served_from_the_cache(cache, monkeypatch):
    pip = FakePip(wheel_names=["flask-3.1.3-py3-none-any.whl", "gunicorn-23.0.0-py3-none-any.whl"])
    monkeypatch.setattr(wheels.subprocess, "run", pip)
    first = resolve(REQUIREMENTS, TARGET)
    second = resolve(REQUIREMENTS, TARGET)
    assert second == first
    assert len(pip.commands) == 1


def test_a_cache_entry_without_its_complete_mark_is_downloaded_again(cache, monkeypatch):
    stale = cache / venv_id(REQUIREMENTS, TARGET)
    stale.mkdir(parents=True)
    (stale / "leftover-0.1-py3-none-any.whl").write_bytes(b"old")
    pip = FakePip(wheel_names=["flask-3.1.3-py3-none-any.whl"])
    monkeypatch.setattr(wheels.subprocess, "run", pip)
    assert resolve(REQUIREMENTS, TARGET) == (stale / "flask-3.1.3-py3-none-any.whl",)
    assert len(pip.commands) == 1
    assert (stale / ".complete").exists()


def test_another_target_gets_its_own_download(cache, monkeypatch):
    pip = FakePip(wheel_names=["flask-3.1.3-py3-none-any.whl"])
    monkeypatch.setattr(wheels.subprocess, "run", pip)
    resolve(REQUIREMENTS, TARGET)
    resolve(REQUIREMENTS, Target("3.11", "aarch64", "2.36"))
    assert len(pip.commands) == 2
    assert option_values(pip.commands[1], "--platform")[-1] == "linux_aarch64"
