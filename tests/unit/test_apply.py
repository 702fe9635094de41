"""runtime/apply.sh: the one line a failure shows is the one that names the error; each step's line."""

import re
import signal
import subprocess

import pytest

from tasks.shell import Script
from tasks.steps import APPLY
from tests.polling import wait_until
from tests.unit.serverside import library, run_functions

SQLALCHEMY = """\
Traceback (most recent call last):
  File "/srv/app/.venv/lib/python3.11/site-packages/sqlalchemy/engine/base.py", line 145, in __init__
    self._dbapi_connection = engine.raw_connection()
sqlite3.OperationalError: unable to open database file

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/srv/app/releases/x/.venv/bin/flask", line 8, in <module>
    sys.exit(main())
sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) unable to open database file
(Background on this error at: https://sqlalche.me/e/20/e3q8)
"""


NO_FILE = "unable to open database file"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (SQLALCHEMY, f"sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) {NO_FILE}"),
        ("Usage: flask COMMAND\nTry 'flask --help' for help.\n\nError: No such command 'init-db'.\n",
         "Error: No such command 'init-db'."),
        ("  File \"app.py\", line 1\nModuleNotFoundError: No module named 'flaskr'\n\n",
         "ModuleNotFoundError: No module named 'flaskr'"),
        ("migrating...\nstep 2 of 3\n\n", "step 2 of 3"),  # no line names an error: the last one
        ("fatal: not a git repository\nhint: run git init\n", "fatal: not a git repository"),
    ],
)  # fmt: skip
def test_the_line_shown_is_the_last_that_names_an_error_else_the_last(output, expected):
    done = run_functions({"OUT": output}, ['error_line "$OUT"'], includes=("apply.sh",))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{expected}\n"


def test_a_steps_line_says_its_outcome_and_its_time_on_the_server():
    done = run_functions({}, [
        "begin_step provision", "sleep 0.2", "changed", "end_step", "begin_step push", "end_step",
        "unset EPOCHREALTIME", "begin_step health", "end_step",  # a bash older than 5: no time
    ], includes=("apply.sh",))  # fmt: skip
    assert done.returncode == 0, done.stderr
    provision, push, health = done.stdout.splitlines()
    assert re.fullmatch(r"::step provision changed 0\.[2-9]\d\d", provision), provision
    assert re.fullmatch(r"::step push ok 0\.0\d\d", push), push
    assert health == "::step health ok"


def test_what_runs_uncut_goes_on_to_its_end_when_the_watchdog_ends_the_run(tmp_path):
    # The watchdog (lock.sh) ends the run's whole process group once the connection is gone.
    finished = tmp_path / "finished"
    lines = [
        "(sleep 0.2; kill -TERM 0) &",
        f"uncut sh -c 'sleep 0.6; echo useradd wrote every file > {finished}'",
        "echo the run went on",
    ]
    script = library(Script("test", {}, APPLY, ())) + "\n".join(lines) + "\n"
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, start_new_session=True)
    assert (done.returncode, done.stdout) == (-signal.SIGTERM, "")  # the run ended at the kill
    wait_until(finished.exists, 5, "the uncut command's end")
    assert finished.read_text() == "useradd wrote every file\n"
