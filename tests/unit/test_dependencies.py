"""tasks/dependencies.py: what the app declares it depends on (requirements.txt, else pyproject.toml), the
kit's gunicorn added unless the app names one, whether the app is an installable project, requires-python."""

import hashlib
from pathlib import Path

import pytest

from tasks.dependencies import Declared, DependencyError, declared

PYPROJECT = """[project]
name = "flaskr"
version = "1.0.0"
requires-python = ">=3.9"
dependencies = ["flask>=3.0", "Flask-Mail==0.9.1"]

[build-system]
requires = ["flit_core>=3.9,<4"]
build-backend = "flit_core.buildapi"
"""


def app(tmp_path: Path, requirements: str | None = None, pyproject: str | None = None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "app.py").write_text("app = None\n")
    if requirements is not None:
        (tmp_path / "requirements.txt").write_text(requirements)
    if pyproject is not None:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    return tmp_path


def test_requirements_txt_wins_over_pyproject(tmp_path):
    root = app(tmp_path, requirements="flask==3.1.3\n", pyproject=PYPROJECT)
    found = declared(root, "23.0.0")
    assert (found.source, found.inputs) == ("requirements.txt", (root / "requirements.txt",))
    assert found.extra == ("gunicorn==23.0.0",)
    # The project's metadata still counts: it is installable, and says which Python it needs.
    assert (found.project, found.requires_python) == ("flaskr", ">=3.9")


def test_a_pyproject_alone_gives_its_project_dependencies(tmp_path):
    root = app(tmp_path, pyproject=PYPROJECT)
    found = declared(root, "23.0.0")
    assert found.source == "pyproject.toml [project].dependencies"
    assert found.inputs == (root / "pyproject.toml",)
    assert found.extra == ("gunicorn==23.0.0",)


def test_an_app_with_neither_file_is_refused_naming_both(tmp_path):
    with pytest.raises(DependencyError, match="holds neither requirements.txt nor pyproject.toml: add one"):
        declared(app(tmp_path), "23.0.0")


@pytest.mark.parametrize(
    "line",
    [
        "gunicorn==22.0.0",
        "Gunicorn>=20",
        "gunicorn[gevent]==23.0.0",
        "GUNICORN ; python_version >= '3.8'",
        "gunicorn==23.0.0  # the server",
    ],
)
def test_gunicorn_is_not_added_when_the_app_names_it_in_any_spelling(tmp_path, line):
    root = app(tmp_path, requirements=f"flask==3.1.3\n{line}\n")
    found = declared(root, "23.0.0")
    assert found.extra == ()
    assert found.describe() == "dependencies from requirements.txt"


def test_gunicorn_named_in_pyproject_dependencies_is_the_apps(tmp_path):
    pyproject = PYPROJECT.replace('"Flask-Mail==0.9.1"', '"Gunicorn>=20"')
    assert declared(app(tmp_path, pyproject=pyproject), "23.0.0").extra == ()


def test_comments_options_and_other_lines_do_not_name_gunicorn(tmp_path):
    requirements = (
        "# gunicorn is the kit's\n"
        "--index-url https://example.org/simple\n"
        "-r gunicorn.txt\n"
        "\n"
        "flask==3.1.3  # not gunicorn\n"
        "./vendor/gunicorn\n"  # a path: the resolver says what it makes of it
    )
    (tmp_path / "gunicorn.txt").write_text("flask-login==0.6.3\n")
    found = declared(app(tmp_path, requirements=requirements), "23.0.0")
    assert found.extra == ("gunicorn==23.0.0",)


@pytest.mark.parametrize(
    "pyproject, project",
    [
        (PYPROJECT, "flaskr"),
        (PYPROJECT.split("[build-system]")[0], ""),  # no build backend: not installable
        (PYPROJECT.replace('name = "flaskr"\n', ""), ""),  # no project name
        ('[build-system]\nrequires = ["flit_core"]\n', ""),
        ('[tool.ruff]\nline-length = 100\n[build-system]\nrequires = ["x"]\n', ""),
    ],
)
def test_the_app_is_installable_only_with_a_build_system_and_a_project_name(tmp_path, pyproject, project):
    root = app(tmp_path, requirements="flask==3.1.3\n", pyproject=pyproject)
    assert declared(root, "23.0.0").project == project


def test_a_requirements_only_app_is_not_installable_and_requires_no_python(tmp_path):
    found = declared(app(tmp_path, requirements="flask==3.1.3\n"), "23.0.0")
    assert (found.project, found.requires_python) == ("", "")
    assert found.fits("3.6.0") and found.fits("3.13.1")


@pytest.mark.parametrize(
    "requires, python, fits",
    [
        (">=3.9", "3.11.2", True),
        (">=3.12", "3.11.2", False),
        (">=3.11.4", "3.11.2", False),  # the server's full version counts
        (">=3.11,<3.13", "3.12.8", True),
        ("~=3.10", "3.11.2", True),
        ("==3.11.*", "3.12.0", False),
    ],
)
def test_requires_python_fits_the_servers_full_python_version_or_not(tmp_path, requires, python, fits):
    pyproject = PYPROJECT.replace('">=3.9"', f'"{requires}"')
    assert declared(app(tmp_path, pyproject=pyproject), "23.0.0").fits(python) is fits


def test_a_python_that_does_not_say_its_version_is_left_to_the_install(tmp_path):
    assert declared(app(tmp_path, pyproject=PYPROJECT), "23.0.0").fits("")


def test_bad_toml_is_one_line_naming_the_file(tmp_path):
    root = app(tmp_path, pyproject="[project\nname = 1\n")
    with pytest.raises(DependencyError) as raised:
        declared(root, "23.0.0")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"{root / 'pyproject.toml'} is no valid TOML (")
    assert message.endswith("): fix it")


def test_bad_toml_is_refused_even_beside_a_requirements_txt(tmp_path):
    with pytest.raises(DependencyError, match="is no valid TOML"):
        declared(app(tmp_path, requirements="flask\n", pyproject="= nothing\n"), "23.0.0")


@pytest.mark.parametrize("requires", ["3.9+", "at least 3.9", ">=3.9 or so"])
def test_a_bad_requires_python_is_one_line_naming_it(tmp_path, requires):
    root = app(tmp_path, pyproject=PYPROJECT.replace('">=3.9"', f'"{requires}"'))
    with pytest.raises(DependencyError) as raised:
        declared(root, "23.0.0")
    assert str(raised.value) == f"{root / 'pyproject.toml'}: requires-python {requires!r} is no version range"


def test_pyproject_dependencies_must_be_a_list_of_strings(tmp_path):
    root = app(tmp_path, pyproject=PYPROJECT.replace('["flask>=3.0", "Flask-Mail==0.9.1"]', '"flask"'))
    with pytest.raises(DependencyError, match=r"\[project\].dependencies must be a list of strings"):
        declared(root, "23.0.0")


def test_the_digest_names_the_inputs_and_the_kits_lines(tmp_path):
    root = app(tmp_path, requirements="flask==3.1.3\n")
    first = declared(root, "23.0.0").digest
    assert declared(root, "23.0.0").digest == first
    assert declared(root, "22.0.0").digest != first  # another gunicorn of the kit's
    (root / "app.py").write_text("changed = True\n")  # the code is no part of the declaration
    assert declared(root, "23.0.0").digest == first
    (root / "requirements.txt").write_text("flask==3.1.2\n")
    assert declared(root, "23.0.0").digest != first


def test_describe_says_where_the_dependencies_came_from_and_what_the_kit_added(tmp_path):
    assert declared(app(tmp_path, pyproject=PYPROJECT), "23.0.0").describe() == (
        "dependencies from pyproject.toml [project].dependencies, gunicorn==23.0.0 (the kit's: app.gunicorn),"
        " flaskr built as a wheel"
    )
    plain = Declared("requirements.txt", (), (), "", "", "0" * 64)
    assert plain.describe() == "dependencies from requirements.txt"


# What the resolver reads besides requirements.txt: the digest names it all.


def digest_after(root: Path, change) -> tuple[str, str]:  # noqa: ANN001 - change(): edits the app's files
    before = declared(root, "23.0.0").digest
    change()
    return before, declared(root, "23.0.0").digest


def test_an_app_that_includes_nothing_keeps_the_digest_it_always_had(tmp_path):
    root = app(tmp_path, requirements="flask==3.1.3\n")
    expected = hashlib.sha256(b"flask==3.1.3\n\0gunicorn==23.0.0").hexdigest()
    assert declared(root, "23.0.0").digest == expected  # so no venv is built again for nothing


@pytest.mark.parametrize(
    "line",
    ["-r base.txt", "-rbase.txt", "--requirement base.txt", "--requirement=base.txt", "-c base.txt",
     "--constraint=base.txt", "-r reqs/../base.txt"],
)  # fmt: skip
def test_a_change_in_an_included_file_changes_the_digest(tmp_path, line):
    root = app(tmp_path, requirements=f"flask\n{line}\n")
    (root / "base.txt").write_text("kitpin==1.0\n")
    (root / "reqs").mkdir()
    before, after = digest_after(root, lambda: (root / "base.txt").write_text("kitpin==2.0\n"))
    assert before != after


def test_includes_are_followed_relative_to_the_file_that_includes_them(tmp_path):
    root = app(tmp_path, requirements="-r requirements/prod.txt\n")
    (root / "requirements").mkdir()
    (root / "requirements" / "prod.txt").write_text("-r common.txt  # beside prod.txt\n-c pins.txt\n")
    (root / "requirements" / "common.txt").write_text("flask\n")
    (root / "requirements" / "pins.txt").write_text("flask==3.1.3\n")
    for name, text in (("common.txt", "flask\nclick\n"), ("pins.txt", "flask==3.1.2\n")):
        before, after = digest_after(root, lambda: (root / "requirements" / name).write_text(text))  # noqa: B023
        assert before != after, name


def test_an_include_that_includes_back_is_read_once(tmp_path):
    root = app(tmp_path, requirements="-r base.txt\n")
    (root / "base.txt").write_text("flask\n-r requirements.txt\n")
    assert declared(root, "23.0.0").digest


def test_an_include_that_is_no_file_is_one_line_naming_where(tmp_path):
    root = app(tmp_path, requirements="flask\n\n-r base.txt\n")
    with pytest.raises(DependencyError) as raised:
        declared(root, "23.0.0")
    assert str(raised.value) == (
        f"requirements.txt line 3: {root / 'base.txt'} is no file: fix the path, or remove the line"
    )


def test_gunicorn_named_in_an_included_file_is_the_apps(tmp_path):
    root = app(tmp_path, requirements="-r base.txt\n")
    (root / "base.txt").write_text("flask==3.1.3\ngunicorn==22.0.0\n")
    assert declared(root, "23.0.0").extra == ()
    (root / "requirements.txt").write_text("-c base.txt\nflask\n")  # a constraint requires nothing
    assert declared(root, "23.0.0").extra == ("gunicorn==23.0.0",)


def local_package(folder: Path) -> Path:
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("VERSION = 1\n")
    (folder / "pyproject.toml").write_text('[project]\nname = "pkg"\nversion = "1"\n')
    return folder


@pytest.mark.parametrize(
    "line",
    ["./libs/pkg", "libs/pkg[extra]", "-e ./libs/pkg", "--editable=libs/pkg", "pkg @ file://{root}/libs/pkg",
     "pkg @ file:libs/pkg", "pkg @ ./libs/pkg ; python_version >= '3.8'"],
)  # fmt: skip
def test_a_change_in_a_local_path_dependency_changes_the_digest(tmp_path, line):
    root = app(tmp_path / "app", requirements=f"flask\n{line.format(root=tmp_path / 'app')}\n")
    package = local_package(root / "libs" / "pkg")
    before, after = digest_after(root, lambda: (package / "pkg" / "__init__.py").write_text("VERSION = 2\n"))
    assert before != after


def test_local_paths_in_an_included_file_are_the_apps_directorys_as_uv_reads_them(tmp_path):
    root = app(tmp_path, requirements="-r requirements/base.txt\n")
    (root / "requirements").mkdir()
    (root / "requirements" / "base.txt").write_text("./libs/pkg\n")  # uv: relative to its working directory
    package = local_package(root / "libs" / "pkg")
    before, after = digest_after(root, lambda: (package / "pkg" / "new.py").write_text(""))
    assert before != after


def test_a_local_wheel_or_sdist_dependency_is_read_too(tmp_path):
    root = app(tmp_path, requirements="./dist/pkg-1.0-py3-none-any.whl\n")
    (root / "dist").mkdir()
    wheel = root / "dist" / "pkg-1.0-py3-none-any.whl"
    wheel.write_bytes(b"one")
    before, after = digest_after(root, lambda: wheel.write_bytes(b"two"))
    assert before != after


def test_caches_and_what_builds_leave_in_a_local_dependency_are_no_part_of_the_digest(tmp_path):
    root = app(tmp_path, requirements="-e ./libs/pkg\n")
    package = local_package(root / "libs" / "pkg")

    def build():
        for leftover in ("build/lib/pkg", "dist", "pkg.egg-info", "pkg/__pycache__", ".venv"):
            (package / leftover).mkdir(parents=True)
            (package / leftover / "x").write_text("made")
        (package / "pkg" / "mod.pyc").write_bytes(b"cache")

    before, after = digest_after(root, build)
    assert before == after


def test_a_local_find_links_folder_names_its_archives_in_the_digest(tmp_path):
    root = app(tmp_path, requirements="--find-links ./wheels\nkitpin\n")
    (root / "wheels").mkdir()
    (root / "wheels" / "kitpin-1.0-py3-none-any.whl").write_bytes(b"PK")
    newer = root / "wheels" / "kitpin-1.1-py3-none-any.whl"
    before, after = digest_after(root, lambda: newer.write_bytes(b"PK"))
    assert before != after


def test_local_dependencies_of_pyproject_change_the_digest(tmp_path):
    root = app(
        tmp_path / "app", pyproject=PYPROJECT.replace('"Flask-Mail==0.9.1"', f'"pkg @ file://{tmp_path}/pkg"')
    )
    package = local_package(tmp_path / "pkg")
    before, after = digest_after(root, lambda: (package / "pkg" / "__init__.py").write_text("VERSION = 2\n"))
    assert before != after
    sources = '\n[tool.uv.sources]\nother = { path = "libs/other" }\n'
    (root / "pyproject.toml").write_text(PYPROJECT.replace('"Flask-Mail==0.9.1"', '"other"') + sources)
    other = local_package(root / "libs" / "other")
    before, after = digest_after(root, lambda: (other / "pkg" / "__init__.py").write_text("VERSION = 2\n"))
    assert before != after


# Where packages come from: https, or plain http to this machine only.


@pytest.mark.parametrize(
    "requirements, where, url",
    [
        ("--index-url http://mirror.example.org/simple\nflask\n", "requirements.txt line 1",
         "http://mirror.example.org/simple"),
        ("flask\n-i http://10.0.0.5/simple\n", "requirements.txt line 2", "http://10.0.0.5/simple"),
        ("--extra-index-url=HTTP://mirror.example.org/simple\n", "requirements.txt line 1",
         "HTTP://mirror.example.org/simple"),
        ("-f http://mirror.example.org/wheels/\nflask\n", "requirements.txt line 1",
         "http://mirror.example.org/wheels/"),
        ("--find-links \\\n  http://198.51.100.7/links\n", "requirements.txt line 1", "http://198.51.100.7/links"),
        ("pkg @ http://example.org/pkg-1.0.tar.gz\n", "requirements.txt line 1", "http://example.org/pkg-1.0.tar.gz"),
        ("http://example.org/pkg-1.0-py3-none-any.whl\n", "requirements.txt line 1",
         "http://example.org/pkg-1.0-py3-none-any.whl"),
        ("-e git+http://example.org/pkg.git#egg=pkg\n", "requirements.txt line 1",
         "git+http://example.org/pkg.git#egg=pkg"),
        ("-r http://example.org/requirements.txt\n", "requirements.txt line 1",
         "http://example.org/requirements.txt"),
        ("-r base.txt\n", "base.txt line 2", "http://mirror.example.org/simple"),
        ("--index-url http://localhost.example.org/simple\n", "requirements.txt line 1",
         "http://localhost.example.org/simple"),
    ],
)  # fmt: skip
def test_a_plain_http_location_to_another_machine_is_refused_in_one_line_naming_it(
    tmp_path, requirements, where, url
):
    root = app(tmp_path, requirements=requirements)
    (root / "base.txt").write_text("flask\n--extra-index-url http://mirror.example.org/simple\n")
    with pytest.raises(DependencyError) as raised:
        declared(root, "23.0.0")
    assert str(raised.value) == (
        f"{where}: {url} is plain http to another machine: a package changed on the way would run on the"
        " server (and its build code here); use https:// (plain http only to localhost)"
    )


@pytest.mark.parametrize(
    "location",
    ["https://mirror.example.org/simple", "http://localhost:3141/simple", "http://127.0.0.1/simple",
     "http://127.9.9.9:8080/simple", "http://[::1]:3141/simple", "file:///srv/wheels", "./wheels"],
)  # fmt: skip
def test_https_local_files_and_plain_http_to_this_machine_are_fine(tmp_path, location):
    root = app(tmp_path, requirements=f"--index-url {location}\n-f {location}\nflask\n")
    assert declared(root, "23.0.0").source == "requirements.txt"


def test_a_plain_http_url_in_pyproject_is_refused_too(tmp_path):
    http = PYPROJECT.replace('"Flask-Mail==0.9.1"', '"pkg @ http://example.org/pkg-1.0.tar.gz"')
    with pytest.raises(DependencyError, match=r"^pyproject.toml \[project\].dependencies: http://example"):
        declared(app(tmp_path / "a", pyproject=http), "23.0.0")
    sources = '\n[tool.uv.sources]\nmail = [{ git = "git+http://example.org/mail.git" }]\n'
    with pytest.raises(DependencyError, match=r"^pyproject.toml \[tool.uv.sources\] mail: git\+http://"):
        declared(app(tmp_path / "b", pyproject=PYPROJECT + sources), "23.0.0")


@pytest.mark.parametrize(
    "variable, value",
    [("UV_INDEX_URL", "http://mirror.example.org/simple"), ("UV_INDEX", "corp=http://mirror.example.org/simple"),
     ("UV_DEFAULT_INDEX", "http://mirror.example.org/simple"),
     ("UV_EXTRA_INDEX_URL", "https://ok.example.org/simple http://mirror.example.org/simple"),
     ("UV_FIND_LINKS", "/srv/wheels,http://mirror.example.org/simple"),
     ("PIP_EXTRA_INDEX_URL", "http://mirror.example.org/simple"), ("PIP_FIND_LINKS", "http://mirror.example.org/simple")],
)  # fmt: skip
def test_the_deployers_own_index_variables_count_and_are_checked_alike(
    tmp_path, monkeypatch, variable, value
):
    root = app(tmp_path, requirements="flask\n")
    monkeypatch.setenv(variable, value)
    with pytest.raises(DependencyError) as raised:
        declared(root, "23.0.0")
    assert str(raised.value).startswith(
        f"{variable} in your environment: http://mirror.example.org/simple is plain http to another machine"
    )
    monkeypatch.setenv(variable, value.replace("mirror.example.org", "localhost:3141"))
    assert declared(root, "23.0.0").extra == ("gunicorn==23.0.0",)
