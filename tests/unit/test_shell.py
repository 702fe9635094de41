"""Building server scripts: values quoted in their block, lines of quoted words, runtime files included."""

import pytest

from tasks import runtime
from tasks.shell import VALUES_BEGIN, VALUES_END, Each, Script, Var, assignment, line
from tests.unit.serverside import run_bash


def test_every_word_is_quoted_unless_it_is_a_reference():
    assert line("install_packages", "nginx", "python3-venv") == "install_packages nginx python3-venv"
    assert line("f", "a b", "$(id)", "it's", 644) == "f 'a b' '$(id)' 'it'\"'\"'s' 644"
    assert (
        line("ensure_dir", Var("SHARED_DIR", "/instance"), Var("APP"))
        == 'ensure_dir "$SHARED_DIR"/instance "$APP"'
    )
    assert line("show", Each("LOGS")) == 'show "${LOGS[@]}"'


def test_assignments_hold_any_text_as_data():
    assert assignment("A", "it's $(id)\n`x`") == "A='it'\"'\"'s $(id)\n`x`'"
    assert assignment("N", 5) == "N=5" and assignment("B", True) == "B=1"
    assert assignment("L", ("a b", "c")) == "L=('a b' c)"
    with pytest.raises(ValueError):
        assignment("lower", "x")
    with pytest.raises(ValueError):
        Var("1X")
    text = "\n".join(
        [
            assignment("A", "it's $(id)\n`x`"),
            assignment("L", ("a b", "$HOME")),
            'printf "<%s>" "$A" "${L[@]}"',
        ]
    )
    assert run_bash(text).stdout == "<it's $(id)\n`x`><a b><$HOME>"


def test_a_script_is_its_values_then_its_runtime_files_then_its_lines():
    text = Script(
        "a test", {"B": "2", "A": "1"}, ["python.sh", "health.py"], ['run_py "$PY_HEALTH"']
    ).render()
    assert text.startswith("#!/bin/bash\n# flaskdeploy: a test.")
    assert text.index(VALUES_BEGIN) < text.index("A=1") < text.index("B=2") < text.index(VALUES_END)
    assert text.index(VALUES_END) < text.index("run_py() {") < text.index("PY_HEALTH='")
    assert text.rstrip().endswith('run_py "$PY_HEALTH"')


def test_a_python_file_travels_whole_and_runs_from_its_variable(tmp_path):
    log = tmp_path / "history.log"
    text = Script(
        "t", {}, ["python.sh", "history.py"], [f'run_py "$PY_HISTORY" {log} u r a ok detail', f"cat {log}"]
    ).render()
    done = run_bash(text)
    assert done.returncode == 0 and '"user": "u"' in done.stdout and '"detail": "detail"' in done.stdout


def test_every_python_file_reaches_its_variable_unchanged():
    # Quotes, backslashes, $, backticks and all: what run_py hands to python3 is the file as it is.
    names = [p.name for p in runtime.files() if p.suffix == ".py"]
    variables = [runtime.python_variable(name) for name in names]
    text = Script("t", {}, names, [f'printf "%s\\0" "${v}"' for v in variables]).render()
    done = run_bash(text)
    assert done.stdout.split("\0")[:-1] == [(runtime.HERE / name).read_text() for name in names]
