"""app.processes and the app's Procfile (tasks/procfile.py): validated before anything connects, a bad
value or line in one line naming it."""

from __future__ import annotations

import shutil

import pytest

from tasks import procfile
from tasks.settings import PROJECT_ROOT, Process, SettingError, parse
from tasks.steps import push
from tests.unit.conftest import default_config


@pytest.fixture
def src(tmp_path):
    """A copy of the sample app, to give a Procfile."""
    copy = tmp_path / "app"
    shutil.copytree(PROJECT_ROOT / "app", copy)
    return copy


def config(src, **app) -> dict:
    found = default_config()
    found["app"].update(src=str(src), **app)
    return found


def test_processes_map_names_to_commands_or_to_a_command_and_a_count(src):
    s = parse(
        config(src, processes={"worker": "rq worker tasks", "mail-2": {"command": "flask mail", "count": 3}})
    )
    assert s.app.processes == {"worker": Process("rq worker tasks"), "mail-2": Process("flask mail", 3)}
    assert s.app.stop_timeout == 30


@pytest.mark.parametrize(
    "processes, error",
    [
        (["rq worker"], "must map process names to commands"),
        ({"Worker": "rq"}, "'Worker' is no process name (lowercase letters, digits and -"),
        ({"a_b": "rq"}, "'a_b' is no process name"),
        ({"web": "gunicorn app:app"}, "'web' is the kit's gunicorn (app.module)"),
        ({"worker": {"command": "rq", "count": 0}}, "worker: count must be an integer 1-64"),
        ({"worker": {"command": "rq", "count": True}}, "worker: count must be an integer 1-64"),
        ({"worker": {"cmd": "rq"}}, "worker: must be a command, or {command: ..., count: N}"),
        ({"worker": "rq\nworker"}, "worker: the command must be one shell command line"),
        ({"worker": "rq \x1b[2J"}, "worker: the command holds the control character U+001B"),
        ({"worker": None}, "worker: the command must be one shell command line"),
    ],
)
def test_a_bad_process_is_one_line_naming_it(src, processes, error):
    with pytest.raises(SettingError) as raised:
        parse(config(src, processes=processes))
    assert str(raised.value).startswith(f"app.processes: {error}")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("value", [0, 3601, "soon"])
def test_stop_timeout_is_seconds(src, value):
    with pytest.raises(SettingError, match=r"^app.stop_timeout: must be an integer 1-3600"):
        parse(config(src, stop_timeout=value))


PROCFILE = """\
# microblog's, as its author ships it
web: flask db upgrade; flask translate compile; gunicorn microblog:app
worker: rq worker microblog-tasks

release:   flask db upgrade
"""


def test_with_no_processes_set_the_procfile_gives_them_but_web_and_release(src):
    (src / "Procfile").write_text(PROCFILE)
    s = parse(config(src))
    assert s.app.processes == {"worker": Process("rq worker microblog-tasks")}
    assert s.deploy.release_command == "flask db upgrade"
    assert procfile.read(src).notes() == (
        "the Procfile's web line is ignored: the kit's gunicorn serves the app (app.module)",
    )
    # deploy.release_command set: it wins; app.processes set: the Procfile is not read.
    found = config(src)
    found["deploy"]["release_command"] = "python3 migrate.py"
    assert parse(found).deploy.release_command == "python3 migrate.py"
    assert parse(config(src, processes={"jobs": "rq worker"})).app.processes == {"jobs": Process("rq worker")}
    assert parse(config(src, processes={"jobs": "rq worker"})).deploy.release_command is None


def test_an_app_without_a_procfile_has_no_processes(src):
    assert parse(config(src)).app.processes == {} and procfile.read(src) is None


@pytest.mark.parametrize(
    "text, error",
    [
        ("worker rq worker\n", "line 1: no `name: command` line: write it so, or remove it"),
        ("worker:\n", "line 1: no `name: command` line"),
        (
            "\nWorker: rq\n",
            "line 2: 'Worker' is no process name (lowercase letters, digits and -): rename it",
        ),
        ("worker: rq\nworker: rq\n", "line 2: a second 'worker' line: keep one"),
    ],
)
def test_a_bad_procfile_line_is_one_line_naming_it(src, text, error):
    (src / "Procfile").write_text(text)
    with pytest.raises(SettingError) as raised:
        parse(config(src))
    assert str(raised.value).startswith(f"app.src: {src / 'Procfile'} {error}")


def test_a_procfile_command_with_a_control_character_is_refused(src):
    (src / "Procfile").write_text("worker: rq \x07worker\n")
    with pytest.raises(SettingError, match=r"^app.src: .*Procfile: worker: the command holds the control"):
        parse(config(src))


def test_a_deploy_says_in_one_line_that_the_procfile_s_web_line_is_ignored_when_it_uses_the_procfile(src):
    (src / "Procfile").write_text(PROCFILE)
    _, notes = push.read(parse(config(src)))
    assert notes == ("the Procfile's web line is ignored: the kit's gunicorn serves the app (app.module)",)
    _, notes = push.read(parse(config(src, processes={"jobs": "rq worker"})))  # the Procfile is not used
    assert notes == ()
