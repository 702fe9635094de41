"""tasks/wheels.py: the kind of server a venv is for, naming venvs, and making wheels for the server: the
dependencies (resolved by `uv pip compile`, downloaded by `pip download`, sdists built by `uv build`), the
app's own wheel and uv's. subprocess.run is faked, but for one test running uv and pip on wheels in local
folders: no test reaches PyPI or builds anything."""

import os
import subprocess
from pathlib import Path

import pytest

from tasks import wheels
from tasks.dependencies import declared
from tasks.source import read_source
from tasks.wheels import Target, WheelError, venv_id
from tests.apps.wheels import pure_wheel

TARGET = Target("3.11.2", "x86_64", "2.36")
REQUIREMENTS = "flask==3.1.3\n"
PINS = "--index-url https://pypi.org/simple\n\nflask==3.1.3\ngunicorn==23.0.0\nmail-ish==0.9.1\n"
PYPROJECT = """[project]
name = "flaskr"
version = "1.0.0"
dependencies = ["flask>=3.0"]

[build-system]
requires = ["flit_core>=3.9,<4"]
build-backend = "flit_core.buildapi"
"""
FLASK, GUNICORN = "flask-3.1.3-py3-none-any.whl", "gunicorn-23.0.0-py3-none-any.whl"


def option_values(command: list[str], option: str) -> list[str]:
    """Every value given to `option` (as `option VALUE`) in a command line."""
    return [command[i + 1] for i, word in enumerate(command[:-1]) if word == option]


def kind(command: list[str]) -> str:
    """Which tool a command runs: "compile", "download" or "build"."""
    if command[0] == wheels.UV[0] and command[1:3] == ["pip", "compile"]:
        return "compile"
    if command[0] == wheels.UV[0] and command[1] == "build":
        return "build"
    if command[1:4] == ["-m", "pip", "download"]:
        return "download"
    raise AssertionError(f"unexpected command {command}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The wheel cache, in tmp_path; every subprocess is refused unless a test fakes it."""
    root = tmp_path / "cache" / "wheels"
    monkeypatch.setattr(wheels, "CACHE", root)

    def nothing_runs(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess.run{args}")

    monkeypatch.setattr(wheels.subprocess, "run", nothing_runs)
    return root


class FakeTools:
    """Stands in for subprocess.run: uv's resolver writes PINS to its -o file, pip download writes the files
    named into its -d directory, uv build writes the wheel `built` names for a project into its --out-dir.
    A tool in `fail` exits 1 with that stderr."""

    def __init__(self, downloads=(FLASK, GUNICORN), built=None, fail=None, pins=PINS):
        self.downloads, self.pins = downloads, pins
        self.built = built or {}  # sdist (or project directory) name -> the wheel its build makes
        self.fail = fail or {}  # kind -> stderr
        self.commands: list[list[str]] = []
        self.cwds: list[Path | None] = []
        self.environments: list[dict[str, str] | None] = []
        self.projects: dict[str, list[str]] = {}  # project built -> the files it held

    def __call__(self, command, **kwargs):
        command = list(command)
        self.commands.append(command)
        self.cwds.append(kwargs.get("cwd"))
        self.environments.append(kwargs.get("env"))
        what = kind(command)
        if what in self.fail:
            return subprocess.CompletedProcess(command, 1, stdout="", stderr=self.fail[what])
        if what == "compile":
            (out,) = option_values(command, "-o")
            Path(out).write_text(self.pins)
        elif what == "download":
            (dest,) = option_values(command, "-d")
            for name in self.downloads:
                (Path(dest) / name).write_bytes(b"PK fake")
        else:
            (out,) = option_values(command, "--out-dir")
            project = Path(command[-1])
            if project.is_dir():
                self.projects[str(project)] = sorted(
                    p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file()
                )
                (project / "build").mkdir()  # what a build backend leaves in the project
            (Path(out) / self.built[project.name]).write_bytes(b"PK built")
        return subprocess.CompletedProcess(command, 0, stdout="", stderr="")

    def kinds(self) -> list[str]:
        return [kind(c) for c in self.commands]


def app_dir(root: Path, requirements: str | None = REQUIREMENTS, pyproject: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    if pyproject is not None:
        (root / "pyproject.toml").write_text(pyproject)
    return root


@pytest.fixture
def app(tmp_path) -> Path:
    return app_dir(tmp_path / "app")


# The kind of server.


def test_a_target_knows_its_minor_and_reads_as_tag_machine_glibc_and_full_python():
    assert TARGET.minor == "3.11"
    assert str(TARGET) == "cp311-x86_64-glibc2.36-python3.11.2"
    assert Target("3.9.18", "aarch64", "2.31").minor == "3.9"


@pytest.mark.parametrize(
    "machine, glibc, platform",
    [
        ("x86_64", "2.36", "x86_64-manylinux_2_36"),  # Debian 12
        ("x86_64", "2.41", "x86_64-manylinux_2_40"),  # newer than uv knows: the newest it does
        ("x86_64", "2.27", "x86_64-manylinux_2_17"),  # between 2.17 and 2.28: 2.17
        ("x86_64", "2.30", "x86_64-manylinux_2_28"),
        ("aarch64", "2.31", "aarch64-manylinux_2_31"),
        ("x86_64", "2", "x86_64-manylinux_2_17"),  # no minor version: manylinux2014's
        ("x86_64", "2.12", "x86_64-manylinux_2_17"),  # older: the oldest uv resolves for
    ],
)
def test_the_resolver_platform_is_the_newest_manylinux_the_servers_glibc_runs(machine, glibc, platform):
    assert Target("3.11.2", machine, glibc).resolver_platform() == platform


def test_a_machine_the_resolver_does_not_know_is_refused_naming_it():
    with pytest.raises(WheelError, match="the server's machine is armv7l: .*x86_64 and aarch64"):
        Target("3.11.2", "armv7l", "2.36").resolver_platform()


def test_platforms_run_from_manylinux_2_5_up_to_the_glibc_minor_then_manylinux2014_and_linux():
    tags = Target("3.11.2", "aarch64", "2.31").platforms()
    assert tags == [
        *(f"manylinux_2_{minor}_aarch64" for minor in range(5, 32)),
        "manylinux2014_aarch64",
        "linux_aarch64",
    ]
    assert "manylinux_2_36_x86_64" in TARGET.platforms()
    assert "manylinux_2_37_x86_64" not in TARGET.platforms()


def test_a_glibc_without_a_minor_version_falls_back_to_manylinux2014s_glibc_2_17():
    tags = Target("3.11.2", "x86_64", "2").platforms()
    assert tags[0] == "manylinux_2_5_x86_64"
    assert tags[-3:] == ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64"]


# Naming venvs.


def test_the_venv_id_is_stable_short_and_changes_with_any_part_of_the_target(app):
    deps = declared(app, "23.0.0")
    vid = venv_id(deps, TARGET)
    assert vid == venv_id(declared(app, "23.0.0"), Target("3.11.2", "x86_64", "2.36"))
    assert len(vid) == 16
    int(vid, 16)  # hex
    others = {
        venv_id(deps, Target("3.11.4", "x86_64", "2.36")),  # a point release: markers may differ
        venv_id(deps, Target("3.12.1", "x86_64", "2.36")),
        venv_id(deps, Target("3.11.2", "aarch64", "2.36")),
        venv_id(deps, Target("3.11.2", "x86_64", "2.31")),
    }
    assert len(others) == 4 and vid not in others


def test_the_venv_id_changes_with_the_declaration(app):
    before = venv_id(declared(app, "23.0.0"), TARGET)
    assert venv_id(declared(app, "22.0.0"), TARGET) != before  # the kit's gunicorn
    (app / "requirements.txt").write_text("flask==3.1.2\n")
    assert venv_id(declared(app, "23.0.0"), TARGET) != before


def test_the_venv_id_changes_with_a_file_the_requirements_include_and_a_local_package(app):
    (app / "requirements.txt").write_text("-r base.txt\n./libs/pkg\n")
    (app / "base.txt").write_text("flask==3.1.3\n")
    (app / "libs" / "pkg").mkdir(parents=True)
    (app / "libs" / "pkg" / "pyproject.toml").write_text('[project]\nname = "pkg"\nversion = "1"\n')
    ids = {venv_id(declared(app, "23.0.0"), TARGET)}
    (app / "base.txt").write_text("flask==3.1.2\n")
    ids.add(venv_id(declared(app, "23.0.0"), TARGET))
    (app / "libs" / "pkg" / "pyproject.toml").write_text('[project]\nname = "pkg"\nversion = "2"\n')
    ids.add(venv_id(declared(app, "23.0.0"), TARGET))
    assert len(ids) == 3


def test_the_venv_id_does_not_follow_the_apps_code_even_when_the_app_is_installable(tmp_path):
    # Each release holds the app's own wheel: a code change keeps the venv, and reloads gracefully.
    for app in (
        app_dir(tmp_path / "plain"),
        app_dir(tmp_path / "project", requirements=None, pyproject=PYPROJECT),
    ):
        before = venv_id(declared(app, "23.0.0"), TARGET)
        (app / "app.py").write_text("# changed\n")
        assert venv_id(declared(app, "23.0.0"), TARGET) == before


# The dependencies' wheels.


def test_dependencies_are_resolved_for_the_server_then_downloaded_into_the_cache(cache, monkeypatch, app):
    tools = FakeTools()
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    deps = declared(app, "23.0.0")
    found = wheels.dependencies(deps, TARGET)
    assert tools.kinds() == ["compile", "download"]
    compile_, download = tools.commands
    # The resolver evaluates markers for the server's full Python version and its platform.
    assert option_values(compile_, "--python-version") == ["3.11.2"]
    assert option_values(compile_, "--python-platform") == ["x86_64-manylinux_2_36"]
    assert str(app / "requirements.txt") in compile_
    (extra,) = [Path(word) for word in compile_ if word.endswith("kit-requirements.in")]
    assert tools.cwds[0] == app  # relative lines (-r other.txt) read from the app's directory
    # pip fetches exactly the pins (no resolving of its own) for the server's tags.
    assert "--no-deps" in download and "--only-binary=:all:" not in download  # sdists are built after
    assert option_values(download, "--python-version") == ["3.11"]
    assert option_values(download, "--implementation") == ["cp"]
    assert option_values(download, "--platform") == TARGET.platforms()
    assert option_values(download, "-r") == option_values(compile_, "-o")
    assert not extra.exists()  # the resolver's scratch directory is gone
    (entry,) = list(cache.iterdir())  # the scratch directory is gone too
    assert found == (entry / FLASK, entry / GUNICORN)
    assert (entry / ".complete").exists()


def test_no_tool_reads_a_configuration_file_and_pip_downloads_where_uv_resolved(cache, monkeypatch, project):
    sdist, wheel = "mail_ish-0.9.1.tar.gz", "mail_ish-0.9.1-py3-none-any.whl"
    tools = FakeTools(downloads=(FLASK, sdist), built={sdist: wheel, "app": "flaskr-1.0.0-py3-none-any.whl"})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    monkeypatch.setenv("UV_INDEX_URL", "https://mirror.example.org/simple")
    wheels.dependencies(declared(project, "23.0.0"), TARGET)
    wheels.app_wheel(read_source(project), "flaskr")
    tools.downloads = (f"uv-{wheels.UV_VERSION}-py3-none-manylinux_2_17_x86_64.whl",)
    wheels.uv_wheel("x86_64")
    assert tools.kinds() == ["compile", "download", "build", "build", "download"]
    for environment in tools.environments:
        # Not the app's uv.toml or [tool.uv] (uv runs in its directory), nor this machine's uv.toml, pip.conf
        assert (environment["UV_NO_CONFIG"], environment["PIP_CONFIG_FILE"]) == ("1", os.devnull)
        assert environment["UV_INDEX_URL"] == "https://mirror.example.org/simple"  # the deployer's own
    # Relative paths the resolver writes into the pins (find-links, local packages) read the same for pip.
    assert tools.cwds[:2] == [project, project]


def test_the_apps_uv_toml_and_the_deployers_pip_conf_are_not_read(tmp_path, monkeypatch):
    # Real uv and pip, on wheels in local folders: the app's own find-links give kitpin 1.0; its uv.toml
    # would add a folder with kitpin 3.0 (as it could swap the index), a pip.conf would constrain it to 3.0.
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    pure_wheel(ours, "kitpin", "1.0")
    pure_wheel(ours, "gunicorn", "23.0.0")
    pure_wheel(theirs, "kitpin", "3.0")
    app = app_dir(tmp_path / "app", requirements=f"--no-index\n--find-links {ours}\nkitpin\n")
    (app / "uv.toml").write_text(f'find-links = ["{theirs}"]\n')
    (tmp_path / "constraints.txt").write_text("kitpin==3.0\n")
    (tmp_path / "pip.conf").write_text(f"[global]\nconstraint = {tmp_path / 'constraints.txt'}\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(tmp_path / "pip.conf"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the deployer's variables still count: pip asks no index
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setattr(wheels, "CACHE", tmp_path / "cache")
    found = wheels.dependencies(declared(app, "23.0.0"), TARGET)
    assert [p.name for p in found] == ["gunicorn-23.0.0-py3-none-any.whl", "kitpin-1.0-py3-none-any.whl"]


def test_the_kits_gunicorn_goes_to_the_resolver_as_an_extra_input(cache, monkeypatch, app):
    seen = []

    def tools(command, **kwargs):
        if kind(command) == "compile":
            (extra,) = [Path(word) for word in command if word.endswith("kit-requirements.in")]
            seen.append(extra.read_text())
        return FakeTools()(command, **kwargs)

    monkeypatch.setattr(wheels.subprocess, "run", tools)
    wheels.dependencies(declared(app, "23.0.0"), TARGET)
    assert seen == ["gunicorn==23.0.0\n"]


def test_a_second_call_for_the_same_declaration_and_target_runs_nothing(cache, monkeypatch, app):
    tools = FakeTools()
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    deps = declared(app, "23.0.0")
    first = wheels.dependencies(deps, TARGET)
    second = wheels.dependencies(deps, TARGET)
    assert second == first and tools.kinds() == ["compile", "download"]
    wheels.dependencies(deps, Target("3.11.2", "aarch64", "2.36"))  # another kind of server: its own
    assert tools.kinds() == ["compile", "download"] * 2
    assert option_values(tools.commands[-1], "--platform")[-1] == "linux_aarch64"


def test_a_cache_entry_without_its_complete_mark_is_made_again(cache, monkeypatch, app):
    tools = FakeTools()
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    deps = declared(app, "23.0.0")
    (entry,) = {p.parent for p in wheels.dependencies(deps, TARGET)}
    (entry / ".complete").unlink()
    (entry / "leftover-0.1-py3-none-any.whl").write_bytes(b"old")
    assert wheels.dependencies(deps, TARGET) == (entry / FLASK, entry / GUNICORN)
    assert tools.kinds() == ["compile", "download"] * 2


def test_a_pure_python_sdist_is_built_and_its_wheel_replaces_it(cache, monkeypatch, app):
    sdist, wheel = "mail_ish-0.9.1.tar.gz", "mail_ish-0.9.1-py3-none-any.whl"
    tools = FakeTools(downloads=(FLASK, sdist), built={sdist: wheel})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    found = wheels.dependencies(declared(app, "23.0.0"), TARGET)
    assert tools.kinds() == ["compile", "download", "build"]
    assert tools.commands[-1][-1].endswith(sdist)
    assert [p.name for p in found] == [FLASK, wheel]
    assert not (found[0].parent / sdist).exists()


def test_a_native_wheel_built_from_an_sdist_is_refused_in_one_line_naming_package_and_version(
    cache, monkeypatch, app
):
    sdist = "fastthing-2.0.1.tar.gz"
    tools = FakeTools(downloads=(FLASK, sdist), built={sdist: "fastthing-2.0.1-cp311-cp311-linux_x86_64.whl"})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    with pytest.raises(WheelError) as raised:
        wheels.dependencies(declared(app, "23.0.0"), TARGET)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("fastthing 2.0.1 publishes only a source distribution, with native code")
    assert "x86_64, glibc 2.36" in message
    assert "pin a version of fastthing that publishes a wheel for x86_64 Linux" in message
    assert list(cache.iterdir()) == []  # nothing half-made is cached


@pytest.mark.parametrize("pin", ["./libs/pkg", "-e ./libs/pkg", "pkg @ file://{app}/libs/pkg"])
def test_a_local_package_is_built_into_its_wheel_for_pip_saves_none(cache, monkeypatch, tmp_path, pin):
    app = app_dir(tmp_path / "app", requirements="flask==3.1.3\n./libs/pkg\n")
    (app / "libs" / "pkg").mkdir(parents=True)
    tools = FakeTools(pins=f"{PINS}{pin.format(app=app)}\n", built={"pkg": "pkg-1.0-py3-none-any.whl"})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    found = wheels.dependencies(declared(app, "23.0.0"), TARGET)
    assert tools.kinds() == ["compile", "download", "build"]
    assert Path(tools.commands[-1][-1]) == app / "libs" / "pkg"  # relative to where uv resolved
    assert [p.name for p in found] == [FLASK, GUNICORN, "pkg-1.0-py3-none-any.whl"]


def test_a_local_package_with_native_code_is_refused_in_one_line_naming_it(cache, monkeypatch, tmp_path):
    app = app_dir(tmp_path / "app", requirements="flask==3.1.3\n./libs/pkg\n")
    (app / "libs" / "pkg").mkdir(parents=True)
    tools = FakeTools(pins=f"{PINS}./libs/pkg\n", built={"pkg": "pkg-1.0-cp311-cp311-linux_x86_64.whl"})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    with pytest.raises(WheelError) as raised:
        wheels.dependencies(declared(app, "23.0.0"), TARGET)
    assert str(raised.value) == (
        f"the local package {app / 'libs' / 'pkg'}, with native code, which the kit cannot build for the"
        " server (x86_64, glibc 2.36): make it build as a pure-Python wheel, or depend on published wheels of"
        " it instead"
    )
    assert list(cache.iterdir()) == []


def test_an_sdist_that_does_not_build_is_refused_with_the_builders_reason(cache, monkeypatch, app):
    sdist = "oldthing-0.1.tar.gz"
    stderr = "Building wheel...\n  × Failed to build `oldthing`\n  ╰─▶ error: invalid command 'bdist_wheel'\n"
    tools = FakeTools(downloads=(sdist,), fail={"build": stderr})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    with pytest.raises(WheelError) as raised:
        wheels.dependencies(declared(app, "23.0.0"), TARGET)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        "oldthing 0.1 publishes only a source distribution: error: invalid command 'bdist_wheel';"
        " it does not build here: pin a version of oldthing"
    )


def test_a_failed_resolution_is_one_line_naming_the_source_the_python_and_the_resolvers_reason(
    cache, monkeypatch, app
):
    stderr = (
        "warning: something unrelated\n"
        "  × No solution found when resolving dependencies:\n"
        "  ╰─▶ Because nosuch was not found in the package registry and you require nosuch, we can\n"
        "      conclude that your requirements are unsatisfiable.\n"
        "\n"
        "hint: check the name\n"
    )
    tools = FakeTools(fail={"compile": stderr})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    with pytest.raises(WheelError) as raised:
        wheels.dependencies(declared(app, "23.0.0"), TARGET)
    message = str(raised.value)
    assert message == (
        "the dependencies (requirements.txt) do not resolve for the server's Python 3.11.2: Because nosuch"
        " was not found in the package registry and you require nosuch, we can conclude that your"
        " requirements are unsatisfiable."
    )
    assert tools.kinds() == ["compile"]  # nothing downloaded
    assert list(cache.iterdir()) == []


def test_a_failing_download_names_the_target_and_pips_error(cache, monkeypatch, app):
    stderr = "ERROR: Could not find a version that satisfies the requirement flask==3.1.3\n"
    monkeypatch.setattr(wheels.subprocess, "run", FakeTools(fail={"download": stderr}))
    with pytest.raises(WheelError) as raised:
        wheels.dependencies(declared(app, "23.0.0"), TARGET)
    assert str(raised.value) == f"no wheels for {TARGET}: {stderr.strip()}"


@pytest.mark.parametrize(
    "output, said",
    [
        ("", ""),
        ("just this\n", "just this"),
        ("line one\nline two\n", "line two"),  # no error line: the last one
        ("Collecting x\nERROR: boom\nERROR: again\n", "ERROR: boom ERROR: again"),
        ("hint: try this\nWARNING: that\n", ""),
    ],
)
def test_reason_makes_one_line_of_a_tools_complaint(output, said):
    assert wheels.reason(output) == said


def test_a_tool_failing_silently_reports_its_exit_code(cache, monkeypatch, app):
    def silent(command, **kwargs):
        return subprocess.CompletedProcess(command, 2, stdout="", stderr="  \n")

    monkeypatch.setattr(wheels.subprocess, "run", silent)
    with pytest.raises(WheelError, match="exit code 2$"):
        wheels.dependencies(declared(app, "23.0.0"), TARGET)


# The app's own wheel, and uv's.


@pytest.fixture
def project(tmp_path) -> Path:
    root = app_dir(tmp_path / "flaskr", requirements=None, pyproject=PYPROJECT)
    (root / "flaskr").mkdir()
    (root / "flaskr" / "__init__.py").write_text("")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"cache")
    return root


def listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_the_apps_wheel_is_built_from_a_copy_of_its_release_files(cache, monkeypatch, project):
    tools = FakeTools(built={"app": "flaskr-1.0.0-py3-none-any.whl"})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    before = listing(project)
    source = read_source(project)
    built = wheels.app_wheel(source, "flaskr")
    assert built.name == "flaskr-1.0.0-py3-none-any.whl" and built.parent.parent == cache
    ((copy, files),) = tools.projects.items()
    assert Path(copy) != project and files == list(source.files)  # the release's files, no caches
    assert listing(project) == before  # what the build left (build/) is in the copy only
    assert not Path(copy).exists()


def test_the_apps_wheel_is_cached_by_the_apps_content(cache, monkeypatch, project):
    tools = FakeTools(built={"app": "flaskr-1.0.0-py3-none-any.whl"})
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    first = wheels.app_wheel(read_source(project), "flaskr")
    assert wheels.app_wheel(read_source(project), "flaskr") == first
    assert tools.kinds() == ["build"]
    (project / "flaskr" / "__init__.py").write_text("VERSION = 2\n")
    assert wheels.app_wheel(read_source(project), "flaskr").parent != first.parent
    assert tools.kinds() == ["build", "build"]


def test_an_app_that_does_not_build_is_refused_naming_it(cache, monkeypatch, project):
    stderr = "error: Backend subprocess exited when trying to invoke build_wheel\n"
    monkeypatch.setattr(wheels.subprocess, "run", FakeTools(fail={"build": stderr}))
    with pytest.raises(WheelError, match=r"^the app \(flaskr\) does not build as a wheel: error: Backend"):
        wheels.app_wheel(read_source(project), "flaskr")
    assert list(cache.iterdir()) == []


def test_uvs_wheel_is_downloaded_once_for_the_servers_machine(cache, monkeypatch):
    name = f"uv-{wheels.UV_VERSION}-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    tools = FakeTools(downloads=(name,))
    monkeypatch.setattr(wheels.subprocess, "run", tools)
    found = wheels.uv_wheel("aarch64")
    assert found.name == name and wheels.uv_wheel("aarch64") == found
    (command,) = tools.commands
    assert f"uv=={wheels.UV_VERSION}" in command and "--only-binary=:all:" in command
    assert "--platform=manylinux2014_aarch64" in command
