"""tasks/dependencies.py: what the app declares it depends on (requirements.txt, else pyproject.toml), the
kit's gunicorn added unless the app names one, whether the app is an installable project, requires-python."""

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
