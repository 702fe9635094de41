"""The server-side code (tasks/runtime): linted, documented, complete, and the scripts made of it.

ruff checks the Python files with the rest of the code base (tests/test_lint.py); ShellCheck checks the
shell files and every kind of script the kit sends.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import replace
from pathlib import Path

import pytest

from tasks import commands, probe, runtime
from tasks.converge import apply_script, plan
from tasks.facts import PathState, ReleaseDir
from tasks.remote import framed
from tasks.settings import PROJECT_ROOT
from tasks.shell import Script, line
from tasks.steps import APPLY, PARTS, restart, rollback
from tasks.steps.push import Releases
from tests.unit.conftest import PLATFORM, amended, converged_facts, fresh_facts, paths_of, plans, situation
from tests.unit.serverside import COSTLY_IMPORTS, run_bash, run_importing, shellcheck

SHELL_FILES = [p for p in runtime.files() if p.suffix == ".sh"]
PYTHON_FILES = [p for p in runtime.files() if p.suffix == ".py"]


def scripts(s) -> dict[str, Script]:
    """One of each kind of script the kit sends, as planned for the default app."""
    s = replace(s, deploy=replace(s.deploy, release_command="flask db upgrade"))
    fresh, converged = fresh_facts(), converged_facts(s)
    paths = paths_of(s)
    old = "20261125T090000Z-aaaaaaaaaaaa"
    held = converged.of(Releases)
    two = amended(
        replace(
            converged,
            paths={**converged.paths, paths.previous: PathState.link(f"{paths.releases_dir}/{old}")},
        ),
        Releases,
        releases=(ReleaseDir(old, next(iter(held.venvs))), *held.releases),
    )

    def apply(facts, steps, action):
        return apply_script(situation(s, facts), plan(situation(s, facts), steps), action, health_gate=True)

    made = {
        "deploy": apply_script(situation(s, fresh), plans(s, fresh), "deploy", health_gate=True),
        "rollback": apply(two, [rollback.step()], "rollback"),
        "restart": apply(converged, [restart.step()], "restart"),
        "restart --hard": apply(converged, [restart.step(hard=True)], "restart"),
        "probe": probe.script(s, holder="alice@laptop", action="deploy", health=True),
        "probe, read-only": probe.script(s),
        "history": Script(
            "history", {"HISTORY_FILE": "/srv/x/history.log"}, runtime.SHOW, [line("show_history")]
        ),
        "exec": commands.script(s, paths, PLATFORM, "flask --app flaskr init-db", "a@b"),
    }
    assert tuple(made) == KINDS
    return made


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
def test_each_shell_file_passes_shellcheck(path: Path):
    assert shellcheck(path.read_text()) == ""


KINDS = ("deploy", "rollback", "restart", "restart --hard", "probe", "probe, read-only", "history", "exec")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_script_is_valid_bash_and_passes_shellcheck(kind, settings):
    text = scripts(settings)[kind].render()
    checked = run_bash(f"bash -n <<'END_OF_SCRIPT'\n{text}\nEND_OF_SCRIPT")
    assert checked.returncode == 0, checked.stderr
    assert shellcheck(text) == ""
    assert len(framed(text)) < 50_000, "every run sends its script: its bytes are time on a slow link"


def defined_functions(text: str) -> set[str]:
    return set(re.findall(r"^([a-z_][a-z0-9_]*)\(\) \{", text, re.MULTILINE))


def header_list(text: str, key: str) -> set[str]:
    """The names a file's header lists after `# Key:` (continued on `#   ` lines)."""
    match = re.search(rf"^# {key}:(.*(?:\n#   +[^A-Z].*)*)", text, re.MULTILINE)
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", match[1].split("(")[0])) if match else set()


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
def test_each_shell_file_defines_functions_only_and_says_which(path: Path):
    text = path.read_text()
    assert header_list(text, "Defines") == defined_functions(text)
    # Nothing runs when a file is included: only functions and constants are defined.
    top_level = [
        line for line in text.splitlines()
        if line and not line.startswith(("#", " ", "}")) and not re.match(r"[a-z_]+\(\) \{|[A-Z_]+=\S+", line)
    ]  # fmt: skip
    assert top_level == []


def test_every_global_the_runtime_reads_is_provided(settings):
    read, assigned = set(), set()
    for path in SHELL_FILES:
        text = path.read_text()
        read |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", text))
        assigned |= set(re.findall(r"(?:^|[\s;])([A-Z][A-Z0-9_]*)=", text))
    made = scripts(settings)
    given = set(made["deploy"].values) | set(made["probe"].values) | set(made["exec"].values)
    python = {runtime.python_variable(p.name) for p in PYTHON_FILES}
    bash = {"EPOCHREALTIME", "BASH_REMATCH", "SECONDS"}  # bash's own (EPOCHREALTIME: 5.0 and later)
    assert read - assigned - given - python - bash == set()


def test_every_runtime_file_is_in_a_kind_of_script():
    # The steps' parts of the probe travel in its questions (tasks.probe.part_sources).
    included = set(APPLY) | set(runtime.PROBE) | set(PARTS) | set(runtime.SHOW) | set(runtime.EXEC)
    assert {p.name for p in runtime.files()} == included


def string_lines(path: Path) -> list[str]:
    """The lines of multi-line string literals (code in a string looks like this), docstrings left out."""
    text = path.read_text()
    docstrings = {
        node.body[0].lineno for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) and node.body
        and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }  # fmt: skip
    return [
        f"{path.name}:{token.start[0] + n}"
        for token in tokenize.generate_tokens(io.StringIO(text).readline)
        if token.type == tokenize.STRING and "\n" in token.string and token.start[0] not in docstrings
        for n in range(token.string.count("\n"))
    ]


def test_server_code_lives_in_runtime_files_not_in_python_strings():
    found = [
        line for path in (PROJECT_ROOT / "tasks").rglob("*.py") if path.parent != runtime.HERE
        for line in string_lines(path)
    ]  # fmt: skip
    assert found == []


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("health.py", ["http://127.0.0.1:9/", "localhost", "0", "answered"]),  # no answer: exits 1
        ("reload.py", ["{tmp}/no-supervisord.pid", "{tmp}/gunicorn.conf.py", "1", "nobody"]),  # no master: 3
        ("history.py", ["{tmp}/history.log", "alice", "r1", "deploy", "ok", "-"]),
    ],
)
def test_the_programs_a_deploy_runs_after_a_reload_import_none_of_the_costly_modules(
    tmp_path, name, arguments
):
    done, imported = run_importing(runtime.HERE / name, *(a.format(tmp=tmp_path) for a in arguments))
    assert done.returncode in (0, 1, 3), done.stderr
    assert "encodings" in imported  # the list is there to read
    assert not imported & COSTLY_IMPORTS
