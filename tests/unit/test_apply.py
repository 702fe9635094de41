"""runtime/apply.sh: the one line a failure shows is the one that names the error; each step's line."""

import re

import pytest

from tests.unit.serverside import run_functions

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
